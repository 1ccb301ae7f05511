package admin

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

func TestHostCheck(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	tests := []struct {
		desc, host, path string
		want             int
	}{
		{"loopback IP with port", "127.0.0.1:9901", "/healthz", 200},
		{"localhost", "localhost", "/healthz", 200},
		{"localhost upper case with trailing dot", "LOCALHOST.:9901", "/healthz", 200},
		{"IPv6 loopback", "[::1]:9901", "/healthz", 200},
		{"rebound attacker name", "attacker.example:9901", "/healthz", 403},
		{"rebound name on an API endpoint", "attacker.example", "/api/v1/status", 403},
		{"empty Host", "", "/healthz", 403},
		{"suffix of an allowed name", "evil-localhost", "/healthz", 403},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			// An explicit empty Host is sent by setting URL.Host only; use a
			// raw value otherwise.
			code, h, b := do(t, ts, req{path: tt.path, header: map[string]string{"Host": tt.host}})
			if tt.host == "" {
				code, h, b = rawHost(t, ts.Listener.Addr().String(), tt.path)
			}
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			if tt.want == 403 {
				if got := reasonOf(t, h, b); got != ReasonHostNotAllowed {
					t.Errorf("reason %q, want %q", got, ReasonHostNotAllowed)
				}
			}
		})
	}
}

func TestAllowedHostsConfigured(t *testing.T) {
	cfg := testAdmin()
	cfg.AllowedHosts = []string{"moat-admin.internal"}
	_, ts := start(t, cfg, Deps{})
	if code, _, _ := do(t, ts, req{path: "/healthz", header: map[string]string{"Host": "moat-admin.internal:9901"}}); code != 200 {
		t.Errorf("configured host: status %d, want 200", code)
	}
	if code, _, _ := do(t, ts, req{path: "/healthz", header: map[string]string{"Host": "127.0.0.1"}}); code != 403 {
		t.Errorf("loopback IP not in allowed_hosts: status %d, want 403", code)
	}
}

