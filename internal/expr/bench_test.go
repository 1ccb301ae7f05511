package expr

import (
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

func benchExchange() *gateway.Exchange {
	r := httptest.NewRequest("DELETE", "http://api.example.com/orgs/acme/books/42?page=2", nil)
	r.Header.Set("X-Tenant", "acme")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench")
	return &gateway.Exchange{
		Request:   r,
		Route:     &gateway.Route{Name: "books", Template: "/orgs/{org}/books/{id}"},
		Params:    []router.Param{{Key: "org", Value: "acme"}, {Key: "id", Value: "42"}},
		ClientIP:  netip.MustParseAddr("203.0.113.7"),
		Principal: &gateway.Principal{Subject: "alice", Roles: []string{"reader", "admin"}, Scopes: []string{"books:read"}, Claims: map[string]any{"org": "acme"}},
	}
}

func BenchmarkEval(b *testing.B) {
	for _, bc := range []struct {
		desc string
		src  string
		out  OutputType
	}{
		{"key principal+header", `principal.subject + ":" + request.headers["x-tenant"]`, String},
		{"role and method", `"admin" in principal.roles && request.method == "DELETE"`, Bool},
		{"param equals claim", `request.params.org == principal.claims.org`, Bool},
		{"ip_in", `ip_in(request.client_ip, "203.0.113.0/24")`, Bool},
	} {
		b.Run(bc.desc, func(b *testing.B) {
			p, err := Compile(bc.src, bc.out, Options{})
			if err != nil {
				b.Fatal(err)
			}
			ex := benchExchange()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if bc.out == String {
					if _, err := p.EvalString(ex); err != nil {
						b.Fatal(err)
					}
				} else if _, err := p.EvalBool(ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
