package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/server"
)

// waitLimit bounds every wait of these tests: for a gateway to come up or
// stop, for a reload, for a certificate change to show.
const waitLimit = 10 * time.Second

// gw is a gateway started by startGateway, serving a configuration file in a
// temporary directory.
type gw struct {
	srv  *server.Server
	path string // configuration file
	// urls are http://addr of each listener, in configuration order; TLS
	// listeners too (use https(i) for those).
	urls  []string
	addrs []string
	// reloads receives the result of every reload attempt (buffered; a
	// full buffer drops results).
	reloads chan error

	cancel context.CancelFunc
	done   chan error // receives Run's result, then is closed
	client *http.Client
}

// url returns the base URL of the first listener.
func (g *gw) url() string { return g.urls[0] }

// https returns https://addr of listener i.
func (g *gw) https(i int) string { return "https://" + g.addrs[i] }

// startGateway writes yaml to a file in t.TempDir and runs the gateway on it
// until the test ends. It returns once every listener accepts connections.
// The configuration is expected to set server.watch_config: false unless the
// test exercises the file watcher, so that only Reload reloads it.
func startGateway(t *testing.T, yaml string) *gw {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := newLogBuffer(t)
	g := &gw{path: path, reloads: make(chan error, 32), done: make(chan error, 1)}
	ready := make(chan []net.Addr, 1)
	srv, err := server.New(path, server.Options{
		Log:       slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		NoSignals: true,
		Ready:     func(addrs []net.Addr) { ready <- addrs },
		Reloaded: func(err error) {
			select {
			case g.reloads <- err:
			default:
			}
		},
	})
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	g.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		g.done <- srv.Run(ctx)
		close(g.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-g.done:
		case <-time.After(waitLimit):
			t.Errorf("gateway did not stop within %s", waitLimit)
		}
	})
	select {
	case addrs := <-ready:
		for _, a := range addrs {
			g.addrs = append(g.addrs, a.String())
			g.urls = append(g.urls, "http://"+a.String())
		}
	case err := <-g.done:
		t.Fatalf("Run returned before the listeners were ready: %v", err)
	case <-time.After(waitLimit):
		t.Fatalf("gateway not ready within %s", waitLimit)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	g.client = &http.Client{
		Transport:     tr,
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return g
}

// stop cancels Run's context and returns Run's result.
func (g *gw) stop(t *testing.T) error {
	t.Helper()
	g.cancel()
	select {
	case err := <-g.done:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("Run did not return within %s of cancelling its context", waitLimit)
		return nil
	}
}

// nextReload waits for the result of the next reload attempt.
func (g *gw) nextReload(t *testing.T) error {
	t.Helper()
	select {
	case err := <-g.reloads:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("no reload attempt within %s", waitLimit)
		return nil
	}
}

// rewrite replaces the configuration file atomically, the way editors do.
func (g *gw) rewrite(t *testing.T, yaml string) {
	t.Helper()
	tmp := g.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, g.path); err != nil {
		t.Fatal(err)
	}
}

// do sends req through the gateway's client and returns the response with
// its body read.
func (g *gw) do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	return send(t, g.client, req)
}

// get sends GET base+path.
func (g *gw) get(t *testing.T, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	return g.do(t, newRequest(t, http.MethodGet, g.url()+path, nil, header...))
}

// getEcho sends GET base+path and returns the upstream's echo; the
// response must be 200.
func (g *gw) getEcho(t *testing.T, path string, header ...string) echo {
	t.Helper()
	resp, body := g.get(t, path, header...)
	return decodeEcho(t, resp, body)
}

func send(t *testing.T, c *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, body
}

// newRequest builds a request with headers given as name, value pairs. The
// name "Host" sets the request's Host.
func newRequest(t *testing.T, method, url string, body io.Reader, header ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if len(header)%2 != 0 {
		t.Fatalf("newRequest: odd number of header arguments")
	}
	for i := 0; i < len(header); i += 2 {
		if http.CanonicalHeaderKey(header[i]) == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	return req
}

// rawRequest writes raw bytes to the listener at addr and reads one response.
// It is for request targets a client library would clean up.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", clip([]byte(raw)), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body of response to %q: %v", clip([]byte(raw)), err)
	}
	return resp, body
}

// problemDoc is the RFC 9457 body the gateway writes for every denial.
type problemDoc struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	ReasonID  string `json:"reason_id"`
	RequestID string `json:"request_id"`
}

