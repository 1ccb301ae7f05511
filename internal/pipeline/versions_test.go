package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/telemetry/metrics"
	"github.com/moat-gateway/moat/internal/versioning"
)

// TestVersionGroups checks which routes may share a host, method and path:
// versions read from the same header or from the media type, distinct, with
// at most one default; every other overlap is a load error naming the
// routes.
func TestVersionGroups(t *testing.T) {
	route := func(name, path, methods, version string) string {
		s := fmt.Sprintf("  - {name: %s, path: '%s', methods: [%s], upstream: a, public: true", name, path, methods)
		if version != "" {
			s += ", version: {" + version + "}"
		}
		return s + "}\n"
	}
	tests := []struct {
		desc   string
		routes string
		want   []string // substrings of the problem; none: it loads
	}{
		{desc: "header versions", routes: route("v1", "/b", "GET", "value: '1', from: header") +
			route("v2", "/b", "GET", "value: '2', from: header, default: true")},
		{desc: "media-type versions without default", routes: route("v1", "/b", "GET", "value: '1', from: media_type") +
			route("v2", "/b", "GET", "value: '2', from: media_type") + route("v3", "/b", "GET", "value: '3', from: media_type")},
		{desc: "methods differ", routes: route("v1", "/b", "GET", "value: '1', from: header") +
			route("v2", "/b", "GET, POST", "value: '2', from: header")},
		{desc: "same parameter names", routes: route("v1", "/u/{id}", "GET", "value: '1', from: header") +
			route("v2", "/u/{id}", "GET", "value: '2', from: header")},
		{desc: "other hosts do not overlap", routes: route("v1", "/b", "GET", "") +
			"  - {name: v2, host: api.example.com, path: /b, methods: [GET], upstream: a, public: true}\n"},
		{desc: "no versions", routes: route("one", "/b", "GET", "") + route("two", "/b", "GET", ""),
			want: []string{"routes[1]:", "GET /b is served by routes[0] (one) and routes[1] (two)", "no version block"}},
		{desc: "one without version", routes: route("v1", "/b", "GET", "value: '1', from: header") + route("plain", "/b", "GET", ""),
			want: []string{"routes[1] (plain) has no version block"}},
		{desc: "path versions", routes: route("v1", "/b", "GET", "value: '1'") + route("v2", "/b", "GET", "value: '2'"),
			want: []string{"routes[0] (v1) takes its version from the path"}},
		{desc: "header and media type", routes: route("v1", "/b", "GET", "value: '1', from: header") +
			route("v2", "/b", "GET", "value: '2', from: media_type"),
			want: []string{"reads the version from header Api-Version and routes[1] (v2) from media_type"}},
		{desc: "different headers", routes: route("v1", "/b", "GET", "value: '1', from: header") +
			route("v2", "/b", "GET", "value: '2', from: header, header: Accept-Version"), want: []string{"header Accept-Version"}},
		{desc: "same version", routes: route("v1", "/b", "GET", "value: 'v2', from: header") +
			route("v2", "/b", "GET", "value: '2', from: header"), want: []string{"both serve version 2"}},
		{desc: "two defaults", routes: route("v1", "/b", "GET", "value: '1', from: header, default: true") +
			route("v2", "/b", "GET", "value: '2', from: header, default: true"), want: []string{"both default"}},
		{desc: "parameter names differ", routes: route("v1", "/u/{id}", "GET", "value: '1', from: header") +
			route("v2", "/u/{uid}", "GET", "value: '2', from: header"), want: []string{"name the path parameters differently"}},
		{desc: "one problem for several methods", routes: route("one", "/b", "GET, POST", "") + route("two", "/b", "POST, GET", ""),
			want: []string{"GET, POST /b is served by"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg, err := config.Parse("t.yaml", []byte(base+"routes:\n"+tt.routes))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			gw, err := Build(cfg, nil, nil)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				gw.Close(0)
				return
			}
			var ce *config.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Build = %v, want *config.Error", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("problems lack %q:\n%v", w, err)
				}
			}
			if n := strings.Count(err.Error(), "route conflict"); n != 1 {
				t.Errorf("%d conflicts reported, want 1:\n%v", n, err)
			}
		})
	}
}

