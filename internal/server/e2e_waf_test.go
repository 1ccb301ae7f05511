package server_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestWAFFromConfig checks the WAF's wiring: an injection in the query or a
// JSON body is refused with 403 waf_blocked and never reaches the upstream;
// a benign request passes; a route without the waf block is not inspected.
func TestWAFFromConfig(t *testing.T) {
	up := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /search, methods: [GET, POST], upstream: a, public: true, waf: {paranoia_level: 1}}
  - {path: /plain, methods: [GET], upstream: a, public: true}
`, up.URL()))
	sqli := url.QueryEscape("1' UNION SELECT username, password FROM users--")
	tests := []struct {
		desc, method, path, body string
		status                   int
	}{
		{desc: "benign search", method: "GET", path: "/search?q=" + url.QueryEscape("O'Brien's guide to APIs"), status: 200},
		{desc: "sql injection in the query", method: "GET", path: "/search?q=" + sqli, status: 403},
		{desc: "xss in a json body", method: "POST", path: "/search", body: `{"q":"<script>alert(document.cookie)</script>"}`, status: 403},
		{desc: "no waf on this route", method: "GET", path: "/plain?q=" + sqli, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			before := up.hits.Load()
			req := newRequest(t, tt.method, g.url()+tt.path, nil)
			if tt.body != "" {
				req = newRequest(t, tt.method, g.url()+tt.path, strings.NewReader(tt.body), "Content-Type", "application/json")
			}
			resp, body := g.do(t, req)
			if tt.status == 403 {
				wantProblem(t, resp, body, 403, "waf_blocked")
				if up.hits.Load() != before {
					t.Error("a blocked request reached the upstream")
				}
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, clip(body))
			}
		})
	}
}
