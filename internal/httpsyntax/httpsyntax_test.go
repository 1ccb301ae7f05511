package httpsyntax

import "testing"

func TestIsToken(t *testing.T) {
	tests := []struct {
		desc string
		in   string
		want bool
	}{
		{desc: "method", in: "GET", want: true},
		{desc: "header name", in: "X-Request-Id", want: true},
		{desc: "every symbol", in: "!#$%&'*+-.^_`|~", want: true},
		{desc: "empty", in: "", want: false},
		{desc: "space", in: "X Y", want: false},
		{desc: "colon", in: "Host:", want: false},
		{desc: "separator", in: "a/b", want: false},
		{desc: "control", in: "a\x00", want: false},
		{desc: "non-ASCII", in: "K\u212a", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := IsToken(tt.in); got != tt.want {
				t.Errorf("IsToken(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestLowerASCII(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"already", "already"},
		{"Content-Type", "content-type"},
		{"\u212aelvin", "\u212aelvin"}, // the Kelvin sign is not K
	}
	for _, tt := range tests {
		if got := LowerASCII(tt.in); got != tt.want {
			t.Errorf("LowerASCII(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
