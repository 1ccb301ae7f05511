// Package origin parses and matches browser origins and the origin patterns
// of a CORS allow-list. It depends only on the standard library and
// httpsyntax, so configuration validation and the CORS stage share one
// definition.
package origin

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// origin is a parsed origin or origin pattern, normalised: scheme and host in
// lowercase, IPv6 hosts in brackets and compressed form, and port "" when it
// is absent or the scheme's default.
type origin struct {
	scheme, host, port string
	ip                 bool // host is an IP literal
	canonical          bool // the input was already in normal form
}

// key returns the normal form of o, "scheme://host[:port]".
func (o origin) key() string {
	if o.port == "" {
		return o.scheme + "://" + o.host
	}
	return o.scheme + "://" + o.host + ":" + o.port
}

// wildcard matches origins whose host ends in suffix (".example.com") after
// one or more whole labels, with the same scheme and port.
type wildcard struct {
	scheme, suffix, port string
}

// Matcher decides whether an Origin header value is allowed. It is
// built once by NewMatcher, immutable afterwards and safe for concurrent use.
type Matcher struct {
	any       bool
	exact     map[string]struct{} // normal forms
	wildcards []wildcard
}

// Validate reports whether pattern is a valid entry of allow_origins: a
// lone "*", an exact origin "https://app.example.com[:port]" (scheme http or
// https, no path, query or user info), or a pattern "https://*.example.com"
// whose "*" stands for one or more whole labels in the leftmost position of
// the host and is followed by at least two labels. "null" is refused: that
// origin is shared by sandboxed documents and local files of any site. A lone
// "*" is valid here; combined with allow_credentials it is refused by
// configuration validation and by the CORS stage.
func Validate(pattern string) error {
	if pattern == "*" {
		return nil
	}
	_, _, err := parseOrigin(pattern, true)
	return err
}