// versionedAPI is the document of the OpenAPI part of TestVersioningEndToEnd:
// a deprecated operation without x-moat-deprecation, one with dates and a
// link, one past its sunset, and one that is not deprecated.
const versionedAPI = `openapi: 3.1.0
info: {title: items, version: "1"}
x-moat-auth: {authenticators: [keys], allow_any_authenticated: true}
paths:
  /items:
    get:
      operationId: listItems
      deprecated: true
      responses: {"200": {description: ok}}
    post:
      operationId: createItem
      responses: {"200": {description: ok}}
  /items/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    get:
      operationId: getItem
      deprecated: true
      x-moat-deprecation: {deprecated_at: 2020-01-01T00:00:00Z, sunset: 2999-01-01T00:00:00Z, link: https://docs.example.com/items}
      responses: {"200": {description: ok}}
    delete:
      operationId: deleteItem
      deprecated: true
      x-moat-deprecation: {sunset: 2020-06-01T00:00:00Z}
      responses: {"200": {description: ok}}
`

const versionedConfig = `
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: DIR/keys.db}
authenticators: {keys: {api_key: {}}}
upstreams:
  v1: {targets: ['V1']}
  v2: {targets: ['V2']}
  items:
    targets: ['ITEMS']
    openapi: {spec: DIR/items.yaml, base_path: ''}
  legacy: {targets: ['ITEMS']}
routes:
  - name: books-v1
    path: /books
    methods: [GET]
    upstream: v1
    auth: {authenticators: [keys], allow_any_authenticated: true}
    version: {value: "1", from: header, deprecated: true, deprecated_at: 2020-01-01T00:00:00Z, sunset: 2999-01-01T00:00:00Z, link: https://docs.example.com/v1}
  - name: books-v2
    path: /books
    methods: [GET, POST]
    upstream: v2
    auth: {authenticators: [keys], allow_any_authenticated: true}
    version: {value: "2", from: header, default: true}
  - name: books-v0
    path: /books
    methods: [GET]
    upstream: v1
    public: true
    version: {value: "0", from: header, deprecated: true, deprecated_at: 2019-01-01T00:00:00Z, sunset: 2020-01-01T00:00:00Z}
  - name: authors-v1
    path: /authors
    methods: [GET]
    upstream: v1
    auth: {authenticators: [keys], allow_any_authenticated: true}
    version: {value: "1", from: media_type, deprecated: true, deprecated_at: 2020-01-01T00:00:00Z, sunset: 2999-01-01T00:00:00Z}
  - name: authors-v2
    path: /authors
    methods: [GET]
    upstream: v2
    auth: {authenticators: [keys], allow_any_authenticated: true}
    version: {value: "2", from: media_type, default: true}
  - name: legacy
    path: /legacy/{rest...}
    methods: [GET, POST, DELETE]
    upstream: legacy
    auth: {authenticators: [keys], allow_any_authenticated: true}
    openapi: {spec: DIR/items.yaml, base_path: /legacy}
`

