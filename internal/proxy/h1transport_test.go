package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// connCounter counts the connections a test server accepted and closed.
type connCounter struct{ opened, closed atomic.Int64 }

func (c *connCounter) track(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		c.opened.Add(1)
	case http.StateClosed, http.StateHijacked:
		c.closed.Add(1)
	}
}

// countingServer starts h with its connections counted.
func countingServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connCounter) {
	t.Helper()
	var cc connCounter
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = cc.track
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &cc
}

// scriptedServer accepts connections on loopback and reads requests; answer
// decides for the n-th request (from 0) of the c-th connection what to write
// back: a raw response, or "" to close the connection without answering.
// After a written response the connection stays open unless close is true.
// Every request is recorded as "c/n METHOD".
type scriptedServer struct {
	mu   sync.Mutex
	seen []string
}

func (s *scriptedServer) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func newScriptedServer(t *testing.T, answer func(c, n int, r *http.Request) (reply string, close bool)) (string, *scriptedServer) {
	t.Helper()
	s := &scriptedServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for c := 0; ; c++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for n := 0; ; n++ {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, r.Body)
					s.mu.Lock()
					s.seen = append(s.seen, strings.Join([]string{strconv.Itoa(c), "/", strconv.Itoa(n), " ", r.Method}, ""))
					s.mu.Unlock()
					reply, closeAfter := answer(c, n, r)
					if reply == "" {
						return
					}
					if _, err := io.WriteString(conn, reply); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String(), s
}

const okReply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestSplitTransportChoice(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1", "https://127.0.0.1:2")
	u := newTestUpstream(t, cfg, nil)
	if u.rt.h1 == nil {
		t.Fatal("no lean transport for an http target")
	}
	tests := []struct {
		desc   string
		method string
		url    string
		header http.Header
		body   io.Reader
		lean   bool
	}{
		{desc: "GET to an http target", method: "GET", url: "http://127.0.0.1:1/x", lean: true},
		{desc: "HEAD", method: "HEAD", url: "http://127.0.0.1:1/x", lean: true},
		{desc: "OPTIONS", method: "OPTIONS", url: "http://127.0.0.1:1/x", lean: true},
		{desc: "GET to an https target", method: "GET", url: "https://127.0.0.1:2/x"},
		{desc: "GET to an unknown host", method: "GET", url: "http://127.0.0.1:3/x"},
		{desc: "POST with a body", method: "POST", url: "http://127.0.0.1:1/x", body: strings.NewReader("x")},
		{desc: "POST without a body", method: "POST", url: "http://127.0.0.1:1/x"},
		{desc: "DELETE", method: "DELETE", url: "http://127.0.0.1:1/x"},
		{desc: "GET with a body", method: "GET", url: "http://127.0.0.1:1/x", body: strings.NewReader("x")},
		{desc: "protocol upgrade", method: "GET", url: "http://127.0.0.1:1/x",
			header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}},
		{desc: "100-continue", method: "GET", url: "http://127.0.0.1:1/x", header: http.Header{"Expect": {"100-continue"}}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.url, tt.body)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if got := u.rt.h1.pool(req) != nil; got != tt.lean {
				t.Errorf("lean transport: %v, want %v", got, tt.lean)
			}
		})
	}

	t.Run("switch off", func(t *testing.T) {
		leanHTTP1 = false
		defer func() { leanHTTP1 = true }()
		if u := newTestUpstream(t, testConfig(t, "http://127.0.0.1:1"), nil); u.rt.h1 != nil {
			t.Error("lean transport built while switched off")
		}
	})
}

