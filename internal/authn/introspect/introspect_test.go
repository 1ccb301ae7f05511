package introspect

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// bound limits every wait in these tests; nothing is expected to take
// anywhere near as long.
const bound = 10 * time.Second

const (
	clientID     = "moat gw"
	clientSecret = "s3:cr&t+"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_700_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// endpoint is a fake introspection endpoint that counts calls and checks
// what it is sent.
type endpoint struct {
	t     *testing.T
	srv   *httptest.Server
	calls atomic.Int64

	mu      sync.Mutex
	answers map[string]string // token -> response body; unknown tokens are inactive
	status  int               // 0: 200
	block   chan struct{}     // when set, requests wait for it to close
	entered chan struct{}     // when set, receives once per request before blocking
}

func newEndpoint(t *testing.T, tlsServer bool) *endpoint {
	e := &endpoint{t: t, answers: map[string]string{}}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(e.serve))
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes refused on purpose
	if tlsServer {
		e.srv.StartTLS()
	} else {
		e.srv.Start()
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *endpoint) answer(token, body string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.answers[token] = body
}

// hold makes requests wait for release to close; entered, when not nil,
// receives once per request before it waits.
func (e *endpoint) hold(release, entered chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.block, e.entered = release, entered
}

func (e *endpoint) serve(w http.ResponseWriter, r *http.Request) {
	e.calls.Add(1)
	id, secret, ok := r.BasicAuth()
	uid, _ := url.QueryUnescape(id)
	usecret, _ := url.QueryUnescape(secret)
	switch {
	case r.Method != http.MethodPost:
		e.t.Errorf("method %s, want POST", r.Method)
	case r.Header.Get("Content-Type") != "application/x-www-form-urlencoded":
		e.t.Errorf("content type %q", r.Header.Get("Content-Type"))
	case !ok || uid != clientID || usecret != clientSecret || strings.Contains(id, " "):
		e.t.Errorf("client credentials %q:%q, want them form-encoded", id, secret)
	}
	if err := r.ParseForm(); err != nil {
		e.t.Errorf("ParseForm: %v", err)
	}
	if hint := r.PostForm.Get("token_type_hint"); hint != "access_token" {
		e.t.Errorf("token_type_hint %q", hint)
	}
	e.mu.Lock()
	body, known := e.answers[r.PostForm.Get("token")]
	status, block, entered := e.status, e.block, e.entered
	e.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	if !known {
		body = `{"active":false}`
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, body)
}

func secret(t *testing.T, s string) config.Secret {
	t.Helper()
	var sec config.Secret
	if err := sec.UnmarshalText([]byte(s)); err != nil {
		t.Fatal(err)
	}
	return sec
}

func (e *endpoint) config(t *testing.T) *config.IntrospectionAuth {
	return &config.IntrospectionAuth{
		Endpoint:     e.srv.URL + "/introspect",
		ClientID:     clientID,
		ClientSecret: secret(t, clientSecret),
	}
}

func newAuth(t *testing.T, cfg *config.IntrospectionAuth, clk *clock) *Authenticator {
	t.Helper()
	a, err := New("oauth", cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if clk != nil {
		a.now = clk.Now
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func bearer(token string) *gateway.Exchange {
	r := httptest.NewRequest("GET", "/api", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return &gateway.Exchange{Request: r}
}

func authenticate(a *Authenticator, token string) (*gateway.Principal, error) {
	return a.Authenticate(context.Background(), bearer(token))
}

// failure returns err's reason, failing the test if it is not a Failure or
// mentions the token.
func failure(t *testing.T, err error, token string) string {
	t.Helper()
	var f *authn.Failure
	if !errors.As(err, &f) {
		t.Fatalf("error %v, want a Failure", err)
	}
	if token != "" && strings.Contains(f.Error(), token) {
		t.Fatalf("failure %q contains the token", f)
	}
	return f.ReasonID
}

func TestActiveToken(t *testing.T) {
	clk := newClock()
	e := newEndpoint(t, false)
	exp := clk.Now().Add(time.Hour).Unix()
	e.answer("tok-1", fmt.Sprintf(`{"active":true,"sub":"user-42","username":"ann","scope":"read write","client_id":"app","exp":%d,"tenant":"acme"}`, exp))
	e.answer("tok-2", `{"active":true,"username":"bob","scope":["read"]}`)
	a := newAuth(t, e.config(t), clk)

	p, err := authenticate(a, "tok-1")
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Subject != "user-42" || p.Kind != "introspection" || p.Authenticator != "oauth" {
		t.Errorf("principal %+v", p)
	}
	if !p.HasScope("read") || !p.HasScope("write") || len(p.Scopes) != 2 {
		t.Errorf("scopes %q", p.Scopes)
	}
	if !p.ExpiresAt.Equal(time.Unix(exp, 0)) {
		t.Errorf("ExpiresAt %v, want %v", p.ExpiresAt, time.Unix(exp, 0))
	}
	if p.Claims["tenant"] != "acme" || p.Claims["client_id"] != "app" || p.Claims["active"] != true {
		t.Errorf("claims %v", p.Claims)
	}

	// A principal is the caller's to keep: changing it changes no cache.
	p.Scopes[0] = "admin"
	p.Claims["tenant"] = "evil"
	p, _ = authenticate(a, "tok-1")
	if p.Scopes[0] != "read" || p.Claims["tenant"] != "acme" {
		t.Errorf("cached answer changed through a principal: %q %v", p.Scopes, p.Claims)
	}

	p, err = authenticate(a, "tok-2")
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	if p.Subject != "bob" || !p.HasScope("read") || !p.ExpiresAt.IsZero() {
		t.Errorf("username fallback principal %+v", p)
	}
}

func TestCredentialsInTheRequest(t *testing.T) {
	e := newEndpoint(t, false)
	a := newAuth(t, e.config(t), nil)
	tests := []struct {
		desc   string
		header string
		extra  string // a second Authorization header
		reason string // "": ErrNoCredentials
	}{
		{desc: "no Authorization header"},
		{desc: "several Authorization headers", header: "Bearer abc", extra: "Basic YWxpY2U6eA==", reason: ReasonTokenMalformed},
		{desc: "several Authorization headers, none Bearer", header: "Basic YWxpY2U6eA==", extra: "Basic Ym9iOnk="},
		{desc: "Basic credentials", header: "Basic YWxpY2U6eA=="},
		{desc: "scheme prefix only", header: "Bearerx abc"},
		{desc: "no token", header: "Bearer ", reason: ReasonTokenMalformed},
		{desc: "bare scheme", header: "Bearer", reason: ReasonTokenMalformed},
		{desc: "not token68", header: "Bearer a,b", reason: ReasonTokenMalformed},
		{desc: "padding only", header: "Bearer ==", reason: ReasonTokenMalformed},
		{desc: "oversized", header: "Bearer " + strings.Repeat("a", maxTokenLength+1), reason: ReasonTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if tt.extra != "" {
				r.Header.Add("Authorization", tt.extra)
			}
			_, err := a.Authenticate(context.Background(), &gateway.Exchange{Request: r})
			if tt.reason == "" {
				if !errors.Is(err, authn.ErrNoCredentials) {
					t.Fatalf("error %v, want ErrNoCredentials", err)
				}
				return
			}
			if got := failure(t, err, ""); got != tt.reason {
				t.Errorf("reason %q, want %q", got, tt.reason)
			}
		})
	}
	if n := e.calls.Load(); n != 0 {
		t.Errorf("endpoint called %d times for requests without a usable token", n)
	}
}

func TestAnswersAreCached(t *testing.T) {
	clk := newClock()
	e := newEndpoint(t, false)
	e.answer("tok-a", `{"active":true,"sub":"a"}`)
	e.answer("tok-b", `{"active":true,"sub":"b"}`)
	a := newAuth(t, e.config(t), clk)
	for range 3 {
		if _, err := authenticate(a, "tok-a"); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("%d calls for one token, want 1", n)
	}
	if p, err := authenticate(a, "tok-b"); err != nil || p.Subject != "b" {
		t.Fatalf("second token: %v %v", p, err)
	}
	if n := e.calls.Load(); n != 2 {
		t.Fatalf("%d calls for two tokens, want 2", n)
	}
}

func TestCacheLifetime(t *testing.T) {
	tests := []struct {
		desc      string
		body      func(now time.Time) string
		ttl       time.Duration
		lastHit   time.Duration // still cached this long after the first call
		reason    string        // expected failure, "" for success
		afterMiss string        // reason once the entry has expired
	}{
		{desc: "active, no exp: the TTL",
			body: func(time.Time) string { return `{"active":true,"sub":"a"}` }, ttl: time.Minute, lastHit: 59 * time.Second},
		{desc: "active: capped by exp",
			body: func(now time.Time) string {
				return fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, now.Add(30*time.Second).Unix())
			}, ttl: time.Minute, lastHit: 29 * time.Second, afterMiss: ReasonTokenInactive},
		{desc: "active: exp beyond the TTL",
			body: func(now time.Time) string {
				return fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, now.Add(time.Hour).Unix())
			}, ttl: 5 * time.Second, lastHit: 4 * time.Second},
		{desc: "inactive: at most 10s",
			body: func(time.Time) string { return `{"active":false}` }, ttl: time.Minute, lastHit: 9 * time.Second,
			reason: ReasonTokenInactive, afterMiss: ReasonTokenInactive},
		{desc: "inactive: a shorter TTL",
			body: func(time.Time) string { return `{"active":false}` }, ttl: 3 * time.Second, lastHit: 2 * time.Second,
			reason: ReasonTokenInactive, afterMiss: ReasonTokenInactive},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			clk := newClock()
			e := newEndpoint(t, false)
			e.answer("xQ7opaque", tt.body(clk.Now()))
			cfg := e.config(t)
			cfg.CacheTTL = config.Duration(tt.ttl)
			a := newAuth(t, cfg, clk)
			check := func(when string, wantCalls int64, reason string) {
				t.Helper()
				_, err := authenticate(a, "xQ7opaque")
				if reason == "" && err != nil {
					t.Fatalf("%s: %v", when, err)
				}
				if reason != "" {
					if got := failure(t, err, "xQ7opaque"); got != reason {
						t.Fatalf("%s: reason %q, want %q", when, got, reason)
					}
				}
				if n := e.calls.Load(); n != wantCalls {
					t.Fatalf("%s: %d calls, want %d", when, n, wantCalls)
				}
			}
			check("first request", 1, tt.reason)
			clk.Add(tt.lastHit)
			check("last cached request", 1, tt.reason)
			clk.Add(time.Second)
			check("first request after expiry", 2, tt.afterMiss)
		})
	}
}

