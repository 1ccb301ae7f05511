// Package clientip finds the real client address of a request that may have
// passed through trusted reverse proxies.
//
// A Resolver believes forwarding headers only when the TCP peer is a trusted
// proxy, and even then only as far as the chain of hops stays inside trusted
// prefixes: it walks the header from right to left (the hops appended last,
// by the proxies closest to the gateway, first), skips every trusted hop and
// returns the first untrusted one. A value it cannot parse ends the walk; it
// is never believed.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/moat-gateway/moat/internal/gateway"
)

// Header names accepted by New, in the lowercase form the configuration uses.
const (
	HeaderXForwardedFor = "x-forwarded-for"
	HeaderForwarded     = "forwarded"
	HeaderXRealIP       = "x-real-ip"
)

// Limits on the work Resolve does on one request. Hops beyond maxHops, and
// header bytes further left than maxHeaderBytes from the right end, are never
// looked at: the walk stops there as if it had met a malformed element.
const (
	maxHops        = 64
	maxHeaderBytes = 8 << 10
)

type format uint8

const (
	formatXFF       format = iota // comma-separated addresses: X-Forwarded-For, X-Real-IP
	formatForwarded               // RFC 7239 forwarded-elements
)

// Resolver resolves the client address of requests. It is immutable after New
// and safe for concurrent use. The zero Resolver trusts no peer: Resolve then
// always returns the peer address.
type Resolver struct {
	v4, v6 []netip.Prefix // trusted prefixes, masked; IPv4-mapped prefixes stored as IPv4
	key    string         // canonical header key
	format format
}

// New returns a Resolver that believes the named header when the peer falls
// inside one of the trusted prefixes. header is "x-forwarded-for" (the default
// when empty), "forwarded" (RFC 7239) or "x-real-ip", in any case. It returns
// an error for an unknown header or an invalid prefix. An empty trusted list
// is valid: forwarding headers are then never believed.
//
// IPv4-mapped IPv6 prefixes (::ffff:10.0.0.0/104) are treated as the IPv4
// prefixes they map; other IPv6 prefixes, including ::/0, match IPv6
// addresses only, because every address is unmapped before it is compared.
func New(trusted []netip.Prefix, header string) (*Resolver, error) {
	r := &Resolver{}
	switch strings.ToLower(strings.TrimSpace(header)) {
	case "", HeaderXForwardedFor:
		r.key, r.format = "X-Forwarded-For", formatXFF
	case HeaderForwarded:
		r.key, r.format = "Forwarded", formatForwarded
	case HeaderXRealIP:
		r.key, r.format = "X-Real-Ip", formatXFF
	default:
		return nil, fmt.Errorf("unknown client ip header %q: want x-forwarded-for, forwarded or x-real-ip", header)
	}
	for i, p := range trusted {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxy %d: invalid prefix %q", i, p.String())
		}
		p = p.Masked()
		a := p.Addr()
		switch {
		case a.Is4():
			r.v4 = append(r.v4, p)
		case a.Is4In6() && p.Bits() >= 96:
			r.v4 = append(r.v4, netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked())
		default:
			r.v6 = append(r.v6, p)
		}
	}
	return r, nil
}

// Header returns the canonical name of the header the Resolver reads.
func (r *Resolver) Header() string {
	if r.key == "" {
		return "X-Forwarded-For"
	}
	return r.key
}

// Resolve returns the client address, the peer address and whether the peer
// is a trusted proxy. remoteAddr is http.Request.RemoteAddr: "ip:port",
// "[v6]:port" or a bare address; when it cannot be parsed, peer and client are
// the zero Addr and the peer is not trusted. Addresses are returned unmapped
// (::ffff:192.0.2.1 becomes 192.0.2.1) and without an IPv6 zone.
//
// When the peer is not trusted, client is the peer and h is not read. When it
// is, Resolve reads the configured header (all its lines, in order) from right
// to left, skipping hops inside trusted prefixes; the first untrusted hop is
// the client. If every hop is trusted, the leftmost one is the client. A
// malformed hop, an obfuscated or "unknown" Forwarded node, a Forwarded
// element without exactly one for=, more than 64 hops or more than 8 KiB of
// header end the walk: the last hop parsed (or the peer, when there is none)
// is the client. Empty list elements are skipped (RFC 9110 section 5.6.1).
//
// X-Forwarded-For and X-Real-IP hops are addresses with an optional port
// ("192.0.2.1", "192.0.2.1:4711", "2001:db8::1", "[2001:db8::1]:4711").
// Forwarded nodes follow RFC 7239: IPv4, or IPv6 in brackets, quoted when a
// port is present; a for= value using quoted-pairs is refused.
func (r *Resolver) Resolve(remoteAddr string, h http.Header) (client, peer netip.Addr, peerTrusted bool) {
	peer, ok := parsePeer(remoteAddr)
	if !ok {
		return netip.Addr{}, netip.Addr{}, false
	}
	if !r.trusts(peer) {
		return peer, peer, false
	}
	return r.walk(h[r.Header()], peer), peer, true
}

