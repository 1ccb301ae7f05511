package server_test

// End-to-end tests: the real gateway (server.New and Server.Run) on loopback
// listeners in front of httptest upstreams, driven over real sockets.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// routingConfig serves upstream a under several templates and upstream b,
// at the base path /v2, for one host only.
const routingConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  a:
    targets: [%[1]s]
  b:
    targets: [%[2]s/v2]
routes:
  - {name: books, path: /books, methods: [GET, POST], upstream: a, public: true}
  - {name: book, path: "/books/{id}", methods: [GET, PUT], upstream: a, public: true}
  - {name: files, path: "/files/{rest...}", methods: [GET], upstream: a, public: true}
  - name: api
    path: "/api/v1/{rest...}"
    methods: [GET]
    upstream: a
    public: true
    rewrite: {strip_prefix: /api/v1, add_prefix: /internal}
  - {name: host-books, host: api.example.com, path: /books, methods: [GET], upstream: b, public: true}
`

func TestRouting(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	g := startGateway(t, fmt.Sprintf(routingConfig, a.URL(), b.URL()))

	t.Run("proxied", func(t *testing.T) {
		tests := []struct {
			desc, method, path, host string
			wantUpstream, wantURI    string
		}{
			{desc: "exact route", method: "GET", path: "/books", wantUpstream: "a", wantURI: "/books"},
			{desc: "exact route, second method", method: "POST", path: "/books", wantUpstream: "a", wantURI: "/books"},
			{desc: "query string kept", method: "GET", path: "/books?sort=title&x=%2F", wantUpstream: "a", wantURI: "/books?sort=title&x=%2F"},
			{desc: "param route", method: "GET", path: "/books/42", wantUpstream: "a", wantURI: "/books/42"},
			{desc: "param route, escaped character kept", method: "PUT", path: "/books/a%20b", wantUpstream: "a", wantURI: "/books/a%20b"},
			{desc: "catch-all route", method: "GET", path: "/files/a/b/c.txt", wantUpstream: "a", wantURI: "/files/a/b/c.txt"},
			{desc: "catch-all route, empty rest", method: "GET", path: "/files/", wantUpstream: "a", wantURI: "/files/"},
			{desc: "strip_prefix and add_prefix", method: "GET", path: "/api/v1/users/7", wantUpstream: "a", wantURI: "/internal/users/7"},
			{desc: "host route, under the target's base path", method: "GET", path: "/books", host: "api.example.com", wantUpstream: "b", wantURI: "/v2/books"},
			{desc: "host route, host with port", method: "GET", path: "/books", host: "api.example.com:8443", wantUpstream: "b", wantURI: "/v2/books"},
			{desc: "other host falls back to any-host route", method: "GET", path: "/books", host: "www.example.com", wantUpstream: "a", wantURI: "/books"},
			{desc: "host route does not serve other paths", method: "GET", path: "/books/1", host: "api.example.com", wantUpstream: "a", wantURI: "/books/1"},
		}
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				var hdr []string
				if tt.host != "" {
					hdr = []string{"Host", tt.host}
				}
				resp, body := g.do(t, newRequest(t, tt.method, g.url()+tt.path, nil, hdr...))
				e := decodeEcho(t, resp, body)
				if e.Upstream != tt.wantUpstream || e.URI != tt.wantURI || e.Method != tt.method {
					t.Errorf("upstream %s got %s %s, want upstream %s, %s %s", e.Upstream, e.Method, e.URI, tt.wantUpstream, tt.method, tt.wantURI)
				}
			})
		}
	})

	t.Run("HEAD served by GET route", func(t *testing.T) {
		resp, body := g.do(t, newRequest(t, http.MethodHead, g.url()+"/books", nil))
		if resp.StatusCode != http.StatusOK || len(body) != 0 {
			t.Errorf("HEAD /books: status %d, body %q; want 200 and no body", resp.StatusCode, clip(body))
		}
	})

	t.Run("denied", func(t *testing.T) {
		tests := []struct {
			desc, method, path string
			wantStatus         int
			wantReason         string
			wantAllow          string
		}{
			{desc: "unknown path", method: "GET", path: "/nope", wantStatus: 404, wantReason: "route_not_found"},
			{desc: "unknown path under a route", method: "GET", path: "/books/1/2", wantStatus: 404, wantReason: "route_not_found"},
			{desc: "catch-all needs its slash", method: "GET", path: "/files", wantStatus: 404, wantReason: "route_not_found"},
			{desc: "undeclared method", method: "DELETE", path: "/books", wantStatus: 405, wantReason: "method_not_allowed", wantAllow: "GET, HEAD, POST"},
			{desc: "undeclared method on param route", method: "POST", path: "/books/1", wantStatus: 405, wantReason: "method_not_allowed", wantAllow: "GET, HEAD, PUT"},
			{desc: "TRACE on a route", method: "TRACE", path: "/books", wantStatus: 405, wantReason: "method_not_allowed", wantAllow: "GET, HEAD, POST"},
			{desc: "TRACE anywhere", method: "TRACE", path: "/nope", wantStatus: 405, wantReason: "method_not_allowed"},
		}
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				before := a.hits.Load() + b.hits.Load()
				resp, body := g.do(t, newRequest(t, tt.method, g.url()+tt.path, nil))
				wantProblem(t, resp, body, tt.wantStatus, tt.wantReason)
				if got := resp.Header.Get("Allow"); got != tt.wantAllow {
					t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
				}
				if n := a.hits.Load() + b.hits.Load(); n != before {
					t.Errorf("the request reached an upstream")
				}
			})
		}
	})

	t.Run("invalid path", func(t *testing.T) {
		// Sent as raw bytes: client libraries clean such targets up.
		tests := []struct{ desc, target string }{
			{desc: "dot-dot segment", target: "/a/../b"},
			{desc: "dot-dot segment climbing out of a route", target: "/books/../admin"},
			{desc: "dot segment", target: "/./books"},
			{desc: "trailing dot-dot", target: "/books/.."},
			{desc: "encoded dot-dot segment", target: "/books/%2e%2E/admin"},
			{desc: "empty segment", target: "/a//b"},
			{desc: "empty segment in a route", target: "/files//etc/passwd"},
			{desc: "encoded slash", target: "/books/1%2F2"},
			{desc: "encoded slash, lower case", target: "/books/1%2f2"},
			{desc: "encoded backslash", target: "/books/1%5C2"},
			{desc: "encoded NUL", target: "/books/1%002"},
			{desc: "backslash", target: `/books\1`},
		}
		for _, tt := range tests {
			t.Run(tt.desc, func(t *testing.T) {
				before := a.hits.Load() + b.hits.Load()
				resp, body := rawRequest(t, g.addrs[0], "GET "+tt.target+" HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
				wantProblem(t, resp, body, 400, "invalid_path")
				if n := a.hits.Load() + b.hits.Load(); n != before {
					t.Errorf("the request reached an upstream")
				}
			})
		}
	})
}

const limitsConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
  max_body: 64KiB
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: upload, path: /upload, methods: [POST], upstream: a, public: true, max_body: 1KiB}
  - {name: big, path: /big, methods: [POST], upstream: a, public: true}
`