func TestExpiredActiveAnswerIsNotCached(t *testing.T) {
	clk := newClock()
	e := newEndpoint(t, false)
	e.answer("xQ7opaque", fmt.Sprintf(`{"active":true,"sub":"a","exp":%d}`, clk.Now().Unix()))
	a := newAuth(t, e.config(t), clk)
	for i := range 2 {
		_, err := authenticate(a, "xQ7opaque")
		if got := failure(t, err, "xQ7opaque"); got != ReasonTokenInactive {
			t.Fatalf("reason %q, want token_inactive", got)
		}
		if n := e.calls.Load(); n != int64(i+1) {
			t.Fatalf("%d calls after %d requests: an answer already expired was cached", n, i+1)
		}
	}
}

func TestScopesCheckedOnEveryRequest(t *testing.T) {
	e := newEndpoint(t, false)
	e.answer("reader", `{"active":true,"sub":"r","scope":"read write"}`)
	e.answer("writer", `{"active":true,"sub":"w","scope":"write"}`)
	cfg := e.config(t)
	cfg.RequiredScopes = []string{"read"}
	a := newAuth(t, cfg, nil)
	for range 3 {
		_, err := authenticate(a, "writer")
		if got := failure(t, err, "writer"); got != ReasonTokenScopeMissing {
			t.Fatalf("reason %q, want token_scope_missing", got)
		}
		var f *authn.Failure
		errors.As(err, &f)
		if f.Identity != "w" || !strings.Contains(f.Detail, `"read"`) {
			t.Errorf("failure %+v, want identity w and the missing scope", f)
		}
		if _, err := authenticate(a, "reader"); err != nil {
			t.Fatalf("token with the scope: %v", err)
		}
	}
	if n := e.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want one per token", n)
	}
}

