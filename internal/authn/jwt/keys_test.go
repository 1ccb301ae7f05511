package jwt

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
)

const issRemote = "https://remote.example"

// jwksServer is a JWKS endpoint on loopback whose document and status the
// test sets, and which records the paths it was asked for.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	body   []byte
	status int
	paths  []string
	hits   chan string // receives each path, when not full
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	s := &jwksServer{body: body, status: http.StatusOK, hits: make(chan string, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.Path)
		body, status := s.body, s.status
		s.mu.Unlock()
		select {
		case s.hits <- r.URL.Path:
		default:
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/jwks", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(body []byte, status int) {
	s.mu.Lock()
	s.body, s.status = body, status
	s.mu.Unlock()
}

func (s *jwksServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// newRemote returns an authenticator of issRemote whose keys come from
// jwksURL.
func newRemote(t *testing.T, clk *clock, jwksURL string, cacheSize int) *JWT {
	t.Helper()
	cfg := &config.JWTAuth{CacheSize: cacheSize, Issuers: []config.JWTIssuer{{
		Issuer: issRemote, Audiences: []string{"api"}, Algorithms: []string{"RS256", "ES256"}, JWKSURL: jwksURL,
	}}}
	j, err := New("bearer", cfg, WithClock(clk.Now), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// waitFetch waits for the key set fetch in flight, if any, of every remote
// issuer of j.
func waitFetch(j *JWT) {
	for _, r := range j.remotes {
		r.mu.Lock()
		ch := r.flight
		r.mu.Unlock()
		if ch != nil {
			<-ch
		}
	}
}

func authn1(t *testing.T, j *JWT, tok string) string {
	t.Helper()
	_, err := j.Authenticate(context.Background(), exchange("Bearer "+tok))
	return reasonOf(err)
}

func TestJWKSRotation(t *testing.T) {
	k := getKeys(t)
	for _, cacheSize := range []int{-1, 0} {
		t.Run(map[int]string{-1: "uncached", 0: "cached"}[cacheSize], func(t *testing.T) {
			srv := newJWKSServer(t, jwkSet(t, map[string]any{"old": &k.rsa.PublicKey}))
			clk := newClock()
			j := newRemote(t, clk, srv.URL+"/jwks", cacheSize)
			claims := claimsAt(issRemote, t0)
			oldTok := mint(t, "RS256", k.rsa, map[string]any{"kid": "old"}, claims)
			newTok := mint(t, "RS256", k.rsa2, map[string]any{"kid": "new"}, claims)

			if got := authn1(t, j, oldTok); got != "" {
				t.Fatalf("old key before rotation: %s", got)
			}
			if n := len(srv.requests()); n != 1 {
				t.Fatalf("%d requests after the first token, want 1 (lazy load)", n)
			}

			// The issuer rotates: the new key is published, the old one withdrawn.
			srv.serve(jwkSet(t, map[string]any{"new": &k.rsa2.PublicKey}), http.StatusOK)

			clk.Add(10 * time.Second)
			if got := authn1(t, j, newTok); got != ReasonJWTKeyUnknown {
				t.Fatalf("new key 10s after the last fetch: %q, want %s (refresh is rate limited)", got, ReasonJWTKeyUnknown)
			}
			if n := len(srv.requests()); n != 1 {
				t.Fatalf("%d requests, want 1: an unknown kid refreshes at most once per %v", n, kidRefreshGap)
			}

			clk.Add(kidRefreshGap)
			if got := authn1(t, j, newTok); got != "" {
				t.Fatalf("new key after the refresh its kid triggered: %q", got)
			}
			if n := len(srv.requests()); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}

			// The old key is gone: its tokens are refused, cached or not.
			if got := authn1(t, j, oldTok); got != ReasonJWTKeyUnknown {
				t.Fatalf("old key after withdrawal (token seen before): %q", got)
			}
			fresh := mint(t, "RS256", k.rsa, map[string]any{"kid": "old"}, with(claims, "jti", "2"))
			if got := authn1(t, j, fresh); got != ReasonJWTKeyUnknown {
				t.Fatalf("old key after withdrawal (new token): %q", got)
			}
			if n := len(srv.requests()); n != 2 {
				t.Fatalf("%d requests, want 2", n)
			}
			if got := authn1(t, j, newTok); got != "" {
				t.Fatalf("new key again: %q", got)
			}
		})
	}
}

func TestJWKSScheduledRefresh(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"old": &k.rsa.PublicKey}))
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", 0)
	claims := claimsAt(issRemote, t0)
	claims["exp"] = t0.Add(24 * time.Hour).Unix()
	oldTok := mint(t, "RS256", k.rsa, map[string]any{"kid": "old"}, claims)
	if got := authn1(t, j, oldTok); got != "" {
		t.Fatal(got)
	}
	srv.serve(jwkSet(t, map[string]any{"new": &k.rsa2.PublicKey}), http.StatusOK)

	// Within the refresh interval the set is not fetched again.
	clk.Add(defaultRefreshInterval - time.Second)
	if got := authn1(t, j, oldTok); got != "" {
		t.Fatal(got)
	}
	waitFetch(j)
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("%d requests within the refresh interval", n)
	}

	// Past it, a request starts a background refresh and is answered with
	// the set it has; the next one sees the new set.
	clk.Add(time.Second)
	authn1(t, j, oldTok)
	waitFetch(j)
	if n := len(srv.requests()); n != 2 {
		t.Fatalf("%d requests after the refresh interval, want 2", n)
	}
	if got := authn1(t, j, oldTok); got != ReasonJWTKeyUnknown {
		t.Fatalf("withdrawn key after the scheduled refresh: %q", got)
	}
}

