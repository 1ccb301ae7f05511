package openapi

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// doc31 wraps paths (YAML, indented by two spaces) into an OpenAPI 3.1
// document; the paths start on line 4.
func doc31(paths string) string {
	return "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\npaths:\n" + paths
}

const okResponse = "      responses: {\"200\": {description: ok}}\n"

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		desc string
		doc  string
		want []string // substrings of the error
	}{
		{desc: "not YAML", doc: "{", want: []string{"doc.yaml: parsing the openapi document"}},
		{desc: "Swagger 2.0", doc: "swagger: \"2.0\"\ninfo: {title: t, version: \"1\"}\npaths: {}\n", want: []string{"Swagger 2.0 is not supported"}},
		{desc: "OpenAPI 3.2", doc: "openapi: 3.2.0\ninfo: {title: t, version: \"1\"}\npaths: {}\n", want: []string{`openapi version "3.2.0" is not supported`}},
		{desc: "meta-schema: unknown location", doc: doc31("  /a:\n    get:\n      parameters:\n        - {name: a, in: querry}\n" + okResponse),
			want: []string{"doc.yaml:6:", "does not conform to the OpenAPI 3.1.0 schema"}},
		{desc: "meta-schema: unquoted status code", doc: doc31("  /a:\n    get:\n      responses: {200: {description: ok}}\n"),
			want: []string{"doc.yaml:6:19:", `quote 200 as "200"`}},
		{desc: "duplicate key", doc: doc31("  /a: {}\n  /a: {}\n"), want: []string{`"/a" already defined`}},
		{desc: "unresolved parameter reference", doc: doc31("  /a:\n    get:\n      parameters:\n        - $ref: '#/components/parameters/Nope'\n" + okResponse),
			want: []string{"doc.yaml:7:11:", `$ref "#/components/parameters/Nope" does not resolve`}},
		{desc: "external reference", doc: doc31("  /a:\n    get:\n      parameters:\n        - $ref: 'other.yaml#/X'\n" + okResponse),
			want: []string{"doc.yaml:7:11:", "only references within the document"}},
		{desc: "external schema reference", doc: doc31("  /a:\n    post:\n      requestBody: {content: {application/json: {schema: {$ref: 'https://example.com/s.json'}}}}\n" + okResponse),
			want: []string{"doc.yaml:6:", "does not compile", "only references within the document"}},
		{desc: "pattern that is not RE2", doc: doc31("  /a:\n    get:\n      parameters:\n        - {name: a, in: query, schema: {type: string, pattern: \"(?=x)\"}}\n" + okResponse),
			want: []string{"doc.yaml:7:32:", "does not compile", "not valid regex"}},
		{desc: "misspelt extension", doc: doc31("  /a:\n    get:\n      x-moat-ratelimits: [a]\n" + okResponse),
			want: []string{"doc.yaml:6:7:", "unknown extension x-moat-ratelimits"}},
		{desc: "misspelt extension on a body property", doc: doc31("  /a:\n    post:\n      requestBody: {content: {application/json: {schema: {type: object, properties: {o: {x-moat-ownr: {}}}}}}}\n" + okResponse),
			want: []string{"unknown extension x-moat-ownr"}},
		{desc: "x-moat-auth: public false", doc: doc31("  /a:\n    get:\n      x-moat-auth: {public: false}\n" + okResponse),
			want: []string{"doc.yaml:6:7:", "{public: true} takes no other field"}},
		{desc: "x-moat-auth: empty list", doc: doc31("  /a:\n    get:\n      x-moat-auth: []\n" + okResponse), want: []string{"list at least one authenticator"}},
		{desc: "x-moat-auth: a string", doc: doc31("  /a:\n    get:\n      x-moat-auth: jwt\n" + okResponse), want: []string{"must be a list of authenticator names"}},
		{desc: "x-moat-rate-limits: duplicate", doc: doc31("  /a:\n    get:\n      x-moat-rate-limits: [a, a]\n" + okResponse), want: []string{`"a" is listed twice`}},
		{desc: "x-moat-owner: not an object", doc: doc31("  /a/{id}:\n    get:\n      parameters:\n        - {name: id, in: path, required: true, schema: {type: string}, x-moat-owner: sub}\n" + okResponse),
			want: []string{"x-moat-owner must be an object"}},
		{desc: "undeclared path parameter", doc: doc31("  /a/{id}:\n    get:\n" + okResponse), want: []string{"doc.yaml:5:5:", "which the operation does not declare"}},
		{desc: "path parameter not in the path", doc: doc31("  /a:\n    get:\n      parameters: [{name: id, in: path, required: true, schema: {type: string}}]\n" + okResponse),
			want: []string{`path parameter "id" does not appear in the path`}},
		{desc: "TRACE", doc: doc31("  /a:\n    trace:\n" + okResponse), want: []string{"TRACE operations cannot be served"}},
		{desc: "conflicting templates", doc: doc31("  /a/{x}:\n    get:\n      parameters: [{name: x, in: path, required: true, schema: {type: string}}]\n" + okResponse +
			"  /a/{y}:\n    get:\n      parameters: [{name: y, in: path, required: true, schema: {type: string}}]\n" + okResponse),
			want: []string{"doc.yaml:9:5:", "route conflict"}},
		{desc: "unsupported dialect", doc: "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\njsonSchemaDialect: https://json-schema.org/draft-07/schema\npaths: {}\n",
			want: []string{"doc.yaml:3:1:", "jsonSchemaDialect"}},
		{desc: "YAML tag", doc: doc31("  /a:\n    get:\n      responses: {\"200\": {description: !custom ok}}\n"), want: []string{"YAML tag !custom is not supported"}},
		{desc: "3.0 type array", doc: "openapi: 3.0.3\ninfo: {title: t, version: \"1\"}\npaths:\n  /a:\n    get:\n      parameters: [{name: a, in: query, schema: {type: [string, \"null\"]}}]\n" + okResponse,
			want: []string{"does not conform to the OpenAPI 3.0.3 schema"}},
		{desc: "server variable without default", doc: "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\nservers: [{url: \"/{v}\"}]\npaths: {}\n", want: []string{"doc.yaml:3:", `variable "v" has no default`}},
		{desc: "an unbalanced template", doc: doc31("  /a/{id:\n    get:\n" + okResponse), want: []string{"unclosed {"}},
		{desc: "alias bomb", doc: "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\npaths: {}\n" +
			"x-a: &a [x,x,x,x,x,x,x,x,x,x]\nx-b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nx-c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nx-d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n" +
			"x-e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nx-f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\nx-g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n",
			want: []string{"excessive aliasing"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			d, err := LoadBytes("doc.yaml", []byte(tc.doc))
			if err == nil {
				t.Fatalf("loaded %v, want an error", d.Operations())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadSize(t *testing.T) {
	if _, err := LoadBytes("big.yaml", make([]byte, MaxDocumentSize+1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v", err)
	}
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, make([]byte, MaxDocumentSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("got %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("loaded a missing file")
	}
}

func TestLoadJSONDocument(t *testing.T) {
	doc := `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/a":{"get":{"operationId":"a",` +
		`"parameters":[{"name":"n","in":"query","schema":{"type":"integer","maximum":1e2}}],"responses":{"200":{"description":"ok"}}}}}}`
	d, err := LoadBytes("doc.json", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if ops := d.Operations(); len(ops) != 1 || ops[0].ID != "a" {
		t.Fatalf("operations %v", ops)
	}
	ex := request("GET", "/a?n=101", "")
	expectReject(t, ex, validate(t, d, "a", Options{}, ex), 400, ReasonInvalidParameter, "query.n: maximum")
}

func TestYAMLMergeKeys(t *testing.T) {
	doc := "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\n" +
		"components:\n  schemas:\n    Base: &base {type: integer, minimum: 1, maximum: 100}\n" +
		"paths:\n  /a:\n    get:\n      operationId: a\n" +
		"      parameters:\n        - name: n\n          in: query\n          schema:\n            <<: *base\n            maximum: 5\n" + okResponse
	d, err := LoadBytes("doc.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]string{"/a?n=0": "query.n: minimum", "/a?n=6": "query.n: maximum", "/a?n=5": ""} {
		ex := request("GET", target, "")
		reason := ""
		if want != "" {
			reason = ReasonInvalidParameter
		}
		expectReject(t, ex, validate(t, d, "a", Options{}, ex), 400, reason, want)
	}
}

func TestOperations(t *testing.T) {
	d := testDoc(t, api31)
	if d.Version() != "3.1.0" || d.BasePath() != "/v1" || d.Name() != api31 {
		t.Errorf("version %q base %q name %q", d.Version(), d.BasePath(), d.Name())
	}
	type route struct {
		id, method, template string
		auth                 string
		limits               []string
		deprecated           bool
	}
	var got []route
	for _, op := range d.Operations() {
		a := ""
		switch {
		case op.Auth == nil:
		case op.Auth.Public:
			a = "public"
		default:
			a = strings.Join(op.Auth.Authenticators, ",")
		}
		got = append(got, route{op.ID, op.Method, op.Template, a, op.RateLimits, op.Deprecated})
	}
	want := []route{
		{"getItem", "GET", "/v1/items/{id}", "jwt", []string{"per_client", "burst"}, false},
		{"deleteItem", "DELETE", "/v1/items/{id}", "jwt,apikey", []string{"per_client"}, true},
		{"createItem", "POST", "/v1/items", "jwt", []string{"per_client"}, false},
		{"getFile", "GET", "/v1/files/{_seg2}", "jwt", []string{"per_client"}, false},
		{"labelIds", "GET", "/v1/label/{ids}", "jwt", []string{"per_client"}, false},
		{"matrixId", "GET", "/v1/matrix/{id}", "jwt", []string{"per_client"}, false},
		{"colorObject", "GET", "/v1/colors/{color}", "jwt", []string{"per_client"}, false},
		{"listOrders", "GET", "/v1/users/{user_id}/orders", "public", []string{"per_client"}, false},
		{"ping", "GET", "/health/ping", "public", []string{"per_client"}, false},
		{"putPing", "PUT", "/health/ping", "jwt", []string{"per_client"}, false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d operations %+v", len(got), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.id != w.id || g.method != w.method || g.template != w.template || g.auth != w.auth || !slices.Equal(g.limits, w.limits) || g.deprecated != w.deprecated {
			t.Errorf("operation %d: got %+v, want %+v", i, g, w)
		}
	}

	create := d.OperationByID("createItem")
	if got, want := create.ReadOnlyProperties(), []string{"/id", "/lines/*/children/*/children/*/children/*/price",
		"/lines/*/children/*/children/*/price", "/lines/*/children/*/price", "/lines/*/price"}; !slices.Equal(got, want) {
		t.Errorf("readOnly %q, want %q", got, want)
	}
	if got := create.WriteOnlyProperties(); !slices.Equal(got, []string{"/secret"}) {
		t.Errorf("writeOnly %q", got)
	}
	if len(create.Owners) != 1 || create.Owners[0].In != "body" || create.Owners[0].Name != "/owner_id" || create.Owners[0].Value["claim"] != "sub" {
		t.Errorf("owners %+v", create.Owners)
	}
	orders := d.OperationByID("listOrders")
	if len(orders.Owners) != 1 || orders.Owners[0].In != "path" || orders.Owners[0].Name != "user-id" || orders.Owners[0].Value["claim"] != "sub" {
		t.Errorf("owners %+v", orders.Owners)
	}
	if p := orders.Parameters[0]; p.RouterName != "user_id" || p.Style != "simple" || p.Explode || !p.Required {
		t.Errorf("parameter %+v", p)
	}
	if create.RequestBody == nil || !create.RequestBody.Required || len(create.RequestBody.Content) != 3 {
		t.Fatalf("requestBody %+v", create.RequestBody)
	}
	if d.OperationByID("nope") != nil || d.OperationByID("") != nil {
		t.Error("OperationByID found a missing operation")
	}
}

func TestResponses(t *testing.T) {
	d := testDoc(t, api31)
	get := d.OperationByID("getItem")
	tests := []struct {
		status     int
		want       string
		schemaWant bool
	}{
		{200, "200", true}, {404, "4XX", false}, {500, "default", false},
	}
	for _, tc := range tests {
		r, ok := get.ResponseFor(tc.status)
		if !ok || r.Status != tc.want {
			t.Errorf("ResponseFor(%d) = %+v, %v; want %s", tc.status, r, ok, tc.want)
			continue
		}
		mt, ok := r.MediaTypeFor("application/json; charset=utf-8")
		if ok != tc.schemaWant {
			t.Errorf("%d: media type %v", tc.status, ok)
		}
		if !ok {
			continue
		}
		s, err := d.CompileSchema(mt.Schema, ForResponse)
		if err != nil {
			t.Fatal(err)
		}
		if s.Pointer() != mt.Schema {
			t.Errorf("pointer %q", s.Pointer())
		}
		// In a response, readOnly id is required and writeOnly secret is not.
		if v := s.Validate(mustJSON(t, validItem)); len(v) != 1 || v[0].String() != "body/id: required" {
			t.Errorf("response violations %v", v)
		}
		if v := s.Validate(mustJSON(t, item(`"id":"`+tenant+`"`))); v != nil {
			t.Errorf("response violations %v", v)
		}
	}
	if _, ok := d.OperationByID("deleteItem").ResponseFor(500); ok {
		t.Error("deleteItem has no response for 500")
	}
	if _, err := d.CompileSchema("#/components/schemas/Nope", ForResponse); err == nil {
		t.Error("compiled a missing schema")
	}
}

func TestBasePath(t *testing.T) {
	tests := []struct {
		desc, servers, itemServers string
		option                     *string
		want                       string
	}{
		{desc: "no servers", want: "/a"},
		{desc: "absolute URL without path", servers: `[{url: "https://api.example.com"}]`, want: "/a"},
		{desc: "absolute URL with path and trailing slash", servers: `[{url: "https://api.example.com/v2/"}]`, want: "/v2/a"},
		{desc: "relative URL", servers: `[{url: /api}]`, want: "/api/a"},
		{desc: "relative URL without slash", servers: `[{url: api}]`, want: "/api/a"},
		{desc: "variables", servers: `[{url: "https://{h}/{v}", variables: {h: {default: x}, v: {default: v3}}}]`, want: "/v3/a"},
		{desc: "first server only", servers: `[{url: /one}, {url: /two}]`, want: "/one/a"},
		{desc: "option overrides", servers: `[{url: /api}]`, option: ptr(""), want: "/a"},
		{desc: "option prefix", option: ptr("/gw"), want: "/gw/a"},
		{desc: "path item servers", servers: `[{url: /api}]`, itemServers: "    servers: [{url: /other}]\n", want: "/other/a"},
		{desc: "option overrides path item servers", itemServers: "    servers: [{url: /other}]\n", option: ptr("/gw"), want: "/gw/a"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			doc := "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\n"
			if tc.servers != "" {
				doc += "servers: " + tc.servers + "\n"
			}
			doc += "paths:\n  /a:\n" + tc.itemServers + "    get:\n" + okResponse
			var opts []LoadOption
			if tc.option != nil {
				opts = append(opts, WithBasePath(*tc.option))
			}
			d, err := LoadBytes("doc.yaml", []byte(doc), opts...)
			if err != nil {
				t.Fatal(err)
			}
			if got := d.Operations()[0].Template; got != tc.want {
				t.Errorf("template %q, want %q", got, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestConvertTemplate(t *testing.T) {
	tests := []struct {
		path, want string
		names      map[string]string
		err        string
	}{
		{path: "/", want: "/", names: map[string]string{}},
		{path: "/books/", want: "/books/", names: map[string]string{}},
		{path: "/books/{id}", want: "/books/{id}", names: map[string]string{"id": "id"}},
		{path: "/u/{user-id}/{user_id}", want: "/u/{user_id}/{user_id_2}", names: map[string]string{"user-id": "user_id", "user_id": "user_id_2"}},
		{path: "/x/{1st}", want: "/x/{_st}", names: map[string]string{"1st": "_st"}},
		{path: "/f/{name}.{ext}", want: "/f/{_seg2}", names: map[string]string{"name": "", "ext": ""}},
		{path: "/a/{x}:run", want: "/a/{_seg2}", names: map[string]string{"x": ""}},
		{path: "/a/{x", err: "unclosed {"},
		{path: "/a/x}", err: "unbalanced }"},
		{path: "/a/{}", err: "bad parameter"},
		{path: "/a/{x}/{x}", err: "appears twice"},
		{path: "a", err: "must start with /"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			tpl, names, _, err := convertTemplate(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tpl != tc.want {
				t.Errorf("template %q, want %q", tpl, tc.want)
			}
			if len(names) != len(tc.names) {
				t.Errorf("names %v, want %v", names, tc.names)
			}
			for k, v := range tc.names {
				if names[k] != v {
					t.Errorf("names %v, want %v", names, tc.names)
				}
			}
		})
	}
}

func TestExtensionDefaults(t *testing.T) {
	doc := "openapi: 3.1.0\ninfo: {title: t, version: \"1\"}\nx-moat-auth: [jwt]\nx-moat-rate-limits: [global]\npaths:\n" +
		"  /a:\n    get:\n      operationId: inherits\n" + okResponse +
		"    post:\n      operationId: overrides\n      x-moat-auth: [apikey]\n      x-moat-rate-limits: []\n" + okResponse
	d, err := LoadBytes("doc.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	in, over := d.OperationByID("inherits"), d.OperationByID("overrides")
	if in.Auth == nil || !slices.Equal(in.Auth.Authenticators, []string{"jwt"}) || !slices.Equal(in.RateLimits, []string{"global"}) {
		t.Errorf("inherits: auth %+v limits %v", in.Auth, in.RateLimits)
	}
	if over.Auth == nil || !slices.Equal(over.Auth.Authenticators, []string{"apikey"}) || over.RateLimits == nil || len(over.RateLimits) != 0 {
		t.Errorf("overrides: auth %+v limits %#v", over.Auth, over.RateLimits)
	}
	none, err := LoadBytes("doc.yaml", []byte(doc31("  /a:\n    get:\n"+okResponse)))
	if err != nil {
		t.Fatal(err)
	}
	if op := none.Operations()[0]; op.Auth != nil || op.RateLimits != nil || op.ID != "" || op.String() != "GET /a" {
		t.Errorf("operation %+v", op)
	}
}