// TestVersioningEndToEnd serves versions on one path by header and by media
// type, and deprecated OpenAPI operations on generated routes and behind a
// route-level document, with real upstreams, and checks the answers, the
// deprecation headers, the findings and the per-principal metric.
func TestVersioningEndToEnd(t *testing.T) {
	upstream := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, name+" "+r.Method+" "+r.URL.Path)
		}))
		t.Cleanup(s.Close)
		return s
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "items.yaml"), []byte(versionedAPI), 0o600); err != nil {
		t.Fatal(err)
	}
	store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apiKeys := map[string]string{}
	for _, who := range []string{"alice", "bob"} {
		if _, apiKeys[who], err = keys.Issue(context.Background(), store, keys.Record{Name: who, Subject: who}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()
	doc := strings.NewReplacer("DIR", dir, "V1", upstream("v1").URL, "V2", upstream("v2").URL, "ITEMS", upstream("items").URL).Replace(versionedConfig)
	cfg, err := config.Parse(filepath.Join(dir, "moat.yaml"), []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	state := NewState(log)
	defer state.Close()
	reg := metrics.New(metrics.Options{NoRuntime: true})
	reg.SetRoutes([]string{"books-v1", "books-v2", "books-v0", "authors-v1", "authors-v2", "legacy", "listItems", "getItem", "deleteItem", "createItem"})
	var mu sync.Mutex
	findings := map[string]map[string]any{} // by request ID
	routes := map[string]string{}
	state.SetObservers(reg.Observe, func(ex *gateway.Exchange) {
		mu.Lock()
		defer mu.Unlock()
		findings[ex.ID] = maps.Clone(ex.Findings)
		if ex.Route != nil {
			routes[ex.ID] = ex.Route.Name
		}
	})
	gw, err := Build(cfg, log, state)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close(time.Second)

	const (
		v1Link    = `<https://docs.example.com/v1>; rel="deprecation"; type="text/html"`
		itemsLink = `<https://docs.example.com/items>; rel="deprecation"; type="text/html"`
	)
	tests := []struct {
		desc        string
		method      string
		path        string
		who         string // API key of; "" for none
		hdr         []string
		status      int
		reason      string // problem reason_id, for refusals
		body        string // upstream answer, for admitted requests
		route       string // ex.Route.Name
		deprecation string // Deprecation header; "" for none
		sunset      string
		link        string
		finding     string // deprecated_version or deprecated_operation
	}{
		{desc: "header v1: deprecated", method: "GET", path: "/books", who: "alice", hdr: []string{"API-Version: 1"},
			status: 200, body: "v1 GET /books", route: "books-v1", deprecation: "@1577836800", sunset: "Tue, 01 Jan 2999 00:00:00 GMT",
			link: v1Link, finding: "1"},
		{desc: "header v1 again, another principal", method: "GET", path: "/books", who: "bob", hdr: []string{"API-Version: v1"},
			status: 200, body: "v1 GET /books", route: "books-v1", deprecation: "@1577836800", finding: "1"},
		{desc: "header v2", method: "GET", path: "/books", who: "alice", hdr: []string{"API-Version: 2"},
			status: 200, body: "v2 GET /books", route: "books-v2"},
		{desc: "no header: the default", method: "GET", path: "/books", who: "alice",
			status: 200, body: "v2 GET /books", route: "books-v2"},
		{desc: "POST only served by v2", method: "POST", path: "/books", who: "alice",
			status: 200, body: "v2 POST /books", route: "books-v2"},
		{desc: "POST asking for v1", method: "POST", path: "/books", who: "alice", hdr: []string{"API-Version: 1"},
			status: 406, reason: versioning.ReasonVersionNotSupported, route: "books-v2"},
		{desc: "unserved version", method: "GET", path: "/books", who: "alice", hdr: []string{"API-Version: 7"},
			status: 406, reason: versioning.ReasonVersionNotSupported, route: "books-v2"},
		{desc: "retired version", method: "GET", path: "/books", hdr: []string{"API-Version: 0"},
			status: 410, reason: versioning.ReasonVersionRetired, route: "books-v0", deprecation: "@1546300800",
			sunset: "Wed, 01 Jan 2020 00:00:00 GMT"},
		{desc: "media type v1", method: "GET", path: "/authors", who: "bob", hdr: []string{"Accept: application/vnd.example.v1+json"},
			status: 200, body: "v1 GET /authors", route: "authors-v1", deprecation: "@1577836800", finding: "1"},
		{desc: "media type v2", method: "GET", path: "/authors", who: "bob", hdr: []string{"Accept: application/json; version=2"},
			status: 200, body: "v2 GET /authors", route: "authors-v2"},
		{desc: "media type default", method: "GET", path: "/authors", who: "bob", hdr: []string{"Accept: application/json"},
			status: 200, body: "v2 GET /authors", route: "authors-v2"},

		{desc: "generated: deprecated without x-moat-deprecation", method: "GET", path: "/items", who: "alice",
			status: 200, body: "items GET /items", route: "listItems", deprecation: "@0", finding: "listItems"},
		{desc: "generated: deprecated with dates", method: "GET", path: "/items/7", who: "bob",
			status: 200, body: "items GET /items/7", route: "getItem", deprecation: "@1577836800",
			sunset: "Tue, 01 Jan 2999 00:00:00 GMT", link: itemsLink, finding: "getItem"},
		{desc: "generated: past its sunset", method: "DELETE", path: "/items/7", who: "alice",
			status: 410, reason: versioning.ReasonVersionRetired, route: "deleteItem", deprecation: "@0", sunset: "Mon, 01 Jun 2020 00:00:00 GMT"},
		{desc: "generated: not deprecated", method: "POST", path: "/items", who: "alice",
			status: 200, body: "items POST /items", route: "createItem"},
		{desc: "route-level: deprecated without x-moat-deprecation", method: "GET", path: "/legacy/items", who: "alice",
			status: 200, body: "items GET /legacy/items", route: "legacy", deprecation: "@0", finding: "listItems"},
		{desc: "route-level: deprecated with dates", method: "GET", path: "/legacy/items/7", who: "alice",
			status: 200, body: "items GET /legacy/items/7", route: "legacy", deprecation: "@1577836800", link: itemsLink, finding: "getItem"},
		{desc: "route-level: past its sunset", method: "DELETE", path: "/legacy/items/7", who: "bob",
			status: 410, reason: versioning.ReasonVersionRetired, route: "legacy", deprecation: "@0", sunset: "Mon, 01 Jun 2020 00:00:00 GMT"},
		{desc: "route-level: not deprecated", method: "POST", path: "/legacy/items", who: "alice",
			status: 200, body: "items POST /legacy/items", route: "legacy"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://gw.test"+tt.path, nil)
			r.RemoteAddr = "127.0.0.1:40000"
			if tt.who != "" {
				r.Header.Set("X-API-Key", apiKeys[tt.who])
			}
			for _, kv := range tt.hdr {
				k, v, _ := strings.Cut(kv, ":")
				r.Header.Add(k, strings.TrimSpace(v))
			}
			rec := httptest.NewRecorder()
			gw.ServeHTTP(rec, r)
			res := rec.Result()
			body := rec.Body.String()
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.status, body)
			}
			if tt.reason != "" {
				if ct := res.Header.Get("Content-Type"); ct != gateway.ProblemContentType || !strings.Contains(body, `"`+tt.reason+`"`) {
					t.Errorf("refusal %s %q, want a problem with %s", ct, body, tt.reason)
				}
			} else if body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
			if got := res.Header.Get("Deprecation"); got != tt.deprecation {
				t.Errorf("Deprecation %q, want %q", got, tt.deprecation)
			}
			if tt.sunset != "" && res.Header.Get("Sunset") != tt.sunset {
				t.Errorf("Sunset %q, want %q", res.Header.Get("Sunset"), tt.sunset)
			}
			if tt.deprecation == "" && tt.sunset == "" && (res.Header.Get("Sunset") != "" || res.Header.Get("Link") != "") {
				t.Errorf("a version that is not deprecated announced %v", res.Header)
			}
			if tt.link != "" && !strings.Contains(strings.Join(res.Header.Values("Link"), ","), tt.link) {
				t.Errorf("Link %q, want %q", res.Header.Values("Link"), tt.link)
			}
			id := res.Header.Get("X-Request-Id")
			mu.Lock()
			f, route := findings[id], routes[id]
			mu.Unlock()
			if route != tt.route {
				t.Errorf("exchange route %q, want %q", route, tt.route)
			}
			got, _ := f[versioning.FindingDeprecatedVersion].(string)
			if op, ok := f[versioning.FindingDeprecatedOperation].(string); ok {
				got = op
			}
			if got != tt.finding {
				t.Errorf("deprecated finding %q, want %q (%v)", got, tt.finding, f)
			}
		})
	}

	want := map[string]float64{
		"books-v1/1/alice":          1,
		"books-v1/1/bob":            1,
		"authors-v1/1/bob":          1,
		"listItems/listItems/alice": 1,
		"getItem/getItem/bob":       1,
		"legacy/listItems/alice":    1,
		"legacy/getItem/alice":      1,
	}
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "moat_deprecated_requests_total" {
			continue
		}
		for _, m := range f.Metric {
			got[labels(m, "route")+"/"+labels(m, "version")+"/"+labels(m, "principal")] = m.GetCounter().GetValue()
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("moat_deprecated_requests_total =\n %v\nwant\n %v", got, want)
	}
}

func labels(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
