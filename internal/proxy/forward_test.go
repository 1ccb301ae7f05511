package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// blockingServer holds every request until the client gives up or the test
// ends.
func blockingServer(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) }) // runs before ts.Close
	return ts.URL
}

func TestForwardFailures(t *testing.T) {
	tests := []struct {
		desc       string
		target     func(t *testing.T) string
		configure  func(cfg *config.Upstream)
		opts       RouteOptions
		wantStatus int
		wantReason string
	}{
		{
			desc:       "refused connection",
			target:     refusedURL,
			wantStatus: http.StatusBadGateway,
			wantReason: gateway.ReasonUpstreamUnreachable,
		},
		{
			desc: "connection closed without a response",
			target: func(t *testing.T) string {
				ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hangUp(w) }))
				t.Cleanup(ts.Close)
				return ts.URL
			},
			wantStatus: http.StatusBadGateway,
			wantReason: gateway.ReasonUpstreamUnreachable,
		},
		{
			desc:       "garbage instead of HTTP",
			target:     func(t *testing.T) string { return rawServer(t, "SSH-2.0-OpenSSH_9.6\r\n\r\n") },
			wantStatus: http.StatusBadGateway,
			wantReason: gateway.ReasonUpstreamBadResponse,
		},
		{
			desc:       "truncated header block",
			target:     func(t *testing.T) string { return rawServer(t, "HTTP/1.1 200 OK\r\nContent-Le") },
			wantStatus: http.StatusBadGateway,
			wantReason: gateway.ReasonUpstreamBadResponse,
		},
		{
			desc:   "response header timeout",
			target: blockingServer,
			configure: func(cfg *config.Upstream) {
				cfg.Timeouts.ResponseHeader = config.Duration(50 * time.Millisecond)
			},
			wantStatus: http.StatusGatewayTimeout,
			wantReason: gateway.ReasonUpstreamTimeout,
		},
		{
			desc:   "upstream overall timeout",
			target: blockingServer,
			configure: func(cfg *config.Upstream) {
				cfg.Timeouts.Overall = config.Duration(50 * time.Millisecond)
			},
			wantStatus: http.StatusGatewayTimeout,
			wantReason: gateway.ReasonUpstreamTimeout,
		},
		{
			desc:       "route timeout replaces the upstream's",
			target:     blockingServer,
			opts:       RouteOptions{Timeout: 50 * time.Millisecond},
			wantStatus: http.StatusGatewayTimeout,
			wantReason: gateway.ReasonUpstreamTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			target := tt.target(t)
			cfg := testConfig(t, target)
			if tt.configure != nil {
				tt.configure(cfg)
			}
			rs := &renders{}
			u := newTestUpstream(t, cfg, rs)
			ex := newExchange()
			rec := send(u.ForRoute(tt.opts), httptest.NewRequest(http.MethodGet, "/x", nil), ex)

			rej := rs.last(t)
			if rec.Code != tt.wantStatus || rej.Status != tt.wantStatus || rej.ReasonID != tt.wantReason {
				t.Fatalf("got %d %s, want %d %s (err: %v)", rec.Code, rej.ReasonID, tt.wantStatus, tt.wantReason, rej.Err)
			}
			if rej.Err == nil || !strings.Contains(rej.Detail, target) {
				t.Errorf("reject lacks the internal detail for logs: %+v", rej)
			}
			if ex.Target != target {
				t.Errorf("ex.Target = %q, want %q", ex.Target, target)
			}
			if st := u.Status()[0]; st.ConsecutiveFailures != 1 {
				t.Errorf("failure not counted against the target: %+v", st)
			}
		})
	}
}

// TestErrorBodyHasNoInternals renders with the gateway's renderer (the
// default) and checks that nothing of the upstream or the Go error leaks.
func TestErrorBodyHasNoInternals(t *testing.T) {
	for _, target := range []string{refusedURL(t), rawServer(t, "garbage\r\n\r\n")} {
		u, err := New("api", testConfig(t, target), quietLog)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(u.Close)
		rec := get(u, "/x")
		if rec.Code != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", rec.Code)
		}
		body := rec.Body.String()
		host := strings.TrimPrefix(target, "http://")
		_, port, _ := strings.Cut(host, ":")
		for _, leak := range []string{host, port, "127.0.0.1", "dial", "refused", "malformed", "tcp", "api"} {
			if strings.Contains(body, leak) {
				t.Errorf("error body %q contains %q", body, leak)
			}
		}
		if !strings.Contains(body, "upstream_") || !strings.Contains(body, "req-1") {
			t.Errorf("error body %q lacks the reason or the request ID", body)
		}
	}
}