func TestNoSubject(t *testing.T) {
	e := newEndpoint(t, false)
	e.answer("xQ7opaque", `{"active":true,"client_id":"app"}`)
	a := newAuth(t, e.config(t), nil)
	_, err := authenticate(a, "xQ7opaque")
	if got := failure(t, err, "xQ7opaque"); got != ReasonTokenNoSubject {
		t.Fatalf("reason %q, want token_no_subject", got)
	}
}

func TestEndpointFailuresFailClosed(t *testing.T) {
	other := newEndpoint(t, false)
	tests := []struct {
		desc   string
		status int
		body   string
		header http.Header
		want   string
	}{
		{desc: "server error", status: http.StatusInternalServerError, want: "answered status 500"},
		{desc: "unauthorized client", status: http.StatusUnauthorized, want: "answered status 401"},
		{desc: "redirect is not followed", status: http.StatusFound, header: http.Header{"Location": {other.srv.URL}}, want: "answered status 302"},
		{desc: "not JSON", body: "<html>", want: "not a JSON object"},
		{desc: "JSON array", body: `[{"active":true}]`, want: "not a JSON object"},
		{desc: "JSON null", body: `null`, want: "not a JSON object"},
		{desc: "trailing data", body: `{"active":true,"sub":"a"} {}`, want: "not a JSON object"},
		{desc: "active missing", body: `{"sub":"a"}`, want: `"active" is missing or not a boolean`},
		{desc: "active as a string", body: `{"active":"true","sub":"a"}`, want: `"active" is missing or not a boolean`},
		{desc: "sub not a string", body: `{"active":true,"sub":42}`, want: `"sub" is not a string`},
		{desc: "scope a number", body: `{"active":true,"sub":"a","scope":1}`, want: `"scope" is neither`},
		{desc: "scope array with a number", body: `{"active":true,"sub":"a","scope":["a",1]}`, want: `"scope" is neither`},
		{desc: "exp a string", body: `{"active":true,"sub":"a","exp":"soon"}`, want: `"exp" is not a time`},
		{desc: "exp far away", body: `{"active":true,"sub":"a","exp":1e300}`, want: `"exp" is not a time`},
		{desc: "oversized", body: `{"active":true,"sub":"a","pad":"` + strings.Repeat("x", maxResponseSize) + `"}`, want: "larger than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tt.header {
					w.Header()[k] = v
				}
				if tt.status != 0 {
					w.WriteHeader(tt.status)
				}
				fmt.Fprint(w, tt.body)
			}))
			defer srv.Close()
			cfg := &config.IntrospectionAuth{Endpoint: srv.URL, ClientID: clientID, ClientSecret: secret(t, clientSecret)}
			a := newAuth(t, cfg, nil)
			for range 2 { // failures are not cached
				p, err := authenticate(a, "the-token")
				var f *authn.Failure
				if p != nil || !errors.Is(err, ErrUnavailable) || errors.As(err, &f) {
					t.Fatalf("Authenticate = %v, %v; want an ErrUnavailable error, not a Failure", p, err)
				}
				if !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %q does not contain %q", err, tt.want)
				}
				if strings.Contains(err.Error(), "the-token") || strings.Contains(err.Error(), "s3") {
					t.Errorf("error %q reveals the token or secret", err)
				}
			}
			if len(a.cache) != 0 {
				t.Errorf("a failure was cached")
			}
		})
	}
	if n := other.calls.Load(); n != 0 {
		t.Errorf("the redirect was followed")
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	endpointURL := srv.URL
	srv.Close() // nothing listens there now
	a := newAuth(t, &config.IntrospectionAuth{Endpoint: endpointURL, ClientID: clientID, ClientSecret: secret(t, clientSecret)}, nil)
	if _, err := authenticate(a, "xQ7opaque"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v, want ErrUnavailable", err)
	}
}

