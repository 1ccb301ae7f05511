package origin

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		desc    string
		pattern string
		wantErr bool
	}{
		{desc: "any", pattern: "*"},
		{desc: "exact", pattern: "https://app.example.com"},
		{desc: "exact with port", pattern: "https://app.example.com:8443"},
		{desc: "http", pattern: "http://localhost:3000"},
		{desc: "uppercase is normalised", pattern: "HTTPS://App.Example.COM"},
		{desc: "IPv4 literal", pattern: "http://192.0.2.1:8080"},
		{desc: "IPv6 literal", pattern: "http://[2001:db8::1]:8080"},
		{desc: "wildcard", pattern: "https://*.example.com"},
		{desc: "wildcard with port", pattern: "https://*.example.com:8443"},
		{desc: "punycode", pattern: "https://xn--bcher-kva.example"},

		{desc: "null", pattern: "null", wantErr: true},
		{desc: "empty", pattern: "", wantErr: true},
		{desc: "no scheme", pattern: "app.example.com", wantErr: true},
		{desc: "scheme-less wildcard", pattern: "*.example.com", wantErr: true},
		{desc: "other scheme", pattern: "ftp://app.example.com", wantErr: true},
		{desc: "path", pattern: "https://app.example.com/api", wantErr: true},
		{desc: "trailing slash", pattern: "https://app.example.com/", wantErr: true},
		{desc: "query", pattern: "https://app.example.com?x", wantErr: true},
		{desc: "user info", pattern: "https://user@app.example.com", wantErr: true},
		{desc: "empty port", pattern: "https://app.example.com:", wantErr: true},
		{desc: "port out of range", pattern: "https://app.example.com:65536", wantErr: true},
		{desc: "port zero", pattern: "https://app.example.com:0", wantErr: true},
		{desc: "signed port", pattern: "https://app.example.com:+443", wantErr: true},
		{desc: "wildcard port", pattern: "https://app.example.com:*", wantErr: true},
		{desc: "wildcard inside a label", pattern: "https://*example.com", wantErr: true},
		{desc: "wildcard not leftmost", pattern: "https://app.*.example.com", wantErr: true},
		{desc: "two wildcards", pattern: "https://*.*.example.com", wantErr: true},
		{desc: "wildcard host", pattern: "https://*", wantErr: true},
		{desc: "wildcard scheme", pattern: "*://app.example.com", wantErr: true},
		{desc: "wildcard on a TLD", pattern: "https://*.com", wantErr: true},
		{desc: "wildcard on IP addresses", pattern: "https://*.0.2.1", wantErr: true},
		{desc: "empty label", pattern: "https://app..example.com", wantErr: true},
		{desc: "trailing dot", pattern: "https://app.example.com.", wantErr: true},
		{desc: "non-ASCII host", pattern: "https://bücher.example", wantErr: true},
		{desc: "unbracketed IPv6", pattern: "http://2001:db8::1", wantErr: true},
		{desc: "zoned IPv6", pattern: "http://[fe80::1%25eth0]", wantErr: true},
		{desc: "numeric last label", pattern: "https://app.123", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := Validate(tt.pattern)
			if (err != nil) != tt.wantErr {
				t.Errorf("Validate(%q) = %v, want error %v", tt.pattern, err, tt.wantErr)
			}
		})
	}
}