// problem checks that resp carries a problem document consistent with the
// response (media type, status, request ID equal to the X-Request-Id header)
// and returns it.
func problem(t *testing.T, resp *http.Response, body []byte) problemDoc {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json (body %q)", ct, clip(body))
	}
	var p problemDoc
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decoding problem body %q: %v", clip(body), err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status = %d, response status %d", p.Status, resp.StatusCode)
	}
	if p.Type != "about:blank" || p.Title != http.StatusText(resp.StatusCode) {
		t.Errorf("problem type, title = %q, %q; want about:blank, %q", p.Type, p.Title, http.StatusText(resp.StatusCode))
	}
	if rid := resp.Header.Get("X-Request-Id"); p.RequestID == "" || p.RequestID != rid {
		t.Errorf("problem request_id = %q, X-Request-Id header %q: want equal and not empty", p.RequestID, rid)
	}
	return p
}

// wantProblem checks the status and reason_id of a problem response.
func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, reason string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, status, clip(body))
	}
	if p := problem(t, resp, body); p.ReasonID != reason {
		t.Errorf("reason_id = %q, want %q", p.ReasonID, reason)
	}
}

// echo is what an upstream built by newUpstream answers: the request as it
// arrived there.
type echo struct {
	Upstream  string              `json:"upstream"`
	Method    string              `json:"method"`
	URI       string              `json:"uri"`
	Host      string              `json:"host"`
	Header    map[string][]string `json:"header"`
	BodyLen   int                 `json:"body_len"`
	BodySHA   string              `json:"body_sha256"`
	RequestID string              `json:"request_id"`
}

// upstream is a test backend on 127.0.0.1.
type upstream struct {
	name string
	srv  *httptest.Server
	// hits counts requests that reached the upstream; bodies counts those
	// whose body was read completely.
	hits, bodies atomic.Int64
	// cases maps the X-Test-Case header of each request that reached the
	// upstream to whether its body was read completely.
	cases sync.Map
}

// saw reports whether a request with X-Test-Case id reached the upstream and
// whether its body was read completely.
func (u *upstream) saw(id string) (reached, complete bool) {
	v, ok := u.cases.Load(id)
	return ok, ok && v.(bool)
}

func (u *upstream) URL() string { return u.srv.URL }

// newUpstream starts a backend that answers every request with its echo as
// JSON, and with headers a gateway must not pass on as they are (Server,
// X-Powered-By, Access-Control-*, a weak X-Frame-Options). The query
// parameter cc sets the response's Cache-Control.
func newUpstream(t *testing.T, name string) *upstream {
	t.Helper()
	u := &upstream{name: name}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		id := r.Header.Get("X-Test-Case")
		if id != "" {
			u.cases.Store(id, false)
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body read failed", http.StatusBadRequest)
			return
		}
		u.bodies.Add(1)
		if id != "" {
			u.cases.Store(id, true)
		}
		e := echo{
			Upstream: name, Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header,
			BodyLen: len(body), BodySHA: digest(body), RequestID: r.Header.Get("X-Request-Id"),
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Server", "nginx/1.2.3")
		h.Set("X-Powered-By", "PHP/5.6")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Credentials", "true")
		h.Set("X-Frame-Options", "SAMEORIGIN")
		if cc := r.URL.Query().Get("cc"); cc != "" {
			h.Set("Cache-Control", cc)
		}
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// decodeEcho decodes an upstream's echo from a proxied response.
func decodeEcho(t *testing.T, resp *http.Response, body []byte) echo {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", resp.StatusCode, clip(body))
	}
	var e echo
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decoding upstream echo %q: %v", clip(body), err)
	}
	return e
}

// closedPort returns the address of a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// eventually polls cond every 20ms until it returns true or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logBuffer collects the gateway's logs and prints them when the test
// fails. It is safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func newLogBuffer(t *testing.T) *logBuffer {
	l := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Logf("gateway logs:\n%s", l.buf.String())
		}
	})
	return l
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// leaks lists substrings that must never appear in an error body: addresses,
// Go error text, internals.
var leaks = []string{"127.0.0.1", "dial", "tcp", "refused", "deadline", "context", "net/http", "EOF", "proxy", "goroutine"}

func assertNoLeak(t *testing.T, body []byte, extra ...string) {
	t.Helper()
	for _, s := range append(leaks, extra...) {
		if s != "" && strings.Contains(strings.ToLower(string(body)), strings.ToLower(s)) {
			t.Errorf("body %q reveals %q", body, s)
		}
	}
}

// clip shortens a body for a failure message.
func clip(b []byte) string {
	const n = 300
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