func TestForwardingHeaders(t *testing.T) {
	ts := echoServer(t)
	tests := []struct {
		desc          string
		trusted       bool
		url           string
		header        http.Header
		wantXFF       string
		wantProto     string
		wantHost      string
		wantForwarded string
		wantRealIP    string
	}{
		{
			desc:      "untrusted peer without headers",
			url:       "http://api.example.com/x",
			wantXFF:   "192.0.2.10",
			wantProto: "http",
			wantHost:  "api.example.com",
		},
		{
			desc: "untrusted peer cannot spoof",
			url:  "http://api.example.com/x",
			header: http.Header{
				"X-Forwarded-For":   {"203.0.113.7"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"evil.example"},
				"Forwarded":         {"for=203.0.113.7;proto=https"},
				"X-Real-Ip":         {"203.0.113.7"},
			},
			wantXFF:   "192.0.2.10",
			wantProto: "http",
			wantHost:  "api.example.com",
		},
		{
			desc:      "TLS from an untrusted peer",
			url:       "https://api.example.com/x",
			wantXFF:   "192.0.2.10",
			wantProto: "https",
			wantHost:  "api.example.com",
		},
		{
			desc:    "trusted peer keeps the chain and appends itself",
			trusted: true,
			url:     "http://api.example.com/x",
			header: http.Header{
				"X-Forwarded-For":   {"203.0.113.7", "10.0.0.1, 10.0.0.2"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"public.example"},
				"Forwarded":         {"for=203.0.113.7;proto=https"},
				"X-Real-Ip":         {"203.0.113.7"},
			},
			wantXFF:       "203.0.113.7, 10.0.0.1, 10.0.0.2, 192.0.2.10",
			wantProto:     "https",
			wantHost:      "public.example",
			wantForwarded: "for=203.0.113.7;proto=https",
			wantRealIP:    "203.0.113.7",
		},
		{
			desc:      "trusted peer without headers",
			trusted:   true,
			url:       "http://api.example.com/x",
			wantXFF:   "192.0.2.10",
			wantProto: "http",
			wantHost:  "api.example.com",
		},
	}
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			req.Header.Set("X-Request-Id", "spoofed")
			ex := newExchange()
			ex.PeerTrusted = tt.trusted
			s := decodeSeen(t, send(u, req, ex))
			h := s.Header
			if got := strings.Join(h["X-Forwarded-For"], ", "); got != tt.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", got, tt.wantXFF)
			}
			if got := h.Get("X-Forwarded-Proto"); got != tt.wantProto {
				t.Errorf("X-Forwarded-Proto %q, want %q", got, tt.wantProto)
			}
			if got := h.Get("X-Forwarded-Host"); got != tt.wantHost {
				t.Errorf("X-Forwarded-Host %q, want %q", got, tt.wantHost)
			}
			if got := h.Get("Forwarded"); got != tt.wantForwarded {
				t.Errorf("Forwarded %q, want %q", got, tt.wantForwarded)
			}
			if got := h.Get("X-Real-Ip"); got != tt.wantRealIP {
				t.Errorf("X-Real-IP %q, want %q", got, tt.wantRealIP)
			}
			if got := h.Values("X-Request-Id"); len(got) != 1 || got[0] != "req-1" {
				t.Errorf("X-Request-Id %q, want [req-1]", got)
			}
			if req.Header.Get("X-Request-Id") != "spoofed" || (tt.header != nil && req.Header.Get("X-Forwarded-For") == "") {
				t.Error("the client's request was modified")
			}
		})
	}
}

func TestRequestIDHeader(t *testing.T) {
	ts := echoServer(t)
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	h := u.ForRoute(RouteOptions{RequestIDHeader: "x-correlation-id"})
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("X-Correlation-Id", "spoofed")
	s := decodeSeen(t, send(h, req, nil))
	if got := s.Header.Values("X-Correlation-Id"); len(got) != 1 || got[0] != "req-1" {
		t.Errorf("X-Correlation-Id %q, want [req-1]", got)
	}
}

