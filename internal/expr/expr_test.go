package expr

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// testExchange is a request by alice to /orgs/acme/books/42.
func testExchange(body string) *gateway.Exchange {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(http.MethodPut, "http://API.Example.com:8443/orgs/acme/books/42?page=2&tag=a&tag=b&q=a%20b&bad=%zz&semi=1;x=2", rd)
	r.Header.Set("X-Tenant", "acme")
	r.Header.Add("Accept", "application/json")
	r.Header.Add("Accept", "text/plain")
	r.Header.Set("Content-Type", "application/json")
	return &gateway.Exchange{
		Request:  r,
		Route:    &gateway.Route{Name: "books.update", Template: "/orgs/{org}/books/{id}", MaxBody: 1 << 20},
		Params:   []router.Param{{Key: "org", Value: "acme"}, {Key: "id", Value: "42"}},
		ClientIP: netip.MustParseAddr("203.0.113.7"),
		Principal: &gateway.Principal{
			Subject: "alice", Authenticator: "corp-jwt", Kind: "jwt",
			Roles: []string{"reader", "editor"}, Scopes: []string{"books:read", "books:write"},
			Claims: map[string]any{"org": "acme", "org_ids": []any{"acme", "globex"}, "level": float64(3), "nested": map[string]any{"a": true}},
			KeyID:  "kid-1", Plan: "gold",
		},
	}
}

func anonymous(ex *gateway.Exchange) *gateway.Exchange { ex.Principal = nil; return ex }

