package proxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// renders records the Rejects an Upstream renders and answers with the
// status and reason only.
type renders struct {
	mu      sync.Mutex
	rejects []*gateway.Reject
}

func (rs *renders) render(w http.ResponseWriter, _ *http.Request, _ *gateway.Exchange, rej *gateway.Reject) {
	rs.mu.Lock()
	rs.rejects = append(rs.rejects, rej)
	rs.mu.Unlock()
	w.Header().Set("Content-Type", gateway.ProblemContentType)
	w.WriteHeader(rej.Status)
	fmt.Fprintf(w, `{"reason_id":%q}`, rej.ReasonID)
}

func (rs *renders) count() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.rejects)
}

func (rs *renders) last(t *testing.T) *gateway.Reject {
	t.Helper()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if len(rs.rejects) == 0 {
		t.Fatal("nothing was rendered")
	}
	return rs.rejects[len(rs.rejects)-1]
}

var quietLog = slog.New(slog.DiscardHandler)

// testConfig returns an upstream configuration with the given targets, as
// config would default it, with bounds that suit tests.
func testConfig(t testing.TB, targets ...string) *config.Upstream {
	t.Helper()
	cfg := &config.Upstream{
		Timeouts: config.UpstreamTimeout{
			Connect:        config.Duration(2 * time.Second),
			ResponseHeader: config.Duration(5 * time.Second),
			Overall:        config.Duration(10 * time.Second),
		},
		MaxIdleConns: 16,
		Passive:      config.PassiveHealth{MaxFailures: 5, Ejection: config.Duration(30 * time.Second)},
	}
	for _, s := range targets {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("parsing target %q: %v", s, err)
		}
		cfg.Targets = append(cfg.Targets, config.URL{URL: u})
	}
	return cfg
}

// newTestUpstream builds an Upstream that renders into rs and closes it when
// the test ends.
func newTestUpstream(t *testing.T, cfg *config.Upstream, rs *renders) *Upstream {
	t.Helper()
	var opts []Option
	if rs != nil {
		opts = append(opts, WithRender(rs.render))
	}
	u, err := New("test", cfg, quietLog, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(u.Close)
	return u
}

var (
	testPeer   = netip.MustParseAddr("192.0.2.10")
	testClient = netip.MustParseAddr("198.51.100.1")
)

// newExchange returns the Exchange the gateway would hand to Forward for a
// request from an untrusted peer.
func newExchange() *gateway.Exchange {
	return &gateway.Exchange{ID: "req-1", PeerIP: testPeer, ClientIP: testClient, Start: time.Now()}
}

// send forwards req through h as the gateway does, with ex in the context.
func send(h gateway.Handler, req *http.Request, ex *gateway.Exchange) *httptest.ResponseRecorder {
	if ex == nil {
		ex = newExchange()
	}
	ex.Request = req.WithContext(gateway.WithExchange(req.Context(), ex))
	rec := httptest.NewRecorder()
	h.Forward(rec, ex.Request, ex)
	return rec
}

func get(h gateway.Handler, target string) *httptest.ResponseRecorder {
	return send(h, httptest.NewRequest(http.MethodGet, target, nil), nil)
}

// namedServer answers every request with its name and counts the requests
// other than health checks.
func namedServer(t *testing.T, name string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != defaultHealthPath {
			hits.Add(1)
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(ts.Close)
	return ts, &hits
}

// seen is what the echo server reports about the request it received.
type seen struct {
	Host       string
	RequestURI string
	Proto      string
	Header     http.Header
	CommonName string
}

// echoServer answers with a JSON description of the request it received.
func echoServer(t *testing.T) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(echo))
	t.Cleanup(ts.Close)
	return ts
}

func echo(w http.ResponseWriter, r *http.Request) {
	s := seen{Host: r.Host, RequestURI: r.RequestURI, Proto: r.Proto, Header: r.Header}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.CommonName = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

func decodeSeen(t *testing.T, rec *httptest.ResponseRecorder) seen {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200; body %q", rec.Code, rec.Body)
	}
	var s seen
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatalf("decoding echo: %v; body %q", err, rec.Body)
	}
	return s
}

// rawServer accepts connections on loopback, reads one request and writes
// reply as is, then closes the connection.
func rawServer(t *testing.T, reply string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, reply)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// refusedURL returns a loopback URL nothing listens on.
func refusedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// hangUp closes the connection without answering.
func hangUp(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

// waitFor polls cond until it holds, failing the test after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeClock is a settable clock for passive ejection.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// healthCheckers counts the goroutines Upstream.Start created that are
// still alive, started or not.
func healthCheckers() int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "created by github.com/moat-gateway/moat/internal/proxy.(*Upstream).Start ")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// stageFunc adapts a function to gateway.ResponseStage.
type stageFunc func(ex *gateway.Exchange, res *http.Response) error

func (f stageFunc) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	return f(ex, res)
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
