package authz

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// The sample API: accounts own orders.
//
//	GET, PUT, PATCH, DELETE /accounts/{account}/orders/{id}   path-bound; DELETE is an admin operation
//	GET  /orders?account=...                                   query-bound
//	POST /orders  {"account_id": ..., "status": ...}           body-bound; status and id are readOnly

// principals maps the test credential (X-Test-User) to a principal: the
// tiny authentication stage of this test.
var principals = map[string]*gateway.Principal{
	"A": {Subject: "user-a", Authenticator: "test", Kind: "jwt", Roles: []string{"customer"}, Claims: map[string]any{"account": "acct-a"}},
	"B": {Subject: "user-b", Authenticator: "test", Kind: "jwt", Roles: []string{"customer", "admin"}, Claims: map[string]any{"account": "acct-b"}},
}

type testAuthn struct{}

func (testAuthn) ProcessRequest(_ context.Context, ex *gateway.Exchange) error {
	p, ok := principals[ex.Request.Header.Get("X-Test-User")]
	if !ok {
		return &gateway.Reject{Status: http.StatusUnauthorized, ReasonID: gateway.ReasonInvalidCredentials}
	}
	ex.Principal = p
	return nil
}

type resolver struct{}

func (resolver) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("192.0.2.10")
	return a, a, false
}

// proxyTo forwards to the upstream with the shared, already checked body.
type proxyTo struct{ rp *httputil.ReverseProxy }

func (p proxyTo) Forward(w http.ResponseWriter, r *http.Request, _ *gateway.Exchange) {
	p.rp.ServeHTTP(w, r)
}

// upstreamLog records what reached the upstream.
type upstreamLog struct {
	mu   sync.Mutex
	seen []string
}

func (u *upstreamLog) add(s string) { u.mu.Lock(); u.seen = append(u.seen, s); u.mu.Unlock() }
func (u *upstreamLog) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return ""
	}
	return u.seen[len(u.seen)-1]
}
func (u *upstreamLog) count() int { u.mu.Lock(); defer u.mu.Unlock(); return len(u.seen) }

