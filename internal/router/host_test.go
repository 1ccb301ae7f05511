package router

import (
	"errors"
	"testing"
)

func TestParseHostPattern(t *testing.T) {
	tests := []struct {
		desc    string
		pattern string
		want    hostPattern
		wantErr bool
	}{
		{desc: "empty is any", pattern: "", want: hostPattern{kind: hostAny}},
		{desc: "star is any", pattern: "*", want: hostPattern{kind: hostAny}},
		{desc: "exact", pattern: "api.example.com", want: hostPattern{hostExact, "api.example.com"}},
		{desc: "exact lower-cased", pattern: "API.Example.COM", want: hostPattern{hostExact, "api.example.com"}},
		{desc: "trailing dot dropped", pattern: "api.example.com.", want: hostPattern{hostExact, "api.example.com"}},
		{desc: "single label", pattern: "localhost", want: hostPattern{hostExact, "localhost"}},
		{desc: "underscore and dash", pattern: "my_svc-1.internal", want: hostPattern{hostExact, "my_svc-1.internal"}},
		{desc: "punycode", pattern: "xn--bcher-kva.example", want: hostPattern{hostExact, "xn--bcher-kva.example"}},
		{desc: "IPv4", pattern: "10.0.0.1", want: hostPattern{hostExact, "10.0.0.1"}},
		{desc: "IPv6 bare", pattern: "::1", want: hostPattern{hostExact, "::1"}},
		{desc: "IPv6 bracketed canonicalised", pattern: "[2001:DB8:0::1]", want: hostPattern{hostExact, "2001:db8::1"}},
		{desc: "wildcard", pattern: "*.example.com", want: hostPattern{hostWildcard, "example.com"}},
		{desc: "wildcard lower-cased", pattern: "*.Example.com.", want: hostPattern{hostWildcard, "example.com"}},
		{desc: "wildcard over one label", pattern: "*.internal", want: hostPattern{hostWildcard, "internal"}},
		{desc: "port", pattern: "api.example.com:443", wantErr: true},
		{desc: "IPv6 with port", pattern: "[::1]:443", wantErr: true},
		{desc: "IPv6 with zone", pattern: "fe80::1%eth0", wantErr: true},
		{desc: "IPv4 in brackets", pattern: "[10.0.0.1]", wantErr: true},
		{desc: "unclosed bracket", pattern: "[::1", wantErr: true},
		{desc: "partial wildcard label", pattern: "*api.example.com", wantErr: true},
		{desc: "inner wildcard", pattern: "api.*.example.com", wantErr: true},
		{desc: "double wildcard", pattern: "*.*.example.com", wantErr: true},
		{desc: "bare wildcard dot", pattern: "*.", wantErr: true},
		{desc: "empty label", pattern: "api..example.com", wantErr: true},
		{desc: "leading dot", pattern: ".example.com", wantErr: true},
		{desc: "only a dot", pattern: ".", wantErr: true},
		{desc: "two trailing dots", pattern: "example.com..", wantErr: true},
		{desc: "label too long", pattern: "a234567890123456789012345678901234567890123456789012345678901234.com", wantErr: true},
		{desc: "non-ASCII", pattern: "bücher.example", wantErr: true},
		{desc: "space", pattern: "a b.com", wantErr: true},
		{desc: "scheme", pattern: "https://api.example.com", wantErr: true},
		{desc: "wildcard over IPv6", pattern: "*.::1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := parseHostPattern(tt.pattern)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidHost) {
					t.Fatalf("parseHostPattern(%q) = %v, %v; want ErrInvalidHost", tt.pattern, got, err)
				}
				if ValidateHost(tt.pattern) == nil {
					t.Errorf("ValidateHost(%q) = nil; want an error", tt.pattern)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseHostPattern(%q) = %v, %v; want %v", tt.pattern, got, err, tt.want)
			}
		})
	}
}

func TestRequestHost(t *testing.T) {
	tests := []struct {
		desc string
		host string
		want string // "" means nil
	}{
		{desc: "plain", host: "example.com", want: "example.com"},
		{desc: "port", host: "example.com:8080", want: "example.com"},
		{desc: "empty port", host: "example.com:", want: "example.com"},
		{desc: "upper case", host: "ExAmPlE.CoM", want: "example.com"},
		{desc: "trailing dot", host: "example.com.", want: "example.com"},
		{desc: "one trailing dot only", host: "example.com..", want: "example.com."},
		{desc: "trailing dot before port", host: "example.com.:443", want: "example.com"},
		{desc: "IPv4", host: "192.0.2.1:80", want: "192.0.2.1"},
		{desc: "IPv6 with port", host: "[::1]:8080", want: "::1"},
		{desc: "IPv6 canonicalised", host: "[2001:DB8:0:0::1]", want: "2001:db8::1"},
		{desc: "IPv6 bare", host: "2001:db8::1", want: "2001:db8::1"},
		{desc: "IPv4 in brackets", host: "[192.0.2.1]", want: ""},
		{desc: "IPv6 zone", host: "[fe80::1%25en0]:80", want: ""},
		{desc: "unclosed bracket", host: "[::1", want: ""},
		{desc: "empty", host: "", want: ""},
		{desc: "only a port", host: ":80", want: ""},
		{desc: "only a dot", host: ".", want: ""},
		{desc: "non-ASCII kept", host: "BÜCHER.example", want: "bÜcher.example"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var buf [hostBufLen]byte
			got := requestHost(tt.host, &buf)
			if string(got) != tt.want || (got == nil) != (tt.want == "") {
				t.Fatalf("requestHost(%q) = %q; want %q", tt.host, got, tt.want)
			}
		})
	}
}

func TestRequestHostTooLong(t *testing.T) {
	long := make([]byte, hostBufLen+1)
	for i := range long {
		long[i] = 'a'
	}
	var buf [hostBufLen]byte
	if got := requestHost(string(long), &buf); got != nil {
		t.Fatalf("requestHost(%d bytes) = %q; want nil", len(long), got)
	}
}