// trusts reports whether a, unmapped and without zone, is inside a trusted
// prefix.
func (r *Resolver) trusts(a netip.Addr) bool {
	list := r.v6
	if a.Is4() {
		list = r.v4
	}
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// walk visits the hops of lines from right to left and returns the client;
// see Resolve.
func (r *Resolver) walk(lines []string, peer netip.Addr) netip.Addr {
	client := peer
	budget, hops := maxHeaderBytes, 0
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		end := len(line)
		for {
			lo := max(end-budget, 0)
			start, ok := elementStart(line, lo, end, r.format == formatForwarded)
			if !ok {
				return client // cut by the byte budget, or an unterminated quote
			}
			budget -= end - start + 1 // the element and its separator
			if elem := trimOWS(line[start:end]); elem != "" {
				hops++
				if hops > maxHops {
					return client
				}
				var a netip.Addr
				if r.format == formatForwarded {
					a, ok = parseForwardedElement(elem)
				} else {
					a, ok = parseNode(elem)
				}
				if !ok {
					return client
				}
				client = a
				if !r.trusts(a) {
					return a
				}
			}
			if start == 0 {
				break
			}
			end = start - 1 // the comma before the element
		}
	}
	return client
}

// elementStart returns the index where the list element of s ending at end
// begins: just after the nearest comma to its left, or 0. It does not look
// left of lo; when lo > 0 and no comma was found from lo on, the element is
// cut and ok is false. With quoted set, commas inside quoted strings do not
// count, and an unterminated quoted string is not ok.
//
// Scanning right to left is sound for quoted strings: a double quote inside
// one is escaped exactly when an odd number of backslashes precedes it.
func elementStart(s string, lo, end int, quoted bool) (int, bool) {
	inQuote := false
	for i := end - 1; i >= lo; i-- {
		switch c := s[i]; {
		case c == ',' && !inQuote:
			return i + 1, true
		case c == '"' && quoted:
			if !inQuote {
				inQuote = true
				break
			}
			n := 0
			for j := i - 1; j >= lo && s[j] == '\\'; j-- {
				n++
			}
			if n%2 == 0 {
				inQuote = false
			}
		}
	}
	if lo > 0 || inQuote {
		return 0, false
	}
	return 0, true
}

// parsePeer parses http.Request.RemoteAddr.
func parsePeer(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return clean(ap.Addr()), true
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return clean(a), true
	}
	return netip.Addr{}, false
}

func clean(a netip.Addr) netip.Addr { return a.WithZone("").Unmap() }

// parseNode parses one X-Forwarded-For hop: an IPv4 or IPv6 address,
// optionally with a port ("192.0.2.1:4711", "[2001:db8::1]:4711") or in
// brackets ("[2001:db8::1]"). Zoned addresses are refused.
func parseNode(s string) (netip.Addr, bool) {
	host := s
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" && (rest[0] != ':' || !validPort(rest[1:])) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	if i := strings.IndexByte(s, ':'); i >= 0 && strings.IndexByte(s[i+1:], ':') < 0 {
		// Exactly one colon: IPv4 with a port.
		host = s[:i]
		if !validPort(s[i+1:]) {
			return netip.Addr{}, false
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Is4() {
			return netip.Addr{}, false
		}
		return a, true
	}
	a, err := netip.ParseAddr(host)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort reports whether s is a decimal port, 0 to 65535.
func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n <= 65535
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

var _ gateway.ClientIPResolver = (*Resolver)(nil)
