package router

import (
	"fmt"
	"slices"
	"testing"
)

// spec is one route for a test router; its value is its id.
type spec struct {
	id       string
	host     string
	methods  []string
	template string
}

func buildRouter(t testing.TB, specs []spec) *Router[string] {
	t.Helper()
	b := NewBuilder[string]()
	for _, s := range specs {
		if err := b.Add(s.host, s.methods, s.template, s.id); err != nil {
			t.Fatalf("Add(%q, %q, %q): %v", s.host, s.methods, s.template, err)
		}
	}
	return b.Build()
}

func get(template, id string) spec { return spec{id: id, methods: []string{"GET"}, template: template} }

// outcome is what Match returned, in a comparable form.
type outcome struct {
	id     string            // matched route, "" if none
	params map[string]string // nil when there are none
	allow  []string          // nil for 404 or success
}

func match(r *Router[string], host, method, path string) outcome {
	v, ps, allow, ok := r.Match(host, method, path, nil)
	var o outcome
	if ok {
		o.id = v
	}
	for _, p := range ps {
		if o.params == nil {
			o.params = map[string]string{}
		}
		o.params[p.Key] = p.Value
	}
	o.allow = allow
	return o
}

func checkOutcome(t *testing.T, got, want outcome) {
	t.Helper()
	if got.id != want.id || fmt.Sprint(got.params) != fmt.Sprint(want.params) || !slices.Equal(got.allow, want.allow) ||
		(got.allow == nil) != (want.allow == nil) {
		t.Errorf("got id=%q params=%v allow=%#v; want id=%q params=%v allow=%#v",
			got.id, got.params, got.allow, want.id, want.params, want.allow)
	}
}

func p(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestMatchPaths(t *testing.T) {
	r := buildRouter(t, []spec{
		get("/", "root"),
		get("/books", "books"),
		get("/books/", "books-slash"),
		get("/books/{id}", "book"),
		get("/books/new", "book-new"),
		get("/books/{id}/pages/{page}", "page"),
		get("/books/{id}/pages/first", "first-page"),
		get("/files/{path...}", "files"),
		get("/files/readme", "readme"),
		get("/files/static/{rest...}", "static"),
		get("/a/{x}/c", "axc"),
		get("/a/b/{y}", "aby"),
		get("/Case", "case"),
		get("/héllo wörld", "unicode"),
	})
	tests := []struct {
		desc string
		path string
		want outcome
	}{
		{desc: "root", path: "/", want: outcome{id: "root"}},
		{desc: "static", path: "/books", want: outcome{id: "books"}},
		{desc: "trailing slash is a different route", path: "/books/", want: outcome{id: "books-slash"}},
		{desc: "param", path: "/books/42", want: outcome{id: "book", params: p("id", "42")}},
		{desc: "static beats param", path: "/books/new", want: outcome{id: "book-new"}},
		{desc: "two params", path: "/books/42/pages/7", want: outcome{id: "page", params: p("id", "42", "page", "7")}},
		{desc: "static after param", path: "/books/42/pages/first", want: outcome{id: "first-page", params: p("id", "42")}},
		{desc: "param does not match empty segment", path: "/books//pages/7", want: outcome{}},
		{desc: "param with trailing slash is unregistered", path: "/books/42/", want: outcome{}},
		{desc: "catch-all one segment", path: "/files/a", want: outcome{id: "files", params: p("path", "a")}},
		{desc: "catch-all several segments", path: "/files/a/b/c.txt", want: outcome{id: "files", params: p("path", "a/b/c.txt")}},
		{desc: "catch-all keeps trailing slash", path: "/files/a/", want: outcome{id: "files", params: p("path", "a/")}},
		{desc: "catch-all matches empty rest", path: "/files/", want: outcome{id: "files", params: p("path", "")}},
		{desc: "catch-all needs its segment", path: "/files", want: outcome{}},
		{desc: "static beats catch-all", path: "/files/readme", want: outcome{id: "readme"}},
		{desc: "static prefix then catch-all", path: "/files/readme/x", want: outcome{id: "files", params: p("path", "readme/x")}},
		{desc: "longer static catch-all wins", path: "/files/static/css/a.css", want: outcome{id: "static", params: p("rest", "css/a.css")}},
		{desc: "backtrack from static to param on path", path: "/a/b/c", want: outcome{id: "aby", params: p("y", "c")}},
		{desc: "backtrack when static branch dead-ends", path: "/a/z/c", want: outcome{id: "axc", params: p("x", "z")}},
		{desc: "case-sensitive static", path: "/case", want: outcome{}},
		{desc: "exact case", path: "/Case", want: outcome{id: "case"}},
		{desc: "non-ASCII static", path: "/héllo wörld", want: outcome{id: "unicode"}},
		{desc: "unknown path", path: "/nope", want: outcome{}},
		{desc: "empty path", path: "", want: outcome{}},
		{desc: "relative path", path: "books", want: outcome{}},
		{desc: "asterisk form", path: "*", want: outcome{}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			checkOutcome(t, match(r, "example.com", "GET", tt.path), tt.want)
		})
	}
}