func TestJWKSServedStale(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}))
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", -1)
	claims := claimsAt(issRemote, t0)
	claims["exp"] = t0.Add(24 * time.Hour).Unix()
	tok := mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claims)
	if got := authn1(t, j, tok); got != "" {
		t.Fatal(got)
	}

	srv.serve([]byte("upstream on fire"), http.StatusInternalServerError)
	clk.Add(defaultRefreshInterval)
	for i := range 3 {
		if got := authn1(t, j, tok); got != "" {
			t.Fatalf("request %d while the endpoint fails: %q", i, got)
		}
		waitFetch(j)
	}
	srv.serve([]byte("{not json"), http.StatusOK)
	clk.Add(defaultRefreshInterval)
	if got := authn1(t, j, tok); got != "" {
		t.Fatalf("request while the endpoint serves garbage: %q", got)
	}
	waitFetch(j)
	if got := authn1(t, j, tok); got != "" {
		t.Fatalf("request after a garbage document: %q", got)
	}
	if n := len(srv.requests()); n != 3 {
		t.Errorf("%d requests, want 3 (one per refresh interval)", n)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, nil)
	srv.serve([]byte("down"), http.StatusServiceUnavailable)
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", 0)
	tok := mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claimsAt(issRemote, t0))

	for i := range 2 {
		_, err := j.Authenticate(context.Background(), exchange("Bearer "+tok))
		var f *authn.Failure
		if !errors.Is(err, ErrKeysUnavailable) || errors.As(err, &f) {
			t.Fatalf("attempt %d: %v, want an internal error wrapping ErrKeysUnavailable", i, err)
		}
	}
	if n := len(srv.requests()); n != 1 {
		t.Fatalf("%d requests, want 1: loading is retried at most every %v", n, retryGap)
	}

	srv.serve(jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}), http.StatusOK)
	clk.Add(retryGap)
	if got := authn1(t, j, tok); got != "" {
		t.Fatalf("after the endpoint recovered: %q", got)
	}
}