// hideLength hides the length of a reader from http.NewRequest so that the
// body is sent chunked.
type hideLength struct{ io.Reader }

func TestBodyLimits(t *testing.T) {
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(limitsConfig, a.URL()))

	tests := []struct {
		desc    string
		path    string
		size    int
		chunked bool
		want    int // 200 or 413
	}{
		{desc: "content-length under the cap", path: "/upload", size: 512, want: 200},
		{desc: "content-length at the cap", path: "/upload", size: 1024, want: 200},
		{desc: "content-length one over the cap", path: "/upload", size: 1025, want: 413},
		{desc: "content-length far over the cap", path: "/upload", size: 200 << 10, want: 413},
		{desc: "chunked under the cap", path: "/upload", size: 700, chunked: true, want: 200},
		{desc: "chunked at the cap", path: "/upload", size: 1024, chunked: true, want: 200},
		{desc: "chunked one over the cap", path: "/upload", size: 1025, chunked: true, want: 413},
		{desc: "chunked far over the cap", path: "/upload", size: 32 << 10, chunked: true, want: 413},
		{desc: "server.max_body applies without a route cap", path: "/big", size: 64 << 10, chunked: true, want: 200},
		{desc: "server.max_body refuses more", path: "/big", size: 64<<10 + 1, want: 413},
		{desc: "empty body", path: "/upload", size: 0, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			payload := bytes.Repeat([]byte("0123456789abcdef"), tt.size/16+1)[:tt.size]
			var body io.Reader = bytes.NewReader(payload)
			if tt.chunked {
				body = hideLength{body}
			}
			req := newRequest(t, http.MethodPost, g.url()+tt.path, body, "Content-Type", "application/octet-stream", "X-Test-Case", t.Name())
			if tt.chunked {
				req.ContentLength = -1
			}
			resp, rbody := g.do(t, req)
			if tt.want == 413 {
				wantProblem(t, resp, rbody, 413, "body_too_large")
				// A streamed body reaches the upstream until the cap trips;
				// the upstream must never get all of it.
				reached, complete := a.saw(t.Name())
				if !tt.chunked && reached {
					t.Errorf("a body whose Content-Length is over the cap reached the upstream")
				}
				if complete {
					t.Errorf("the upstream read a complete body over the cap")
				}
				return
			}
			e := decodeEcho(t, resp, rbody)
			if e.BodyLen != tt.size || e.BodySHA != digest(payload) {
				t.Errorf("upstream got %d bytes with SHA-256 %s, want %d bytes with %s", e.BodyLen, e.BodySHA, tt.size, digest(payload))
			}
		})
	}
}

const headerLimitConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
  max_header_bytes: %[2]s
listeners:
  - address: 127.0.0.1:0
  - address: 127.0.0.1:0
    tls: {cert_file: %[3]s, key_file: %[4]s}
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`

// TestHeaderLimit pins server.max_header_bytes to the byte: the request line
// plus headers may be that large and no larger, on HTTP/1.1 and HTTP/2 alike.
// net/http alone allows 4 KiB more on HTTP/1.1 and advertises about 3.7 KiB
// less to HTTP/2 clients when MaxHeaderBytes is lowered to compensate.
func TestHeaderLimit(t *testing.T) {
	a := newUpstream(t, "a")
	ca := tlstest.NewCA(t)
	certPEM, keyPEM, _ := ca.Issue(t, tlstest.Server, "gateway")
	certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), certPEM, keyPEM)
	gws := map[int]*gw{
		1 << 10: startGateway(t, fmt.Sprintf(headerLimitConfig, a.URL(), "1KiB", certFile, keyFile)),
		8 << 10: startGateway(t, fmt.Sprintf(headerLimitConfig, a.URL(), "8KiB", certFile, keyFile)),
	}
	h2 := tlsClient(t, ca.ClientConfig(nil))

	tests := []struct {
		desc  string
		limit int // server.max_header_bytes
		// size is, over HTTP/1.1, the bytes of the request line and headers,
		// blank line included; over HTTP/2, the length of an X-Pad value.
		size int
		h2   bool
		want int
	}{
		{desc: "1KiB limit, half of it", limit: 1 << 10, size: 512, want: 200},
		{desc: "1KiB limit, exactly", limit: 1 << 10, size: 1 << 10, want: 200},
		{desc: "1KiB limit, one byte over", limit: 1 << 10, size: 1<<10 + 1, want: 431},
		{desc: "1KiB limit, 3KiB", limit: 1 << 10, size: 3 << 10, want: 431},
		{desc: "8KiB limit, exactly", limit: 8 << 10, size: 8 << 10, want: 200},
		{desc: "8KiB limit, one byte over", limit: 8 << 10, size: 8<<10 + 1, want: 431},
		{desc: "8KiB limit, 64KiB", limit: 8 << 10, size: 64 << 10, want: 431},
		{desc: "1KiB limit, 800-byte header over HTTP/2", limit: 1 << 10, size: 800, h2: true, want: 200},
		{desc: "8KiB limit, 6KiB header over HTTP/2", limit: 8 << 10, size: 6 << 10, h2: true, want: 200},
		// The request line and headers count 87 bytes besides the value
		// (8237 in all), within the 8192+320 bytes net/http advertises in
		// HPACK units (8433 with 32 bytes per field): the gateway refuses it.
		{desc: "8KiB limit, just over it over HTTP/2", limit: 8 << 10, size: 8150, h2: true, want: 431},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := gws[tt.limit]
			hits := a.hits.Load()
			var resp *http.Response
			var body []byte
			if tt.h2 {
				resp, body = send(t, h2, newRequest(t, http.MethodGet, g.https(1)+"/books", nil, "X-Pad", strings.Repeat("x", tt.size)))
				if resp.ProtoMajor != 2 {
					t.Fatalf("HTTP/%d, want HTTP/2", resp.ProtoMajor)
				}
			} else {
				resp, body = rawRequest(t, g.addrs[0], rawHead(t, "GET /books HTTP/1.1", tt.size))
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.want, clip(body))
			}
			if tt.want == 431 && a.hits.Load() != hits {
				t.Errorf("a request with oversized headers reached the upstream")
			}
		})
	}
}

// rawHead returns an HTTP/1.1 request head of exactly size bytes: the request
// line, Host, Connection: close and an X-Pad header filling the rest.
func rawHead(t *testing.T, requestLine string, size int) string {
	t.Helper()
	head := requestLine + "\r\nHost: gw.test\r\nConnection: close\r\nX-Pad: "
	pad := size - len(head) - len("\r\n\r\n")
	if pad < 0 {
		t.Fatalf("rawHead: %d bytes is too small", size)
	}
	return head + strings.Repeat("x", pad) + "\r\n\r\n"
}

const corsConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - address: 127.0.0.1:0
cors:
  allow_origins: ["https://app.example.com"]
  allow_headers: [Content-Type, Authorization]
  expose_headers: [X-Request-Id]
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET, POST], upstream: a, public: true}
`

