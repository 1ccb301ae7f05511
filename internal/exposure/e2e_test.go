package exposure_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/router"
)

type loopback struct{}

func (loopback) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("127.0.0.1")
	return a, a, false
}

const leakyTrace = "org.postgresql.util.PSQLException: ERROR: relation \"users\" does not exist\n\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2675)\n\tat /opt/app/lib/db.jar\n"

// backend is the upstream of the end-to-end tests: every path answers as
// its name says, with the headers a careless framework sends.
func backend(t *testing.T, hits *atomic.Int64, redirectTo ...string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h := w.Header()
		h.Set("Server", "Apache-Coyote/1.1")
		h.Set("X-Powered-By", "Servlet/3.0 JSP/2.2")
		h.Set("X-Debug-Token", "a1b2c3")
		h.Set("X-Debug-Token-Link", "http://10.0.0.7/_profiler/a1b2c3")
		h.Set("X-Internal-Shard", "db-eu-3")
		h.Set("Via", "1.1 varnish")
		switch r.URL.Path {
		case "/crash":
			h.Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, leakyTrace+"contact ops@example.com token sk_live_4eC39HqLyjWDarjtT1zdp7dc\n")
		case "/ok":
			h.Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":1}`)
		case "/moved":
			h.Set("Location", strings.Join(redirectTo, ""))
			w.WriteHeader(http.StatusFound)
			io.WriteString(w, "moved")
		case "/missing":
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"no such order"}`)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// newGateway builds a gateway with one route, /{p}, forwarding to target
// with the response stages as the pipeline orders them.
func newGateway(t *testing.T, target string, safe *config.SafeErrors, findings chan<- map[string]any) *gateway.Gateway {
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
	se, err := exposure.NewSafeErrors(safe)
	if err != nil {
		t.Fatal(err)
	}
	uh, err := exposure.NewUpstreamHeaders(&config.UpstreamHeaders{Remove: []string{"X-Internal-*"}})
	if err != nil {
		t.Fatal(err)
	}
	sh, err := exposure.NewHeaders(config.SecurityHeaders{})
	if err != nil {
		t.Fatal(err)
	}
	route := &gateway.Route{Name: "r", Template: "/{p}", MaxBody: 1 << 10,
		Response: []gateway.ResponseStage{se, uh, sh}}
	route.Upstream = up.ForRoute(proxy.RouteOptions{ResponseStages: route.Response})
	rb := router.NewBuilder[*gateway.Route]()
	if err := rb.Add("", []string{"GET", "HEAD"}, "/{p}", route); err != nil {
		t.Fatal(err)
	}
	return gateway.New(gateway.Options{Router: rb.Build(), ClientIP: loopback{}, Log: slog.New(slog.DiscardHandler),
		OnFinish: func(ex *gateway.Exchange) {
			if findings != nil {
				findings <- ex.Findings
			}
		}})
}

func serve(g http.Handler, path string) *http.Response {
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://gw.test"+path, nil))
	return rec.Result()
}

var leaky = []string{"Server", "X-Powered-By", "X-Debug-Token", "X-Debug-Token-Link", "X-Internal-Shard"}

// TestUpstreamStackTraceNeverReachesClient is issue 6's end-to-end check:
// an upstream 500 with a stack trace and identifying headers reaches the
// client as a problem document with none of them.
func TestUpstreamStackTraceNeverReachesClient(t *testing.T) {
	var hits atomic.Int64
	g := newGateway(t, backend(t, &hits).URL, nil, nil)
	res := serve(g, "/crash")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status = %d, want 500", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != gateway.ProblemContentType {
		t.Errorf("content type = %q", ct)
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("body is not a problem document: %q", body)
	}
	if doc["reason_id"] != exposure.ReasonUpstreamError || doc["status"] != float64(500) {
		t.Errorf("problem = %v", doc)
	}
	for _, leak := range []string{"PSQLException", "QueryExecutorImpl", "/opt/app", "relation", "example.com"} {
		if strings.Contains(string(body), leak) {
			t.Errorf("body leaks %q: %s", leak, body)
		}
	}
	for _, h := range leaky {
		if v := res.Header.Get(h); v != "" {
			t.Errorf("%s: %s reached the client", h, v)
		}
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("security headers missing on the replaced error")
	}
}

// TestLeakyHeadersRemovedFromSuccess checks the header removal on a normal
// response, which is passed through otherwise unchanged; Via stays.
func TestLeakyHeadersRemovedFromSuccess(t *testing.T) {
	var hits atomic.Int64
	g := newGateway(t, backend(t, &hits).URL, nil, nil)
	res := serve(g, "/ok")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != `{"id":1}` {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
	for _, h := range leaky {
		if v := res.Header.Get(h); v != "" {
			t.Errorf("%s: %s reached the client", h, v)
		}
	}
	if res.Header.Get("Via") != "1.1 varnish" {
		t.Errorf("Via = %q, want it kept", res.Header.Get("Via"))
	}
}

// TestUpstream4xxPassesThrough pins the default: 4xx bodies are the API's
// own error messages and reach the client unchanged.
func TestUpstream4xxPassesThrough(t *testing.T) {
	var hits atomic.Int64
	g := newGateway(t, backend(t, &hits).URL, nil, nil)
	res := serve(g, "/missing")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 404 || string(body) != `{"error":"no such order"}` {
		t.Fatalf("got %d %q", res.StatusCode, body)
	}
}

// TestKeepInAuditStoresMaskedBody checks that keep_in_audit hands the audit
// event (through the finish hook) the body with secrets masked, while the
// client still gets the problem document only.
func TestKeepInAuditStoresMaskedBody(t *testing.T) {
	var hits atomic.Int64
	findings := make(chan map[string]any, 1)
	g := newGateway(t, backend(t, &hits).URL, &config.SafeErrors{KeepInAudit: true}, findings)
	res := serve(g, "/crash")
	body, _ := io.ReadAll(res.Body)
	if strings.Contains(string(body), "PSQLException") {
		t.Fatalf("client got the trace: %s", body)
	}
	var f map[string]any
	select {
	case f = <-findings:
	case <-time.After(5 * time.Second):
		t.Fatal("no finish hook call")
	}
	kept, _ := f[exposure.FindingUpstreamErrorBody].(string)
	if !strings.Contains(kept, "PSQLException") {
		t.Errorf("audit copy lacks the error text: %q", kept)
	}
	for _, secret := range []string{"ops@example.com", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"} {
		if strings.Contains(kept, secret) {
			t.Errorf("audit copy holds %q unmasked: %q", secret, kept)
		}
	}
	if !strings.Contains(kept, "[REDACTED:email]") || !strings.Contains(kept, "[REDACTED:stripe_key]") {
		t.Errorf("audit copy not masked as expected: %q", kept)
	}
}

// TestUpstreamRedirectNotFollowed proves the gateway passes an upstream's
// redirect to the client unchanged and never follows it itself: exactly
// one upstream request, Location and status as the upstream sent them.
func TestUpstreamRedirectNotFollowed(t *testing.T) {
	var hits, elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	g := newGateway(t, backend(t, &hits, other.URL+"/new-home").URL, nil, nil)
	res := serve(g, "/moved")
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusFound {
		t.Fatalf("status = %d, want 302", res.StatusCode)
	}
	if loc := res.Header.Get("Location"); loc != other.URL+"/new-home" {
		t.Errorf("Location = %q", loc)
	}
	if string(body) != "moved" {
		t.Errorf("body = %q", body)
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("upstream requests = %d, want 1", n)
	}
	if elsewhere.Load() != 0 {
		t.Error("a redirect target was contacted")
	}
}

// TestSafeErrorsConcurrent runs replaced and passed responses in parallel
// under the race detector.
func TestSafeErrorsConcurrent(t *testing.T) {
	var hits atomic.Int64
	findings := make(chan map[string]any, 64)
	g := newGateway(t, backend(t, &hits).URL, &config.SafeErrors{KeepInAudit: true}, findings)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, want := "/ok", 200
			if i%2 == 0 {
				path, want = "/crash", 500
			}
			if res := serve(g, path); res.StatusCode != want {
				t.Errorf("%s: status %d, want %d", path, res.StatusCode, want)
			}
		}()
	}
	wg.Wait()
	close(findings)
	kept := 0
	for f := range findings {
		if _, ok := f[exposure.FindingUpstreamErrorBody]; ok {
			kept++
		}
	}
	if kept != 16 {
		t.Errorf("audit copies = %d, want 16", kept)
	}
}
