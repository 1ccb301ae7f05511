package anomaly

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxSubjectLen bounds a subject given by an operator (ParseSubject).
const MaxSubjectLen = 1024

// ParseSubject checks a subject an operator names (to block or unblock it)
// and returns it in the form the block stage looks up, so that a block
// written under it is the one honoured:
//
//   - KindIP: an IPv4 address (or a /32) is the address; an IPv6 address
//     becomes its prefix of ipv6Prefix bits (default 64), as the detector
//     and the block stage count it, and an IPv6 prefix must have exactly
//     that length (it is masked). IPv4 prefixes other than /32, zones and
//     IPv4-mapped IPv6 prefixes are refused: the stage never looks them up.
//   - KindPrincipal: "authenticator:subject" as the detector names a
//     principal, at most MaxSubjectLen bytes of valid UTF-8 without
//     control characters; it is returned unchanged. A Redis blocker's
//     hashed form ("sha256:<hex>", see Block.Hashed) is accepted as such.
//
// Errors are lowercase sentences fit to show the operator.
func ParseSubject(kind, s string, ipv6Prefix int) (string, error) {
	if ipv6Prefix <= 0 || ipv6Prefix > 128 {
		ipv6Prefix = 64
	}
	switch kind {
	case KindIP:
		return parseIPSubject(s, ipv6Prefix)
	case KindPrincipal:
		return s, checkPrincipalSubject(s)
	default:
		return "", fmt.Errorf("kind must be %q or %q", KindIP, KindPrincipal)
	}
}

func parseIPSubject(s string, ipv6Prefix int) (string, error) {
	if s == "" {
		return "", errors.New("subject is required: an IP address or IPv6 prefix")
	}
	if len(s) > 64 {
		return "", errors.New("subject is not an IP address or prefix")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", errors.New("an address with a zone cannot be blocked")
		}
		return FormatIPSubject(IPSubject(a, ipv6Prefix)), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", errors.New("subject is not an IP address or prefix")
	}
	a := p.Addr()
	switch {
	case a.Is4():
		if p.Bits() != 32 {
			return "", errors.New("IPv4 clients are blocked per address: give an address, not a prefix")
		}
		return a.String(), nil
	case a.Is4In6():
		return "", errors.New("give an IPv4-mapped address as plain IPv4")
	case p.Bits() != ipv6Prefix:
		return "", fmt.Errorf("IPv6 clients are blocked per /%d prefix (anomaly.ipv6_prefix): give an address or a /%d", ipv6Prefix, ipv6Prefix)
	}
	return FormatIPSubject(IPSubject(a, ipv6Prefix)), nil
}

func checkPrincipalSubject(s string) error {
	if len(s) > MaxSubjectLen {
		return fmt.Errorf("subject is over %d bytes", MaxSubjectLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return errors.New("subject must be UTF-8 text without control characters")
	}
	auth, sub, ok := strings.Cut(s, ":")
	if !ok || auth == "" || sub == "" {
		return errors.New(`a principal subject is "authenticator:subject", as alerts name it`)
	}
	return nil
}
