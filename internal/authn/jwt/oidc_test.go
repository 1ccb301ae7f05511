package jwt

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/moat-gateway/moat/internal/config"
)

// The OpenID Provider of these tests is zitadel/oidc's, with its example
// storage, running in-process on loopback. Its service user sid1 obtains an
// access token with the client credentials grant; the example hands out
// opaque tokens, so jwtStorage makes them JWTs signed with the provider's
// key, which is published at the jwks_uri of its discovery document.

// jwtStorage is the example storage, issuing JWT access tokens to service
// users.
type jwtStorage struct{ *storage.Storage }

func (s jwtStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	c, err := s.Storage.ClientCredentials(ctx, id, secret)
	if err != nil {
		return nil, err
	}
	return jwtClient{c}, nil
}

type jwtClient struct{ op.Client }

func (jwtClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }

// provider is a running zitadel OpenID Provider.
type provider struct {
	issuer string
	mu     sync.Mutex
	paths  []string
}

func (p *provider) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths...)
}

func startProvider(t *testing.T) *provider {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	p := &provider{issuer: "http://" + srv.Listener.Addr().String()}
	store := jwtStorage{storage.NewStorage(storage.NewUserStore(p.issuer))}
	opConfig := &op.Config{CryptoKey: sha256.Sum256([]byte("test")), CodeMethodS256: true, AuthMethodPost: true}
	handler, err := op.NewOpenIDProvider(p.issuer, opConfig, store,
		op.WithAllowInsecure(), op.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.paths = append(p.paths, r.URL.Path)
		p.mu.Unlock()
		handler.ServeHTTP(w, r)
	})
	srv.Start()
	t.Cleanup(srv.Close)
	return p
}

// accessToken obtains a JWT access token from the provider for sid1.
func (p *provider) accessToken(t *testing.T) string {
	t.Helper()
	res, err := http.Get(p.issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	err = json.NewDecoder(res.Body).Decode(&meta)
	res.Body.Close()
	if err != nil || meta.TokenEndpoint == "" {
		t.Fatalf("discovery: %v %+v", err, meta)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest(http.MethodPost, meta.TokenEndpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("sid1", "verysecret")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token endpoint: status %d, %v, %+v", res.StatusCode, err, tok)
	}
	if strings.Count(tok.AccessToken, ".") != 2 {
		t.Fatalf("the provider issued an opaque token, not a JWT")
	}
	return tok.AccessToken
}

func TestDiscoveryWithOpenIDProvider(t *testing.T) {
	p := startProvider(t)
	tok := p.accessToken(t)
	before := len(p.requests())

	cfg := &config.JWTAuth{Issuers: []config.JWTIssuer{{
		Issuer: p.issuer, Discovery: true, Audiences: []string{"sid1"}, Algorithms: []string{"RS256"},
	}}}
	// The provider mints with the real clock, so this test uses it too.
	j, err := New("oidc", cfg, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if len(p.requests()) != before {
		t.Fatal("New contacted the provider")
	}

	pr, err := j.Authenticate(context.Background(), exchange("Bearer "+tok))
	if err != nil {
		t.Fatalf("token of the provider: %v", err)
	}
	if pr.Subject != "sid1" || pr.Kind != "jwt" || pr.Authenticator != "oidc" || pr.KeyID == "" {
		t.Errorf("principal %+v", pr)
	}
	if pr.Claims["client_id"] != "sid1" || pr.ExpiresAt.IsZero() {
		t.Errorf("claims %v, expires %v", pr.Claims, pr.ExpiresAt)
	}
	// The keys came from the provider's discovery document and jwks_uri.
	got := p.requests()[before:]
	if len(got) != 2 || got[0] != "/.well-known/openid-configuration" || got[1] != "/keys" {
		t.Errorf("requests to the provider %q, want discovery then its jwks_uri", got)
	}

	// A token the provider did not sign is refused with its keys.
	parts := strings.Split(tok, ".")
	forged := parts[0] + "." + b64url([]byte(`{"iss":"`+p.issuer+`","aud":"sid1","sub":"admin","exp":9999999999}`)) + "." + parts[2]
	if _, err := j.Authenticate(context.Background(), exchange("Bearer "+forged)); reasonOf(err) != ReasonJWTSignature {
		t.Errorf("forged payload: %v", err)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	p := startProvider(t)
	tok := p.accessToken(t)
	// Configured with a trailing slash, the issuer finds the same discovery
	// document, which names the issuer without it: its keys must not be
	// trusted for the configured issuer.
	cfg := &config.JWTAuth{Issuers: []config.JWTIssuer{{
		Issuer: p.issuer + "/", Discovery: true, Audiences: []string{"sid1"}, Algorithms: []string{"RS256"},
	}}}
	j, err := New("oidc", cfg, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// The token names the issuer without the slash: not ours.
	if _, err := j.Authenticate(context.Background(), exchange("Bearer "+tok)); reasonOf(err) != ReasonJWTIssuer {
		t.Fatalf("token of the provider: %v", err)
	}
	// One that names the configured issuer needs its keys, which discovery
	// refuses to provide.
	claims := with(claimsAt(p.issuer+"/", t0), "aud", "sid1")
	k := getKeys(t)
	lying := mint(t, "RS256", k.rsa, map[string]any{"kid": "x"}, claims)
	clk := newClock()
	j2, err := New("oidc", cfg, WithLogger(quietLogger()), WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	before := len(p.requests())
	if _, err := j2.Authenticate(context.Background(), exchange("Bearer "+lying)); !errors.Is(err, ErrKeysUnavailable) {
		t.Fatalf("issuer mismatch: %v, want ErrKeysUnavailable", err)
	}
	if got := p.requests()[before:]; len(got) != 1 || got[0] != "/.well-known/openid-configuration" {
		t.Errorf("requests %q: the jwks_uri of a mismatched document must not be fetched", got)
	}
}
