package router

import (
	"fmt"
	"testing"
)

// benchRouter builds n routes shaped like a real API: n/10 services, each
// with five parameterised and five static templates,
// /v1/svc{i}/items/{id}/sub{j} and /v1/svc{i}/static/sub{j}.
func benchRouter(b *testing.B, n int) *Router[int] {
	b.Helper()
	bld := NewBuilder[int]()
	for i := range n / 10 {
		for j := range 5 {
			if err := bld.Add("", []string{"GET", "PUT"}, fmt.Sprintf("/v1/svc%d/items/{id}/sub%d", i, j), i*10+j); err != nil {
				b.Fatal(err)
			}
			if err := bld.Add("", []string{"GET"}, fmt.Sprintf("/v1/svc%d/static/sub%d", i, j), i*10+5+j); err != nil {
				b.Fatal(err)
			}
		}
	}
	return bld.Build()
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		r := benchRouter(b, n)
		svc := n / 20 // a service in the middle
		paths := []struct {
			desc string
			path string
		}{
			{desc: "static", path: fmt.Sprintf("/v1/svc%d/static/sub3", svc)},
			{desc: "param", path: fmt.Sprintf("/v1/svc%d/items/12345/sub3", svc)},
		}
		for _, p := range paths {
			b.Run(fmt.Sprintf("routes=%d/%s", n, p.desc), func(b *testing.B) {
				dst := make([]Param, 0, 4)
				if _, _, _, ok := r.Match("api.example.com", "GET", p.path, dst); !ok {
					b.Fatalf("%s did not match", p.path)
				}
				b.ReportAllocs()
				for b.Loop() {
					r.Match("api.example.com", "GET", p.path, dst)
				}
			})
		}
	}
}

// BenchmarkMatchHost measures host selection: 1,000 exact hosts, a wildcard
// and the any-host tree, with requests that carry a port and upper case.
func BenchmarkMatchHost(b *testing.B) {
	bld := NewBuilder[int]()
	for i := range 1000 {
		if err := bld.Add(fmt.Sprintf("svc%d.example.com", i), []string{"GET"}, "/items/{id}", i); err != nil {
			b.Fatal(err)
		}
	}
	if err := bld.Add("*.example.com", []string{"GET"}, "/items/{id}", -1); err != nil {
		b.Fatal(err)
	}
	if err := bld.Add("", []string{"GET"}, "/health", -2); err != nil {
		b.Fatal(err)
	}
	r := bld.Build()
	tests := []struct {
		desc, host, path string
	}{
		{desc: "exact", host: "svc500.example.com:443", path: "/items/7"},
		{desc: "wildcard", host: "Other.Example.com", path: "/items/7"},
		{desc: "any", host: "a.b.c.example.org", path: "/health"},
	}
	for _, tt := range tests {
		b.Run(tt.desc, func(b *testing.B) {
			dst := make([]Param, 0, 4)
			if _, _, _, ok := r.Match(tt.host, "GET", tt.path, dst); !ok {
				b.Fatalf("%s %s did not match", tt.host, tt.path)
			}
			b.ReportAllocs()
			for b.Loop() {
				r.Match(tt.host, "GET", tt.path, dst)
			}
		})
	}
}
