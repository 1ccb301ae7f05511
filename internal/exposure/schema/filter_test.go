package schema_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure/schema"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/router"
	"github.com/moat-gateway/moat/internal/validate/openapi"
)

const spec = `openapi: 3.1.0
info: {title: users, version: "1"}
paths:
  /users/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      operationId: getUser
      responses:
        "200":
          description: a user
          content:
            application/json:
              schema: {$ref: "#/components/schemas/User"}
        "4XX":
          description: an error
          content:
            application/problem+json:
              schema:
                type: object
                properties: {title: {type: string}}
  /pets:
    get:
      operationId: listPets
      responses:
        "200":
          description: pets
          content:
            application/json:
              schema:
                type: array
                items:
                  anyOf:
                    - {$ref: "#/components/schemas/Cat"}
                    - {$ref: "#/components/schemas/Dog"}
components:
  schemas:
    User:
      type: object
      required: [id, name, password]
      properties:
        id: {type: integer}
        name: {type: string}
        password: {type: string, writeOnly: true}
        address:
          type: object
          properties: {city: {type: string}}
        tags:
          type: array
          items:
            type: object
            properties: {k: {type: string}}
        meta: {type: object, additionalProperties: true}
        manager: {$ref: "#/components/schemas/User"}
    Pet:
      type: object
      required: [name]
      properties: {name: {type: string}}
    Cat:
      allOf:
        - {$ref: "#/components/schemas/Pet"}
        - {type: object, properties: {purrs: {type: boolean}}}
    Dog:
      allOf:
        - {$ref: "#/components/schemas/Pet"}
        - {type: object, properties: {barks: {type: boolean}}}
`

// leakyUser is what the upstream answers for a user: undeclared properties
// at every level, a writeOnly password, and a number whose text must
// survive.
const leakyUser = `{"id": 12345678901234567890, "password_hash":"$2b$10$abc","name":"ann",` +
	`"password":"hunter2","address":{"geo":"48.1,11.5","city":"Munich"},` +
	`"tags":[{"k":"a","internal":1},{"k":"b"}],"meta":{"anything":1.50},` +
	`"manager":{"id":2,"name":"bob","password":"p2","ssn":"x"}}`

const strippedUser = `{"id": 12345678901234567890,"name":"ann",` +
	`"address":{"city":"Munich"},` +
	`"tags":[{"k":"a"},{"k":"b"}],"meta":{"anything":1.50},` +
	`"manager":{"id":2,"name":"bob"}}`