func TestMatchMethods(t *testing.T) {
	r := buildRouter(t, []spec{
		{id: "me", methods: []string{"GET"}, template: "/users/me"},
		{id: "user-del", methods: []string{"DELETE"}, template: "/users/{id}"},
		{id: "user-put", methods: []string{"PUT", "patch"}, template: "/users/{uid}"},
		{id: "user-all", methods: []string{"POST"}, template: "/users/{rest...}"},
		{id: "head", methods: []string{"HEAD"}, template: "/docs"},
		{id: "docs", methods: []string{"GET"}, template: "/docs"},
		{id: "post", methods: []string{"POST"}, template: "/only-post"},
		{id: "opt", methods: []string{"OPTIONS", "GET"}, template: "/opt"},
		{id: "x-static", methods: []string{"PUT"}, template: "/x/s"},
		{id: "x-param", methods: []string{"GET"}, template: "/x/{p}"},
		{id: "custom", methods: []string{"PURGE"}, template: "/cache"},
	})
	tests := []struct {
		desc   string
		method string
		path   string
		want   outcome
	}{
		{desc: "static", method: "GET", path: "/users/me", want: outcome{id: "me"}},
		{desc: "backtrack to param for method", method: "DELETE", path: "/users/me", want: outcome{id: "user-del", params: p("id", "me")}},
		{desc: "param names are per route", method: "PATCH", path: "/users/7", want: outcome{id: "user-put", params: p("uid", "7")}},
		{desc: "backtrack to catch-all for method", method: "POST", path: "/users/me", want: outcome{id: "user-all", params: p("rest", "me")}},
		{desc: "HEAD served by GET", method: "HEAD", path: "/users/me", want: outcome{id: "me"}},
		{desc: "explicit HEAD preferred over GET", method: "HEAD", path: "/docs", want: outcome{id: "head"}},
		{desc: "405 unions every matching template", method: "GET", path: "/users/7",
			want: outcome{allow: []string{"DELETE", "PATCH", "POST", "PUT"}}},
		{desc: "backtrack past static GET to param PUT", method: "PUT", path: "/users/me",
			want: outcome{id: "user-put", params: p("uid", "me")}},
		{desc: "405 deduplicates HEAD", method: "POST", path: "/docs", want: outcome{allow: []string{"GET", "HEAD"}}},
		{desc: "405 on static-only path", method: "DELETE", path: "/only-post", want: outcome{allow: []string{"POST"}}},
		{desc: "405 lists HEAD with GET", method: "POST", path: "/opt", want: outcome{allow: []string{"GET", "HEAD", "OPTIONS"}}},
		{desc: "405 unions static and param nodes", method: "DELETE", path: "/x/s", want: outcome{allow: []string{"GET", "HEAD", "PUT"}}},
		{desc: "HEAD falls through static to param GET", method: "HEAD", path: "/x/s", want: outcome{id: "x-param", params: p("p", "s")}},
		{desc: "methods are case-sensitive", method: "get", path: "/opt", want: outcome{allow: []string{"GET", "HEAD", "OPTIONS"}}},
		{desc: "extension method", method: "PURGE", path: "/cache", want: outcome{id: "custom"}},
		{desc: "404 has no allow", method: "GET", path: "/missing", want: outcome{}},
		{desc: "404 when only a prefix exists", method: "GET", path: "/x", want: outcome{}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			checkOutcome(t, match(r, "", tt.method, tt.path), tt.want)
		})
	}
}