func TestVariables(t *testing.T) {
	tests := []struct {
		desc string
		src  string
		ex   func() *gateway.Exchange
		want string // for String programs; "true"/"false" for Bool programs
	}{
		{"principal.subject", `principal.subject`, nil, "alice"},
		{"principal.authenticator", `principal.authenticator`, nil, "corp-jwt"},
		{"principal.kind", `principal.kind`, nil, "jwt"},
		{"principal.key_id", `principal.key_id`, nil, "kid-1"},
		{"principal.plan", `principal.plan`, nil, "gold"},
		{"principal.authenticated", `principal.authenticated`, nil, "true"},
		{"principal.roles membership", `"editor" in principal.roles`, nil, "true"},
		{"principal.roles non-member", `"admin" in principal.roles`, nil, "false"},
		{"principal.roles index", `principal.roles[1]`, nil, "editor"},
		{"principal.roles size", `size(principal.roles) == 2`, nil, "true"},
		{"principal.roles exists", `principal.roles.exists(r, r.startsWith("edit"))`, nil, "true"},
		{"principal.roles equality", `principal.roles == ["reader", "editor"]`, nil, "true"},
		{"principal.scopes", `"books:write" in principal.scopes`, nil, "true"},
		{"principal.scopes join", `principal.scopes.join(" ")`, nil, "books:read books:write"},
		{"principal.claims string", `principal.claims.org`, nil, "acme"},
		{"principal.claims index", `principal.claims["org"] == "acme"`, nil, "true"},
		{"principal.claims list membership", `"globex" in principal.claims.org_ids`, nil, "true"},
		{"principal.claims number", `principal.claims.level >= 3`, nil, "true"},
		{"principal.claims nested", `principal.claims.nested.a == true`, nil, "true"},
		{"has claim", `has(principal.claims.org) && !has(principal.claims.missing)`, nil, "true"},
		{"principal not null", `principal != null`, nil, "true"},
		{"anonymous authenticated", `principal.authenticated`, func() *gateway.Exchange { return anonymous(testExchange("")) }, "false"},
		{"anonymous has subject", `has(principal.subject)`, func() *gateway.Exchange { return anonymous(testExchange("")) }, "false"},
		{"anonymous has roles", `has(principal.roles)`, func() *gateway.Exchange { return anonymous(testExchange("")) }, "false"},
		{"anonymous is null", `principal == null`, func() *gateway.Exchange { return anonymous(testExchange("")) }, "true"},
		{"anonymous branch", `principal.authenticated ? principal.subject : request.client_ip`, func() *gateway.Exchange { return anonymous(testExchange("")) }, "203.0.113.7"},
		{"authenticated branch", `principal.authenticated ? principal.subject : request.client_ip`, nil, "alice"},
		{"request.method", `request.method`, nil, "PUT"},
		{"request.path", `request.path`, nil, "/orgs/acme/books/42"},
		{"request.host lower, no port", `request.host`, nil, "api.example.com"},
		{"request.params", `request.params.id + "/" + request.params["org"]`, nil, "42/acme"},
		{"request.params has", `has(request.params.id) && !has(request.params.nope)`, nil, "true"},
		{"request.params size", `size(request.params) == 2`, nil, "true"},
		{"request.query single", `request.query.page`, nil, "2"},
		{"request.query repeated joins", `request.query.tag`, nil, "a, b"},
		{"request.query unescaped", `request.query.q`, nil, "a b"},
		{"request.query bad escape skipped", `"bad" in request.query`, nil, "false"},
		{"request.query semicolon pair skipped", `!("semi" in request.query) && !("x" in request.query)`, nil, "true"},
		{"request.query iteration", `request.query.all(k, k in ["page", "tag", "q"])`, nil, "true"},
		{"request.query optional", `request.query[?"missing"].orValue("none")`, nil, "none"},
		{"request.headers lower-case name", `request.headers["x-tenant"]`, nil, "acme"},
		{"request.headers any case", `request.headers["X-TENANT"]`, nil, "acme"},
		{"request.headers repeated joins", `request.headers.accept`, nil, "application/json, text/plain"},
		{"request.headers in", `"content-type" in request.headers && !("x-missing" in request.headers)`, nil, "true"},
		{"request.headers iteration is lower case", `request.headers.exists(h, h == "x-tenant") && !request.headers.exists(h, h == "X-Tenant")`, nil, "true"},
		{"request.headers optional", `request.headers[?"x-missing"].orValue("-")`, nil, "-"},
		{"request.client_ip", `request.client_ip`, nil, "203.0.113.7"},
		{"request.client_ip unknown", `request.client_ip`, func() *gateway.Exchange { ex := testExchange(""); ex.ClientIP = netip.Addr{}; return ex }, ""},
		{"ip_in prefix", `ip_in(request.client_ip, "203.0.113.0/24")`, nil, "true"},
		{"ip_in outside", `ip_in(request.client_ip, "10.0.0.0/8")`, nil, "false"},
		{"ip_in list", `ip_in(request.client_ip, ["10.0.0.0/8", "203.0.113.7"])`, nil, "true"},
		{"ip_in unparsable address", `ip_in("nope", "10.0.0.0/8")`, nil, "false"},
		{"ip_in mapped v4", `ip_in("::ffff:10.1.2.3", "10.0.0.0/8")`, nil, "true"},
		{"route.name", `route.name`, nil, "books.update"},
		{"route.template", `route.template`, nil, "/orgs/{org}/books/{id}"},
		{"regex with counted repetition", `request.path.matches("^/orgs/a{1,5}cme/")`, nil, "true"},
		{"ext strings", `request.path.split("/")[2].upperAscii()`, nil, "ACME"},
		{"ext sets", `sets.intersects(principal.roles, ["editor", "admin"])`, nil, "true"},
		{"rate-limit key", `principal.subject + ":" + request.headers["x-tenant"]`, nil, "alice:acme"},
		{"typical policy", `"editor" in principal.roles && request.method == "PUT" && request.params.org == principal.claims.org`, nil, "true"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			ex := testExchange("")
			if tc.ex != nil {
				ex = tc.ex()
			}
			if tc.want == "true" || tc.want == "false" {
				p, err := Compile(tc.src, Bool, Options{})
				if err != nil {
					t.Fatalf("Compile: %v", err)
				}
				got, err := p.EvalBool(ex)
				if err != nil {
					t.Fatalf("EvalBool: %v", err)
				}
				if want := tc.want == "true"; got != want {
					t.Fatalf("got %v, want %v", got, want)
				}
				return
			}
			p, err := Compile(tc.src, String, Options{})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got, err := p.EvalString(ex)
			if err != nil {
				t.Fatalf("EvalString: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBody(t *testing.T) {
	const doc = `{"id": 7, "price": 9.5, "big": 1e3, "owner": {"id": "alice"}, "items": [{"sku": "a"}, {"sku": "b"}], "none": null}`
	tests := []struct {
		desc string
		src  string
		body string
		want bool
	}{
		{"string field", `request.body.owner.id == principal.subject`, doc, true},
		{"integral number is int", `request.body.id == 7 && type(request.body.id) == int`, doc, true},
		{"fractional number is double", `type(request.body.price) == double && request.body.price > 9`, doc, true},
		{"exponent number", `request.body.big == 1000`, doc, true},
		{"list", `request.body.items.exists(i, i.sku == "b")`, doc, true},
		{"null", `request.body.none == null`, doc, true},
		{"has field", `has(request.body.owner) && !has(request.body.missing)`, doc, true},
		{"has body without body", `has(request.body)`, "", false},
		{"no body is null", `request.body == null`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := Compile(tc.src, Bool, Options{Body: true})
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got, err := p.EvalBool(testExchange(tc.body))
			if err != nil {
				t.Fatalf("EvalBool: %v", err)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// readCounter records whether the request body was read.
type readCounter struct {
	io.Reader
	reads int
}

func (r *readCounter) Read(p []byte) (int, error) { r.reads++; return r.Reader.Read(p) }

func TestBodyReadOnlyWhenUsed(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		src   string
		reads bool
	}{
		{"expression without body", `request.method == "PUT"`, false},
		{"body not reached (short circuit)", `request.method == "GET" && request.body.id == 1`, false},
		{"expression with body", `request.body.id == 1`, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ex := testExchange("")
			rc := &readCounter{Reader: strings.NewReader(`{"id": 1}`)}
			ex.Request.Body = io.NopCloser(rc)
			p, err := Compile(tc.src, Bool, Options{Body: true})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.EvalBool(ex); err != nil {
				t.Fatal(err)
			}
			if got := rc.reads > 0; got != tc.reads {
				t.Fatalf("body read = %v, want %v", got, tc.reads)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		desc string
		src  string
		out  OutputType
		opts Options
		want string // substring of the error
	}{
		{"empty", `  `, Bool, Options{}, "empty expression"},
		{"syntax error with position", `request.method ==`, Bool, Options{}, "1:18:"},
		{"undeclared variable", `user.name == "x"`, Bool, Options{}, "1:1: undeclared reference to 'user'"},
		{"unknown principal field", `principal.subjet == "x"`, Bool, Options{}, "undefined field 'subjet'"},
		{"unknown request field", `request.cookies == "x"`, Bool, Options{}, "undefined field 'cookies'"},
		{"position on second line", "request.method == \"GET\" &&\n  principal.nme == \"x\"", Bool, Options{}, "2:12: undefined field 'nme'"},
		{"type error", `principal.roles + 1 == 2`, Bool, Options{}, "no matching overload"},
		{"string where bool expected", `request.method`, Bool, Options{}, "produces string, want bool"},
		{"bool where string expected", `request.method == "GET"`, String, Options{}, "produces bool, want string"},
		{"int output", `size(request.path)`, String, Options{}, "produces int, want string"},
		{"body not declared", `request.body.id == 1`, Bool, Options{}, "undefined field 'body'"},
		{"bad ip_in literal", `ip_in(request.client_ip, "10.0.0.0/33")`, Bool, Options{}, `1:26: ip_in: "10.0.0.0/33" is not an address or CIDR prefix`},
		{"bad ip_in literal in list", `ip_in(request.client_ip, ["10.0.0.0/8", "nope"])`, Bool, Options{}, `"nope" is not`},
		{"bad regex literal", `request.path.matches("(")`, Bool, Options{}, "1:22:"},
		{"regex from the request", `request.path.matches(request.headers["x-re"])`, Bool, Options{}, "matches: the pattern must be a string literal"},
		{"regex from the request, global form", `matches(request.path, request.query.re)`, Bool, Options{}, "the pattern must be a string literal"},
		{"regex too large", `request.path.matches("(abc|def){50,100}x{100}")`, Bool, Options{}, "over the limit of 1000"},
		{"quadratic refused", `request.body.items.all(a, request.body.items.all(b, a == b))`, Bool, Options{Body: true}, "worst-case cost"},
		{"quadratic over headers refused", `request.headers.all(a, request.query.all(b, a != b))`, Bool, Options{}, "worst-case cost"},
		{"too long", `"` + strings.Repeat("a", MaxSourceLength) + `" == request.path`, Bool, Options{}, "over the limit"},
		{"construct object", `moat.Route{name: "x"}.name == "x"`, Bool, Options{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := Compile(tc.src, tc.out, tc.opts)
			if err == nil {
				// Constructing request objects compiles in CEL's type system
				// but must not evaluate to a usable value.
				if tc.want == "" {
					if _, err := p.EvalBool(testExchange("")); err == nil {
						t.Fatal("constructing moat.Route evaluated without error")
					}
					return
				}
				t.Fatalf("Compile succeeded, want error containing %q", tc.want)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestRuntimeErrors(t *testing.T) {
	tests := []struct {
		desc string
		src  string
		opts Options
		ex   func() *gateway.Exchange
		want string
	}{
		{"missing header", `request.headers["x-missing"] == "a"`, Options{}, nil, "no such key"},
		{"missing query parameter", `request.query.nope == "a"`, Options{}, nil, "no such key"},
		{"missing path parameter", `request.params.nope == "a"`, Options{}, nil, "no such key"},
		{"missing claim", `principal.claims.nope == "a"`, Options{}, nil, "no such key"},
		{"unauthenticated subject", `principal.subject == "a"`, Options{}, func() *gateway.Exchange { return anonymous(testExchange("")) }, "not authenticated"},
		{"unauthenticated roles", `"admin" in principal.roles`, Options{}, func() *gateway.Exchange { return anonymous(testExchange("")) }, "not authenticated"},
		{"dyn result not bool", `dyn(request.method)`, Options{}, nil, "want bool"},
		{"ip_in bad dynamic prefix", `ip_in(request.client_ip, request.method)`, Options{}, nil, "not an address"},
		{"body field missing", `request.body.nope == 1`, Options{Body: true}, func() *gateway.Exchange { return testExchange(`{"a":1}`) }, "no such key"},
		{"body access via dyn refused", `dyn(request).body == null`, Options{}, nil, "does not declare body access"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			p, err := Compile(tc.src, Bool, tc.opts)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			ex := testExchange("")
			if tc.ex != nil {
				ex = tc.ex()
			}
			_, err = p.EvalBool(ex)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBodyErrorKeepsReject(t *testing.T) {
	p, err := Compile(`request.body.id == 1`, Bool, Options{Body: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.EvalBool(testExchange(`{"id": 1`))
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.ReasonID != gateway.ReasonInvalidJSON {
		t.Fatalf("error %v, want a %s reject", err, gateway.ReasonInvalidJSON)
	}
}

func TestCostLimit(t *testing.T) {
	items := make([]string, 500)
	for i := range items {
		items[i] = `{"n": 1}`
	}
	body := `{"items": [` + strings.Join(items, ",") + `]}`
	loop := `request.body.items.all(i, i.n == 1)`

	t.Run("loops are tracked and stop at the limit", func(t *testing.T) {
		p, err := Compile(loop, Bool, Options{Body: true, CostLimit: 500})
		if err != nil {
			t.Fatal(err)
		}
		if !p.CostTracked() {
			t.Fatal("a loop must be cost tracked")
		}
		_, err = p.EvalBool(testExchange(body))
		if !errors.Is(err, ErrCostLimit) {
			t.Fatalf("error %v, want ErrCostLimit", err)
		}
	})
	t.Run("the same loop passes under the default limit", func(t *testing.T) {
		p, err := Compile(loop, Bool, Options{Body: true})
		if err != nil {
			t.Fatal(err)
		}
		if p.CostLimit() != DefaultCostLimit {
			t.Fatalf("limit %d, want %d", p.CostLimit(), DefaultCostLimit)
		}
		ok, err := p.EvalBool(testExchange(body))
		if err != nil || !ok {
			t.Fatalf("got %v, %v; want true", ok, err)
		}
	})
	t.Run("matches is tracked", func(t *testing.T) {
		p, err := Compile(`request.path.matches("^/orgs/[a-z]+")`, Bool, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !p.CostTracked() {
			t.Fatal("matches must be cost tracked")
		}
	})
	t.Run("sets functions are tracked", func(t *testing.T) {
		p, err := Compile(`sets.intersects(principal.roles, ["a"])`, Bool, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !p.CostTracked() {
			t.Fatal("sets.* must be cost tracked")
		}
	})
	t.Run("loop-free expressions are bounded at compile time", func(t *testing.T) {
		p, err := Compile(`"admin" in principal.roles && request.method == "DELETE"`, Bool, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if p.CostTracked() {
			t.Fatal("a small loop-free expression should not need runtime tracking")
		}
		if p.EstimatedCost() > p.CostLimit() {
			t.Fatalf("estimate %d over limit %d", p.EstimatedCost(), p.CostLimit())
		}
	})
	t.Run("loop-free expressions over the limit are tracked", func(t *testing.T) {
		p, err := Compile(`request.path.contains("x")`, Bool, Options{CostLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if !p.CostTracked() {
			t.Fatalf("estimate %d over limit 10 must be tracked", p.EstimatedCost())
		}
	})
}

func TestConcurrentEval(t *testing.T) {
	p, err := Compile(`principal.subject + ":" + request.headers["x-tenant"] + ":" + request.query.page`, String, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				got, err := p.EvalString(testExchange(""))
				if err == nil && got != "alice:acme:2" {
					err = errors.New("got " + got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestNormalizeHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM:8080", "example.com"},
		{"example.com.", "example.com"},
		{"[::1]:443", "::1"},
		{"[2001:DB8::1]", "2001:db8::1"},
		{"", ""},
	} {
		if got := normalizeHost(tc.in); got != tc.want {
			t.Errorf("normalizeHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCanonicalHeaderKey(t *testing.T) {
	for _, name := range []string{"x-tenant", "CONTENT-TYPE", "accept", "x--a", "a_b", "-x"} {
		var buf [64]byte
		got, ok := canonicalHeaderKey(name, buf[:0])
		if want := http.CanonicalHeaderKey(name); !ok || string(got) != want {
			t.Errorf("canonicalHeaderKey(%q) = %q, %v; want %q", name, got, ok, want)
		}
	}
	if _, ok := canonicalHeaderKey("bad name", nil); ok {
		t.Error("a name with a space must be invalid")
	}
}

func TestObjectID(t *testing.T) {
	p, err := Compile(`object_id.startsWith(principal.claims.org + "-")`, Bool, Options{ObjectID: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   string
		want bool
	}{{"acme-17", true}, {"globex-17", false}, {"", false}} {
		got, err := p.EvalBoolObject(testExchange(""), tc.id)
		if err != nil || got != tc.want {
			t.Errorf("object_id %q: got %v, %v; want %v", tc.id, got, err, tc.want)
		}
	}
	if _, err := Compile(`object_id == "a"`, Bool, Options{}); err == nil || !strings.Contains(err.Error(), "undeclared reference to 'object_id'") {
		t.Fatalf("object_id without Options.ObjectID: %v", err)
	}
}
