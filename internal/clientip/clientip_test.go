package clientip

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

var testTrusted = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("2001:db8:ffff::/48"),
	netip.MustParsePrefix("::ffff:172.16.0.0/108"), // IPv4-mapped: 172.16.0.0/12
}

func mustNew(t testing.TB, header string) *Resolver {
	t.Helper()
	r, err := New(testTrusted, header)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestNew(t *testing.T) {
	tests := []struct {
		desc    string
		trusted []netip.Prefix
		header  string
		wantKey string
		wantErr bool
	}{
		{desc: "default header", header: "", wantKey: "X-Forwarded-For"},
		{desc: "x-forwarded-for", header: "x-forwarded-for", wantKey: "X-Forwarded-For"},
		{desc: "header is case-insensitive", header: "X-Forwarded-For", wantKey: "X-Forwarded-For"},
		{desc: "forwarded", header: "forwarded", wantKey: "Forwarded"},
		{desc: "x-real-ip", header: "x-real-ip", wantKey: "X-Real-Ip"},
		{desc: "unknown header", header: "x-client-ip", wantErr: true},
		{desc: "invalid prefix", trusted: []netip.Prefix{{}}, wantErr: true},
		{desc: "no trusted proxies", trusted: nil, wantKey: "X-Forwarded-For"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r, err := New(tt.trusted, tt.header)
			if tt.wantErr {
				if err == nil {
					t.Fatal("New succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Header(); got != tt.wantKey {
				t.Errorf("Header() = %q, want %q", got, tt.wantKey)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		desc        string
		header      string // configured client_ip_header
		remoteAddr  string
		h           http.Header
		wantClient  string // "" for the zero Addr
		wantPeer    string
		wantTrusted bool
	}{
		// Peer handling.
		{desc: "untrusted peer: headers ignored", remoteAddr: "203.0.113.9:5000",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}, wantClient: "203.0.113.9", wantPeer: "203.0.113.9"},
		{desc: "untrusted IPv6 peer", remoteAddr: "[2001:db8::1]:443",
			wantClient: "2001:db8::1", wantPeer: "2001:db8::1"},
		{desc: "IPv4-mapped peer is unmapped", remoteAddr: "[::ffff:203.0.113.9]:443",
			wantClient: "203.0.113.9", wantPeer: "203.0.113.9"},
		{desc: "zoned peer loses its zone", remoteAddr: "[fe80::1%eth0]:443",
			wantClient: "fe80::1", wantPeer: "fe80::1"},
		{desc: "peer without port", remoteAddr: "203.0.113.9", wantClient: "203.0.113.9", wantPeer: "203.0.113.9"},
		{desc: "unparsable peer", remoteAddr: "pipe", h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}},
		{desc: "empty peer", remoteAddr: ""},
		{desc: "trusted peer without header", remoteAddr: "10.0.0.1:1",
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "trusted IPv4-mapped peer matches IPv4 prefix", remoteAddr: "[::ffff:10.1.2.3]:1",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "10.1.2.3", wantTrusted: true},
		{desc: "IPv4 peer matches IPv4-mapped prefix", remoteAddr: "172.20.0.1:1",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "172.20.0.1", wantTrusted: true},

		// X-Forwarded-For.
		{desc: "xff: one hop", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: trusted hops skipped from the right", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.1, 192.168.1.1, 10.0.0.2"}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: spoofed left part is never reached", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"10.9.9.9, 198.51.100.1"}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: every hop trusted gives the leftmost", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"10.0.0.3, 192.168.0.7, 10.0.0.2"}},
			wantClient: "10.0.0.3", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: lines joined in order", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.7, 198.51.100.1", "10.0.0.3"}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: malformed hop stops the walk at the last good one", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1, garbage, 10.0.0.3"}},
			wantClient: "10.0.0.3", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: malformed rightmost hop gives the peer", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1, 1.2.3"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: unknown is malformed", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1, unknown"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: zoned hop is malformed", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"fe80::1%eth0"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: empty elements are skipped", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1,, ,10.0.0.2", ""}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: IPv4 with port", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1:4711"}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: bracketed IPv6 with port", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Forwarded-For": {"[2001:db8::1]:4711"}}, wantClient: "2001:db8::1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: bare IPv6", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Forwarded-For": {"2001:db8::1"}}, wantClient: "2001:db8::1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: IPv4-mapped hop unmapped and checked as IPv4", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1, ::ffff:10.0.0.9"}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: port out of range is malformed", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.51.100.1:65536"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: leading zeros are malformed", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"X-Forwarded-For": {"198.051.100.1"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "xff: trusted IPv6 proxy", remoteAddr: "[2001:db8:ffff::1]:1",
			h:          http.Header{"X-Forwarded-For": {"2001:db8::5, 2001:db8:ffff::2"}},
			wantClient: "2001:db8::5", wantPeer: "2001:db8:ffff::1", wantTrusted: true},
		{desc: "xff: other headers ignored", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {"for=198.51.100.1"}, "X-Real-Ip": {"198.51.100.2"}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},

		// X-Real-IP.
		{desc: "x-real-ip", header: "x-real-ip", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Real-Ip": {"198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "x-real-ip malformed", header: "x-real-ip", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Real-Ip": {"example.com"}}, wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "x-real-ip ignores x-forwarded-for", header: "x-real-ip", remoteAddr: "10.0.0.1:1",
			h: http.Header{"X-Forwarded-For": {"198.51.100.1"}}, wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},

		// Forwarded (RFC 7239).
		{desc: "forwarded: token", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h: http.Header{"Forwarded": {"for=198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: parameter name is case-insensitive", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h: http.Header{"Forwarded": {"For=198.51.100.1"}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: RFC 7239 example chain", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https;by=203.0.113.43, for=10.0.0.9`}},
			wantClient: "2001:db8:cafe::17", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: quoted IPv4 with port", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h: http.Header{"Forwarded": {`for="198.51.100.1:4711"`}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: obfuscated port is fine", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h: http.Header{"Forwarded": {`for="198.51.100.1:_p1"`}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: for after other parameters", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h: http.Header{"Forwarded": {`proto=https; by="[2001:db8::9]"; for=198.51.100.1`}}, wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: comma inside quotes does not split", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1;host="a,b", for=10.0.0.2`}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: escaped quote inside a quoted string", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1;host="a\",b", for=10.0.0.2`}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: unknown stops the walk", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {"for=198.51.100.1, for=unknown, for=10.0.0.2"}},
			wantClient: "10.0.0.2", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: obfuscated node stops the walk", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=_hidden`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: element without for stops the walk", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1, proto=https`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: repeated for is malformed", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1;for=198.51.100.2`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: unquoted port is malformed", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1:80`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: IPv6 without brackets is malformed", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for="2001:db8::1"`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: quoted-pair in for is refused", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for="\198.51.100.1"`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: unterminated quote is malformed", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for="198.51.100.1`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: stray quote is malformed", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.1"`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: whitespace around =", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for = 198.51.100.1`}},
			wantClient: "10.0.0.1", wantPeer: "10.0.0.1", wantTrusted: true},
		{desc: "forwarded: lines joined in order", header: "forwarded", remoteAddr: "10.0.0.1:1",
			h:          http.Header{"Forwarded": {`for=198.51.100.9, for=198.51.100.1`, `for="[2001:db8:ffff::3]"`}},
			wantClient: "198.51.100.1", wantPeer: "10.0.0.1", wantTrusted: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := mustNew(t, tt.header)
			client, peer, trusted := r.Resolve(tt.remoteAddr, tt.h)
			if got := addrString(client); got != tt.wantClient {
				t.Errorf("client = %q, want %q", got, tt.wantClient)
			}
			if got := addrString(peer); got != tt.wantPeer {
				t.Errorf("peer = %q, want %q", got, tt.wantPeer)
			}
			if trusted != tt.wantTrusted {
				t.Errorf("peerTrusted = %v, want %v", trusted, tt.wantTrusted)
			}
		})
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestResolveZeroResolverTrustsNobody(t *testing.T) {
	var r Resolver
	client, peer, trusted := r.Resolve("10.0.0.1:1", http.Header{"X-Forwarded-For": {"198.51.100.1"}})
	if trusted || client != peer || peer != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("Resolve = %v, %v, %v; want the peer, untrusted", client, peer, trusted)
	}
}

func TestResolveBounds(t *testing.T) {
	peer := "10.0.0.1:1"
	tests := []struct {
		desc       string
		xff        []string
		wantClient string
	}{
		{
			desc:       "64 trusted hops are walked to the leftmost",
			xff:        []string{"10.0.0.64, " + trustedHops(63)},
			wantClient: "10.0.0.64",
		},
		{
			desc:       "hop 65 is never looked at",
			xff:        []string{"198.51.100.1, " + trustedHops(64)},
			wantClient: "10.0.0.64",
		},
		{
			desc:       "bytes beyond 8 KiB are never looked at",
			xff:        []string{"198.51.100.1," + strings.Repeat(" ", 8<<10) + ",10.0.0.2"},
			wantClient: "10.0.0.2",
		},
		{
			desc: "a hop cut by the byte limit is not believed",
			// "198.51.100.1" straddles the limit; its tail "8.51.100.1"
			// would parse.
			xff:        []string{"198.51.100.1," + strings.Repeat(" ", 8<<10-len(",10.0.0.2")-len("8.51.100.1,")) + ",10.0.0.2"},
			wantClient: "10.0.0.2",
		},
		{
			desc:       "the byte limit spans lines",
			xff:        []string{"198.51.100.1", strings.Repeat(" ", 8<<10), "10.0.0.2"},
			wantClient: "10.0.0.2",
		},
		{
			desc:       "just under the byte limit",
			xff:        []string{"198.51.100.1," + strings.Repeat(" ", 8<<10-len("198.51.100.1,,10.0.0.2")-1) + ",10.0.0.2"},
			wantClient: "198.51.100.1",
		},
	}
	r := mustNew(t, "")
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			client, _, _ := r.Resolve(peer, http.Header{"X-Forwarded-For": tt.xff})
			if got := addrString(client); got != tt.wantClient {
				t.Errorf("client = %q, want %q", got, tt.wantClient)
			}
		})
	}
}