func TestMatchOrigin(t *testing.T) {
	tests := []struct {
		desc     string
		patterns []string
		origin   string
		want     bool
	}{
		{desc: "exact", patterns: []string{"https://app.example.com"}, origin: "https://app.example.com", want: true},
		{desc: "exact, case-insensitive", patterns: []string{"https://app.example.com"}, origin: "HTTPS://App.Example.com", want: true},
		{desc: "exact, configured in uppercase", patterns: []string{"HTTPS://APP.EXAMPLE.COM"}, origin: "https://app.example.com", want: true},
		{desc: "exact, default port equals no port", patterns: []string{"https://app.example.com:443"}, origin: "https://app.example.com", want: true},
		{desc: "exact, no port equals default port", patterns: []string{"https://app.example.com"}, origin: "https://app.example.com:443", want: true},
		{desc: "exact, other port", patterns: []string{"https://app.example.com"}, origin: "https://app.example.com:8443", want: false},
		{desc: "exact, port required", patterns: []string{"http://localhost:3000"}, origin: "http://localhost", want: false},
		{desc: "exact, other scheme", patterns: []string{"https://app.example.com"}, origin: "http://app.example.com", want: false},
		{desc: "exact, subdomain", patterns: []string{"https://example.com"}, origin: "https://app.example.com", want: false},
		{desc: "exact, suffix attack", patterns: []string{"https://app.example.com"}, origin: "https://app.example.com.evil.net", want: false},
		{desc: "exact, path in origin", patterns: []string{"https://app.example.com"}, origin: "https://app.example.com/", want: false},
		{desc: "exact, Kelvin sign is not k", patterns: []string{"https://kiwi.example.com"}, origin: "https://A.\u212aiwi.example.com", want: false},
		{desc: "exact, IPv6 normalised", patterns: []string{"http://[2001:db8::1]:8080"}, origin: "http://[2001:DB8:0::1]:8080", want: true},
		{desc: "exact, IPv4", patterns: []string{"http://192.0.2.1"}, origin: "http://192.0.2.1", want: true},
		{desc: "null is never allowed by a list", patterns: []string{"https://app.example.com"}, origin: "null", want: false},

		{desc: "wildcard, one label", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com", want: true},
		{desc: "wildcard, several labels", patterns: []string{"https://*.example.com"}, origin: "https://a.b.example.com", want: true},
		{desc: "wildcard, case-insensitive", patterns: []string{"https://*.Example.com"}, origin: "https://A.EXAMPLE.com", want: true},
		{desc: "wildcard, not the apex", patterns: []string{"https://*.example.com"}, origin: "https://example.com", want: false},
		{desc: "wildcard, not a lookalike", patterns: []string{"https://*.example.com"}, origin: "https://evil-example.com", want: false},
		{desc: "wildcard, not an empty label", patterns: []string{"https://*.example.com"}, origin: "https://.example.com", want: false},
		{desc: "wildcard, not a suffix of another name", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com.evil.net", want: false},
		{desc: "wildcard, scheme must match", patterns: []string{"https://*.example.com"}, origin: "http://a.example.com", want: false},
		{desc: "wildcard, port must match", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com:8443", want: false},
		{desc: "wildcard, with port", patterns: []string{"https://*.example.com:8443"}, origin: "https://a.example.com:8443", want: true},
		{desc: "wildcard, with port, default port", patterns: []string{"https://*.example.com:8443"}, origin: "https://a.example.com", want: false},
		{desc: "wildcard, default port normalised", patterns: []string{"https://*.example.com"}, origin: "https://a.example.com:443", want: true},
		{desc: "wildcard, no user info", patterns: []string{"https://*.example.com"}, origin: "https://evil.net@a.example.com", want: false},

		{desc: "any matches anything", patterns: []string{"*"}, origin: "https://whatever.example", want: true},
		{desc: "any matches null", patterns: []string{"*"}, origin: "null", want: true},
		{desc: "any with others", patterns: []string{"https://app.example.com", "*"}, origin: "https://x.example", want: true},
		{desc: "several patterns", patterns: []string{"https://app.example.com", "https://*.example.org"}, origin: "https://b.example.org", want: true},
		{desc: "garbage", patterns: []string{"https://app.example.com"}, origin: "\x00\r\n", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			m, err := NewMatcher(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Match(tt.origin); got != tt.want {
				t.Errorf("match(%q) = %v, want %v", tt.origin, got, tt.want)
			}
		})
	}
}

func TestMatchOriginDoesNotAllocate(t *testing.T) {
	m, err := NewMatcher([]string{"https://app.example.com", "https://*.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{"https://app.example.com", "https://a.example.org", "https://evil.example"} {
		if n := testing.AllocsPerRun(100, func() { m.Match(o) }); n != 0 {
			t.Errorf("match(%q) allocates %v times", o, n)
		}
	}
}

// FuzzMatchOrigin checks the matcher against net/url: an allowed origin is a
// bare scheme://host[:port] whose scheme and port equal the pattern's, and
// whose host equals the pattern's host or, for a wildcard, ends in the
// pattern's suffix after at least one more label.
func FuzzMatchOrigin(f *testing.F) {
	seeds := [][2]string{
		{"https://app.example.com", "https://app.example.com"},
		{"https://app.example.com", "HTTPS://APP.EXAMPLE.COM:443"},
		{"https://*.example.com", "https://a.b.example.com"},
		{"https://*.example.com", "https://example.com"},
		{"https://*.example.com", "https://evil-example.com"},
		{"https://*.example.com:8443", "https://a.example.com:8443"},
		{"http://[2001:db8::1]:80", "http://[2001:db8::1]"},
		{"http://192.0.2.1:8080", "http://192.0.2.1:8080"},
		{"*", "null"},
		{"https://app.example.com", "https://app.example.com/path"},
		{"https://*.example.com", "https://user@a.example.com"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, origin string) {
		m, err := NewMatcher([]string{pattern})
		if err != nil || !m.Match(origin) || pattern == "*" {
			return
		}
		u, err := url.Parse(origin)
		if err != nil {
			t.Fatalf("%q matched %q, which net/url cannot parse: %v", origin, pattern, err)
		}
		if u.Opaque != "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
			t.Fatalf("%q matched %q but is not a bare origin", origin, pattern)
		}
		ps, rest, _ := strings.Cut(pattern, "://")
		phost, pport := splitHostPort(rest)
		if !strings.EqualFold(u.Scheme, ps) {
			t.Fatalf("%q matched %q with another scheme", origin, pattern)
		}
		if defaultPort(u.Scheme, u.Port()) != defaultPort(ps, pport) {
			t.Fatalf("%q matched %q with another port", origin, pattern)
		}
		host := strings.ToLower(u.Hostname())
		phost = strings.ToLower(phost)
		if suffix, ok := strings.CutPrefix(phost, "*"); ok {
			if !strings.HasSuffix(host, suffix) || len(host) <= len(suffix) {
				t.Fatalf("%q matched %q but its host is not below %q", origin, pattern, suffix)
			}
			return
		}
		a, aerr := netip.ParseAddr(host)
		b, berr := netip.ParseAddr(strings.Trim(phost, "[]"))
		if aerr == nil && berr == nil {
			if a != b {
				t.Fatalf("%q matched %q with another address", origin, pattern)
			}
			return
		}
		if host != phost {
			t.Fatalf("%q matched %q with another host", origin, pattern)
		}
	})
}

// splitHostPort splits "host[:port]" or "[v6][:port]", independently of the
// code under test.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		return s[:end+1], strings.TrimPrefix(s[end+1:], ":")
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// defaultPort returns the effective port number of a scheme and port string.
func defaultPort(scheme, port string) string {
	port = strings.TrimLeft(port, "0")
	if port != "" {
		return port
	}
	if strings.EqualFold(scheme, "https") {
		return "443"
	}
	return "80"
}