func TestOriginCheck(t *testing.T) {
	st := newFakeConfig()
	_, ts := start(t, testAdmin(), Deps{Config: st.get, Reload: st.reload, Keys: openStore(t)})
	same := ts.URL // http://127.0.0.1:port
	tests := []struct {
		desc, method, path string
		header             map[string]string
		want               int
	}{
		{"foreign Origin on POST", "POST", "/api/v1/keys", map[string]string{"Origin": "http://evil.example"}, 403},
		{"foreign Origin on PUT", "PUT", "/api/v1/config", map[string]string{"Origin": "http://evil.example", "If-Match": `"x"`}, 403},
		{"null Origin", "POST", "/api/v1/keys", map[string]string{"Origin": "null"}, 403},
		{"allowed host, other port", "POST", "/api/v1/keys", map[string]string{"Origin": "http://127.0.0.1:1"}, 403},
		{"allowed host, other scheme", "POST", "/api/v1/keys", map[string]string{"Origin": strings.Replace(same, "http:", "https:", 1)}, 403},
		{"cross-site fetch without Origin", "POST", "/api/v1/keys", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", "POST", "/api/v1/keys", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"same origin passes", "POST", "/api/v1/keys", map[string]string{"Origin": same, "Sec-Fetch-Site": "same-origin"}, 201},
		{"no Origin (curl) passes", "POST", "/api/v1/keys", nil, 201},
		{"foreign Origin on GET is not CSRF", "GET", "/api/v1/keys", map[string]string{"Origin": "http://evil.example"}, 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			rq := req{method: tt.method, path: tt.path, token: writeToken, header: tt.header}
			if tt.method == "POST" {
				rq.body, rq.ctype = `{"subject":"alice"}`, "application/json"
			}
			if tt.method == "PUT" {
				rq.body, rq.ctype = "listeners: []\n", "application/yaml"
			}
			code, h, b := do(t, ts, rq)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			if tt.want == 403 && reasonOf(t, h, b) != ReasonOriginNotAllowed {
				t.Errorf("reason %q, want %q", reasonOf(t, h, b), ReasonOriginNotAllowed)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	st := newFakeConfig()
	var al auditLog
	_, ts := start(t, testAdmin(), Deps{Config: st.get, Reload: st.reload, Status: func() Status { return Status{} }, Audit: al.fn})
	tests := []struct {
		desc, method, path, auth string
		want                     int
		reason                   string
	}{
		{"no token", "GET", "/api/v1/status", "", 401, ReasonUnauthenticated},
		{"wrong token", "GET", "/api/v1/status", "Bearer " + strings.Repeat("x", 44), 401, ReasonUnauthenticated},
		{"token hash instead of token", "GET", "/api/v1/status", "Bearer " + config.HashAdminToken(readToken), 401, ReasonUnauthenticated},
		{"basic scheme", "GET", "/api/v1/status", "Basic " + readToken, 401, ReasonUnauthenticated},
		{"empty bearer", "GET", "/api/v1/status", "Bearer ", 401, ReasonUnauthenticated},
		{"oversized token", "GET", "/api/v1/status", "Bearer " + strings.Repeat("a", 2000), 401, ReasonUnauthenticated},
		{"read token on GET", "GET", "/api/v1/status", "Bearer " + readToken, 200, ""},
		{"scheme is case-insensitive", "GET", "/api/v1/status", "bearer " + readToken, 200, ""},
		{"read token on a write endpoint", "PUT", "/api/v1/config", "Bearer " + readToken, 403, ReasonForbidden},
		{"read token cannot create keys", "POST", "/api/v1/keys", "Bearer " + readToken, 403, ReasonForbidden},
		{"write token on GET", "GET", "/api/v1/config", "Bearer " + writeToken, 200, ""},
		{"metrics need a token", "GET", "/metrics", "", 401, ReasonUnauthenticated},
		{"healthz needs none", "GET", "/healthz", "", 200, ""},
		{"readyz needs none", "GET", "/readyz", "", 200, ""},
		{"unknown path", "GET", "/api/v1/nope", "Bearer " + readToken, 404, ReasonNotFound},
		{"wrong method", "DELETE", "/api/v1/status", "Bearer " + writeToken, 405, ReasonMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, h, b := do(t, ts, req{method: tt.method, path: tt.path, header: map[string]string{"Authorization": tt.auth}})
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			if got := reasonOf(t, h, b); got != tt.reason {
				t.Errorf("reason %q, want %q", got, tt.reason)
			}
			if code == 401 && h.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q, want no-store", h.Get("Cache-Control"))
			}
		})
	}
	var fails, forbidden int
	for _, r := range al.all() {
		switch r.action {
		case "admin_auth_failure":
			fails++
			if r.actor != "" || r.err == nil || !r.from.IsLoopback() {
				t.Errorf("auth failure audit %+v: want no actor, an error and the loopback client", r)
			}
		case "admin_forbidden":
			forbidden++
			if r.actor != "grafana" {
				t.Errorf("forbidden audit actor %q, want grafana", r.actor)
			}
		}
	}
	if fails != 7 || forbidden != 2 {
		t.Errorf("audited %d auth failures and %d refusals, want 7 and 2", fails, forbidden)
	}
}

func TestMethodNotAllowedListsAllow(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	code, h, _ := do(t, ts, req{method: "PATCH", path: "/api/v1/config", token: writeToken})
	if code != 405 || h.Get("Allow") != "GET, PUT" {
		t.Errorf("status %d Allow %q, want 405 and GET, PUT", code, h.Get("Allow"))
	}
}

func TestStatus(t *testing.T) {
	started := testNow.Add(-90 * time.Minute)
	_, ts := start(t, testAdmin(), Deps{Version: "1.2.3", Status: func() Status {
		return Status{StartedAt: started, ConfigHash: "abc", Routes: 3, InFlight: 2, Reloads: ReloadCounters{Succeeded: 4, Failed: 1, LastResult: "failure"}}
	}})
	code, _, b := do(t, ts, req{path: "/api/v1/status", token: readToken})
	if code != 200 {
		t.Fatalf("status %d: %s", code, b)
	}
	got := decode[Status](t, b)
	if got.Version != "1.2.3" || got.Uptime != "1h30m0s" || got.Routes != 3 || got.InFlight != 2 || got.ConfigHash != "abc" ||
		got.Reloads.Succeeded != 4 || got.Reloads.Failed != 1 {
		t.Errorf("status %+v", got)
	}
}

func TestRoutes(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{Routes: func() []RoutePosture {
		return []RoutePosture{{Name: "books", Path: "/books/{id}", Authn: []string{"keys"}, Limits: []string{"per-key"}, WAF: "block", Masking: true}}
	}})
	code, _, b := do(t, ts, req{path: "/api/v1/routes", token: readToken})
	if code != 200 {
		t.Fatalf("status %d: %s", code, b)
	}
	got := decode[struct{ Routes []RoutePosture }](t, b)
	if len(got.Routes) != 1 || got.Routes[0].Name != "books" || got.Routes[0].WAF != "block" || !got.Routes[0].Masking {
		t.Errorf("routes %+v", got.Routes)
	}
}

func TestNotWired(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	for _, p := range []struct{ method, path string }{
		{"GET", "/api/v1/status"}, {"GET", "/api/v1/config"}, {"GET", "/api/v1/routes"}, {"GET", "/api/v1/keys"},
		{"POST", "/api/v1/keys"}, {"POST", "/api/v1/keys/AAAAAAAA/revoke"},
	} {
		code, h, b := do(t, ts, req{method: p.method, path: p.path, token: writeToken, ctype: "application/json", body: "{}"})
		if code != 501 || reasonOf(t, h, b) != ReasonNotAvailable {
			t.Errorf("%s %s: status %d %s, want 501 %s", p.method, p.path, code, b, ReasonNotAvailable)
		}
	}
	if code, _, _ := do(t, ts, req{path: "/metrics", token: readToken}); code != 404 {
		t.Errorf("/metrics without a handler: status %d, want 404", code)
	}
}

func TestOpenAPIServed(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	code, h, b := do(t, ts, req{path: "/api/v1/openapi.json", token: readToken})
	if code != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", code, h.Get("Content-Type"))
	}
	doc := decode[struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}](t, b)
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	// Every endpoint the server routes is documented, and nothing else.
	s, _ := New(testAdmin(), Deps{})
	seen := map[string]bool{}
	for _, e := range s.endpoints() {
		ops, ok := doc.Paths[e.path]
		if !ok || ops[strings.ToLower(e.method)] == nil {
			t.Errorf("%s %s is not in openapi.json", e.method, e.path)
		}
		seen[e.method+" "+e.path] = true
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m != "parameters" && !seen[strings.ToUpper(m)+" "+p] {
				t.Errorf("openapi.json documents %s %s, which is not served", m, p)
			}
		}
	}
}