func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "application/json; charset=utf-8")
		h.Set("ETag", `"v1"`)
		switch r.URL.Path {
		case "/users/1":
			io.WriteString(w, leakyUser)
		case "/users/2": // fails the schema: id is a string
			io.WriteString(w, `{"id":"x","name":"ann","password":"p"}`)
		case "/users/3": // not JSON
			io.WriteString(w, `{"id":1,`)
		case "/users/big":
			io.WriteString(w, `{"id":1,"name":"`+strings.Repeat("a", 4096)+`","password_hash":"h"}`)
		case "/users/text":
			h.Set("Content-Type", "text/plain")
			io.WriteString(w, "password_hash: h")
		case "/users/gone":
			w.WriteHeader(http.StatusGone)
			io.WriteString(w, `{"error":"gone","password_hash":"h"}`)
		case "/pets":
			io.WriteString(w, `[{"name":"tom","purrs":true,"owner_email":"e"},{"name":"rex","barks":false,"chip":"c"}]`)
		case "/deep":
			io.WriteString(w, `{"a":[{"b":{"Password_Hash":"h","c":1}},{"passwordHash":"h2"}],"password_hash":"h3","d":2}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

type loopback struct{}

func (loopback) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("127.0.0.1")
	return a, a, false
}

func compile(t testing.TB) (*openapi.Document, *openapi.Responses) {
	t.Helper()
	doc, err := openapi.LoadBytes("spec.yaml", []byte(spec))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := doc.CompileResponses()
	if err != nil {
		t.Fatal(err)
	}
	return doc, resp
}

// newGateway builds a gateway with one route, template, forwarding to
// target with f as its response stage (and request stage).
func newGateway(t *testing.T, target, template string, f *schema.Filter, findings *map[string]any) *gateway.Gateway {
	t.Helper()
	u, _ := url.Parse(target)
	up, err := proxy.New("backend", &config.Upstream{
		Targets:      []config.URL{{URL: u}},
		Timeouts:     config.UpstreamTimeout{Connect: config.Duration(2 * time.Second), ResponseHeader: config.Duration(5 * time.Second), Overall: config.Duration(10 * time.Second)},
		MaxIdleConns: 4,
		Passive:      config.PassiveHealth{MaxFailures: 5, Ejection: config.Duration(30 * time.Second)},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	route := &gateway.Route{Name: "r", Template: template, MaxBody: 1 << 10,
		Request: []gateway.RequestStage{f}, Response: []gateway.ResponseStage{f}}
	route.Upstream = up.ForRoute(proxy.RouteOptions{ResponseStages: route.Response})
	rb := router.NewBuilder[*gateway.Route]()
	if err := rb.Add("", []string{"GET", "HEAD"}, template, route); err != nil {
		t.Fatal(err)
	}
	return gateway.New(gateway.Options{Router: rb.Build(), ClientIP: loopback{}, Log: slog.New(slog.DiscardHandler),
		OnFinish: func(ex *gateway.Exchange) { *findings = ex.Findings }})
}

func get(g http.Handler, path string) (*http.Response, string) {
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://gw.test"+path, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestFilterThroughGateway(t *testing.T) {
	doc, resp := compile(t)
	srv := upstream(t)
	getUser := doc.OperationByID("getUser")
	tests := []struct {
		desc     string
		cfg      config.ResponseFiltering
		op       *openapi.Operation // nil: matched per request
		path     string
		status   int
		body     string   // exact expected body; "" to skip
		reason   string   // reason_id of a refusal
		findings []string // finding keys expected
		etag     bool     // the ETag survives
	}{
		{desc: "strip removes undeclared and writeOnly properties, keeps order and number text",
			cfg: config.ResponseFiltering{Mode: "strip"}, op: getUser, path: "/users/1", status: 200,
			body: strippedUser, findings: []string{schema.FindingRemoved}},
		{desc: "strip on a route that names the document matches the operation per request",
			cfg: config.ResponseFiltering{}, path: "/users/1", status: 200, body: strippedUser,
			findings: []string{schema.FindingRemoved}},
		{desc: "log keeps undeclared properties, removes writeOnly ones, records both",
			cfg: config.ResponseFiltering{Mode: "log"}, op: getUser, path: "/users/1", status: 200,
			body: `{"id": 12345678901234567890, "password_hash":"$2b$10$abc","name":"ann",` +
				`"address":{"geo":"48.1,11.5","city":"Munich"},` +
				`"tags":[{"k":"a","internal":1},{"k":"b"}],"meta":{"anything":1.50},` +
				`"manager":{"id":2,"name":"bob","ssn":"x"}}`,
			findings: []string{schema.FindingRemoved, schema.FindingUndeclared}},
		{desc: "block refuses undeclared properties with 502",
			cfg: config.ResponseFiltering{Mode: "block"}, op: getUser, path: "/users/1", status: 502,
			reason: schema.ReasonResponseSchemaViolation, findings: []string{schema.FindingUndeclared, schema.FindingRemoved}},
		{desc: "block refuses a schema violation with 502",
			cfg: config.ResponseFiltering{Mode: "block"}, op: getUser, path: "/users/2", status: 502,
			reason: schema.ReasonResponseSchemaViolation, findings: []string{schema.FindingViolations, schema.FindingRemoved}},
		{desc: "strip passes a schema violation and records it",
			cfg: config.ResponseFiltering{}, op: getUser, path: "/users/2", status: 200,
			body: `{"id":"x","name":"ann"}`, findings: []string{schema.FindingViolations, schema.FindingRemoved}},
		{desc: "block refuses a body that is not JSON",
			cfg: config.ResponseFiltering{Mode: "block"}, op: getUser, path: "/users/3", status: 502,
			reason: schema.ReasonResponseSchemaViolation, findings: []string{schema.FindingUnchecked}},
		{desc: "strip passes a body that is not JSON unchanged",
			cfg: config.ResponseFiltering{}, op: getUser, path: "/users/3", status: 200, body: `{"id":1,`,
			findings: []string{schema.FindingUnchecked}, etag: true},
		{desc: "oversize passes unchecked by default",
			cfg: config.ResponseFiltering{MaxBody: 1024}, op: getUser, path: "/users/big", status: 200,
			findings: []string{schema.FindingUnchecked}, etag: true},
		{desc: "oversize block answers 502 response_unscannable",
			cfg: config.ResponseFiltering{MaxBody: 1024, Oversize: "block"}, op: getUser, path: "/users/big", status: 502,
			reason: schema.ReasonResponseUnscannable, findings: []string{schema.FindingUnchecked}},
		{desc: "non-JSON passes untouched",
			cfg: config.ResponseFiltering{Mode: "block", DenyFields: []string{"password_hash"}}, op: getUser,
			path: "/users/text", status: 200, body: "password_hash: h", etag: true},
		{desc: "undocumented status is recorded; deny_fields still apply",
			cfg: config.ResponseFiltering{Mode: "block", DenyFields: []string{"password_hash"}}, op: getUser,
			path: "/users/gone", status: 410, body: `{"error":"gone"}`,
			findings: []string{schema.FindingUnchecked, schema.FindingRemoved}},
		{desc: "anyOf of allOf compositions keeps every branch's properties",
			cfg: config.ResponseFiltering{}, path: "/pets", status: 200,
			body: `[{"name":"tom","purrs":true},{"name":"rex","barks":false}]`, findings: []string{schema.FindingRemoved}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f, err := schema.New(tc.cfg, resp, tc.op)
			if err != nil {
				t.Fatal(err)
			}
			var findings map[string]any
			g := newGateway(t, srv.URL, "/{p...}", f, &findings)
			res, body := get(g, tc.path)
			if res.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d (body %s)", res.StatusCode, tc.status, body)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("body =\n%s\nwant\n%s", body, tc.body)
			}
			if tc.reason != "" {
				var p map[string]any
				if err := json.Unmarshal([]byte(body), &p); err != nil || p["reason_id"] != tc.reason {
					t.Errorf("problem = %s, want reason %s", body, tc.reason)
				}
				for _, leak := range []string{"password", "hunter2", "$2b$", "#/components", "undeclared", `"ann"`} {
					if strings.Contains(body, leak) {
						t.Errorf("refusal leaks %q: %s", leak, body)
					}
				}
			}
			if tc.status == 200 && tc.body != "" && res.Header.Get("Content-Length") != "" && res.Header.Get("Content-Length") != itoa(len(body)) {
				t.Errorf("Content-Length = %s, body has %d bytes", res.Header.Get("Content-Length"), len(body))
			}
			if got := res.Header.Get("ETag") != ""; tc.status < 300 && got != tc.etag {
				t.Errorf("ETag kept = %v, want %v", got, tc.etag)
			}
			for _, k := range tc.findings {
				if _, ok := findings[k]; !ok {
					t.Errorf("finding %s missing: %v", k, findings)
				}
			}
			for _, k := range []string{schema.FindingRemoved, schema.FindingUndeclared, schema.FindingViolations, schema.FindingUnchecked} {
				if _, ok := findings[k]; ok && !contains(tc.findings, k) {
					t.Errorf("unexpected finding %s: %v", k, findings[k])
				}
			}
		})
	}
}

// TestFindingsNameCauses pins what the removal finding records: pointers
// and causes, never values.
func TestFindingsNameCauses(t *testing.T) {
	_, resp := compile(t)
	srv := upstream(t)
	f, err := schema.New(config.ResponseFiltering{}, resp, nil)
	if err != nil {
		t.Fatal(err)
	}
	var findings map[string]any
	g := newGateway(t, srv.URL, "/{p...}", f, &findings)
	get(g, "/users/1")
	got := findings[schema.FindingRemoved].([]schema.Removal)
	want := []schema.Removal{
		{Pointer: "/password_hash", Cause: schema.CauseUndeclared},
		{Pointer: "/password", Cause: schema.CauseWriteOnly},
		{Pointer: "/address/geo", Cause: schema.CauseUndeclared},
		{Pointer: "/tags/0/internal", Cause: schema.CauseUndeclared},
		{Pointer: "/manager/password", Cause: schema.CauseWriteOnly},
		{Pointer: "/manager/ssn", Cause: schema.CauseUndeclared},
	}
	if len(got) != len(want) {
		t.Fatalf("removed = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("removed[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestDenyFieldsWithoutSchema(t *testing.T) {
	srv := upstream(t)
	f, err := schema.New(config.ResponseFiltering{DenyFields: []string{"password_hash"}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var findings map[string]any
	g := newGateway(t, srv.URL, "/{p...}", f, &findings)
	res, body := get(g, "/deep")
	if want := `{"a":[{"b":{"c":1}},{}],"d":2}`; res.StatusCode != 200 || body != want {
		t.Fatalf("got %d %s, want %s", res.StatusCode, body, want)
	}
	if n := len(findings[schema.FindingRemoved].([]schema.Removal)); n != 3 {
		t.Errorf("%d removals recorded, want 3", n)
	}
}

func TestNewNothingToDo(t *testing.T) {
	f, err := schema.New(config.ResponseFiltering{}, nil, nil)
	if f != nil || err != nil {
		t.Errorf("New without document or deny_fields = %v, %v; want nil, nil", f, err)
	}
	if _, err := schema.New(config.ResponseFiltering{Mode: "drop"}, nil, nil); err == nil {
		t.Error("an invalid mode was accepted")
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestCostlyNumbersNotValidated pins the bound on the full validator's
// cost: a body the fast check cannot prove valid and that holds a number
// such as 1e999999 (tens of milliseconds of exact arithmetic each) is not
// handed to it; it is reported as one number_size violation, which block
// mode refuses. Ordinary exponents are validated as usual.
func TestCostlyNumbersNotValidated(t *testing.T) {
	doc, resp := compile(t)
	op := doc.OperationByID("getUser")
	tests := []struct {
		desc, mode, body string
		reject           bool
		keyword          string // of the one violation expected; "" for none
	}{
		{"huge exponent, block", "block", `{"id":1e999999,"name":"ann"}`, true, schema.KeywordNumberSize},
		{"huge exponent, strip", "strip", `{"id":1e999999,"name":"ann"}`, false, schema.KeywordNumberSize},
		{"huge mantissa in a free-form member", "strip", `{"id":1,"name":"ann","meta":{"n":` + strings.Repeat("7", 500) + `},"manager":{"id":"x","name":"bob"}}`, false, schema.KeywordNumberSize},
		{"ordinary exponent, valid", "block", `{"id":1e300,"name":"ann"}`, false, ""},
		{"ordinary exponent, invalid", "strip", `{"id":1.5e-300,"name":"ann"}`, false, "type"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			f, err := schema.New(config.ResponseFiltering{Mode: tc.mode}, resp, op)
			if err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "http://gw.test/users/1", nil)
			ex := &gateway.Exchange{Request: req}
			res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(tc.body)), Request: req}
			err = f.ProcessResponse(context.Background(), ex, res)
			if (err != nil) != tc.reject {
				t.Fatalf("err = %v, want a refusal: %v", err, tc.reject)
			}
			vs, _ := ex.Findings[schema.FindingViolations].([]openapi.Violation)
			switch {
			case tc.keyword == "" && len(vs) > 0:
				t.Errorf("violations %v, want none", vs)
			case tc.keyword != "" && (len(vs) != 1 || vs[0].Keyword != tc.keyword):
				t.Errorf("violations %v, want one %s", vs, tc.keyword)
			}
		})
	}
}