func TestTimeout(t *testing.T) {
	e := newEndpoint(t, false)
	e.hold(make(chan struct{}), nil) // never released: requests end with their context
	cfg := e.config(t)
	cfg.Timeout = config.Duration(50 * time.Millisecond)
	a := newAuth(t, cfg, nil)
	_, err := authenticate(a, "xQ7opaque")
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want ErrUnavailable and DeadlineExceeded", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", bound, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waiters returns how many requests wait on the call for token.
func (a *Authenticator) waiters(token string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.calls[sha256.Sum256([]byte(token))]; c != nil {
		return c.waiters
	}
	return 0
}

func TestConcurrentRequestsShareOneCall(t *testing.T) {
	e := newEndpoint(t, false)
	e.answer("xQ7opaque", `{"active":true,"sub":"a"}`)
	release := make(chan struct{})
	e.hold(release, nil)
	a := newAuth(t, e.config(t), nil)

	const n = 20
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := authenticate(a, "xQ7opaque")
			errs <- err
		}()
	}
	waitFor(t, "every request to join the call", func() bool { return a.waiters("xQ7opaque") == n })
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Authenticate: %v", err)
		}
	}
	if c := e.calls.Load(); c != 1 {
		t.Fatalf("%d calls for %d concurrent requests, want 1", c, n)
	}
}

