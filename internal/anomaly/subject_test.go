package anomaly

import (
	"strings"
	"testing"
)

func TestParseSubject(t *testing.T) {
	tests := []struct {
		desc, kind, in string
		prefix         int
		want           string // "" when refused
	}{
		{"IPv4 address", KindIP, "192.0.2.7", 64, "192.0.2.7"},
		{"IPv4 /32", KindIP, "192.0.2.7/32", 64, "192.0.2.7"},
		{"IPv4 prefix refused", KindIP, "192.0.2.0/24", 64, ""},
		{"IPv4-mapped address is IPv4", KindIP, "::ffff:192.0.2.7", 64, "192.0.2.7"},
		{"IPv4-mapped prefix refused", KindIP, "::ffff:192.0.2.0/120", 64, ""},
		{"IPv6 address becomes its /64", KindIP, "2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"},
		{"IPv6 prefix of the configured length", KindIP, "2001:db8:1:2::/64", 64, "2001:db8:1:2::/64"},
		{"IPv6 prefix is masked", KindIP, "2001:db8:1:2::9/64", 64, "2001:db8:1:2::/64"},
		{"IPv6 prefix of another length refused", KindIP, "2001:db8::/48", 64, ""},
		{"IPv6 /48 configured", KindIP, "2001:db8:1:2::1", 48, "2001:db8:1::/48"},
		{"IPv6 /128 configured is the address", KindIP, "2001:db8::1", 128, "2001:db8::1"},
		{"default prefix when 0", KindIP, "2001:db8::1", 0, "2001:db8::/64"},
		{"zone refused", KindIP, "fe80::1%eth0", 64, ""},
		{"garbage refused", KindIP, "example.com", 64, ""},
		{"empty IP refused", KindIP, "", 64, ""},
		{"principal", KindPrincipal, "jwt:alice", 64, "jwt:alice"},
		{"principal with colons in the subject", KindPrincipal, "apikey:urn:user:7", 64, "apikey:urn:user:7"},
		{"hashed principal", KindPrincipal, "sha256:" + strings.Repeat("ab", 32), 64, "sha256:" + strings.Repeat("ab", 32)},
		{"principal without authenticator", KindPrincipal, ":alice", 64, ""},
		{"principal without subject", KindPrincipal, "jwt:", 64, ""},
		{"principal without colon", KindPrincipal, "alice", 64, ""},
		{"principal with a control character", KindPrincipal, "jwt:al\nice", 64, ""},
		{"principal not UTF-8", KindPrincipal, "jwt:\xff", 64, ""},
		{"principal too long", KindPrincipal, "jwt:" + strings.Repeat("a", MaxSubjectLen), 64, ""},
		{"unknown kind", "user", "alice", 64, ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := ParseSubject(tt.kind, tt.in, tt.prefix)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("accepted as %q", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// FuzzParseSubject checks that whatever an operator (or a forged admin
// request) sends, an accepted IP subject is in the stage's canonical form
// (parsing it again yields itself) and an accepted principal is unchanged.
func FuzzParseSubject(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "2001:db8::1", "2001:db8::/64", "::ffff:1.2.3.4", "jwt:alice", "fe80::1%lo", "1.2.3.4/33"} {
		f.Add(KindIP, s, 64)
		f.Add(KindPrincipal, s, 48)
	}
	f.Fuzz(func(t *testing.T, kind, s string, prefix int) {
		got, err := ParseSubject(kind, s, prefix)
		if err != nil {
			return
		}
		again, err := ParseSubject(kind, got, prefix)
		if err != nil || again != got {
			t.Fatalf("%q -> %q -> %q, %v: not canonical", s, got, again, err)
		}
		if kind == KindPrincipal && got != s {
			t.Fatalf("principal %q changed to %q", s, got)
		}
	})
}