func TestH1KeepAlive(t *testing.T) {
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			for _, part := range []string{"a", "b", "c"} {
				io.WriteString(w, part)
				http.NewResponseController(w).Flush()
			}
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "ok")
		}
	})
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	requests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{"GET", "/x", 200, "ok"},
		{"GET", "/chunked", 200, "abc"},
		{"HEAD", "/x", 200, ""},
		{"GET", "/empty", 204, ""},
		{"GET", "/not-modified", 304, ""},
		{"OPTIONS", "/x", 200, "ok"},
		{"GET", "/x", 200, "ok"},
	}
	for _, r := range requests {
		rec := send(u, httptest.NewRequest(r.method, r.path, nil), nil)
		if rec.Code != r.wantStatus || rec.Body.String() != r.wantBody {
			t.Fatalf("%s %s: %d %q, want %d %q", r.method, r.path, rec.Code, rec.Body, r.wantStatus, r.wantBody)
		}
	}
	if n := cc.opened.Load(); n != 1 {
		t.Errorf("%d requests took %d connections, want 1", len(requests), n)
	}
	if n := u.rt.h1.pools[mustURL(t, ts.URL).Host].idleCount(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestH1ConnectionEnds(t *testing.T) {
	tests := []struct {
		desc     string
		reply    string
		close    bool
		wantBody string
	}{
		{desc: "Connection: close", reply: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok"},
		{desc: "no Content-Length: body to EOF", reply: "HTTP/1.1 200 OK\r\n\r\nhello, until the end", close: true,
			wantBody: "hello, until the end"},
		{desc: "HTTP/1.0 without keep-alive", reply: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", wantBody: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			target, srv := newScriptedServer(t, func(c, n int, r *http.Request) (string, bool) { return tt.reply, tt.close })
			u := newTestUpstream(t, testConfig(t, target), &renders{})
			for i := range 2 {
				if rec := get(u, "/x"); rec.Code != http.StatusOK || rec.Body.String() != tt.wantBody {
					t.Fatalf("request %d: %d %q", i, rec.Code, rec.Body)
				}
			}
			if got := strings.Join(srv.log(), ","); got != "0/0 GET,1/0 GET" {
				t.Errorf("server saw %s, want each request on a new connection", got)
			}
			if n := u.rt.h1.pools[mustURL(t, target).Host].idleCount(); n != 0 {
				t.Errorf("%d idle connections, want 0", n)
			}
			if st := u.Status()[0]; st.ConsecutiveFailures != 0 {
				t.Errorf("failures counted: %+v", st)
			}
		})
	}
}

// TestH1StaleConnection: the server closes a kept-alive connection without
// answering the next request. An idempotent request is sent again on a new
// connection; a POST with a body (sent by http.Transport) never is.
func TestH1StaleConnection(t *testing.T) {
	tests := []struct {
		desc       string
		method     string
		body       string
		wantStatus int
		wantLog    string
	}{
		{desc: "GET retried", method: "GET", wantStatus: http.StatusOK, wantLog: "0/0 GET,0/1 GET,1/0 GET"},
		{desc: "HEAD retried", method: "HEAD", wantStatus: http.StatusOK, wantLog: "0/0 HEAD,0/1 HEAD,1/0 HEAD"},
		{desc: "POST with a body not retried", method: "POST", body: "order", wantStatus: http.StatusBadGateway,
			wantLog: "0/0 POST,0/1 POST"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			target, srv := newScriptedServer(t, func(c, n int, r *http.Request) (string, bool) {
				if c == 0 && n == 1 {
					return "", true // hang up on the second request of the first connection
				}
				if r.Method == http.MethodHead {
					return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", false
				}
				return okReply, false
			})
			rs := &renders{}
			u := newTestUpstream(t, testConfig(t, target), rs)
			newReq := func() *http.Request {
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				return httptest.NewRequest(tt.method, "/x", body)
			}
			// The first request leaves its connection idle in the pool the
			// second one takes.
			if rec := send(u, newReq(), nil); rec.Code != http.StatusOK {
				t.Fatalf("first request: %d", rec.Code)
			}
			rec := send(u, newReq(), nil)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantStatus != http.StatusOK {
				if r := rs.last(t); r.ReasonID != gateway.ReasonUpstreamUnreachable {
					t.Errorf("reason %s, want upstream_unreachable", r.ReasonID)
				}
			}
			if got := strings.Join(srv.log(), ","); got != tt.wantLog {
				t.Errorf("server saw %s, want %s", got, tt.wantLog)
			}
		})
	}
}

