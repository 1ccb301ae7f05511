package server_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestRequestSmuggling sends ambiguous and malformed HTTP/1.1 framing over a
// raw socket. Each must be refused before any stage or upstream sees it,
// with the status the standards call for, and the connection must not be
// reused for a second, smuggled request.
func TestRequestSmuggling(t *testing.T) {
	up := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /x, methods: [GET, POST], upstream: a, public: true}
`, up.URL()))
	smuggled := "GET /x?smuggled=1 HTTP/1.1\r\nHost: gw.test\r\n\r\n"
	tests := []struct {
		desc   string
		raw    string
		status []int // acceptable answers
		// forwarded, when set, allows a 200: the request was made
		// unambiguous and forwarded once; the check gets the upstream's
		// echo of it.
		forwarded func(echo string) bool
	}{
		{desc: "Content-Length and Transfer-Encoding together",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled,
			status: []int{400, 200}, forwarded: func(echo string) bool { return !strings.Contains(echo, "smuggled") }},
		{desc: "two different Content-Length values",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc" + smuggled,
			status: []int{400}},
		{desc: "Content-Length list with different values",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3, 40\r\n\r\nabc" + smuggled,
			status: []int{400}},
		{desc: "obsolete line folding (replaced by a space, RFC 9112 section 5.2)",
			raw:    "GET /x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nX-Folded: a\r\n b\r\n\r\n",
			status: []int{400, 200}, forwarded: func(echo string) bool { return strings.Contains(echo, `"X-Folded":["a b"]`) }},
		{desc: "invalid chunk size",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
			status: []int{400}},
		{desc: "chunk size overflowing 64 bits",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
			status: []int{400}},
		{desc: "unknown transfer coding",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			status: []int{501, 400}},
		{desc: "chunked not last",
			raw:    "POST /x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
			status: []int{501, 400}},
		{desc: "space before the colon",
			raw:    "GET /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length : 5\r\n\r\n",
			status: []int{400}},
		{desc: "no Host in HTTP/1.1",
			raw:    "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n",
			status: []int{400}},
		{desc: "two Host headers",
			raw:    "GET /x HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\n\r\n",
			status: []int{400}},
		{desc: "invalid Host",
			raw:    "GET /x HTTP/1.1\r\nHost: gw test\r\n\r\n",
			status: []int{400}},
		{desc: "bare LF line endings with a CR in a header value",
			raw:    "GET /x HTTP/1.1\r\nHost: gw.test\r\nX-A: a\rb\r\n\r\n",
			status: []int{400}},
		{desc: "oversized request line",
			raw:    "GET /x?" + strings.Repeat("a", 64<<10) + " HTTP/1.1\r\nHost: gw.test\r\n\r\n",
			status: []int{414, 431, 400}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			before := up.hits.Load()
			resp, body := rawRequest(t, g.addrs[0], tt.raw)
			ok := false
			for _, s := range tt.status {
				ok = ok || resp.StatusCode == s
			}
			if !ok {
				t.Errorf("status %d, want one of %v", resp.StatusCode, tt.status)
			}
			n := up.hits.Load() - before
			switch {
			case resp.StatusCode == 200 && tt.forwarded != nil:
				if n != 1 || !tt.forwarded(string(body)) {
					t.Errorf("forwarded %d requests, the upstream saw %s", n, clip(body))
				}
			case n != 0:
				t.Errorf("the upstream received %d requests for a refused one", n)
			}
			if !resp.Close {
				t.Error("the connection stays open after a framing error: a smuggled request could follow")
			}
		})
	}
}

// TestAbsoluteFormTarget: a request in absolute form names its host in the
// target; the gateway routes by that host only (RFC 9112 section 3.2.2 says
// the target's authority wins over Host), so the upstream never sees a
// request whose host differs from the one the routing decision used.
func TestAbsoluteFormTarget(t *testing.T) {
	up := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
upstreams:
  a: {targets: [%q]}
routes:
  - {host: api.test, path: /x, methods: [GET], upstream: a, public: true}
`, up.URL()))
	resp, body := rawRequest(t, g.addrs[0], "GET http://evil.test/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
	wantProblem(t, resp, body, 404, "route_not_found")
	if up.hits.Load() != 0 {
		t.Error("a request for another host was forwarded")
	}
	resp, _ = rawRequest(t, g.addrs[0], "GET http://api.test/x HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != 200 {
		t.Errorf("absolute form for the served host: %d", resp.StatusCode)
	}
}