// NewMatcher compiles the allow_origins list, reporting every bad entry.
func NewMatcher(patterns []string) (*Matcher, error) {
	m := &Matcher{exact: make(map[string]struct{}, len(patterns))}
	var errs []error
	for i, p := range patterns {
		if p == "*" {
			m.any = true
			continue
		}
		o, wild, err := parseOrigin(p, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow_origins[%d]: %w", i, err))
			continue
		}
		if wild {
			m.wildcards = append(m.wildcards, wildcard{scheme: o.scheme, suffix: o.host, port: o.port})
		} else {
			m.exact[o.key()] = struct{}{}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// Any reports whether the list allows every origin ("*").
func (m *Matcher) Any() bool { return m.any }

// Match reports whether the Origin header value v is allowed. It does not
// allocate for origins that browsers send in normal form.
func (m *Matcher) Match(v string) bool {
	if m.any {
		return true
	}
	if _, ok := m.exact[v]; ok {
		return true
	}
	o, _, err := parseOrigin(v, false)
	if err != nil {
		return false
	}
	if !o.canonical && len(m.exact) > 0 {
		if _, ok := m.exact[o.key()]; ok {
			return true
		}
	}
	if o.ip {
		return false
	}
	for _, w := range m.wildcards {
		if o.scheme == w.scheme && o.port == w.port && len(o.host) > len(w.suffix) && strings.HasSuffix(o.host, w.suffix) {
			return true
		}
	}
	return false
}

// parseOrigin parses an origin "scheme://host[:port]". With pattern set, the
// host may start with "*." (wild is then true and o.host is the suffix from
// the dot on: ".example.com").
func parseOrigin(s string, pattern bool) (o origin, wild bool, err error) {
	if s == "" {
		return o, false, errors.New("empty origin")
	}
	if strings.EqualFold(s, "null") {
		return o, false, errors.New(`the "null" origin cannot be allowed: sandboxed documents and local files of any site send it`)
	}
	o.canonical = true
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, false, fmt.Errorf("origin %q: want scheme://host[:port]", s)
	}
	o.scheme, o.canonical = lower(scheme, o.canonical)
	if o.scheme != "http" && o.scheme != "https" {
		return o, false, fmt.Errorf("origin %q: scheme must be http or https", s)
	}
	if i := strings.IndexAny(rest, "/?#@\\"); i >= 0 {
		return o, false, fmt.Errorf("origin %q: an origin has no path, query, fragment or user info", s)
	}

	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return o, false, fmt.Errorf("origin %q: unterminated IPv6 literal", s)
		}
		host = rest[:end+1]
		if after := rest[end+1:]; after != "" {
			if after[0] != ':' {
				return o, false, fmt.Errorf("origin %q: want scheme://host[:port]", s)
			}
			port = after[1:]
			if port == "" {
				return o, false, fmt.Errorf("origin %q: empty port", s)
			}
		}
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return o, false, fmt.Errorf("origin %q: empty port", s)
		}
	}

	if port != "" {
		n, perr := strconv.Atoi(port)
		if perr != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9' {
			return o, false, fmt.Errorf("origin %q: invalid port", s)
		}
		norm := strconv.Itoa(n)
		if (o.scheme == "http" && n == 80) || (o.scheme == "https" && n == 443) {
			norm = ""
		}
		if norm != port {
			o.canonical = false
		}
		o.port = norm
	}

	switch {
	case strings.HasPrefix(host, "["):
		a, aerr := netip.ParseAddr(host[1 : len(host)-1])
		if aerr != nil || !a.Is6() || a.Zone() != "" {
			return o, false, fmt.Errorf("origin %q: invalid IPv6 literal", s)
		}
		o.host, o.ip = "["+a.String()+"]", true
		if o.host != host {
			o.canonical = false
		}
	case pattern && strings.HasPrefix(host, "*."):
		suffix := host[1:]
		if strings.Contains(suffix, "*") {
			return o, false, fmt.Errorf("origin %q: * may only stand for the leftmost labels of the host", s)
		}
		suffix, o.canonical = lower(suffix, o.canonical)
		if err := checkDNSName(suffix[1:]); err != nil {
			return o, false, fmt.Errorf("origin %q: %w", s, err)
		}
		labels := strings.Count(suffix, ".")
		if labels < 2 {
			return o, false, fmt.Errorf("origin %q: a wildcard must be followed by at least two labels (*.example.com)", s)
		}
		if last := suffix[strings.LastIndexByte(suffix, '.')+1:]; isNumeric(last) {
			return o, false, fmt.Errorf("origin %q: a wildcard cannot match IP addresses", s)
		}
		o.host = suffix
		return o, true, nil
	case strings.Contains(host, "*"):
		return o, false, fmt.Errorf("origin %q: * may only stand for the leftmost labels of the host (https://*.example.com) or all origins (*)", s)
	default:
		o.host, o.canonical = lower(host, o.canonical)
		if strings.IndexByte(o.host, ':') >= 0 {
			return o, false, fmt.Errorf("origin %q: IPv6 literals need brackets", s)
		}
		if isDotted(o.host) { // checked first: a failed ParseAddr allocates
			if _, aerr := netip.ParseAddr(o.host); aerr != nil {
				return o, false, fmt.Errorf("origin %q: invalid IPv4 address", s)
			}
			o.ip = true
			break
		}
		if err := checkDNSName(o.host); err != nil {
			return o, false, fmt.Errorf("origin %q: %w", s, err)
		}
		if last := o.host[strings.LastIndexByte(o.host, '.')+1:]; isNumeric(last) {
			// Browsers read such a host as an IPv4 address; it is not one.
			return o, false, fmt.Errorf("origin %q: invalid IPv4 address", s)
		}
	}
	return o, false, nil
}

// checkDNSName checks a lowercase host name: dot-separated non-empty labels
// of at most 63 letters, digits, hyphens or underscores; 253 bytes at most.
// Internationalised names must be written in their punycode (xn--) form.
func checkDNSName(h string) error {
	if h == "" || len(h) > 253 {
		return errors.New("invalid host name")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("invalid host name: empty or overlong label")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("invalid host name: character %q (write internationalised names in punycode)", c)
			}
		}
	}
	return nil
}

// isDotted reports whether s has only digits and dots, as IPv4 literals do.
func isDotted(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return s != ""
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// lower returns s in ASCII lowercase (see httpsyntax.LowerASCII), and
// canonical cleared when that changed anything. It allocates only when s has
// uppercase letters.
func lower(s string, canonical bool) (string, bool) {
	l := httpsyntax.LowerASCII(s)
	return l, canonical && l == s
}
