package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"golang.org/x/crypto/bcrypt"

	"github.com/moat-gateway/moat/internal/keys"
)

const hmacSecret = "0123456789abcdef0123456789abcdef-e2e"

func hs256(t *testing.T, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256(), []byte(hmacSecret)))
	if err != nil {
		t.Fatal(err)
	}
	return string(signed)
}

// TestAuthentication protects one route with Basic and JWT, and checks
// what reaches the upstream and what the client learns.
func TestAuthentication(t *testing.T) {
	up := newUpstream(t, "a")
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost+6)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
authenticators:
  sso:
    jwt:
      issuers:
        - issuer: https://idp.example.com
          audiences: [api]
          algorithms: [HS256]
          secret: %q
  staff:
    basic: {htpasswd_file: %q, realm: staff}
principal_headers:
  claims: {email: X-Moat-Email}
brute_force: {max_failures: 3, window: 1h, cooldown: 1h}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /private, methods: [GET], upstream: a, auth: {authenticators: [sso, staff], allow_any_authenticated: true}}
  - {path: /public, methods: [GET], upstream: a, public: true}
`, hmacSecret, htpasswd, up.URL()))

	now := time.Now()
	good := hs256(t, map[string]any{"iss": "https://idp.example.com", "aud": "api", "sub": "user-1", "exp": now.Add(time.Hour).Unix(),
		"scope": "read write", "roles": []string{"reader"}, "email": "u1@example.com"})
	expired := hs256(t, map[string]any{"iss": "https://idp.example.com", "aud": "api", "sub": "user-1", "exp": now.Add(-time.Hour).Unix()})
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret-pass"))

	t.Run("valid JWT reaches the upstream with the principal, not the credential", func(t *testing.T) {
		e := g.getEcho(t, "/private", "Authorization", "Bearer "+good, "X-Moat-Subject", "root")
		h := http.Header(e.Header)
		if h.Get("X-Moat-Subject") != "user-1" || h.Get("X-Moat-Authenticator") != "sso" || h.Get("X-Moat-Scopes") != "read write" ||
			h.Get("X-Moat-Roles") != "reader" || h.Get("X-Moat-Email") != "u1@example.com" {
			t.Errorf("principal headers upstream: %v", h)
		}
		if h.Get("Authorization") != "" {
			t.Error("the bearer token was forwarded upstream")
		}
	})
	t.Run("basic auth", func(t *testing.T) {
		e := g.getEcho(t, "/private", "Authorization", basicAuth)
		if http.Header(e.Header).Get("X-Moat-Subject") != "alice" {
			t.Errorf("subject %q", http.Header(e.Header).Get("X-Moat-Subject"))
		}
	})
	t.Run("no credential: 401 with both challenges", func(t *testing.T) {
		resp, body := g.get(t, "/private")
		wantProblem(t, resp, body, 401, "credentials_missing")
		if n := len(resp.Header.Values("Www-Authenticate")); n != 2 {
			t.Errorf("%d challenges, want 2: %v", n, resp.Header.Values("Www-Authenticate"))
		}
	})
	t.Run("expired JWT: generic body", func(t *testing.T) {
		resp, body := g.get(t, "/private", "Authorization", "Bearer "+expired)
		wantProblem(t, resp, body, 401, "invalid_credentials")
	})
	t.Run("public route strips spoofed principal headers", func(t *testing.T) {
		e := g.getEcho(t, "/public", "X-Moat-Subject", "root", "X-Moat-Email", "ceo@example.com")
		if h := http.Header(e.Header); h.Get("X-Moat-Subject") != "" || h.Get("X-Moat-Email") != "" {
			t.Errorf("spoofed headers reached the upstream: %v", h)
		}
	})
	t.Run("lockout after repeated failures", func(t *testing.T) {
		bad := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:wrong"))
		for i := 0; i < 3; i++ {
			resp, body := g.get(t, "/private", "Authorization", bad)
			if resp.StatusCode != 401 {
				t.Fatalf("failure %d: %d %s", i+1, resp.StatusCode, clip(body))
			}
		}
		resp, body := g.get(t, "/private", "Authorization", basicAuth)
		wantProblem(t, resp, body, 429, "auth_locked_out")
		if resp.Header.Get("Retry-After") == "" {
			t.Error("lockout without Retry-After")
		}
	})
}

// TestAPIKeyLifecycle issues a key into the embedded store, uses it through
// the gateway, then revokes it through the store as moat keys revoke does:
// the running gateway refuses it soon after (internal/keys pins the
// one-second bound; this test only detects a revocation that never lands).
func TestAPIKeyLifecycle(t *testing.T) {
	up := newUpstream(t, "a")
	dir := t.TempDir()
	store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rec, key, err := keys.Issue(context.Background(), store, keys.Record{Name: "ci", Subject: "team-ci", Roles: []string{"deployer"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store.Close()

	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q}
authenticators:
  keys: {api_key: {}}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /x, methods: [GET], upstream: a, auth: {authenticators: [keys], allow_any_authenticated: true}}
`, filepath.Join(dir, "keys.db"), up.URL()))

	e := g.getEcho(t, "/x", "X-API-Key", key)
	if h := http.Header(e.Header); h.Get("X-Moat-Subject") != "team-ci" || h.Get("X-Moat-Roles") != "deployer" || h.Get("X-Api-Key") != "" {
		t.Errorf("upstream saw %v", h)
	}
	resp, body := g.get(t, "/x", "Authorization", "Bearer "+key[:len(key)-1]+"x") // a typo: checksum fails
	wantProblem(t, resp, body, 401, "invalid_credentials")

	store, err = keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Revoke(context.Background(), rec.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	store.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := g.get(t, "/x", "X-API-Key", key)
		if resp.StatusCode == 401 {
			wantProblem(t, resp, body, 401, "invalid_credentials")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked key still works after 5s: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
