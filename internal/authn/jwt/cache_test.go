package jwt

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// sameClaims reports whether two principals share one claims map: the
// second came from the cache.
func sameClaims(a, b *gateway.Principal) bool {
	return reflect.ValueOf(a.Claims).Pointer() == reflect.ValueOf(b.Claims).Pointer()
}

func mustAuth(t *testing.T, j *JWT, ex *gateway.Exchange) *gateway.Principal {
	t.Helper()
	p, err := j.Authenticate(context.Background(), ex)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCacheHitRechecksTime(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newMain(t, clk, 0)
	tok := mint(t, "RS256", k.rsa, nil, claimsAt(issMain, t0)) // nbf t0-1m, exp t0+1h
	first := mustAuth(t, j, exchange("Bearer "+tok))

	clk.Add(time.Minute)
	if p := mustAuth(t, j, exchange("Bearer "+tok)); !sameClaims(first, p) {
		t.Fatal("the second request was not answered from the cache")
	}

	// A clock that steps back before nbf (less the leeway) refuses the
	// cached token too.
	clk.Add(-2*time.Minute - 31*time.Second)
	if got := authn1(t, j, tok); got != ReasonJWTNotYetValid {
		t.Fatalf("cached token before nbf: %q", got)
	}
	clk.Add(2*time.Minute + 31*time.Second)

	// Up to the last second of exp plus leeway it is served; then refused.
	clk.Add(time.Hour + 30*time.Second - time.Minute - time.Second)
	if got := authn1(t, j, tok); got != "" {
		t.Fatalf("a second before exp plus leeway: %q", got)
	}
	clk.Add(time.Second)
	if got := authn1(t, j, tok); got != ReasonJWTExpired {
		t.Fatalf("at exp plus leeway: %q", got)
	}
}

func TestCacheHitRechecksCertificate(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newMain(t, clk, 0)
	certA, certB := selfSigned(t, "a"), selfSigned(t, "b")
	tok := mint(t, "RS256", k.rsa, nil, with(claimsAt(issMain, t0), "cnf", map[string]any{"x5t#S256": certThumbprint(certA)}))

	exA := exchange("Bearer " + tok)
	exA.ClientCert = certA
	first := mustAuth(t, j, exA)
	for _, tc := range []struct {
		desc string
		ex   *gateway.Exchange
		want string
	}{
		{"another certificate", withCert(exchange("Bearer "+tok), certB), ReasonJWTCertBinding},
		{"no certificate", exchange("Bearer " + tok), ReasonJWTCertBinding},
		{"the bound certificate", withCert(exchange("Bearer "+tok), certA), ""},
	} {
		p, err := j.Authenticate(context.Background(), tc.ex)
		if got := reasonOf(err); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.desc, got, tc.want)
		}
		if err == nil && !sameClaims(first, p) {
			t.Errorf("%s: not answered from the cache", tc.desc)
		}
	}
}

func withCert(ex *gateway.Exchange, c *x509.Certificate) *gateway.Exchange {
	ex.ClientCert = c
	return ex
}

func TestCacheEntryLifetime(t *testing.T) {
	k := getKeys(t)
	clk := newClock()
	j := newMain(t, clk, 0)
	claims := claimsAt(issMain, t0)
	claims["exp"] = t0.Add(24 * time.Hour).Unix()
	tok := mint(t, "HS256", k.secret, nil, claims)
	first := mustAuth(t, j, exchange("Bearer "+tok))
	clk.Add(cacheMaxAge - time.Second)
	if p := mustAuth(t, j, exchange("Bearer "+tok)); !sameClaims(first, p) {
		t.Fatal("evicted before cacheMaxAge")
	}
	clk.Add(time.Second)
	if p := mustAuth(t, j, exchange("Bearer "+tok)); sameClaims(first, p) {
		t.Fatal("cached beyond cacheMaxAge")
	}
}

func TestCacheReturnsCopies(t *testing.T) {
	k := getKeys(t)
	j := newMain(t, newClock(), 0)
	tok := mint(t, "HS256", k.secret, nil, with(claimsAt(issMain, t0), "roles", "admin"))
	p := mustAuth(t, j, exchange("Bearer "+tok))
	p.Subject = "mallory"
	if q := mustAuth(t, j, exchange("Bearer "+tok)); q.Subject != "alice" || q == p {
		t.Fatalf("cached principal changed by its caller: %+v", q)
	}
}

func TestCacheDisabled(t *testing.T) {
	k := getKeys(t)
	j := newMain(t, newClock(), -1)
	if j.cache != nil {
		t.Fatal("cache_size -1 built a cache")
	}
	tok := mint(t, "HS256", k.secret, nil, claimsAt(issMain, t0))
	if a, b := mustAuth(t, j, exchange("Bearer "+tok)), mustAuth(t, j, exchange("Bearer "+tok)); sameClaims(a, b) {
		t.Fatal("answered from a cache")
	}
}

func TestCacheBounded(t *testing.T) {
	k := getKeys(t)
	j := newMain(t, newClock(), 3)
	toks := make([]string, 5)
	for i := range toks {
		toks[i] = mint(t, "HS256", k.secret, nil, with(claimsAt(issMain, t0), "jti", fmt.Sprint(i)))
	}
	cached := func(i int) bool {
		sum := sha256.Sum256([]byte(toks[i]))
		return j.cache.get(&sum, t0) != nil
	}
	for i := range 3 {
		mustAuth(t, j, exchange("Bearer "+toks[i]))
	}
	mustAuth(t, j, exchange("Bearer "+toks[0])) // 0 is now the most recent
	mustAuth(t, j, exchange("Bearer "+toks[3])) // evicts 1, the least recent
	if n := j.cache.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
	if !cached(0) || cached(1) || !cached(2) || !cached(3) {
		t.Errorf("cached: %v %v %v %v, want true false true true", cached(0), cached(1), cached(2), cached(3))
	}
	mustAuth(t, j, exchange("Bearer "+toks[4]))
	if n := j.cache.len(); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}
}

func TestCacheShards(t *testing.T) {
	for _, tc := range []struct{ size, shards int }{{1, 1}, {511, 1}, {512, 2}, {10000, 16}, {1 << 20, 16}} {
		c := newTokenCache(tc.size)
		total := 0
		for i := range c.shards {
			total += c.shards[i].limit
		}
		if len(c.shards) != tc.shards || total < tc.size {
			t.Errorf("size %d: %d shards holding %d, want %d shards holding at least %d", tc.size, len(c.shards), total, tc.shards, tc.size)
		}
	}
}

func TestConcurrentAuthenticate(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}))
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", 16)
	toks := make([]string, 32)
	for i := range toks {
		toks[i] = mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, with(claimsAt(issRemote, t0), "jti", fmt.Sprint(i)))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if _, err := j.Authenticate(context.Background(), exchange("Bearer "+toks[(g*7+i)%len(toks)])); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d key set fetches for concurrent first requests, want 1", n)
	}
}
