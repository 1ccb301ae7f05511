package jwt

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

// FuzzAuthenticate feeds token strings to the authenticator of the table
// test. It must never panic, and must never admit a token that does not
// verify, independently of moat's parsing, with one of the configured keys.
func FuzzAuthenticate(f *testing.F) {
	k := getKeys(f)
	j, err := New("bearer", tableConfig(f, k), WithClock(func() time.Time { return t0 }), WithLogger(quietLogger()))
	if err != nil {
		f.Fatal(err)
	}
	defer j.Close()

	c := claimsAt(issMain, t0)
	seeds := []string{
		mint(f, "HS256", k.secret, nil, c),
		mint(f, "RS256", k.rsa, map[string]any{"kid": "k1"}, claimsAt(issKids, t0)),
		mint(f, "PS384", k.rsa, nil, c),
		mint(f, "ES256", k.ec256, nil, c),
		mint(f, "ES512", k.ec521, nil, c),
		mint(f, "EdDSA", k.ed, nil, with(c, "roles", "a b", "scp", []string{"x"})),
		mint(f, "none", nil, nil, c),
		mint(f, "RS256", k.rsa, map[string]any{"jku": "https://evil.example"}, c),
		mint(f, "RS256", k.rsa, map[string]any{"typ": "at+jwt"}, claimsAt(issTyped, t0)),
		mintRaw(f, "RS256", k.rsa, []byte(`{"alg":"RS256","alg":"none"}`), mustJSON(f, c)),
		"a.b.c", "eyJ.eyJ.", "..", "e30.e30.", "e30.e30.e30",
		strings.Repeat("A", 100) + "." + strings.Repeat("B", 100) + ".",
	}
	for _, s := range seeds {
		f.Add(s)
	}

	// The keys each algorithm may verify with, for the independent check.
	type pair struct {
		alg jwa.SignatureAlgorithm
		key any
	}
	var pairs []pair
	add := func(key any, algs ...string) {
		for _, a := range algs {
			ja, _ := jwa.LookupSignatureAlgorithm(a)
			pairs = append(pairs, pair{ja, key})
		}
	}
	add(k.secret, "HS256", "HS384", "HS512")
	add(&k.rsa.PublicKey, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
	add(&k.ec256.PublicKey, "ES256")
	add(&k.ec384.PublicKey, "ES384")
	add(&k.ec521.PublicKey, "ES512")
	add(k.ed.Public(), "EdDSA")

	f.Fuzz(func(t *testing.T, tok string) {
		p, err := j.Authenticate(context.Background(), exchange("Bearer "+tok))
		if err != nil {
			if p != nil {
				t.Fatalf("principal with error %v", err)
			}
			return
		}
		if p == nil || p.Subject == "" {
			t.Fatalf("accepted without a principal: %+v", p)
		}
		for _, pr := range pairs {
			if _, err := jws.Verify([]byte(tok), jws.WithKey(pr.alg, pr.key)); err == nil {
				return
			}
		}
		t.Fatalf("admitted a token no configured key signed: %q", tok)
	})
}
