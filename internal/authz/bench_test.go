package authz

import (
	"context"
	"fmt"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

func benchExchange(org string) *gateway.Exchange {
	r := httptest.NewRequest("DELETE", "/orgs/"+org+"/books/42", nil)
	r.Header.Set("X-Tenant", org)
	return &gateway.Exchange{
		Request: r,
		Route:   &gateway.Route{Name: "books", Template: "/orgs/{org}/books/{id}"},
		Params:  []router.Param{{Key: "org", Value: org}, {Key: "id", Value: "42"}},
		Principal: &gateway.Principal{Subject: "alice", Authenticator: "corp", Kind: "jwt",
			Roles: []string{"reader", "admin"}, Scopes: []string{"books:read"}, Claims: map[string]any{"org": org}},
	}
}

// BenchmarkStage measures one route's authorization on the request path.
func BenchmarkStage(b *testing.B) {
	for _, bc := range []struct {
		desc string
		cfg  config.Authorization
	}{
		{"roles only", config.Authorization{Roles: req2("admin")}},
		{"typical policy", config.Authorization{Policies: []config.Policy{{Expr: `"admin" in principal.roles && request.method == "DELETE"`}}}},
		{"policy with header", config.Authorization{Policies: []config.Policy{{Expr: `principal.claims.org == request.headers["x-tenant"]`}}}},
		{"owner path claim", config.Authorization{Owner: []config.OwnerRule{{In: "path", Name: "org", Claim: "org"}}}},
		{"methods+roles+policy+owner", config.Authorization{
			Methods:  map[string]*config.MethodRule{"GET": {}, "DELETE": {Roles: req2("admin")}},
			Scopes:   req2("books:read"),
			Policies: []config.Policy{{Expr: `request.params.org == principal.claims.org`}},
			Owner:    []config.OwnerRule{{In: "path", Name: "org", Claim: "org"}},
		}},
	} {
		b.Run(bc.desc, func(b *testing.B) {
			s, err := New(bc.cfg, "bench", Options{})
			if err != nil {
				b.Fatal(err)
			}
			ex := benchExchange("acme")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ProcessRequest(ctx, ex); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// routeStages builds n stages, each with its own compiled policy, and
// reports the heap one compiled stage holds.
func routeStages(b *testing.B, n int) ([]*Stage, float64) {
	// Build the shared CEL environment first, so it is not counted.
	if _, err := New(config.Authorization{Policies: []config.Policy{{Expr: "true"}}}, "warm-up", Options{}); err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	stages := make([]*Stage, n)
	for i := range stages {
		s, err := New(config.Authorization{
			Roles:    req2("reader"),
			Policies: []config.Policy{{Expr: fmt.Sprintf(`"admin" in principal.roles && request.params.org != "other-%d"`, i)}},
		}, fmt.Sprintf("route-%d", i), Options{})
		if err != nil {
			b.Fatal(err)
		}
		stages[i] = s
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return stages, float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// BenchmarkRoutes shows that a request's cost does not depend on how many
// routes are compiled. hot: one route is evaluated while N exist.
// round-robin: every route in turn, so the working set is all N compiled
// policies (CPU cache misses grow with N; allocations do not).
// heap-B/route is the memory one compiled stage holds.
func BenchmarkRoutes(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		stages, perRoute := routeStages(b, n)
		ex := benchExchange("acme")
		ctx := context.Background()
		b.Run(fmt.Sprintf("routes=%d/hot", n), func(b *testing.B) {
			s := stages[n/2]
			b.ReportAllocs()
			for b.Loop() {
				if err := s.ProcessRequest(ctx, ex); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(perRoute, "heap-B/route")
		})
		b.Run(fmt.Sprintf("routes=%d/round-robin", n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := stages[i].ProcessRequest(ctx, ex); err != nil {
					b.Fatal(err)
				}
				if i++; i == n {
					i = 0
				}
			}
		})
	}
}
