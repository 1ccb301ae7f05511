package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/anomaly"
	"github.com/moat-gateway/moat/internal/keys"
)

// guardReasons are the reasons of the checks that run before an endpoint.
var guardReasons = map[string]bool{ReasonHostNotAllowed: true, ReasonOriginNotAllowed: true, ReasonUnauthenticated: true,
	ReasonForbidden: true, ReasonLockedOut: true}

// endpointRig is an admin server with every dependency wired, an API key
// and a block to act on, and a valid request body for each write endpoint.
type endpointRig struct {
	s      *Server
	do     func(rq req) (int, http.Header, []byte)
	config *fakeConfig
	keys   *keys.File
	keyID  string
	blocks *anomaly.Memory
	audit  *auditLog
}

func newEndpointRig(t *testing.T, limitOn bool) *endpointRig {
	t.Helper()
	r := &endpointRig{config: newFakeConfig(), keys: openStore(t), blocks: newBlocks(), audit: &auditLog{}}
	rec, _, err := keys.Issue(context.Background(), r.keys, keys.Record{Subject: "alice"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	r.keyID = rec.ID
	if err := r.blocks.Block(context.Background(), "ip", "192.0.2.1", testNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	cfg := testAdmin()
	cfg.LoginLimit.Disabled = !limitOn // the guard cases send many wrong tokens from one address
	s, ts := start(t, cfg, Deps{
		Status: func() Status { return Status{} }, Config: r.config.get, Reload: r.config.reload,
		Routes: func() []RoutePosture { return nil }, Keys: r.keys, Alerts: func(int) []anomaly.Alert { return nil },
		Blocks: r.blocks, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("up 1\n")) }),
		Audit: r.audit.fn,
	})
	r.s = s
	r.do = func(rq req) (int, http.Header, []byte) { return do(t, ts, rq) }
	return r
}

// path returns a concrete path of e: the rig's key and block, or a
// dashboard asset.
func (r *endpointRig) path(e *endpoint) string {
	if e.path == UIPrefix+"{id}" {
		return UIPrefix + "app.js"
	}
	return strings.NewReplacer("{id}", r.keyID, "{kind}", "ip", "{subject}", "192.0.2.1").Replace(e.path)
}

// request returns a request for e that passes every check with the write
// token: a concrete path and, for write endpoints, a valid body.
func (r *endpointRig) request(e *endpoint) req {
	rq := req{method: e.method, path: r.path(e), token: writeToken}
	switch e.method + " " + e.path {
	case "PUT /api/v1/config":
		_, etag := r.config.get()
		rq.body, rq.ctype = strings.Replace(minimalYAML, "/books/{id}", "/novels/{id}", 1), "application/yaml"
		rq.header = map[string]string{"If-Match": `"` + etag + `"`}
	case "POST /api/v1/keys":
		rq.body, rq.ctype = `{"subject":"bob"}`, "application/json"
	case "POST /api/v1/blocks":
		rq.body, rq.ctype = `{"kind":"ip","subject":"192.0.2.9","duration":"15m"}`, "application/json"
	}
	return rq
}