func TestCORS(t *testing.T) {
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(corsConfig, a.URL()))
	const allowed, evil = "https://app.example.com", "https://evil.example"

	tests := []struct {
		desc         string
		method       string
		header       []string
		wantStatus   int
		wantReason   string // for denials
		wantACAO     string
		wantVary     string // caches must key on what the answer depends on, denials included
		wantUpstream bool
		wantHeaders  map[string]string // further exact values; "" means absent
	}{
		{
			desc: "preflight from allowed origin", method: "OPTIONS",
			header:     []string{"Origin", allowed, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type, authorization"},
			wantStatus: 204, wantACAO: allowed, wantVary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			wantHeaders: map[string]string{
				"Access-Control-Allow-Methods":     "GET, POST, HEAD",
				"Access-Control-Allow-Headers":     "content-type, authorization",
				"Access-Control-Max-Age":           "600",
				"Access-Control-Allow-Credentials": "",
			},
		},
		{
			desc: "preflight from disallowed origin", method: "OPTIONS",
			header:     []string{"Origin", evil, "Access-Control-Request-Method", "GET"},
			wantStatus: 403, wantReason: "cors_origin_denied", wantVary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
			wantHeaders: map[string]string{"Access-Control-Allow-Methods": ""},
		},
		{
			desc: "preflight asking for a header not allowed", method: "OPTIONS",
			header:     []string{"Origin", allowed, "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "x-evil"},
			wantStatus: 403, wantReason: "cors_preflight_denied", wantVary: "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
		},
		{
			desc: "actual request from allowed origin", method: "GET",
			header:     []string{"Origin", allowed},
			wantStatus: 200, wantACAO: allowed, wantVary: "Origin", wantUpstream: true,
			wantHeaders: map[string]string{
				"Access-Control-Expose-Headers":    "X-Request-Id",
				"Access-Control-Allow-Credentials": "", // sent by the upstream, stripped
			},
		},
		{
			desc: "actual request from disallowed origin", method: "GET",
			header:     []string{"Origin", evil},
			wantStatus: 403, wantReason: "cors_origin_denied", wantVary: "Origin",
		},
		{
			desc: "same-origin request without Origin", method: "GET",
			wantStatus: 200, wantVary: "Origin", wantUpstream: true,
			wantHeaders: map[string]string{"Access-Control-Allow-Credentials": "", "Access-Control-Expose-Headers": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			hits := a.hits.Load()
			resp, body := g.do(t, newRequest(t, tt.method, g.url()+"/books", nil, tt.header...))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, clip(body))
			}
			if tt.wantReason != "" {
				if p := problem(t, resp, body); p.ReasonID != tt.wantReason {
					t.Errorf("reason_id = %q, want %q", p.ReasonID, tt.wantReason)
				}
			}
			if got := resp.Header.Values("Access-Control-Allow-Origin"); strings.Join(got, ",") != tt.wantACAO {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tt.wantACAO)
			}
			if got := strings.Join(resp.Header.Values("Vary"), ", "); got != tt.wantVary {
				t.Errorf("Vary = %q, want %q", got, tt.wantVary)
			}
			for k, want := range tt.wantHeaders {
				if got := strings.Join(resp.Header.Values(k), ", "); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if reached := a.hits.Load() != hits; reached != tt.wantUpstream {
				t.Errorf("request reached the upstream: %v, want %v", reached, tt.wantUpstream)
			}
		})
	}
}

const headersConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true, max_body: 16}
`

func TestSecurityHeaders(t *testing.T) {
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(headersConfig, a.URL()))

	hardened := map[string]string{
		"X-Content-Type-Options":    "nosniff",
		"X-Frame-Options":           "DENY",
		"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
		"Referrer-Policy":           "no-referrer",
		"Server":                    "",
		"X-Powered-By":              "",
		"Strict-Transport-Security": "", // plain listener
	}
	tests := []struct {
		desc             string
		req              func(t *testing.T) (*http.Response, []byte)
		wantStatus       int
		wantCacheControl string
	}{
		{
			desc:       "proxied response",
			req:        func(t *testing.T) (*http.Response, []byte) { return g.get(t, "/books") },
			wantStatus: 200, wantCacheControl: "no-store",
		},
		{
			desc:       "proxied response keeps the upstream's Cache-Control",
			req:        func(t *testing.T) (*http.Response, []byte) { return g.get(t, "/books?cc=public,+max-age=60") },
			wantStatus: 200, wantCacheControl: "public, max-age=60",
		},
		{
			desc:       "404 error response",
			req:        func(t *testing.T) (*http.Response, []byte) { return g.get(t, "/nope") },
			wantStatus: 404, wantCacheControl: "no-store",
		},
		{
			desc: "405 error response",
			req: func(t *testing.T) (*http.Response, []byte) {
				return g.do(t, newRequest(t, "DELETE", g.url()+"/books", nil))
			},
			wantStatus: 405, wantCacheControl: "no-store",
		},
		{
			desc: "413 error response on a route",
			req: func(t *testing.T) (*http.Response, []byte) {
				return g.do(t, newRequest(t, "GET", g.url()+"/books", strings.NewReader(strings.Repeat("x", 17))))
			},
			wantStatus: 413, wantCacheControl: "no-store",
		},
		{
			desc: "400 error response",
			req: func(t *testing.T) (*http.Response, []byte) {
				return rawRequest(t, g.addrs[0], "GET /a//b HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n")
			},
			wantStatus: 400, wantCacheControl: "no-store",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			resp, body := tt.req(t)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, clip(body))
			}
			for k, want := range hardened {
				if got := strings.Join(resp.Header.Values(k), ", "); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if got := strings.Join(resp.Header.Values("Cache-Control"), ", "); got != tt.wantCacheControl {
				t.Errorf("Cache-Control = %q, want %q", got, tt.wantCacheControl)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("no X-Request-Id on the response")
			}
		})
	}
}

const failuresConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - address: 127.0.0.1:0
upstreams:
  dead:
    targets: [http://%[1]s]
  slow:
    targets: [%[2]s]
routes:
  - {name: dead, path: /dead, methods: [GET], upstream: dead, public: true}
  - {name: slow, path: /slow, methods: [GET], upstream: slow, public: true, timeout: 200ms}
`

func TestUpstreamFailures(t *testing.T) {
	dead := closedPort(t)
	slow := newSlowUpstream(t, waitLimit)
	g := startGateway(t, fmt.Sprintf(failuresConfig, dead, slow.URL))
	_, deadPort, _ := strings.Cut(dead, ":")
	_, slowPort, _ := strings.Cut(strings.TrimPrefix(slow.URL, "http://"), ":")

	tests := []struct {
		desc       string
		path       string
		wantStatus int
		wantReason string
	}{
		{desc: "target port closed", path: "/dead", wantStatus: 502, wantReason: "upstream_unreachable"},
		{desc: "upstream slower than the route timeout", path: "/slow", wantStatus: 504, wantReason: "upstream_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			resp, body := g.get(t, tt.path)
			wantProblem(t, resp, body, tt.wantStatus, tt.wantReason)
			assertNoLeak(t, body, deadPort, slowPort)
			for k, v := range resp.Header {
				assertNoLeak(t, []byte(k+": "+strings.Join(v, ",")), deadPort, slowPort)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q on an upstream failure", got)
			}
		})
	}
}