func newSampleAPI(t *testing.T, obs Observer) (*gateway.Gateway, *upstreamLog) {
	t.Helper()
	log := &upstreamLog{}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		log.add(r.Method + " " + r.URL.RequestURI() + " " + string(b))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	fwd := proxyTo{&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}}

	routes := []struct {
		methods  []string
		template string
		authz    config.Authorization
	}{
		{[]string{"GET", "PUT", "PATCH", "DELETE"}, "/accounts/{account}/orders/{id}", config.Authorization{
			Methods: map[string]*config.MethodRule{
				"GET":    {},
				"PUT":    {},
				"DELETE": {Roles: &config.Requirement{AnyOf: []string{"admin"}}},
			},
			Owner: []config.OwnerRule{{In: "path", Name: "account", Claim: "account"}},
		}},
		{[]string{"GET"}, "/orders", config.Authorization{
			Roles: &config.Requirement{AnyOf: []string{"customer"}},
			Owner: []config.OwnerRule{{In: "query", Name: "account", Claim: "account", Required: true}},
		}},
		{[]string{"POST"}, "/orders", config.Authorization{
			Roles:      &config.Requirement{AnyOf: []string{"customer"}},
			Policies:   []config.Policy{{Name: "positive quantity", Expr: `!has(request.body.quantity) || request.body.quantity > 0`}},
			Body:       true,
			Owner:      []config.OwnerRule{{In: "body", Pointer: "/account_id", Claim: "account", Required: true}},
			Properties: &config.PropertyRules{ReadOnly: []string{"/id", "/status"}},
		}},
	}
	rb := router.NewBuilder[*gateway.Route]()
	for _, rt := range routes {
		name := strings.Join(rt.methods, ",") + " " + rt.template
		stage, err := New(rt.authz, name, Options{Observer: obs, Template: rt.template})
		if err != nil {
			t.Fatal(err)
		}
		route := &gateway.Route{Name: name, Template: rt.template, MaxBody: 1 << 16, Upstream: fwd,
			Request: []gateway.RequestStage{testAuthn{}, stage}}
		if err := rb.Add("", rt.methods, rt.template, route); err != nil {
			t.Fatal(err)
		}
	}
	g := gateway.New(gateway.Options{Router: rb.Build(), ClientIP: resolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return g, log
}

// counter is a concurrency-safe Observer counting mismatches per principal.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *counter) OwnerMismatch(p, _ string) { c.mu.Lock(); c.n[p]++; c.mu.Unlock() }

func TestEndToEndTwoPrincipals(t *testing.T) {
	obs := &counter{n: map[string]int{}}
	g, upstream := newSampleAPI(t, obs)
	tests := []struct {
		desc, user, method, target, body string
		status                           int
		reason                           string
	}{
		{"A reads its order", "A", "GET", "/accounts/acct-a/orders/1", "", 200, ""},
		{"A updates its order", "A", "PUT", "/accounts/acct-a/orders/1", `{"note":"leave at door"}`, 200, ""},
		{"A lists its orders", "A", "GET", "/orders?account=acct-a", "", 200, ""},
		{"A creates an order for itself", "A", "POST", "/orders", `{"account_id":"acct-a","quantity":2}`, 200, ""},
		{"A reads B's order (path)", "A", "GET", "/accounts/acct-b/orders/1", "", 403, ReasonOwnerMismatch},
		{"A updates B's order (path)", "A", "PUT", "/accounts/acct-b/orders/1", `{"note":"x"}`, 403, ReasonOwnerMismatch},
		{"A lists B's orders (query)", "A", "GET", "/orders?account=acct-b", "", 403, ReasonOwnerMismatch},
		{"A smuggles B in a repeated query parameter", "A", "GET", "/orders?account=acct-a&account=acct-b", "", 403, ReasonOwnerMismatch},
		{"A lists without naming an account", "A", "GET", "/orders", "", 403, ReasonOwnerMismatch},
		{"A creates an order for B (body)", "A", "POST", "/orders", `{"account_id":"acct-b","quantity":1}`, 403, ReasonOwnerMismatch},
		{"A creates an order for B with a case variant", "A", "POST", "/orders", `{"account_id":"acct-a","Account_ID":"acct-b"}`, 403, ReasonOwnerMismatch},
		{"A deletes its own order (admin operation)", "A", "DELETE", "/accounts/acct-a/orders/1", "", 403, ReasonRoleRequired},
		{"A uses a method the route does not authorize", "A", "PATCH", "/accounts/acct-a/orders/1", `{}`, 403, ReasonMethodDenied},
		{"A sets the readOnly status", "A", "POST", "/orders", `{"account_id":"acct-a","status":"paid"}`, 403, ReasonPropertyDenied},
		{"A sets the readOnly id", "A", "POST", "/orders", `{"account_id":"acct-a","id":"o-1"}`, 403, ReasonPropertyDenied},
		{"A breaks the policy", "A", "POST", "/orders", `{"account_id":"acct-a","quantity":0}`, 403, ReasonPolicyDenied},
		{"A sends invalid JSON", "A", "POST", "/orders", `{"account_id":`, 400, gateway.ReasonInvalidJSON},
		{"B reads its order", "B", "GET", "/accounts/acct-b/orders/9", "", 200, ""},
		{"B deletes its order (admin)", "B", "DELETE", "/accounts/acct-b/orders/9", "", 200, ""},
		{"B reads A's order", "B", "GET", "/accounts/acct-a/orders/1", "", 403, ReasonOwnerMismatch},
		{"no credential", "", "GET", "/accounts/acct-a/orders/1", "", 401, gateway.ReasonInvalidCredentials},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			before := upstream.count()
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, tc.target, body)
			if tc.body != "" {
				r.Header.Set("Content-Type", "application/json")
			}
			if tc.user != "" {
				r.Header.Set("X-Test-User", tc.user)
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, r)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status == 200 {
				want := tc.method + " " + tc.target + " " + tc.body
				if upstream.count() != before+1 || upstream.last() != want {
					t.Fatalf("upstream saw %q, want %q", upstream.last(), want)
				}
				return
			}
			if upstream.count() != before {
				t.Fatalf("a refused request reached the upstream: %q", upstream.last())
			}
			var prob map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &prob); err != nil {
				t.Fatalf("problem body: %v: %s", err, rec.Body)
			}
			if prob["reason_id"] != tc.reason {
				t.Fatalf("reason_id %v, want %s", prob["reason_id"], tc.reason)
			}
			for _, leak := range []string{"claim", "owner[", "read-only", "policy "} {
				if strings.Contains(rec.Body.String(), leak) {
					t.Fatalf("internal detail %q reached the client: %s", leak, rec.Body)
				}
			}
		})
	}
	if got := obs.n[PrincipalKey(principals["A"])]; got != 6 {
		t.Errorf("owner mismatches counted for A: %d, want 6 (a missing identifier is not counted)", got)
	}
	if got := obs.n[PrincipalKey(principals["B"])]; got != 1 {
		t.Errorf("owner mismatches counted for B: %d, want 1", got)
	}
}
