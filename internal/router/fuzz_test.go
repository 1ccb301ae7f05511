package router

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fuzzRoutes is the fixed route set of FuzzMatch: overlapping static, param
// and catch-all templates over several host patterns and methods, so that
// precedence, backtracking and 405 unions are all exercised.
var fuzzRoutes = []spec{
	{host: "", methods: []string{"GET"}, template: "/"},
	{host: "", methods: []string{"GET", "POST"}, template: "/users"},
	{host: "", methods: []string{"GET"}, template: "/users/"},
	{host: "", methods: []string{"GET"}, template: "/users/me"},
	{host: "", methods: []string{"DELETE", "PUT"}, template: "/users/{id}"},
	{host: "", methods: []string{"PATCH"}, template: "/users/{uid}/x"},
	{host: "", methods: []string{"GET"}, template: "/users/{id}/posts/{post}"},
	{host: "", methods: []string{"POST"}, template: "/users/{rest...}"},
	{host: "", methods: []string{"GET"}, template: "/files/{path...}"},
	{host: "", methods: []string{"HEAD"}, template: "/files/static/{p...}"},
	{host: "", methods: []string{"GET"}, template: "/{a}/{b}/c"},
	{host: "", methods: []string{"PUT"}, template: "/{a}/b/{c}"},
	{host: "api.example.com", methods: []string{"GET"}, template: "/users/{id}"},
	{host: "api.example.com", methods: []string{"OPTIONS"}, template: "/{any...}"},
	{host: "*.example.com", methods: []string{"GET", "DELETE"}, template: "/users/me"},
	{host: "*.example.com", methods: []string{"POST"}, template: "/files/{f}"},
	{host: "*.eu.example.com", methods: []string{"GET"}, template: "/files/{path...}"},
	{host: "[::1]", methods: []string{"GET"}, template: "/v6/{x}"},
}

func init() {
	for i := range fuzzRoutes {
		fuzzRoutes[i].id = fuzzRoutes[i].host + " " + fuzzRoutes[i].template
	}
}

func FuzzMatch(f *testing.F) {
	seeds := []struct{ host, method, path string }{
		{"", "GET", "/"},
		{"api.example.com", "GET", "/users/7"},
		{"x.example.com:8080", "DELETE", "/users/me"},
		{"a.eu.example.com", "HEAD", "/files/static/x/y"},
		{"other.org", "PATCH", "/users/me"},
		{"api.example.com", "TRACE", "/users/me/x"},
		{"[::1]:80", "GET", "/v6/a"},
		{"API.EXAMPLE.COM.", "OPTIONS", "/anything/at/all/"},
		{"", "PUT", "/x/b/c"},
		{"", "GET", "/x/b/c"},
		{"", "GET", "/users//posts/1"},
		{"", "POST", "/users/"},
		{"", "GET", "/files"},
		{"", "GET", "relative"},
		{"..example.com", "GET", "/files/"},
		{"0..eXAmple.Com", "0", "/files/0"}, // an empty label inside the host defeats every wildcard
	}
	for _, s := range seeds {
		f.Add(s.host, s.method, s.path)
	}
	r := buildRouter(f, fuzzRoutes)
	f.Fuzz(func(t *testing.T, host, method, path string) {
		v, params, allow, ok := r.Match(host, method, path, make([]Param, 0, 1))
		wantID, wantAllow, wantOK := refMatch(host, method, path)
		if ok != wantOK || v != wantID || !slices.Equal(allow, wantAllow) || (allow == nil) != (wantAllow == nil) {
			t.Fatalf("Match(%q, %q, %q) = %q, %v, %v; reference says %q, %v, %v",
				host, method, path, v, allow, ok, wantID, wantAllow, wantOK)
		}
		if !ok {
			if len(params) != 0 {
				t.Fatalf("failed Match returned params %v", params)
			}
			if !slices.IsSorted(allow) || len(slices.Compact(slices.Clone(allow))) != len(allow) || slices.Contains(allow, method) {
				t.Fatalf("allow %v is unsorted, has duplicates or holds the request method %q", allow, method)
			}
			return
		}
		// The params, put back into the template, rebuild the path.
		tpl := v[strings.IndexByte(v, ' ')+1:]
		if got := expand(t, tpl, params); got != path {
			t.Fatalf("Match(%q) matched %q with %v, which expands to %q", path, tpl, params, got)
		}
	})
}

// expand substitutes params, in order, for the parameters of template.
func expand(t *testing.T, template string, params []Param) string {
	segs, err := parseTemplate(template)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	next := 0
	for _, s := range segs {
		b.WriteByte('/')
		if s.kind == segStatic {
			b.WriteString(s.text)
			continue
		}
		if next >= len(params) || params[next].Key != s.text {
			t.Fatalf("template %q: params %v do not follow its parameters", template, params)
		}
		b.WriteString(params[next].Value)
		next++
	}
	if next != len(params) {
		t.Fatalf("template %q: %d params for %d parameters", template, len(params), next)
	}
	return b.String()
}

