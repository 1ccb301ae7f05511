package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// Tokens of the tests: 32 random-looking bytes, as openssl rand -base64 32
// would print them.
const (
	readToken  = "q4X0tV7m2Jc9hYbPz1LwRkE8sNdA6uGf3iOeTjKy5Hg="
	writeToken = "Zp8vB3nQ1xW6cM0rT9yL2kH5jF7dS4aE+gU/iO1eRtY="
)

var testNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// auditRec is one call of the AuditFunc.
type auditRec struct {
	action string
	actor  string
	from   netip.Addr
	msg    string
	err    error
}

type auditLog struct {
	mu   sync.Mutex
	recs []auditRec
}

func (a *auditLog) fn(action string, actor *gateway.Principal, from netip.Addr, msg string, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := auditRec{action: action, from: from, msg: msg, err: err}
	if actor != nil {
		r.actor = actor.Subject
	}
	a.recs = append(a.recs, r)
}

func (a *auditLog) all() []auditRec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]auditRec(nil), a.recs...)
}

// testAdmin is an admin block with one read and one write token.
func testAdmin() config.Admin {
	return config.Admin{Tokens: []config.AdminToken{
		{Name: "grafana", SHA256: config.HashAdminToken(readToken), Role: "read"},
		{Name: "ops", SHA256: config.HashAdminToken(writeToken), Role: "write"},
	}}
}

// start serves an admin server for deps on a loopback httptest server.
func start(t *testing.T, cfg config.Admin, deps Deps) (*Server, *httptest.Server) {
	t.Helper()
	if deps.Now == nil {
		deps.Now = func() time.Time { return testNow }
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts
}

// req describes one test request.
type req struct {
	method, path, token, body, ctype string
	header                           map[string]string
}

// do sends rq and returns the status, headers and body.
func do(t *testing.T, ts *httptest.Server, rq req) (int, http.Header, []byte) {
	t.Helper()
	if rq.method == "" {
		rq.method = http.MethodGet
	}
	r, err := http.NewRequest(rq.method, ts.URL+rq.path, strings.NewReader(rq.body))
	if err != nil {
		t.Fatal(err)
	}
	if rq.token != "" {
		r.Header.Set("Authorization", "Bearer "+rq.token)
	}
	if rq.ctype != "" {
		r.Header.Set("Content-Type", rq.ctype)
	}
	for k, v := range rq.header {
		if k == "Host" {
			r.Host = v
			continue
		}
		r.Header.Set(k, v)
	}
	res, err := ts.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// reasonOf returns the reason_id of a problem body, or "".
func reasonOf(t *testing.T, h http.Header, body []byte) string {
	t.Helper()
	if h.Get("Content-Type") != gateway.ProblemContentType {
		return ""
	}
	var p struct {
		ReasonID string `json:"reason_id"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	return p.ReasonID
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %q: %v", b, err)
	}
	return v
}
