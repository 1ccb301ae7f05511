package authz

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// alice is an editor of the acme organisation.
func alice() *gateway.Principal {
	return &gateway.Principal{
		Subject: "alice", Authenticator: "corp", Kind: "jwt",
		Roles: []string{"reader", "editor"}, Scopes: []string{"books:read", "books:write"},
		Claims: map[string]any{"org": "acme", "org_ids": []any{"acme", "globex"}, "account": float64(42)},
	}
}

type req struct {
	method, target, body, ctype string
	params                      []router.Param
	principal                   *gateway.Principal
}

func (r req) exchange() *gateway.Exchange {
	method, target := r.method, r.target
	if method == "" {
		method = http.MethodGet
	}
	if target == "" {
		target = "/orgs/acme/books/7"
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr := httptest.NewRequest(method, target, body)
	ctype := r.ctype
	if ctype == "" && r.body != "" {
		ctype = "application/json"
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	params := r.params
	if params == nil {
		params = []router.Param{{Key: "org", Value: "acme"}, {Key: "id", Value: "7"}}
	}
	p := r.principal
	if p == nil {
		p = alice()
	}
	return &gateway.Exchange{Request: hr, Params: params, Principal: p,
		Route: &gateway.Route{Name: "books", Template: "/orgs/{org}/books/{id}", MaxBody: 1 << 20}}
}

// verdict runs the stage and returns "" (allowed) or the reason ID; any
// other error fails the test.
func verdict(t *testing.T, s *Stage, ex *gateway.Exchange) (string, *gateway.Reject) {
	t.Helper()
	err := s.ProcessRequest(context.Background(), ex)
	if err == nil {
		return "", nil
	}
	var rej *gateway.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("non-reject error: %v", err)
	}
	if rej.Status != http.StatusForbidden && rej.Status != http.StatusBadRequest && rej.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d for %s", rej.Status, rej.ReasonID)
	}
	return rej.ReasonID, rej
}

