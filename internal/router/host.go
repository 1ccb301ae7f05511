package router

import (
	"fmt"
	"net/netip"
	"strings"
)

// hostKind says how a host pattern matches.
type hostKind uint8

const (
	hostAny      hostKind = iota // "" or "*": every host
	hostExact                    // one host name or IP address
	hostWildcard                 // "*.example.com": one or more labels before the suffix
)

// hostPattern is a parsed, normalised host pattern. For hostExact, name is
// the lower-case host (an IPv6 address in its canonical form, without
// brackets); for hostWildcard it is the suffix after "*.".
type hostPattern struct {
	kind hostKind
	name string
}

// String returns the pattern in configuration syntax, for messages.
func (p hostPattern) String() string {
	switch p.kind {
	case hostExact:
		return p.name
	case hostWildcard:
		return "*." + p.name
	default:
		return "*"
	}
}

// ValidateHost reports whether host is a host pattern that Builder.Add
// accepts. It returns nil or an error wrapping ErrInvalidHost.
//
// Accepted patterns: "" or "*" (any host); an exact DNS name
// ("api.example.com"; letters, digits, "-" and "_" in labels of 1 to 63
// bytes, at most 253 bytes, compared case-insensitively, one trailing dot
// ignored); an IPv4 address; an IPv6 address with or without brackets
// ("::1", "[::1]"), compared in canonical form; or "*.suffix", where suffix
// is a DNS name, matching one or more labels in front of suffix but not
// suffix itself. Ports, zones, internationalised (non-ASCII) names and "*"
// anywhere but as the whole first label are refused; write IDNs in their
// "xn--" form.
func ValidateHost(host string) error {
	_, err := parseHostPattern(host)
	return err
}

// parseHostPattern parses and normalises a host pattern; see ValidateHost.
func parseHostPattern(h string) (hostPattern, error) {
	if h == "" || h == "*" {
		return hostPattern{kind: hostAny}, nil
	}
	bad := func(why string) (hostPattern, error) {
		return hostPattern{}, fmt.Errorf("%w %q: %s", ErrInvalidHost, h, why)
	}
	if lit, ok := strings.CutPrefix(h, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		if !ok {
			return bad("a bracketed IPv6 address must end with \"]\" and have no port")
		}
		a, err := netip.ParseAddr(lit)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return bad("not an IPv6 address without zone")
		}
		return hostPattern{kind: hostExact, name: a.String()}, nil
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return bad("give the host without a port")
		}
		return hostPattern{kind: hostExact, name: a.String()}, nil
	}
	name := strings.ToLower(strings.TrimSuffix(h, "."))
	kind := hostExact
	if suffix, ok := strings.CutPrefix(name, "*."); ok {
		name, kind = suffix, hostWildcard
	}
	if strings.Contains(name, "*") {
		return bad("a wildcard is allowed only as the whole first label, as in *.example.com")
	}
	if why := checkDNSName(name); why != "" {
		return bad(why)
	}
	return hostPattern{kind: kind, name: name}, nil
}

// checkDNSName returns why the lower-case name is not a DNS name acceptable
// in a pattern, or "".
func checkDNSName(name string) string {
	if name == "" || len(name) > 253 {
		return "not a host name: length must be 1 to 253 bytes"
	}
	label := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			if label == 0 || label > 63 {
				return "not a host name: labels must be 1 to 63 bytes"
			}
			label = 0
			continue
		}
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Sprintf("not a host name: character %q (use the xn-- form for non-ASCII names)", c)
		}
		label++
	}
	return ""
}

// hostBufLen bounds the normalised request host that can name a specific
// host tree: DNS names are at most 253 bytes and IPv6 text is shorter. A
// longer host only reaches the any-host tree.
const hostBufLen = 256

// requestHost normalises a request's Host into buf and returns the result:
// the port is removed ("[::1]:8080" and "example.com:80" both have one),
// IPv6 addresses are written in canonical form without brackets, ASCII is
// lower-cased, and one trailing dot is dropped. It returns nil when the host
// is empty, malformed or too long to match an exact or wildcard pattern.
// It does not allocate.
func requestHost(host string, buf *[hostBufLen]byte) []byte {
	if host == "" {
		return nil
	}
	if host[0] == '[' {
		end := strings.IndexByte(host, ']')
		if end < 0 {
			return nil
		}
		return ipv6Host(host[1:end], buf)
	}
	if i := strings.IndexByte(host, ':'); i >= 0 {
		if strings.LastIndexByte(host, ':') != i {
			// Several colons and no brackets: a bare IPv6 address.
			return ipv6Host(host, buf)
		}
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > len(buf) {
		return nil
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(host)]
}

// ipv6Host writes the canonical text of the IPv6 address lit into buf, or
// returns nil if lit is not one or has a zone (patterns never do).
func ipv6Host(lit string, buf *[hostBufLen]byte) []byte {
	a, err := netip.ParseAddr(lit)
	if err != nil || !a.Is6() || a.Zone() != "" {
		return nil
	}
	return a.AppendTo(buf[:0])
}