func TestPathRewrite(t *testing.T) {
	ts := echoServer(t)
	tests := []struct {
		desc    string
		base    string
		opts    RouteOptions
		target  string
		wantURI string
	}{
		{desc: "no options", target: "/books/1?x=1", wantURI: "/books/1?x=1"},
		{desc: "target base path", base: "/base", target: "/books", wantURI: "/base/books"},
		{desc: "target base path with trailing slash", base: "/base/", target: "/books", wantURI: "/base/books"},
		{desc: "strip and add, escapes and query kept", base: "/base", opts: RouteOptions{StripPrefix: "/api", AddPrefix: "/v2"},
			target: "/api/books/a%20b/c%2Fd?q=a%26b&x=%2F", wantURI: "/base/v2/books/a%20b/c%2Fd?q=a%26b&x=%2F"},
		{desc: "strip the whole path", base: "/base", opts: RouteOptions{StripPrefix: "/api"}, target: "/api", wantURI: "/base"},
		{desc: "strip the whole path without base", opts: RouteOptions{StripPrefix: "/api"}, target: "/api", wantURI: "/"},
		{desc: "strip prefix with trailing slash", opts: RouteOptions{StripPrefix: "/api/"}, target: "/api/books", wantURI: "/books"},
		{desc: "strip only at a segment boundary", opts: RouteOptions{StripPrefix: "/api"}, target: "/apiary", wantURI: "/apiary"},
		{desc: "strip matches escaped characters", opts: RouteOptions{StripPrefix: "/café"}, target: "/caf%C3%A9/menu", wantURI: "/menu"},
		{desc: "encoded slash never matches a slash", opts: RouteOptions{StripPrefix: "/a/b"}, target: "/a%2Fb/c", wantURI: "/a%2Fb/c"},
		{desc: "add prefix is escaped", opts: RouteOptions{AddPrefix: "/my space"}, target: "/x", wantURI: "/my%20space/x"},
		{desc: "add prefix without leading slash", opts: RouteOptions{AddPrefix: "v1/"}, target: "/x", wantURI: "/v1/x"},
		{desc: "client escaping kept", target: "/a!b/%41", wantURI: "/a!b/%41"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			u := newTestUpstream(t, testConfig(t, ts.URL+tt.base), &renders{})
			s := decodeSeen(t, send(u.ForRoute(tt.opts), httptest.NewRequest(http.MethodGet, tt.target, nil), nil))
			if s.RequestURI != tt.wantURI {
				t.Errorf("upstream saw %q, want %q", s.RequestURI, tt.wantURI)
			}
		})
	}
}

func TestDotSegmentsRefused(t *testing.T) {
	ts, hits := namedServer(t, "a")
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, ts.URL+"/public"), rs)
	h := u.ForRoute(RouteOptions{StripPrefix: "/api"})
	for _, target := range []string{"/api/../private", "/api/%2e%2e/private", "/api/./x", "/api/.."} {
		rec := send(h, httptest.NewRequest(http.MethodGet, target, nil), nil)
		if rec.Code != http.StatusBadRequest || rs.last(t).ReasonID != gateway.ReasonInvalidPath {
			t.Errorf("%s: %d %s, want 400 invalid_path", target, rec.Code, rs.last(t).ReasonID)
		}
	}
	if hits.Load() != 0 {
		t.Errorf("upstream got %d requests", hits.Load())
	}
}

func TestHost(t *testing.T) {
	ts := echoServer(t)
	tests := []struct {
		desc     string
		passHost bool
		want     string
	}{
		{desc: "target host by default", want: strings.TrimPrefix(ts.URL, "http://")},
		{desc: "client host with pass_host", passHost: true, want: "api.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := testConfig(t, ts.URL)
			cfg.PassHost = tt.passHost
			u := newTestUpstream(t, cfg, &renders{})
			s := decodeSeen(t, get(u, "http://api.example.com/x"))
			if s.Host != tt.want {
				t.Errorf("upstream saw Host %q, want %q", s.Host, tt.want)
			}
		})
	}
}