// refMatch is a deliberately naive Match over fuzzRoutes: it scans every
// route, ranks hosts and templates explicitly, and splits paths with
// strings.Split.
func refMatch(host, method string, path string) (id string, allow []string, ok bool) {
	if path == "" || path[0] != '/' {
		return "", nil, false
	}
	var buf [hostBufLen]byte
	h := string(requestHost(host, &buf))
	type group struct {
		rank   int // lower is tried first
		routes []spec
	}
	groups := map[string]*group{}
	for _, s := range fuzzRoutes {
		hp, _ := parseHostPattern(s.host)
		rank, applies := -1, false
		switch hp.kind {
		case hostAny:
			rank, applies = 1000, true
		case hostExact:
			rank, applies = 0, h != "" && h == hp.name
		case hostWildcard:
			prefix, found := strings.CutSuffix(h, "."+hp.name)
			applies = found && !slices.Contains(strings.Split(prefix, "."), "")
			rank = 500 - len(hp.name)
		}
		if !applies {
			continue
		}
		g := groups[hp.String()]
		if g == nil {
			g = &group{rank: rank}
			groups[hp.String()] = g
		}
		g.routes = append(g.routes, s)
	}
	ordered := make([]*group, 0, len(groups))
	for _, g := range groups {
		ordered = append(ordered, g)
	}
	slices.SortFunc(ordered, func(a, b *group) int { return a.rank - b.rank })

	pathSegs := strings.Split(path[1:], "/")
	for _, g := range ordered {
		var best []segKind
		for _, s := range g.routes {
			kinds, matched := refTemplateMatch(s.template, pathSegs)
			if !matched {
				continue
			}
			for _, m := range s.methods {
				allow = append(allow, m)
				if m == "GET" {
					allow = append(allow, "HEAD")
				}
			}
			if !slices.Contains(s.methods, method) && !(method == "HEAD" && slices.Contains(s.methods, "GET")) {
				continue
			}
			if best == nil || slices.Compare(kinds, best) < 0 {
				best, id = kinds, s.id
			}
		}
		if best != nil {
			return id, nil, true
		}
	}
	if allow == nil {
		return "", nil, false
	}
	slices.Sort(allow)
	return "", slices.Compact(allow), false
}

// refTemplateMatch reports whether template matches the path segments and
// returns the kinds of its segments, which order templates by specificity.
func refTemplateMatch(template string, pathSegs []string) ([]segKind, bool) {
	segs, _ := parseTemplate(template)
	kinds := make([]segKind, 0, len(segs))
	for i, s := range segs {
		kinds = append(kinds, s.kind)
		switch {
		case s.kind == segCatchAll:
			return kinds, len(pathSegs) > i
		case i >= len(pathSegs):
			return nil, false
		case s.kind == segParam && pathSegs[i] == "":
			return nil, false
		case s.kind == segStatic && pathSegs[i] != s.text:
			return nil, false
		}
	}
	return kinds, len(pathSegs) == len(segs)
}

func FuzzValidateTemplate(f *testing.F) {
	for _, s := range []string{
		"/", "/a", "/a/", "/a/{b}", "/a/{b}/c/{d...}", "/{x...}", "", "a", "//", "/a//b",
		"/{", "/}", "/{a}{b}", "/{a...}/b", "/{a}/{a}", "/./a", "/..", "/a\x00", "/\xff", "/{_9}", "/{9}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, template string) {
		err := ValidateTemplate(template)
		b := NewBuilder[int]()
		addErr := b.Add("", []string{"GET"}, template, 1)
		if err != nil {
			if !errors.Is(err, ErrInvalidTemplate) || !errors.Is(addErr, ErrInvalidTemplate) {
				t.Fatalf("ValidateTemplate(%q) = %v, Add = %v; want both ErrInvalidTemplate", template, err, addErr)
			}
			return
		}
		if addErr != nil {
			t.Fatalf("ValidateTemplate(%q) = nil but Add = %v", template, addErr)
		}
		// A valid template matches the path made by filling in its
		// parameters, and gives those values back.
		segs, _ := parseTemplate(template)
		var want []Param
		var path strings.Builder
		for i, s := range segs {
			path.WriteByte('/')
			if s.kind == segStatic {
				path.WriteString(s.text)
				continue
			}
			val := "v" + string(rune('a'+i%26))
			if s.kind == segCatchAll {
				val += "/rest"
			}
			path.WriteString(val)
			want = append(want, Param{s.text, val})
		}
		_, got, _, ok := b.Build().Match("", "GET", path.String(), nil)
		if !ok || !slices.Equal(got, want) {
			t.Fatalf("template %q: Match(%q) = %v, %v; want %v", template, path.String(), got, ok, want)
		}
	})
}
