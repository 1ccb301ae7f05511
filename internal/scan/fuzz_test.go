package scan

import (
	"strings"
	"testing"
)

func FuzzParseJWT(f *testing.F) {
	f.Add("Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln")
	f.Add("a.b.c")
	f.Add("Bearer eyJhbGciOm51bGx9.e30.")
	f.Fuzz(func(t *testing.T, v string) {
		tok, err := parseJWT(v)
		if err == nil {
			_, _ = tok.crack()
			if tok.alg() == "" {
				t.Fatal("parsed token without alg")
			}
		}
	})
}

func FuzzCollectIDs(f *testing.F) {
	f.Add([]byte(`{"id": 1, "items": [{"user_id": "u-2"}]}`), "/v2/orders/9")
	f.Add([]byte(`[[[[{"id": "x"}]]]]`), "")
	f.Fuzz(func(t *testing.T, body []byte, loc string) {
		ids := collectIDs(body, loc)
		if len(ids) > 50 {
			t.Fatalf("%d ids", len(ids))
		}
		for _, v := range ids {
			if v.Value == "" || strings.ContainsAny(v.Value, " /?#") {
				t.Fatalf("bad id %q", v.Value)
			}
		}
	})
}

func FuzzParseIdentity(f *testing.F) {
	f.Add("alice=Authorization: Bearer x")
	f.Add("=:")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentity(s)
		if err == nil && (id.Name == "" || id.Header == "" || strings.ContainsAny(id.Value, "\r\n")) {
			t.Fatalf("accepted %q as %+v", s, id)
		}
	})
}

func FuzzScanText(f *testing.F) {
	f.Add("card 4111 1111 1111 1111 key AKIAABCDEFGHIJKLMNOP")
	f.Fuzz(func(t *testing.T, s string) {
		for _, h := range scanText(s, false) {
			if strings.Contains(h.evidence, "4111111111111111") {
				t.Fatal("unmasked card number in evidence")
			}
		}
	})
}

func TestSensitivePatterns(t *testing.T) {
	tests := []struct {
		desc, text, want string
	}{
		{"visa", "pay with 4111 1111 1111 1111", "a payment card number"},
		{"luhn-invalid", "order 4111 1111 1111 1112", ""},
		{"not a card prefix", "tracking 9999999999999995", ""},
		{"aws key", "AKIAIOSFODNN7EXAMPLE", "an AWS access key ID"},
		{"private key", "-----BEGIN RSA PRIVATE KEY-----\nMII", "a private key"},
		{"plain", "hello world 12345", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			hits := scanText(tc.text, true)
			got := ""
			if len(hits) > 0 {
				got = hits[0].what
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseIdentity(t *testing.T) {
	tests := []struct {
		desc, in string
		ok       bool
	}{
		{"bearer", "alice=Authorization: Bearer abc", true},
		{"api key", "bob=X-API-Key: k", true},
		{"no header", "alice=Bearer abc", false},
		{"no name", "=X: y", false},
		{"bad header name", "a=X Y: z", false},
		{"empty value", "a=X:", false},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := ParseIdentity(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v", err)
			}
		})
	}
}