func TestResponseStages(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/leak":
			w.Header().Set("X-Leak", "1")
			io.WriteString(w, "stack trace at 10.1.2.3")
		case "/broken":
			w.Header().Set("X-Broken", "1")
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(ts.Close)
	var order []string
	stages := []gateway.ResponseStage{
		stageFunc(func(ex *gateway.Exchange, res *http.Response) error {
			order = append(order, "first")
			res.Header.Set("X-Stage", "seen")
			return nil
		}),
		stageFunc(func(ex *gateway.Exchange, res *http.Response) error {
			order = append(order, "second")
			if res.Header.Get("X-Leak") != "" {
				return gateway.Rejectf(http.StatusBadGateway, "upstream_leak", "leaky header")
			}
			if res.Header.Get("X-Broken") != "" {
				return errors.New("stage bug")
			}
			return nil
		}),
	}
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, ts.URL), rs)
	h := u.ForRoute(RouteOptions{ResponseStages: stages})

	tests := []struct {
		desc       string
		path       string
		wantStatus int
		wantReason string
	}{
		{desc: "stages run in order on the response", path: "/ok", wantStatus: http.StatusOK},
		{desc: "a stage's Reject is rendered", path: "/leak", wantStatus: http.StatusBadGateway, wantReason: "upstream_leak"},
		{desc: "another stage error fails closed", path: "/broken", wantStatus: http.StatusInternalServerError, wantReason: gateway.ReasonInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			order = nil
			ex := newExchange()
			rec := send(h, httptest.NewRequest(http.MethodGet, tt.path, nil), ex)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if strings.Join(order, ",") != "first,second" {
				t.Errorf("stages ran %v", order)
			}
			if tt.wantReason == "" {
				if rec.Header().Get("X-Stage") != "seen" || rec.Body.String() != "ok" {
					t.Errorf("response %q %q", rec.Header(), rec.Body)
				}
			} else {
				if got := rs.last(t).ReasonID; got != tt.wantReason {
					t.Errorf("reason %q, want %q", got, tt.wantReason)
				}
				if strings.Contains(rec.Body.String(), "10.1.2.3") {
					t.Errorf("upstream body leaked: %q", rec.Body)
				}
			}
			if ex.Target != ts.URL || ex.UpstreamLatency <= 0 {
				t.Errorf("target %q latency %v not recorded", ex.Target, ex.UpstreamLatency)
			}
			if st := u.Status()[0]; st.ConsecutiveFailures != 0 {
				t.Errorf("a stage's verdict counted against the upstream: %+v", st)
			}
		})
	}
}

func TestClientGoneWritesNothing(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() { close(release) })
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, ts.URL), rs)

	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx)
	ex := newExchange()
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- send(u, req, ex) }()
	<-arrived
	cancel()
	rec := <-done

	if rs.count() != 0 || rec.Body.Len() != 0 || rec.Flushed {
		t.Errorf("wrote to a client that left: %d renders, body %q", rs.count(), rec.Body)
	}
	if ex.Status != StatusClientClosedRequest || ex.Detail == "" {
		t.Errorf("exchange status %d detail %q, want 499 with a detail", ex.Status, ex.Detail)
	}
	if st := u.Status()[0]; st.ConsecutiveFailures != 0 {
		t.Errorf("client cancel counted against the upstream: %+v", st)
	}
}

func TestBodyTooLarge(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "read it all")
	}))
	t.Cleanup(ts.Close)
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, ts.URL), rs)

	req := httptest.NewRequest(http.MethodPost, "/upload", nil)
	req.Body = http.MaxBytesReader(nil, io.NopCloser(strings.NewReader(strings.Repeat("x", 100<<10))), 10)
	req.ContentLength = -1
	rec := send(u, req, nil)
	if rec.Code != http.StatusRequestEntityTooLarge || rs.last(t).ReasonID != gateway.ReasonBodyTooLarge {
		t.Fatalf("got %d %+v, want 413 body_too_large", rec.Code, rs.last(t))
	}
	if st := u.Status()[0]; st.ConsecutiveFailures != 0 {
		t.Errorf("client's oversized body counted against the upstream: %+v", st)
	}
}

// truncatingServer announces a body and hangs up halfway through it.
func truncatingServer(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "partial")
		http.NewResponseController(w).Flush()
		hangUp(w)
	}))
	t.Cleanup(ts.Close)
	return ts
}