func TestReadyz(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	tests := []struct {
		desc   string
		checks []ReadyCheck
		config func() ([]byte, string)
		want   int
		failed []string
	}{
		{"no checks", nil, nil, 200, nil},
		{"passing check", []ReadyCheck{{"redis", func(context.Context) error { return nil }}}, nil, 200, nil},
		{"failing check", []ReadyCheck{{"redis", func(context.Context) error { return errors.New("dial tcp: connection refused") }}}, nil, 503, []string{"redis"}},
		{"check past the timeout", []ReadyCheck{{"slow", func(context.Context) error { <-release; return nil }}}, nil, 503, []string{"slow"}},
		{"panicking check", []ReadyCheck{{"bad", func(context.Context) error { panic("boom") }}}, nil, 503, []string{"bad"}},
		{"no configuration", nil, func() ([]byte, string) { return nil, "" }, 503, []string{"config"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := testAdmin()
			cfg.ReadinessTimeout = config.Duration(50 * time.Millisecond)
			_, ts := start(t, cfg, Deps{Ready: tt.checks, Config: tt.config})
			code, _, b := do(t, ts, req{path: "/readyz"})
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, b)
			}
			got := decode[struct {
				Status string
				Checks []CheckResult
			}](t, b)
			var failed []string
			for _, c := range got.Checks {
				if !c.OK {
					failed = append(failed, c.Name)
					if c.Error == "" {
						t.Errorf("check %s failed without an error", c.Name)
					}
				}
			}
			if strings.Join(failed, ",") != strings.Join(tt.failed, ",") {
				t.Errorf("failed checks %v, want %v", failed, tt.failed)
			}
		})
	}
}

func TestListenAndServeShutdown(t *testing.T) {
	cfg := testAdmin()
	cfg.Address = "127.0.0.1:0"
	s, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var serveErr error
	wg.Add(1)
	go func() { defer wg.Done(); serveErr = s.ListenAndServe(ctx) }()
	cancel()
	wg.Wait()
	if serveErr != nil {
		t.Errorf("ListenAndServe after cancel: %v", serveErr)
	}
}

func TestNewRefusesInvalidConfig(t *testing.T) {
	cfg := testAdmin()
	cfg.Tokens[0].SHA256 = readToken // the token, not its hash
	_, err := New(cfg, Deps{})
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.Contains(ce.Error(), "admin.tokens[0].sha256") {
		t.Fatalf("New: %v, want a config.Error naming admin.tokens[0].sha256", err)
	}
}

func TestResponsesNeverCacheable(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	_, h, _ := do(t, ts, req{path: "/healthz"})
	for k, want := range map[string]string{"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if h.Get(k) != want {
			t.Errorf("%s %q, want %q", k, h.Get(k), want)
		}
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", h.Get("Content-Security-Policy"))
	}
}

// rawHost sends a request with an empty Host header.
func rawHost(t *testing.T, addr, path string) (int, http.Header, []byte) {
	t.Helper()
	s, _ := New(testAdmin(), Deps{})
	rec := newRecorder()
	r, _ := http.NewRequest("GET", "http://"+addr+path, nil)
	r.Host = ""
	r.RemoteAddr = "127.0.0.1:5000"
	s.ServeHTTP(rec, r)
	return rec.Code, rec.Header(), rec.Body.Bytes()
}

// TestOpenAPICheckedIn keeps docs/admin.openapi.json identical to the
// document the server embeds and serves.
func TestOpenAPICheckedIn(t *testing.T) {
	b, err := os.ReadFile("../../docs/admin.openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, openapiDoc) {
		t.Error("docs/admin.openapi.json differs from internal/admin/openapi.json: copy one over the other")
	}
}