// TestH1FreshConnectionNotRetried: a new connection that closes without an
// answer is the upstream's failure, not a stale connection.
func TestH1FreshConnectionNotRetried(t *testing.T) {
	target, srv := newScriptedServer(t, func(c, n int, r *http.Request) (string, bool) { return "", true })
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, target), rs)
	if rec := get(u, "/x"); rec.Code != http.StatusBadGateway || rs.last(t).ReasonID != gateway.ReasonUpstreamUnreachable {
		t.Fatalf("got %d %s, want 502 upstream_unreachable", rec.Code, rs.last(t).ReasonID)
	}
	if got := strings.Join(srv.log(), ","); got != "0/0 GET" {
		t.Errorf("server saw %s, want one request", got)
	}
}

func TestH1BadResponses(t *testing.T) {
	tests := []struct {
		desc       string
		reply      string
		wantReason string
	}{
		{desc: "header block over the limit", reply: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\n\r\n",
			wantReason: gateway.ReasonUpstreamBadResponse},
		{desc: "too many 1xx responses", reply: strings.Repeat("HTTP/1.1 102 Processing\r\n\r\n", max1xxResponses+1) + okReply,
			wantReason: gateway.ReasonUpstreamBadResponse},
		{desc: "101 to a request without upgrade", reply: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n",
			wantReason: gateway.ReasonUpstreamBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			target := rawServer(t, tt.reply)
			rs := &renders{}
			u := newTestUpstream(t, testConfig(t, target), rs)
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				u.Forward(w, r, newExchange())
			}))
			t.Cleanup(front.Close)
			res, err := front.Client().Get(front.URL + "/x")
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusBadGateway || rs.last(t).ReasonID != tt.wantReason {
				t.Errorf("got %d %s, want 502 %s (err: %v)", res.StatusCode, rs.last(t).ReasonID, tt.wantReason, rs.last(t).Err)
			}
		})
	}
}

// TestH1InformationalResponses: 1xx responses before the final one reach the
// client, as ReverseProxy forwards them.
func TestH1InformationalResponses(t *testing.T) {
	ts, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.Forward(w, r, newExchange())
	}))
	t.Cleanup(front.Close)

	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, strconv.Itoa(code)+" "+h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", front.URL+"/x", nil)
	res, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "final" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
	if strings.Join(hints, ",") != "103 </style.css>; rel=preload" {
		t.Errorf("client got 1xx %q, want the early hints", hints)
	}
}

// TestH1UpgradeFallsBack: upgrade requests go through http.Transport, whose
// 101 response body ReverseProxy splices to the client.
func TestH1UpgradeFallsBack(t *testing.T) {
	ts, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, "echo: "+line)
	})
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.Forward(w, r, newExchange())
	}))
	t.Cleanup(front.Close)

	conn, err := net.Dial("tcp", strings.TrimPrefix(front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", res.StatusCode)
	}
	io.WriteString(conn, "ping\n")
	if line, _ := br.ReadString('\n'); line != "echo: ping\n" {
		t.Errorf("after the upgrade got %q", line)
	}
}

func TestH1RequestBodies(t *testing.T) {
	ts, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, strings.Join(r.TransferEncoding, ",")+":"+string(b))
	})
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	req := httptest.NewRequest(http.MethodPost, "/x", io.NopCloser(strings.NewReader("streamed")))
	req.ContentLength = -1
	if rec := send(u, req, nil); rec.Code != http.StatusOK || rec.Body.String() != "chunked:streamed" {
		t.Errorf("chunked request body: %d %q", rec.Code, rec.Body)
	}
}

// notifyWriter signals its first body write.
type notifyWriter struct {
	*httptest.ResponseRecorder
	once  sync.Once
	wrote chan struct{}
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseRecorder.Write(p)
	w.once.Do(func() { close(w.wrote) })
	return n, err
}

func (w *notifyWriter) Flush() { w.ResponseRecorder.Flush() }

func TestH1ClientCancelMidBody(t *testing.T) {
	release := make(chan struct{})
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	ex := newExchange()
	req := httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(gateway.WithExchange(ctx, ex))
	w := &notifyWriter{ResponseRecorder: httptest.NewRecorder(), wrote: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // ReverseProxy aborts the handler
		u.Forward(w, req, ex)
	}()
	<-w.wrote
	cancel()
	<-done

	waitFor(t, "the upstream connection to close", func() bool { return cc.closed.Load() == 1 })
	waitFor(t, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= base })
	if n := u.rt.h1.pools[mustURL(t, ts.URL).Host].idleCount(); n != 0 {
		t.Errorf("%d idle connections, want 0", n)
	}
	if st := u.Status()[0]; st.ConsecutiveFailures != 0 {
		t.Errorf("client cancel counted against the upstream: %+v", st)
	}
}