// newSlowUpstream starts a backend that answers 200 "slow" after d, or
// gives up when the request is cancelled.
func newSlowUpstream(t *testing.T, d time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			_, _ = io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

const forwardedConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
  %[2]s
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%[1]s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`

func TestForwardedHeaders(t *testing.T) {
	a := newUpstream(t, "a")
	untrusted := startGateway(t, fmt.Sprintf(forwardedConfig, a.URL(), "trusted_proxies: []"))
	trusted := startGateway(t, fmt.Sprintf(forwardedConfig, a.URL(), "trusted_proxies: [127.0.0.1/32]"))

	spoof := []string{
		"X-Forwarded-For", "6.6.6.6",
		"Forwarded", "for=6.6.6.6;proto=https",
		"X-Real-Ip", "6.6.6.6",
		"X-Forwarded-Host", "evil.example",
		"X-Forwarded-Proto", "https",
	}
	tests := []struct {
		desc          string
		g             *gw
		header        []string
		wantXFF       string
		wantForwarded string
		wantXFHost    string // "" means the request's Host
		wantXFProto   string
		wantRealIP    string
		wantID        string // "" means: a new ID, not the client's
	}{
		{
			desc: "untrusted client: forwarding headers replaced", g: untrusted,
			header:  append([]string{"X-Request-Id", "client-id-1"}, spoof...),
			wantXFF: "127.0.0.1", wantXFProto: "http",
		},
		{
			desc: "untrusted client without headers", g: untrusted,
			wantXFF: "127.0.0.1", wantXFProto: "http",
		},
		{
			desc: "trusted proxy: chain kept and request ID accepted", g: trusted,
			header:  append([]string{"X-Request-Id", "client-id-2"}, spoof...),
			wantXFF: "6.6.6.6, 127.0.0.1", wantForwarded: "for=6.6.6.6;proto=https",
			wantXFHost: "evil.example", wantXFProto: "https", wantRealIP: "6.6.6.6",
			wantID: "client-id-2",
		},
		{
			desc: "trusted proxy: malformed request ID replaced", g: trusted,
			header:  []string{"X-Request-Id", "bad id/<script>"},
			wantXFF: "127.0.0.1", wantXFProto: "http",
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			resp, body := tt.g.get(t, "/books", tt.header...)
			e := decodeEcho(t, resp, body)
			h := http.Header(e.Header)
			check := func(name, want string) {
				t.Helper()
				if got := strings.Join(h.Values(name), ", "); got != want {
					t.Errorf("upstream saw %s %q, want %q", name, got, want)
				}
			}
			check("X-Forwarded-For", tt.wantXFF)
			check("Forwarded", tt.wantForwarded)
			check("X-Real-Ip", tt.wantRealIP)
			check("X-Forwarded-Proto", tt.wantXFProto)
			wantHost := tt.wantXFHost
			if wantHost == "" {
				wantHost = strings.TrimPrefix(tt.g.url(), "http://")
			}
			check("X-Forwarded-Host", wantHost)

			rid := resp.Header.Get("X-Request-Id")
			if e.RequestID != rid || len(h.Values("X-Request-Id")) != 1 {
				t.Errorf("upstream saw request ID %q, client got %q: want one, equal", h.Values("X-Request-Id"), rid)
			}
			switch {
			case tt.wantID != "" && rid != tt.wantID:
				t.Errorf("request ID = %q, want the client's %q", rid, tt.wantID)
			case tt.wantID == "" && !isRequestID(rid):
				t.Errorf("request ID = %q, want a new one of 32 hex digits", rid)
			}
		})
	}
}

// isRequestID reports whether s looks like an ID the gateway generates.
func isRequestID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}