func TestJWKSRedirectNotFollowed(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}))
	j := newRemote(t, newClock(), srv.URL+"/redirect", 0)
	tok := mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claimsAt(issRemote, t0))
	if _, err := j.Authenticate(context.Background(), exchange("Bearer "+tok)); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("JWKS behind a redirect: %v", err)
	}
	if got := srv.requests(); len(got) != 1 || got[0] != "/redirect" {
		t.Errorf("requests %q, want only /redirect", got)
	}
}

func TestJWKSSkipsUnusableKeys(t *testing.T) {
	k := getKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	var doc []json.RawMessage
	add := func(raw any, kid string, fields map[string]any) {
		key, err := jwk.Import(raw)
		if err != nil {
			t.Fatal(err)
		}
		key.Set(jwk.KeyIDKey, kid)
		for n, v := range fields {
			if err := key.Set(n, v); err != nil {
				t.Fatal(err)
			}
		}
		doc = append(doc, mustJSON(t, key))
	}
	add(k.secret, "oct", nil)
	add(k.rsa, "private", nil)
	add(&k.rsa.PublicKey, "enc", map[string]any{jwk.KeyUsageKey: "enc"})
	add(&k.rsa.PublicKey, "ops", map[string]any{jwk.KeyOpsKey: jwk.KeyOperationList{jwk.KeyOpEncrypt}})
	add(&k.rsa.PublicKey, "es", map[string]any{jwk.AlgorithmKey: "ES256"})
	add(&k.rsa.PublicKey, "good", map[string]any{jwk.AlgorithmKey: "RS256"})
	// jwx refuses to build a JWK of a small RSA key, so write it by hand.
	doc = append(doc, mustJSON(t, map[string]string{"kty": "RSA", "kid": "small", "n": b64url(small.N.Bytes()), "e": "AQAB"}))
	doc = append(doc, json.RawMessage(`{"kty":"XYZ","kid":"exotic"}`))
	srv := newJWKSServer(t, mustJSON(t, map[string]any{"keys": doc}))
	j := newRemote(t, newClock(), srv.URL+"/jwks", -1)

	claims := claimsAt(issRemote, t0)
	if got := authn1(t, j, mint(t, "RS256", k.rsa, map[string]any{"kid": "good"}, claims)); got != "" {
		t.Fatalf("the usable key: %q", got)
	}
	for _, kid := range []string{"oct", "small", "private", "enc", "ops", "es"} {
		signer := any(k.rsa)
		alg := "RS256"
		if kid == "oct" {
			signer, alg = k.secret, "HS256"
		}
		if kid == "small" {
			signer = small
		}
		if got := authn1(t, j, mint(t, alg, signer, map[string]any{"kid": kid}, claims)); got == "" {
			t.Errorf("a token of the unusable key %q was accepted", kid)
		}
	}
	if got := j.remotes[0].set.Load(); len(got.keys) != 1 {
		t.Errorf("%d keys loaded, want 1", len(got.keys))
	}
}