func mustNew(t *testing.T, cfg config.Authorization, opts Options) *Stage {
	t.Helper()
	s, err := New(cfg, "books", opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func req2(anyOf ...string) *config.Requirement { return &config.Requirement{AnyOf: anyOf} }

func TestFunctionLevel(t *testing.T) {
	bob := &gateway.Principal{Subject: "bob", Authenticator: "keys", Kind: "api_key", Roles: []string{"reader"}, Scopes: []string{"books:read"}}
	methods := map[string]*config.MethodRule{
		"GET":    {},
		"PUT":    {Roles: req2("editor", "admin")},
		"DELETE": {Roles: &config.Requirement{AllOf: []string{"admin"}}},
		"POST":   {Scopes: &config.Requirement{AllOf: []string{"books:write", "books:create"}}},
	}
	tests := []struct {
		desc string
		cfg  config.Authorization
		r    req
		want string
	}{
		{"any_of role held", config.Authorization{Roles: req2("admin", "editor")}, req{}, ""},
		{"any_of role missing", config.Authorization{Roles: req2("admin")}, req{}, ReasonRoleRequired},
		{"all_of roles held", config.Authorization{Roles: &config.Requirement{AllOf: []string{"reader", "editor"}}}, req{}, ""},
		{"all_of roles one missing", config.Authorization{Roles: &config.Requirement{AllOf: []string{"reader", "admin"}}}, req{}, ReasonRoleRequired},
		{"any_of and all_of both apply", config.Authorization{Roles: &config.Requirement{AnyOf: []string{"editor"}, AllOf: []string{"admin"}}}, req{}, ReasonRoleRequired},
		{"scope any_of held", config.Authorization{Scopes: req2("books:write")}, req{}, ""},
		{"scope any_of missing", config.Authorization{Scopes: req2("books:admin")}, req{}, ReasonScopeRequired},
		{"scope all_of missing", config.Authorization{Scopes: &config.Requirement{AllOf: []string{"books:read", "books:admin"}}}, req{}, ReasonScopeRequired},
		{"listed method without rule", config.Authorization{Methods: methods}, req{method: "GET"}, ""},
		{"HEAD follows GET", config.Authorization{Methods: methods}, req{method: "HEAD"}, ""},
		{"method not listed", config.Authorization{Methods: methods}, req{method: "PATCH"}, ReasonMethodDenied},
		{"method role held", config.Authorization{Methods: methods}, req{method: "PUT"}, ""},
		{"method role missing", config.Authorization{Methods: methods}, req{method: "PUT", principal: bob}, ReasonRoleRequired},
		{"admin operation refused", config.Authorization{Methods: methods}, req{method: "DELETE"}, ReasonRoleRequired},
		{"method scope all_of missing", config.Authorization{Methods: methods}, req{method: "POST"}, ReasonScopeRequired},
		{"route roles checked before method rule", config.Authorization{Roles: req2("auditor"), Methods: methods}, req{method: "GET"}, ReasonRoleRequired},
		{"allow any authenticated", config.Authorization{AllowAnyAuthenticated: true}, req{principal: bob}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustNew(t, tc.cfg, Options{})
			if got, _ := verdict(t, s, tc.r.exchange()); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestScopeChallenge(t *testing.T) {
	s := mustNew(t, config.Authorization{Scopes: req2("books:admin")}, Options{})
	_, rej := verdict(t, s, req{}.exchange())
	if got := rej.Header.Get("WWW-Authenticate"); got != `Bearer error="insufficient_scope"` {
		t.Fatalf("WWW-Authenticate %q for a JWT principal", got)
	}
	key := &gateway.Principal{Subject: "k", Kind: "api_key"}
	_, rej = verdict(t, s, req{principal: key}.exchange())
	if rej.Header != nil {
		t.Fatalf("an API key principal got a bearer challenge: %v", rej.Header)
	}
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		desc     string
		policies []config.Policy
		body     bool
		r        req
		want     string
		detail   string
	}{
		{"true", []config.Policy{{Name: "org", Expr: `request.params.org == principal.claims.org`}}, false, req{}, "", ""},
		{"false", []config.Policy{{Name: "org", Expr: `request.params.org == "globex"`}}, false, req{}, ReasonPolicyDenied, "policy org denied"},
		{"all must pass", []config.Policy{{Expr: `true`}, {Name: "second", Expr: `"admin" in principal.roles`}}, false, req{}, ReasonPolicyDenied, "policy second denied"},
		{"default name", []config.Policy{{Expr: `false`}}, false, req{}, ReasonPolicyDenied, "policy policies[0] denied"},
		{"evaluation error denies", []config.Policy{{Name: "hdr", Expr: `request.headers["x-tenant"] == "acme"`}}, false, req{}, ReasonPolicyDenied, "policy hdr failed to evaluate"},
		{"query and method", []config.Policy{{Expr: `request.method == "GET" && request.query.view == "summary"`}}, false, req{target: "/orgs/acme/books/7?view=summary"}, "", ""},
		{"body read when declared", []config.Policy{{Expr: `request.body.org == principal.claims.org`}}, true, req{method: "POST", body: `{"org":"acme"}`}, "", ""},
		{"body mismatch", []config.Policy{{Expr: `request.body.org == principal.claims.org`}}, true, req{method: "POST", body: `{"org":"globex"}`}, ReasonPolicyDenied, ""},
		{"invalid body keeps its reason", []config.Policy{{Expr: `request.body.org == "acme"`}}, true, req{method: "POST", body: `{"org":`}, gateway.ReasonInvalidJSON, ""},
		{"ip policy", []config.Policy{{Expr: `ip_in(request.client_ip, "192.0.2.0/24")`}}, false, req{}, ReasonPolicyDenied, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			s := mustNew(t, config.Authorization{Policies: tc.policies, Body: tc.body}, Options{})
			got, rej := verdict(t, s, tc.r.exchange())
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			if tc.detail != "" && rej.Detail != tc.detail {
				t.Fatalf("detail %q, want %q", rej.Detail, tc.detail)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		desc string
		cfg  config.Authorization
		tmpl string
		want []string
	}{
		{"no rule", config.Authorization{}, "", []string{"no authorization rule", "allow_any_authenticated: true"}},
		{"policy type error names field, expression and position", config.Authorization{Policies: []config.Policy{{Name: "p", Expr: `principal.rols == "x"`}}},
			"", []string{"route books", `policies[0] (p): expression "principal.rols == \"x\"": 1:10: undefined field 'rols'`}},
		{"policy output type", config.Authorization{Policies: []config.Policy{{Expr: `request.method`}}}, "", []string{"policies[0]", "want bool"}},
		{"body without body: true", config.Authorization{Policies: []config.Policy{{Expr: `request.body.a == 1`}}}, "", []string{"set body: true"}},
		{"owner expr error", config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Expr: `object_id == 1`}}}, "", []string{"owner[0].expr", "object_id == 1", "1:11"}},
		{"owner path param not in template", config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "book", Claim: "sub"}}}, "/orgs/{org}/books/{id}", []string{"owner[0].name", "{book}"}},
		{"bad pointer", config.Authorization{AllowAnyAuthenticated: true, Properties: &config.PropertyRules{ReadOnly: []string{"id"}}}, "", []string{"properties.read_only[0]", "must start with /"}},
		{"quadratic policy refused", config.Authorization{Policies: []config.Policy{{Expr: `principal.roles.all(a, principal.scopes.all(b, a != b))`}}}, "", []string{"worst-case cost"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := New(tc.cfg, "books", Options{Template: tc.tmpl})
			if err == nil {
				t.Fatal("New succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestNoPrincipalFailsClosed(t *testing.T) {
	s := mustNew(t, config.Authorization{AllowAnyAuthenticated: true}, Options{})
	ex := req{}.exchange()
	ex.Principal = nil
	err := s.ProcessRequest(context.Background(), ex)
	var rej *gateway.Reject
	if err == nil || errors.As(err, &rej) {
		t.Fatalf("got %v, want a non-reject error (500)", err)
	}
}

func TestValidateAuthorization(t *testing.T) {
	tests := []struct {
		desc string
		a    *config.Authorization
		want []string // substrings, each in some problem; nil: no problem
	}{
		{"missing block is default deny", nil, []string{"auth: no authorization rule"}},
		{"empty block is default deny", &config.Authorization{}, []string{"no authorization rule"}},
		{"properties alone are no access rule", &config.Authorization{Properties: &config.PropertyRules{ReadOnly: []string{"/id"}}}, []string{"no authorization rule"}},
		{"explicit any authenticated", &config.Authorization{AllowAnyAuthenticated: true}, nil},
		{"any authenticated with properties", &config.Authorization{AllowAnyAuthenticated: true, Properties: &config.PropertyRules{ReadOnly: []string{"/id"}}}, nil},
		{"any authenticated with roles", &config.Authorization{AllowAnyAuthenticated: true, Roles: req2("a")}, []string{"auth.allow_any_authenticated: cannot be combined"}},
		{"empty requirement", &config.Authorization{Roles: &config.Requirement{}}, []string{"auth.roles: set any_of or all_of"}},
		{"blank role", &config.Authorization{Scopes: &config.Requirement{AllOf: []string{" x"}}}, []string{"auth.scopes.all_of[0]"}},
		{"empty methods", &config.Authorization{Methods: map[string]*config.MethodRule{}}, []string{"auth.methods: lists no method"}},
		{"lower-case method", &config.Authorization{Methods: map[string]*config.MethodRule{"get": nil}}, []string{`auth.methods.get: "get" is not an upper-case`}},
		{"policy without expr", &config.Authorization{Policies: []config.Policy{{Name: "a"}}}, []string{"auth.policies[0].expr"}},
		{"duplicate policy names", &config.Authorization{Policies: []config.Policy{{Name: "a", Expr: "true"}, {Name: "a", Expr: "true"}}}, []string{"auth.policies[1].name"}},
		{"owner without check", &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id"}}}, []string{"auth.owner[0]: set claim"}},
		{"owner claim and expr", &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Claim: "sub", Expr: "true"}}}, []string{"not both"}},
		{"owner bad in", &config.Authorization{Owner: []config.OwnerRule{{In: "header", Name: "id", Claim: "sub"}}}, []string{"auth.owner[0].in"}},
		{"owner body needs pointer", &config.Authorization{Owner: []config.OwnerRule{{In: "body", Claim: "sub"}}}, []string{"auth.owner[0].pointer"}},
		{"owner body bad pointer", &config.Authorization{Owner: []config.OwnerRule{{In: "body", Pointer: "/a~2", Claim: "sub"}}}, []string{"~ must be followed"}},
		{"owner query needs name", &config.Authorization{Owner: []config.OwnerRule{{In: "query", Claim: "sub"}}}, []string{"auth.owner[0].name"}},
		{"owner bad match", &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Claim: "sub", Match: "prefix"}}}, []string{"auth.owner[0].match"}},
		{"owner match with expr", &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Expr: "true", Match: "equal"}}}, []string{"only with claim"}},
		{"required path", &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Claim: "sub", Required: true}}}, []string{"auth.owner[0].required"}},
		{"empty properties", &config.Authorization{AllowAnyAuthenticated: true, Properties: &config.PropertyRules{}}, []string{"auth.properties: set read_only"}},
		{"write roles without roles", &config.Authorization{AllowAnyAuthenticated: true, Properties: &config.PropertyRules{WriteRoles: map[string][]string{"/a": nil}}}, []string{"auth.properties.write_roles./a: lists no role"}},
		{"cost limit", &config.Authorization{AllowAnyAuthenticated: true, CostLimit: 2_000_000}, []string{"auth.cost_limit"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			probs := config.ValidateAuthorization(tc.a, "auth")
			var msgs []string
			for _, p := range probs {
				msgs = append(msgs, p.Path+": "+p.Msg)
			}
			all := strings.Join(msgs, "\n")
			if tc.want == nil && len(probs) > 0 {
				t.Fatalf("unexpected problems:\n%s", all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("problems\n%s\ndo not contain %q", all, w)
				}
			}
		})
	}
}

func TestApplyDefaults(t *testing.T) {
	a := &config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "id", Claim: "sub"}, {In: "path", Name: "id", Expr: "true"}}}
	a.ApplyDefaults()
	if a.Owner[0].Match != config.OwnerMatchEqual || a.Owner[1].Match != "" || a.CostLimit != config.DefaultAuthorizationCostLimit {
		t.Fatalf("defaults not applied: %+v", a)
	}
	var nilA *config.Authorization
	nilA.ApplyDefaults() // must not panic
}

func TestConcurrentUse(t *testing.T) {
	s := mustNew(t, config.Authorization{
		Roles:    req2("editor"),
		Policies: []config.Policy{{Expr: `request.params.org == principal.claims.org`}},
		Owner:    []config.OwnerRule{{In: "path", Name: "org", Claim: "org"}},
	}, Options{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if err := s.ProcessRequest(context.Background(), req{}.exchange()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