func TestCancelledRequestDoesNotFailOthers(t *testing.T) {
	e := newEndpoint(t, false)
	e.answer("xQ7opaque", `{"active":true,"sub":"a"}`)
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	e.hold(release, entered)
	a := newAuth(t, e.config(t), nil)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(ctx, bearer("xQ7opaque"))
		first <- err
	}()
	<-entered // the first request's call reached the endpoint
	second := make(chan error, 1)
	go func() {
		_, err := authenticate(a, "xQ7opaque")
		second <- err
	}()
	waitFor(t, "the second request to join", func() bool { return a.waiters("xQ7opaque") == 2 })
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("the request still waiting failed: %v", err)
	}
	if c := e.calls.Load(); c != 1 {
		t.Fatalf("%d calls, want 1", c)
	}
}

func TestCacheIsBounded(t *testing.T) {
	clk := newClock()
	e := newEndpoint(t, false)
	a := newAuth(t, e.config(t), clk)
	a.maxEntries = 3
	for i := range 10 {
		tok := fmt.Sprintf("tok-%d", i)
		e.answer(tok, `{"active":true,"sub":"a"}`)
		if _, err := authenticate(a, tok); err != nil {
			t.Fatal(err)
		}
		if len(a.cache) > 3 {
			t.Fatalf("%d cached entries, want at most 3", len(a.cache))
		}
	}
	// An expired entry goes first.
	e.answer("old", `{"active":false}`) // cached 10s
	a.cache = map[[32]byte]*entry{}
	authenticate(a, "old")
	clk.Add(time.Hour)
	authenticate(a, "tok-1")
	authenticate(a, "tok-2")
	authenticate(a, "tok-3")
	if len(a.cache) != 3 {
		t.Fatalf("%d entries", len(a.cache))
	}
	for _, tok := range []string{"tok-1", "tok-2", "tok-3"} {
		before := e.calls.Load()
		authenticate(a, tok)
		if e.calls.Load() != before {
			t.Errorf("%s was evicted rather than the expired entry", tok)
		}
	}
}