func TestBodyFailureCounts(t *testing.T) {
	stalling := func(t *testing.T) *httptest.Server {
		release := make(chan struct{})
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		t.Cleanup(ts.Close)
		t.Cleanup(func() { close(release) })
		return ts
	}
	tests := []struct {
		desc   string
		server func(t *testing.T) *httptest.Server
		opts   RouteOptions
	}{
		{desc: "upstream hangs up mid-body", server: truncatingServer},
		{desc: "overall timeout covers the body", server: stalling, opts: RouteOptions{Timeout: 50 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ts := tt.server(t)
			u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
			rec := send(u.ForRoute(tt.opts), httptest.NewRequest(http.MethodGet, "/x", nil), nil)
			if rec.Code != http.StatusOK || rec.Body.String() != "partial" {
				t.Errorf("got %d %q", rec.Code, rec.Body)
			}
			if st := u.Status()[0]; st.ConsecutiveFailures != 1 {
				t.Errorf("broken body not counted against the upstream: %+v", st)
			}
		})
	}
}

// TestBehindServer runs Forward inside a real server, where ReverseProxy
// aborts a response whose body fails mid-copy, and checks that the outcome
// is still recorded.
func TestBehindServer(t *testing.T) {
	up := truncatingServer(t)
	u := newTestUpstream(t, testConfig(t, up.URL), &renders{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := newExchange()
		u.Forward(w, r.WithContext(gateway.WithExchange(r.Context(), ex)), ex)
	}))
	t.Cleanup(front.Close)

	// The response is aborted: either before its buffered headers were sent
	// or in the middle of the body.
	res, err := front.Client().Get(front.URL + "/x")
	if err == nil {
		_, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	if err == nil {
		t.Error("client read a complete body from a truncated upstream response")
	}
	if st := u.Status()[0]; st.ConsecutiveFailures != 1 {
		t.Errorf("aborted response not counted against the upstream: %+v", st)
	}
}

func TestExchangeFromContext(t *testing.T) {
	ts := echoServer(t)
	u := newTestUpstream(t, testConfig(t, ts.URL), &renders{})
	ex := newExchange()
	ex.ID = "from-context"
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req = req.WithContext(gateway.WithExchange(req.Context(), ex))
	rec := httptest.NewRecorder()
	u.Forward(rec, req, nil)
	if s := decodeSeen(t, rec); s.Header.Get("X-Request-Id") != "from-context" {
		t.Errorf("request ID %q, want the context's exchange", s.Header.Get("X-Request-Id"))
	}
}

func FuzzRoutePath(f *testing.F) {
	f.Add("/api/a%2Fb/c%20d", "/api", "/v2")
	f.Add("/caf%C3%A9/x", "/café", "")
	f.Add("/%", "/", "/%")
	f.Add("", "/a", "/b c")
	f.Add("/api%", "/api", "")
	f.Fuzz(func(t *testing.T, esc, strip, add string) {
		u := &Upstream{overall: time.Second}
		rt := u.compileRoute(RouteOptions{StripPrefix: strip, AddPrefix: add})
		got := joinPath("/base", rt.path(esc))
		if !strings.HasPrefix(got, "/base") {
			t.Fatalf("path %q left the target's base path", got)
		}
		if _, err := url.PathUnescape(esc); err != nil {
			return
		}
		if _, err := url.PathUnescape(got); err != nil {
			t.Fatalf("valid input %q gave invalid escaped path %q", esc, got)
		}
		if dec, _ := url.PathUnescape(esc); !hasDotSegment(dec) {
			gotDec, _ := url.PathUnescape(got)
			if hasDotSegment(gotDec) && !hasDotSegment(add) {
				t.Fatalf("rewrite of %q introduced a dot segment: %q", esc, got)
			}
		}
	})
}

func BenchmarkForward(b *testing.B) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	b.Cleanup(ts.Close)
	u, err := New("bench", testConfig(b, ts.URL), quietLog)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(u.Close)
	h := u.ForRoute(RouteOptions{StripPrefix: "/api", AddPrefix: "/v1"})
	req := httptest.NewRequest(http.MethodGet, "/api/books/1?x=1", nil)
	b.ReportAllocs()
	for b.Loop() {
		ex := newExchange()
		rec := httptest.NewRecorder()
		h.Forward(rec, req, ex)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
