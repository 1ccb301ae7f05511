package clientip

import (
	"net/netip"
	"strings"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// parseForwardedElement returns the address in the for= parameter of one RFC
// 7239 forwarded-element ("for=192.0.2.60;proto=https;by=203.0.113.43").
// Parameters are separated by semicolons, names are case-insensitive tokens,
// values are tokens or quoted strings. It is not ok when the element does not
// follow that grammar, has no for= or more than one, when the for= value uses
// quoted-pairs, or when the node is "unknown", obfuscated ("_hidden") or
// otherwise not an IP address.
func parseForwardedElement(s string) (netip.Addr, bool) {
	var node string
	found := false
	for i := 0; i < len(s); {
		i = skipOWS(s, i)
		if i == len(s) {
			break
		}
		if s[i] == ';' { // empty pair
			i++
			continue
		}
		name := i
		for i < len(s) && httpsyntax.IsTchar(s[i]) {
			i++
		}
		if i == name || i == len(s) || s[i] != '=' {
			return netip.Addr{}, false
		}
		isFor := strings.EqualFold(s[name:i], "for")
		i++ // '='
		value, next, escaped, ok := forwardedValue(s, i)
		if !ok {
			return netip.Addr{}, false
		}
		i = next
		if isFor {
			if found || escaped {
				// "for" must not repeat in one element, and no node needs
				// quoted-pairs: refuse rather than guess.
				return netip.Addr{}, false
			}
			node, found = value, true
		}
		i = skipOWS(s, i)
		if i < len(s) {
			if s[i] != ';' {
				return netip.Addr{}, false
			}
			i++
		}
	}
	if !found {
		return netip.Addr{}, false
	}
	return parseForwardedNode(node)
}

// forwardedValue reads a token or a quoted string starting at s[i]. It returns
// the value (a quoted string without its quotes, escapes left in place), the
// index after it, and whether the quoted string held quoted-pairs.
func forwardedValue(s string, i int) (value string, next int, escaped, ok bool) {
	if i < len(s) && s[i] == '"' {
		i++
		start := i
		for ; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\':
				escaped = true
				i++ // skip the escaped byte
			case c == '"':
				return s[start:i], i + 1, escaped, true
			case c < ' ' && c != '\t' || c == 0x7f:
				return "", i, false, false
			}
		}
		return "", i, false, false
	}
	start := i
	for i < len(s) && httpsyntax.IsTchar(s[i]) {
		i++
	}
	return s[start:i], i, false, i > start
}

// parseForwardedNode parses an RFC 7239 node: an IPv4 address or an IPv6
// address in brackets, with an optional port or obfuscated port. "unknown" and
// obfuscated identifiers are not ok.
func parseForwardedNode(s string) (netip.Addr, bool) {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return netip.Addr{}, false
			}
			port = rest[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" || !validNodePort(port) {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Is4() || !validNodePort(port) {
		return netip.Addr{}, false
	}
	return a, true
}

// validNodePort reports whether s is empty, a decimal port, or an obfuscated
// port ("_" followed by letters, digits, ".", "_" or "-").
func validNodePort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != '_' {
		return validPort(s)
	}
	if len(s) == 1 {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func skipOWS(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}