// TestEveryEndpointGuarded sends to every endpoint of the admin listener the
// requests its checks must refuse (a rebound Host; no, an unknown or a
// malformed credential; a read token on a write endpoint; a foreign or
// null Origin and cross-site or same-site fetches on state-changing
// methods), checks that none of them changed anything or was audited as
// done, then that the same requests with the right credential pass the
// checks. An endpoint added later is covered without editing this test.
func TestEveryEndpointGuarded(t *testing.T) {
	r := newEndpointRig(t, false)
	eps := r.s.routes // the API's endpoints and the dashboard's
	for i := range eps {
		e := &eps[i]
		base := r.request(e)
		type guardCase struct {
			desc   string
			edit   func(*req)
			status int
			reason string
		}
		cases := []guardCase{
			{"rebound Host", func(q *req) { q.header = merge(q.header, "Host", "attacker.example:9901") }, 403, ReasonHostNotAllowed},
		}
		if e.role != "" {
			cases = append(cases,
				guardCase{"no credential", func(q *req) { q.token = "" }, 401, ReasonUnauthenticated},
				guardCase{"unknown token", func(q *req) { q.token = strings.Repeat("x", 44) }, 401, ReasonUnauthenticated},
				guardCase{"the token's hash", func(q *req) { q.token = testAdmin().Tokens[1].SHA256 }, 401, ReasonUnauthenticated},
				guardCase{"basic scheme", func(q *req) { q.token = ""; q.header = merge(q.header, "Authorization", "Basic "+writeToken) }, 401, ReasonUnauthenticated},
			)
		}
		if e.role == "write" {
			cases = append(cases, guardCase{"read token", func(q *req) { q.token = readToken }, 403, ReasonForbidden})
		}
		if !safeMethod(e.method) {
			cases = append(cases,
				guardCase{"foreign Origin", func(q *req) { q.header = merge(q.header, "Origin", "http://evil.example") }, 403, ReasonOriginNotAllowed},
				guardCase{"null Origin", func(q *req) { q.header = merge(q.header, "Origin", "null") }, 403, ReasonOriginNotAllowed},
				guardCase{"cross-site fetch", func(q *req) { q.header = merge(q.header, "Sec-Fetch-Site", "cross-site") }, 403, ReasonOriginNotAllowed},
				guardCase{"same-site fetch", func(q *req) { q.header = merge(q.header, "Sec-Fetch-Site", "same-site") }, 403, ReasonOriginNotAllowed},
				guardCase{"foreign Origin without a token", func(q *req) { q.token = ""; q.header = merge(q.header, "Origin", "http://evil.example") }, 403, ReasonOriginNotAllowed},
			)
		}
		for _, c := range cases {
			t.Run(e.method+" "+e.path+"/"+c.desc, func(t *testing.T) {
				q := base
				q.header = merge(q.header)
				c.edit(&q)
				code, h, b := r.do(q)
				if code != c.status || reasonOf(t, h, b) != c.reason {
					t.Fatalf("%d %s, want %d %s", code, b, c.status, c.reason)
				}
				if code == 401 && h.Get("WWW-Authenticate") != `Bearer realm="moat-admin"` {
					t.Errorf("401 with WWW-Authenticate %q", h.Get("WWW-Authenticate"))
				}
				if h.Get("Cache-Control") != "no-store" {
					t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
				}
			})
		}
	}

	// Nothing the refused requests asked for was done.
	if r.config.applied != 0 {
		t.Errorf("a refused PUT applied the configuration %d times", r.config.applied)
	}
	if recs, _ := r.keys.List(context.Background()); len(recs) != 1 || recs[0].Status(testNow) != "active" {
		t.Errorf("keys after refused requests: %+v, want the one active key", recs)
	}
	if bs, _ := r.blocks.List(context.Background()); len(bs) != 1 || bs[0].Subject != "192.0.2.1" {
		t.Errorf("blocks after refused requests: %+v, want the one block", bs)
	}
	for _, rec := range r.audit.all() {
		if rec.action != "admin_auth_failure" && rec.action != "admin_forbidden" {
			t.Errorf("a refused request was audited as %s: %+v", rec.action, rec)
		}
	}

	// The same requests with the right credential pass every check.
	for i := range eps {
		e := &eps[i]
		q := r.request(e)
		q.header = merge(q.header, "Origin", "http://127.0.0.1", "Sec-Fetch-Site", "same-origin")
		q.header["Host"] = "127.0.0.1"
		code, h, b := r.do(q)
		if code == 401 || code == 403 || code == 429 || guardReasons[reasonOf(t, h, b)] {
			t.Errorf("%s %s with the write token: %d %s", e.method, e.path, code, b)
		}
	}
}

// TestEveryEndpointLockedOut: while an address is locked out, every endpoint
// that needs an identity answers 429 to it whatever the credential, and
// the others (health, dashboard assets) are served.
func TestEveryEndpointLockedOut(t *testing.T) {
	r := newEndpointRig(t, true)
	const attacker = "192.0.2.66"
	for range 10 {
		serveFrom(r.s, attacker, "GET", "/api/v1/status", "wrong")
	}
	for i := range r.s.routes {
		e := &r.s.routes[i]
		path := r.path(e)
		rec := serveFrom(r.s, attacker, e.method, path, writeToken)
		if e.role != "" {
			if rec.Code != 429 || reasonOf(t, rec.Header(), rec.Body.Bytes()) != ReasonLockedOut || rec.Header().Get("Retry-After") == "" {
				t.Errorf("%s %s while locked out: %d %s, want 429 %s with Retry-After", e.method, path, rec.Code, rec.Body, ReasonLockedOut)
			}
		} else if rec.Code >= 400 {
			t.Errorf("%s %s needs no identity, but answered %d while locked out", e.method, path, rec.Code)
		}
	}
	// The lockout came before any endpoint ran.
	if r.config.applied != 0 {
		t.Error("a locked-out PUT applied the configuration")
	}
	if bs, _ := r.blocks.List(context.Background()); len(bs) != 1 {
		t.Errorf("blocks after locked-out requests: %+v", bs)
	}
}

// TestOpenAPIDocumentsGuards: the OpenAPI document lists, for every
// endpoint, the refusals of the checks that apply to it.
func TestOpenAPIDocumentsGuards(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		t.Fatal(err)
	}
	s, err := New(testAdmin(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range s.endpoints() {
		var op struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths[e.path][strings.ToLower(e.method)], &op); err != nil {
			t.Fatalf("%s %s: %v", e.method, e.path, err)
		}
		want := []string{"403"} // the Host check
		if e.role != "" {
			want = append(want, "401", "429")
		}
		for _, code := range want {
			if op.Responses[code] == nil {
				t.Errorf("%s %s does not document %s", e.method, e.path, code)
			}
		}
	}
}

// merge returns a copy of h with the name-value pairs kv set.
func merge(h map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