// trustedHops returns n trusted addresses, 10.0.0.n down to 10.0.0.1.
func trustedHops(n int) string {
	hops := make([]string, n)
	for i := range n {
		hops[i] = netip.AddrFrom4([4]byte{10, 0, 0, byte(n - i)}).String()
	}
	return strings.Join(hops, ", ")
}

func FuzzResolve(f *testing.F) {
	seeds := []struct {
		remote, header string
		kind           uint8
	}{
		{"10.0.0.1:1", "198.51.100.1, 10.0.0.2", 0},
		{"10.0.0.1:1", "6.6.6.6, 198.51.100.1:80, [2001:db8::1]:443", 0},
		{"[2001:db8:ffff::1]:1", "::ffff:10.0.0.2", 0},
		{"10.0.0.1:1", "198.51.100.1\n10.0.0.2", 0},
		{"10.0.0.1:1", `for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https;by=203.0.113.43`, 1},
		{"10.0.0.1:1", `for=unknown, for="198.51.100.1:_x";host="a,\"b"`, 1},
		{"10.0.0.1:1", `for="198.51.100.1`, 1},
		{"10.0.0.1:1", "198.51.100.1", 2},
		{"203.0.113.1:1", "198.51.100.1", 0},
		{"garbage", "198.51.100.1", 0},
	}
	for _, s := range seeds {
		f.Add(s.remote, s.header, s.kind)
	}
	resolvers := []*Resolver{mustNew(f, "x-forwarded-for"), mustNew(f, "forwarded"), mustNew(f, "x-real-ip")}
	f.Fuzz(func(t *testing.T, remote, header string, kind uint8) {
		r := resolvers[int(kind)%len(resolvers)]
		h := http.Header{r.Header(): strings.Split(header, "\n")}
		client, peer, trusted := r.Resolve(remote, h)

		if client.Zone() != "" || client.Is4In6() || peer.Zone() != "" || peer.Is4In6() {
			t.Fatalf("Resolve returned a zoned or mapped address: client %v, peer %v", client, peer)
		}
		if !peer.IsValid() && (client.IsValid() || trusted) {
			t.Fatalf("invalid peer but client %v, trusted %v", client, trusted)
		}
		if !trusted && client != peer {
			t.Fatalf("untrusted peer %v, but client %v", peer, client)
		}
		if client != peer && !appearsIn(client, header) {
			t.Fatalf("client %v is neither the peer %v nor in the header %q", client, peer, header)
		}
	})
}

// appearsIn reports whether a is written in s: as a run of address
// characters, or such a run followed by a port.
func appearsIn(a netip.Addr, s string) bool {
	isAddrChar := func(r rune) bool {
		return r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F' || r == '.' || r == ':'
	}
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return !isAddrChar(r) }) {
		cands := []string{tok}
		if i := strings.LastIndexByte(tok, ':'); i >= 0 {
			cands = append(cands, tok[:i])
		}
		for _, c := range cands {
			if b, err := netip.ParseAddr(c); err == nil && b.Unmap() == a {
				return true
			}
		}
	}
	return false
}

func BenchmarkResolveXFF3Hops(b *testing.B) {
	r := mustNew(b, "x-forwarded-for")
	h := http.Header{"X-Forwarded-For": {"198.51.100.1, 192.168.1.1, 10.0.0.2"}}
	b.ReportAllocs()
	for b.Loop() {
		client, _, _ := r.Resolve("10.0.0.1:54321", h)
		if !client.IsValid() {
			b.Fatal("no client")
		}
	}
}
