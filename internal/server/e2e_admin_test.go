package server_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestAdminListener runs a gateway with its admin listener: health and
// metrics reflect the traffic, a denial shows in recent events, the routes
// list their protections, and a configuration PUT with the right ETag is
// applied and written to the file, while a stale ETag gets 412. The admin
// API is never served on the traffic listener.
func TestAdminListener(t *testing.T) {
	const token = "test-admin-token-0123456789abcdefghijklmnop"
	sum := sha256.Sum256([]byte(token))
	up := newUpstream(t, "a")
	doc := `
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
admin:
  address: 127.0.0.1:0
  tokens: [{name: ops, sha256: %s, role: write}]
upstreams:
  a: {targets: [%q]}
routes:
  - {name: open, path: /open, methods: [GET], upstream: a, public: true}
%s`
	g := startGateway(t, fmt.Sprintf(doc, hex.EncodeToString(sum[:]), up.URL(), ""))
	base := "http://" + g.srv.AdminAddr()
	call := func(method, path, body string, header ...string) (*http.Response, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req := newRequest(t, method, base+path, rd, append([]string{"Authorization", "Bearer " + token}, header...)...)
		resp, b := send(t, g.client, req)
		return resp, string(b)
	}

	if resp, _ := g.get(t, "/open"); resp.StatusCode != 200 {
		t.Fatalf("traffic: %d", resp.StatusCode)
	}
	g.get(t, "/nowhere") // a denial: route_not_found
	if resp, _ := g.get(t, "/api/v1/status"); resp.StatusCode != 404 {
		t.Errorf("the admin API answered on the traffic listener: %d", resp.StatusCode)
	}

	if resp, _ := call("GET", "/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("/healthz %d", resp.StatusCode)
	}
	req := newRequest(t, "GET", base+"/api/v1/status", nil)
	if resp, _ := send(t, g.client, req); resp.StatusCode != 401 {
		t.Errorf("status without a token: %d", resp.StatusCode)
	}
	resp, body := call("GET", "/metrics", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `moat_requests_total{reason="none",route="open",status="2xx"} 1`) {
		t.Errorf("metrics %d:\n%s", resp.StatusCode, grepLines(body, "moat_requests_total"))
	}
	resp, body = call("GET", "/api/v1/events?reason=route_not_found", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "route_not_found") {
		t.Errorf("events %d: %s", resp.StatusCode, body)
	}
	resp, body = call("GET", "/api/v1/routes", "")
	if resp.StatusCode != 200 || !strings.Contains(body, "public route without a rate limit") {
		t.Errorf("routes %d: %s", resp.StatusCode, body)
	}

	resp, _ = call("GET", "/api/v1/config", "")
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || etag == "" {
		t.Fatalf("config %d, ETag %q", resp.StatusCode, etag)
	}
	next := fmt.Sprintf(doc, hex.EncodeToString(sum[:]), up.URL(), "  - {name: added, path: /added, methods: [GET], upstream: a, public: true}\n")
	if resp, body := call("PUT", "/api/v1/config", next, "Content-Type", "application/yaml", "If-Match", `"stale"`); resp.StatusCode != 412 {
		t.Errorf("stale ETag: %d %s", resp.StatusCode, body)
	}
	if resp, body := call("PUT", "/api/v1/config", next, "Content-Type", "application/yaml", "If-Match", etag); resp.StatusCode/100 != 2 {
		t.Fatalf("PUT config: %d %s", resp.StatusCode, body)
	}
	if resp, _ := g.get(t, "/added"); resp.StatusCode != 200 {
		t.Errorf("the new route does not serve: %d", resp.StatusCode)
	}
	if saved, _ := os.ReadFile(g.path); string(saved) != next {
		t.Error("the applied configuration was not written to the file")
	}
	var st struct {
		Reloads struct{ Succeeded int }
		Routes  int
	}
	_, body = call("GET", "/api/v1/status", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.Reloads.Succeeded != 1 || st.Routes != 2 {
		t.Errorf("status after the PUT: %s", body)
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