func TestMatchHosts(t *testing.T) {
	r := buildRouter(t, []spec{
		{id: "api", host: "api.example.com", methods: []string{"GET"}, template: "/x"},
		{id: "api-post", host: "API.Example.com.", methods: []string{"POST"}, template: "/p"},
		{id: "wild", host: "*.example.com", methods: []string{"GET", "POST"}, template: "/x"},
		{id: "wild-deep", host: "*.eu.example.com", methods: []string{"GET"}, template: "/x"},
		{id: "wild-del", host: "*.example.com", methods: []string{"DELETE"}, template: "/p"},
		{id: "any", methods: []string{"GET"}, template: "/x"},
		{id: "any-put", host: "*", methods: []string{"PUT"}, template: "/p"},
		{id: "v6", host: "[::1]", methods: []string{"GET"}, template: "/v6"},
		{id: "v6-long", host: "2001:db8:0:0:0:0:0:1", methods: []string{"GET"}, template: "/v6"},
		{id: "v4", host: "10.0.0.1", methods: []string{"GET"}, template: "/v4"},
		{id: "only-api", host: "api.example.com", methods: []string{"GET"}, template: "/only"},
	})
	tests := []struct {
		desc   string
		host   string
		method string
		path   string
		want   outcome
	}{
		{desc: "exact", host: "api.example.com", method: "GET", path: "/x", want: outcome{id: "api"}},
		{desc: "exact with port", host: "api.example.com:8443", method: "GET", path: "/x", want: outcome{id: "api"}},
		{desc: "exact upper case", host: "API.EXAMPLE.COM", method: "GET", path: "/x", want: outcome{id: "api"}},
		{desc: "exact trailing dot", host: "api.example.com.", method: "GET", path: "/x", want: outcome{id: "api"}},
		{desc: "exact trailing dot and port", host: "api.example.com.:80", method: "GET", path: "/x", want: outcome{id: "api"}},
		{desc: "two trailing dots are not stripped", host: "api.example.com..", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "pattern normalised at Add", host: "api.example.com", method: "POST", path: "/p", want: outcome{id: "api-post"}},
		{desc: "exact without method falls to wildcard", host: "api.example.com", method: "POST", path: "/x", want: outcome{id: "wild"}},
		{desc: "wildcard one label", host: "www.example.com", method: "GET", path: "/x", want: outcome{id: "wild"}},
		{desc: "wildcard several labels", host: "a.b.c.example.com", method: "GET", path: "/x", want: outcome{id: "wild"}},
		{desc: "longest wildcard suffix first", host: "fr.eu.example.com", method: "GET", path: "/x", want: outcome{id: "wild-deep"}},
		{desc: "shorter wildcard when longer lacks method", host: "fr.eu.example.com", method: "POST", path: "/x", want: outcome{id: "wild"}},
		{desc: "wildcard does not match its suffix", host: "eu.example.com", method: "GET", path: "/x", want: outcome{id: "wild"}},
		{desc: "wildcard does not match bare domain", host: "example.com", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "empty label never matches wildcard", host: ".example.com", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "doubled dot never matches wildcard", host: "a..example.com", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "any host", host: "other.org", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "no host", host: "", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "falls through every tree", host: "api.example.com", method: "PUT", path: "/p", want: outcome{id: "any-put"}},
		{desc: "405 unions trees", host: "api.example.com", method: "PATCH", path: "/p",
			want: outcome{allow: []string{"DELETE", "POST", "PUT"}}},
		{desc: "405 ignores trees of other hosts", host: "other.org", method: "PATCH", path: "/p", want: outcome{allow: []string{"PUT"}}},
		{desc: "404 for a path of another host", host: "other.org", method: "GET", path: "/only", want: outcome{}},
		{desc: "IPv6 with port", host: "[::1]:8080", method: "GET", path: "/v6", want: outcome{id: "v6"}},
		{desc: "IPv6 without port", host: "[::1]", method: "GET", path: "/v6", want: outcome{id: "v6"}},
		{desc: "IPv6 non-canonical request", host: "[0:0:0:0:0:0:0:1]", method: "GET", path: "/v6", want: outcome{id: "v6"}},
		{desc: "IPv6 canonicalised pattern", host: "[2001:DB8::1]:443", method: "GET", path: "/v6", want: outcome{id: "v6-long"}},
		{desc: "IPv6 bare", host: "::1", method: "GET", path: "/v6", want: outcome{id: "v6"}},
		{desc: "IPv6 with zone", host: "[fe80::1%25eth0]", method: "GET", path: "/v6", want: outcome{}},
		{desc: "IPv6 unclosed", host: "[::1", method: "GET", path: "/x", want: outcome{id: "any"}},
		{desc: "IPv4 with port", host: "10.0.0.1:80", method: "GET", path: "/v4", want: outcome{id: "v4"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			checkOutcome(t, match(r, tt.host, tt.method, tt.path), tt.want)
		})
	}
}

