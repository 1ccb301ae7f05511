package jwt

import (
	"context"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// BenchmarkAuthenticate measures one request's authentication: cold
// (cache_size -1: decode, verify and check every time) and cached (a hit
// re-checks exp, nbf and the certificate binding only).
func BenchmarkAuthenticate(b *testing.B) {
	k := getKeys(b)
	dir := b.TempDir()
	for _, bc := range []struct {
		alg  string
		key  any
		file string
	}{
		{"HS256", k.secret, ""},
		{"RS256", k.rsa, writePEM(b, dir, "rsa.pem", &k.rsa.PublicKey)},
		{"ES256", k.ec256, writePEM(b, dir, "ec.pem", &k.ec256.PublicKey)},
	} {
		for _, mode := range []struct {
			name string
			size int
		}{{"cold", -1}, {"cached", 0}} {
			b.Run(bc.alg+"/"+mode.name, func(b *testing.B) {
				is := config.JWTIssuer{Issuer: issMain, Audiences: []string{"api"}, Algorithms: []string{bc.alg}}
				if bc.file != "" {
					is.KeyFiles = []string{bc.file}
				} else {
					is.Secret = secret(b, k.secret)
				}
				j, err := New("bearer", &config.JWTAuth{CacheSize: mode.size, Issuers: []config.JWTIssuer{is}},
					WithClock(func() time.Time { return t0 }))
				if err != nil {
					b.Fatal(err)
				}
				defer j.Close()
				claims := with(claimsAt(issMain, t0), "scope", "orders:read orders:write", "roles", []string{"admin"})
				ex := exchange("Bearer " + mint(b, bc.alg, bc.key, map[string]any{"kid": "key-2030"}, claims))
				ctx := context.Background()
				if _, err := j.Authenticate(ctx, ex); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if _, err := j.Authenticate(ctx, ex); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