func TestH1PoolBounded(t *testing.T) {
	const inFlight = 5
	var arrived sync.WaitGroup
	arrived.Add(inFlight)
	release := make(chan struct{})
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
		io.WriteString(w, "ok")
	})
	cfg := testConfig(t, ts.URL)
	cfg.MaxIdleConns = 2
	u := newTestUpstream(t, cfg, &renders{})

	var wg sync.WaitGroup
	for range inFlight {
		wg.Go(func() {
			if rec := get(u, "/x"); rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
		})
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	if n := u.rt.h1.pools[mustURL(t, ts.URL).Host].idleCount(); n != 2 {
		t.Errorf("%d idle connections, want 2", n)
	}
	waitFor(t, "the connections over the bound to close", func() bool { return cc.closed.Load() == inFlight-2 })
}

func TestH1IdleTimeout(t *testing.T) {
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	u.rt.h1.idleTimeout = 20 * time.Millisecond
	if rec := get(u, "/x"); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	waitFor(t, "the idle connection to close", func() bool { return cc.closed.Load() == 1 })
	if n := u.rt.h1.pools[mustURL(t, ts.URL).Host].idleCount(); n != 0 {
		t.Errorf("%d idle connections, want 0", n)
	}
	if rec := get(u, "/x"); rec.Code != http.StatusOK || cc.opened.Load() != 2 {
		t.Errorf("after the idle timeout: %d, %d connections", rec.Code, cc.opened.Load())
	}
}

func TestH1CloseIdle(t *testing.T) {
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	cfg := testConfig(t, ts.URL)
	u, err := New("test", cfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	if rec := get(u, "/x"); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	u.Close()
	waitFor(t, "the idle connection to close", func() bool { return cc.closed.Load() == 1 })
	// A request still running at Close does not leave a connection behind.
	if rec := get(u, "/x"); rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	waitFor(t, "the connection of the late request to close", func() bool { return cc.closed.Load() == 2 })
}

// TestH1InvalidHeaderRefused: header fields http.Transport refuses never
// reach the upstream through the lean transport either.
func TestH1InvalidHeaderRefused(t *testing.T) {
	tests := []struct {
		desc        string
		name, value string
	}{
		{desc: "NUL in a value", name: "X-Note", value: "a\x00b"},
		{desc: "bare CR in a value", name: "X-Note", value: "a\rb"},
		{desc: "DEL in a value", name: "X-Note", value: "a\x7fb"},
		{desc: "space in a name", name: "X Note", value: "a"},
		{desc: "colon in a name", name: "X-Note:", value: "a"},
	}
	ts, hits := namedServer(t, "a")
	cfg := testConfig(t, ts.URL)
	cfg.Passive.Disabled = true // as with http.Transport, each refusal counts as a failure
	u := newTestUpstream(t, cfg, &renders{})
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/x", nil)
			req.Header[tt.name] = []string{tt.value}
			if rec := send(u, req, nil); rec.Code != http.StatusBadGateway {
				t.Errorf("status %d, want 502", rec.Code)
			}
		})
	}
	if rec := get(u, "/x"); rec.Code != http.StatusOK || hits.Load() != 1 {
		t.Errorf("valid request: %d, upstream got %d requests, want 1", rec.Code, hits.Load())
	}
}

// FuzzH1Response feeds arbitrary bytes as the upstream's answer to the lean
// transport: it must return a response or an error, never panic or hang, and
// a response's body must end.
func FuzzH1Response(f *testing.F) {
	f.Add([]byte(okReply))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\n\r\nto the end"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n\r\n"))
	f.Fuzz(func(t *testing.T, reply []byte) {
		dial := func(context.Context, string, string) (net.Conn, error) {
			client, server := net.Pipe()
			go func() {
				defer server.Close()
				if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
					return
				}
				_, _ = server.Write(reply)
			}()
			return client, nil
		}
		tr := newH1Transport([]string{"upstream.test"}, dial, time.Second, time.Minute, 2)
		defer tr.closeIdle()
		for range 2 { // the second request may reuse the connection
			req := httptest.NewRequest(http.MethodGet, "http://upstream.test/x", nil)
			p := tr.pool(req)
			if p == nil {
				t.Fatal("no pool for a GET")
			}
			res, err := tr.roundTrip(req, p)
			if err != nil {
				continue
			}
			_, _ = io.Copy(io.Discard, res.Body)
			_ = res.Body.Close()
		}
	})
}