func TestTLSEndpoint(t *testing.T) {
	e := newEndpoint(t, true)
	e.answer("xQ7opaque", `{"active":true,"sub":"a"}`)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := e.config(t)
	cfg.CAFile = caFile
	a := newAuth(t, cfg, nil)
	if _, err := authenticate(a, "xQ7opaque"); err != nil {
		t.Fatalf("with ca_file: %v", err)
	}
	if a.transport.TLSClientConfig.MinVersion != 0x0303 {
		t.Errorf("MinVersion %x, want TLS 1.2", a.transport.TLSClientConfig.MinVersion)
	}

	a = newAuth(t, e.config(t), nil) // system roots do not know the test CA
	if _, err := authenticate(a, "xQ7opaque"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("without ca_file: %v, want ErrUnavailable", err)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	base := func(mod func(c *config.IntrospectionAuth)) *config.IntrospectionAuth {
		c := &config.IntrospectionAuth{Endpoint: "https://idp.example/introspect", ClientID: "gw", ClientSecret: secret(t, "hunter2-secret")}
		if mod != nil {
			mod(c)
		}
		return c
	}
	tests := []struct {
		desc string
		cfg  *config.IntrospectionAuth
		want string
	}{
		{desc: "no configuration", want: "authenticators.oauth.introspection: no configuration"},
		{desc: "no endpoint", cfg: base(func(c *config.IntrospectionAuth) { c.Endpoint = "" }), want: "introspection.endpoint: required"},
		{desc: "relative endpoint", cfg: base(func(c *config.IntrospectionAuth) { c.Endpoint = "/introspect" }), want: "introspection.endpoint: not an absolute"},
		{desc: "ftp endpoint", cfg: base(func(c *config.IntrospectionAuth) { c.Endpoint = "ftp://idp.example/" }), want: "introspection.endpoint: not an absolute"},
		{desc: "plain http across the network", cfg: base(func(c *config.IntrospectionAuth) { c.Endpoint = "http://idp.example/introspect" }), want: "plain http is allowed only to a loopback address"},
		{desc: "credentials in the URL", cfg: base(func(c *config.IntrospectionAuth) { c.Endpoint = "https://gw:pw@idp.example/" }), want: "must not contain credentials"},
		{desc: "no client_id", cfg: base(func(c *config.IntrospectionAuth) { c.ClientID = "" }), want: "introspection.client_id: required"},
		{desc: "no client_secret", cfg: base(func(c *config.IntrospectionAuth) { c.ClientSecret = config.Secret{} }), want: "introspection.client_secret: required"},
		{desc: "bad scope", cfg: base(func(c *config.IntrospectionAuth) { c.RequiredScopes = []string{"read", "a b"} }), want: "introspection.required_scopes[1]"},
		{desc: "missing CA file", cfg: base(func(c *config.IntrospectionAuth) { c.CAFile = filepath.Join(dir, "nope.pem") }), want: "introspection.ca_file: open " + filepath.Join(dir, "nope.pem")},
		{desc: "CA file without certificates", cfg: base(func(c *config.IntrospectionAuth) { c.CAFile = notPEM }), want: "introspection.ca_file: " + notPEM + ": no PEM certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := New("oauth", tt.cfg, nil)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
	for _, ok := range []string{"http://127.0.0.1:8080/introspect", "http://[::1]/i", "http://localhost/i", "https://idp.example/i?tenant=a"} {
		if _, err := New("oauth", base(func(c *config.IntrospectionAuth) { c.Endpoint = ok }), nil); err != nil {
			t.Errorf("endpoint %s refused: %v", ok, err)
		}
	}
}

func TestChallenge(t *testing.T) {
	e := newEndpoint(t, false)
	if got := newAuth(t, e.config(t), nil).Challenge(); got != `Bearer realm="moat"` {
		t.Errorf("Challenge = %s", got)
	}
}

// BenchmarkCachedToken measures a request whose token is cached.
func BenchmarkCachedToken(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"active":true,"sub":"a","scope":"read write","exp":4102444800}`)
	}))
	defer srv.Close()
	var sec config.Secret
	sec.UnmarshalText([]byte("s"))
	a, err := New("oauth", &config.IntrospectionAuth{Endpoint: srv.URL, ClientID: "gw", ClientSecret: sec, RequiredScopes: []string{"read"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ex := bearer("2YotnFZFEjr1zCsicMWpAA")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authenticate(context.Background(), ex); err != nil {
			b.Fatal(err)
		}
	}
}