func TestMatchParamsReuseDst(t *testing.T) {
	r := buildRouter(t, []spec{get("/a/{x}/b/{y}", "ab"), get("/c", "c")})
	dst := make([]Param, 0, 4)
	_, ps, _, ok := r.Match("", "GET", "/a/1/b/2", dst)
	if !ok || len(ps) != 2 || &ps[0] != &dst[:1][0] {
		t.Fatalf("Match = %v, %v; want 2 params in dst's array", ps, ok)
	}
	_, ps, _, ok = r.Match("", "GET", "/c", ps)
	if !ok || len(ps) != 0 {
		t.Fatalf("Match(/c) params = %v, %v; want none", ps, ok)
	}
	_, ps, _, ok = r.Match("", "GET", "/missing", []Param{{"stale", "x"}})
	if ok || len(ps) != 0 {
		t.Fatalf("Match(/missing) params = %v, %v; want none", ps, ok)
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := NewBuilder[int]()
	for i := range 20 {
		for _, tpl := range []string{"/v1/s%d/items/{id}", "/v1/s%d/items/{id}/files/{f...}", "/v1/s%d/static"} {
			if err := b.Add("*.example.com", []string{"GET"}, fmt.Sprintf(tpl, i), i); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := b.Build()
	dst := make([]Param, 0, 4)
	tests := []struct {
		desc, host, path string
	}{
		{desc: "static", host: "a.example.com", path: "/v1/s3/static"},
		{desc: "param", host: "a.example.com", path: "/v1/s3/items/42"},
		{desc: "catch-all", host: "a.example.com", path: "/v1/s3/items/42/files/x/y"},
		{desc: "upper-case host with port", host: "A.EXAMPLE.COM:8443", path: "/v1/s3/items/42"},
		{desc: "IPv6 host", host: "[::1]:80", path: "/v1/s3/items/42"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				r.Match(tt.host, "GET", tt.path, dst)
			})
			if allocs != 0 {
				t.Errorf("Match allocates %v times; want 0", allocs)
			}
		})
	}
}

func TestZeroRouter(t *testing.T) {
	var r Router[int]
	if _, _, allow, ok := r.Match("example.com", "GET", "/", nil); ok || allow != nil {
		t.Errorf("zero Router matched: ok=%v allow=%v", ok, allow)
	}
}

func TestBuildIsIndependent(t *testing.T) {
	b := NewBuilder[string]()
	if err := b.Add("", []string{"GET"}, "/a", "a"); err != nil {
		t.Fatal(err)
	}
	r1 := b.Build()
	if err := b.Add("", []string{"GET"}, "/b", "b"); err != nil {
		t.Fatal(err)
	}
	r2 := b.Build()
	if _, _, _, ok := r1.Match("", "GET", "/b", nil); ok {
		t.Error("route added after Build changed the earlier Router")
	}
	if v, _, _, ok := r2.Match("", "GET", "/b", nil); !ok || v != "b" {
		t.Error("second Build lacks the new route")
	}
}

func TestManyStaticChildren(t *testing.T) {
	// Above maxLinear static children a node switches to a map; both must
	// give the same answers.
	for _, n := range []int{1, maxLinear, maxLinear + 1, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := NewBuilder[int]()
			for i := range n {
				if err := b.Add("", []string{"GET"}, fmt.Sprintf("/s%d/x", i), i); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Add("", []string{"GET"}, "/{p}/x", -1); err != nil {
				t.Fatal(err)
			}
			r := b.Build()
			for i := range n {
				if v, _, _, ok := r.Match("", "GET", fmt.Sprintf("/s%d/x", i), nil); !ok || v != i {
					t.Errorf("/s%d/x matched %v, %v", i, v, ok)
				}
			}
			if v, _, _, ok := r.Match("", "GET", "/other/x", nil); !ok || v != -1 {
				t.Errorf("/other/x matched %v, %v; want the param route", v, ok)
			}
		})
	}
}

func TestConcurrentMatch(t *testing.T) {
	r := buildRouter(t, []spec{get("/a/{x}", "a"), get("/b/{y...}", "b")})
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			dst := make([]Param, 0, 1)
			for i := range 200 {
				path := fmt.Sprintf("/a/%d-%d", g, i)
				v, ps, _, ok := r.Match("", "GET", path, dst)
				if !ok || v != "a" || ps[0].Value != fmt.Sprintf("%d-%d", g, i) {
					t.Errorf("Match(%s) = %v %v %v", path, v, ps, ok)
					return
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