// TestAttacksMakeNoRequest pins that tokens refused for their shape, header,
// algorithm or claims never make the gateway fetch anything, and that a kid
// is never turned into a URL.
func TestAttacksMakeNoRequest(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"k": &k.rsa.PublicKey, "e": &k.ec256.PublicKey}))
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", 0)
	claims := claimsAt(issRemote, t0)
	if got := authn1(t, j, mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claims)); got != "" {
		t.Fatal(got)
	}
	// Past the refresh gap, so that only the checks keep the fetcher idle.
	clk.Add(kidRefreshGap)
	evil := srv.URL + "/evil"
	attackerJWK, _ := jwk.Import(&k.rsa2.PublicKey)
	n := elliptic256N()
	es := mint(t, "ES256", k.ec256, map[string]any{"kid": "e"}, claims)
	attacks := map[string]string{
		"alg none":                      mint(t, "none", nil, map[string]any{"kid": "k"}, claims),
		"alg NoNe":                      mint(t, "none", nil, map[string]any{"alg": "NoNe"}, claims),
		"HS256 not allowed":             mint(t, "HS256", k.secret, map[string]any{"kid": "k"}, claims),
		"jku":                           mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz", "jku": evil}, claims),
		"x5u":                           mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz", "x5u": evil}, claims),
		"jwk":                           mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz", "jwk": attackerJWK}, claims),
		"x5c":                           mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz", "x5c": []string{"MIIB"}}, claims),
		"crit":                          mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz", "crit": []string{"x"}, "x": 1}, claims),
		"unknown issuer":                mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz"}, with(claims, "iss", evil)),
		"expired, unknown kid":          mint(t, "RS256", k.rsa2, map[string]any{"kid": evil}, with(claims, "exp", t0.Add(-time.Hour).Unix())),
		"wrong audience, traversal kid": mint(t, "RS256", k.rsa2, map[string]any{"kid": "../../jwks?x=1"}, with(claims, "aud", "other")),
		"ECDSA r=0 s=0":                 replaceSegment(es, 2, b64url(make([]byte, 64))),
		"ECDSA r=n s=n":                 replaceSegment(es, 2, b64url(append(n.Bytes(), n.Bytes()...))),
		"oversized":                     mint(t, "RS256", k.rsa2, map[string]any{"kid": "zzz"}, with(claims, "pad", strings.Repeat("x", 9000))),
	}
	for desc, tok := range attacks {
		if got := authn1(t, j, tok); got == "" {
			t.Errorf("%s: accepted", desc)
		}
	}
	waitFetch(j)
	if got := srv.requests(); len(got) != 1 {
		t.Fatalf("attacks made requests: %q", got)
	}

	// A well-formed token with an injection string as kid may refresh the
	// set once; the kid is only compared, never part of a URL.
	inj := mint(t, "RS256", k.rsa2, map[string]any{"kid": "../../evil?x=<script>"}, claims)
	for range 3 {
		if got := authn1(t, j, inj); got != ReasonJWTKeyUnknown {
			t.Fatalf("injection kid: %q", got)
		}
	}
	if got := srv.requests(); len(got) != 2 || got[1] != "/jwks" {
		t.Fatalf("requests %q, want one refresh of /jwks", got)
	}
}

func elliptic256N() *big.Int { return elliptic.P256().Params().N }

func TestStartAndClose(t *testing.T) {
	k := getKeys(t)
	srv := newJWKSServer(t, jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}))
	clk := newClock()
	j := newRemote(t, clk, srv.URL+"/jwks", 0)
	if n := len(srv.requests()); n != 0 {
		t.Fatalf("New made %d requests", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	j.Start(ctx)
	j.Start(ctx) // does nothing
	<-srv.hits   // Start's first fetch; a broken Start makes the test time out
	waitFetch(j)
	if got := authn1(t, j, mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claimsAt(issRemote, t0))); got != "" {
		t.Fatal(got)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests, want only Start's", n)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	// After Close the loaded keys still verify; nothing is fetched.
	clk.Add(time.Hour)
	if got := authn1(t, j, mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claimsAt(issRemote, clk.Now()))); got != "" {
		t.Fatal(got)
	}
	if got := authn1(t, j, mint(t, "RS256", k.rsa, map[string]any{"kid": "unknown"}, claimsAt(issRemote, clk.Now()))); got != ReasonJWTKeyUnknown {
		t.Fatal(got)
	}
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d requests after Close", n)
	}
}

// TestFetchHonoursContext pins that a request waiting for a key set gives
// up when its context ends, while the fetch goes on for the others.
func TestFetchHonoursContext(t *testing.T) {
	k := getKeys(t)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write(jwkSet(t, map[string]any{"k": &k.rsa.PublicKey}))
	}))
	defer srv.Close()
	defer close(release)
	j := newRemote(t, newClock(), srv.URL+"/jwks", 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := j.Authenticate(ctx, exchange("Bearer "+mint(t, "RS256", k.rsa, map[string]any{"kid": "k"}, claimsAt(issRemote, t0))))
	if !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("canceled request: %v", err)
	}
}
