package expr

import (
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
)

// FuzzCompileEval compiles arbitrary expressions and evaluates those that
// compile against an authenticated and an anonymous request with a body.
// Nothing may panic; CEL turns a panic during evaluation into an "internal
// error", which fails the target too, and so does a panic Compile
// recovered.
func FuzzCompileEval(f *testing.F) {
	for _, s := range []string{
		`principal.subject + ":" + request.headers["x-tenant"]`,
		`"admin" in principal.roles && request.method == "DELETE"`,
		`request.params.org == principal.claims.org`,
		`request.body.owner.id == principal.subject`,
		`request.body.items.all(i, i.n == 1)`,
		`has(principal.subject) ? principal.subject : request.client_ip`,
		`ip_in(request.client_ip, ["10.0.0.0/8", "::1"])`,
		`request.query[?"page"].orValue("1")`,
		`dyn(principal).roles[0]`,
		`dyn(request).headers.size() > 0`,
		`type(route) == moat.Route`,
		`principal == null || principal.roles == principal.scopes`,
		`request.headers.map(k, k + request.headers[k])[0]`,
		`sets.contains(principal.roles, principal.scopes)`,
		`request.path.matches("^/orgs/[a-z]+") && request.host.endsWith(".com")`,
		`[principal][0].subject`,
		`{"a": request}["a"].method`,
		`request.path.matches("^/a{2,3}(b|c){1,4}$")`,
		`ip_in(request.client_ip, "10.0.0.0/8") || ip_in(request.headers["x"], ["::1/128"])`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, body := range []bool{false, true} {
			for _, out := range []OutputType{String, Bool} {
				p, err := Compile(src, out, Options{Body: body, CostLimit: 1000})
				if err != nil {
					if strings.Contains(err.Error(), "internal error") {
						t.Fatalf("%q: compile panicked: %v", src, err)
					}
					continue
				}
				for _, ex := range []*gateway.Exchange{
					testExchange(`{"owner": {"id": "alice"}, "items": [{"n": 1}, {"n": 2.5}], "x": null}`),
					anonymous(testExchange(`[1, "a", {"b": [true]}]`)),
					testExchange(`{"bad json`),
				} {
					var err error
					if out == String {
						_, err = p.EvalString(ex)
					} else {
						_, err = p.EvalBool(ex)
					}
					if err != nil && strings.Contains(err.Error(), "internal error") {
						t.Fatalf("%q: %v", src, err)
					}
				}
			}
		}
	})
}