func TestH1BodyAfterEnd(t *testing.T) {
	ts, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	for _, closeFirst := range []bool{false, true} {
		req := httptest.NewRequest(http.MethodGet, ts.URL+"/x", nil)
		res, err := u.rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if closeFirst {
			res.Body.Close()
			if _, err := res.Body.Read(make([]byte, 1)); err == nil || err == io.EOF {
				t.Errorf("read after Close: %v, want an error", err)
			}
			continue
		}
		if b, err := io.ReadAll(res.Body); err != nil || string(b) != "ok" {
			t.Fatalf("body %q, %v", b, err)
		}
		if n, err := res.Body.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("read after the end: %d, %v, want io.EOF", n, err)
		}
		res.Body.Close()
	}
}

// TestH1SameWireFormat: the lean transport writes the request head
// http.Transport writes, byte for byte.
func TestH1SameWireFormat(t *testing.T) {
	heads := make(chan string, 4)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				heads <- head.String()
				io.WriteString(conn, okReply)
			}()
		}
	}()
	target := "http://" + ln.Addr().String()

	request := func(u *Upstream) string {
		req := httptest.NewRequest(http.MethodGet, "http://api.example.com/a%20b?q=1", nil)
		req.Header.Set("Accept", "application/json")
		req.Header.Add("X-Multi", "1")
		req.Header.Add("X-Multi", "2")
		req.Header.Set("Connection", "keep-alive, X-Hop")
		req.Header.Set("X-Hop", "dropped")
		req.Header.Set("Te", "trailers")
		if rec := get(u, "/"); rec.Code != http.StatusOK { // the path the pool serves
			t.Fatalf("status %d", rec.Code)
		}
		<-heads
		if rec := send(u, req, nil); rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		return <-heads
	}
	leanHTTP1 = false
	std := newTestUpstream(t, testConfig(t, target), &renders{})
	leanHTTP1 = true
	lean := newTestUpstream(t, testConfig(t, target), &renders{})
	if std.rt.h1 != nil || lean.rt.h1 == nil {
		t.Fatal("switch not honoured")
	}
	a, b := request(std), request(lean)
	if a != b {
		t.Errorf("request heads differ:\nhttp.Transport:\n%s\nlean:\n%s", a, b)
	}
	t.Logf("request head:\n%s", b)
}

// TestH1EveryIdleConnectionStale: when the upstream closed every idle
// connection (a restart, its idle timeout), a GET tries them in turn and
// succeeds on a new one; the client never sees the stale ones.
func TestH1EveryIdleConnectionStale(t *testing.T) {
	const idle = 3
	var arrived sync.WaitGroup
	arrived.Add(idle)
	release := make(chan struct{})
	ts, cc := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fill" {
			arrived.Done()
			<-release
		}
		io.WriteString(w, "ok")
	})
	cfg := testConfig(t, ts.URL)
	cfg.MaxIdleConns = idle
	u := newTestUpstream(t, cfg, &renders{})
	var wg sync.WaitGroup
	for range idle {
		wg.Go(func() {
			if rec := get(u, "/fill"); rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
		})
	}
	arrived.Wait()
	close(release)
	wg.Wait()
	if n := u.rt.h1.pools[mustURL(t, ts.URL).Host].idleCount(); n != idle {
		t.Fatalf("%d idle connections, want %d", n, idle)
	}
	ts.CloseClientConnections()
	waitFor(t, "the server to close the idle connections", func() bool { return cc.closed.Load() == idle })
	if rec := get(u, "/x"); rec.Code != http.StatusOK {
		t.Fatalf("status %d after the upstream closed its idle connections, want 200", rec.Code)
	}
}
