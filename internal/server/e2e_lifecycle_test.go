package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/tlsx/tlstest"
)

// reloadConfig routes /svc to the upstream named by %[3]s; %[4]s is extra
// server settings.
const reloadConfig = `
server:
  shutdown_grace: 5s
  %[4]s
listeners:
  - name: public
    address: 127.0.0.1:0
upstreams:
  a:
    targets: [%[1]s]
  b:
    targets: [%[2]s]
routes:
  - {name: svc, path: /svc, methods: [GET], upstream: %[3]s, public: true}
`

func TestReloadUnderLoad(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	cfg := func(up string) string { return fmt.Sprintf(reloadConfig, a.URL(), b.URL(), up, "watch_config: false") }
	g := startGateway(t, cfg("a"))

	// phase is read before each request: 0 before the good reload returned,
	// 1 after it, 2 after the failed reload returned.
	var phase atomic.Int32
	wantUpstream := []map[string]bool{{"a": true, "b": true}, {"b": true}, {"b": true}}

	const workers, perWorker = 4, 100
	var (
		wg       sync.WaitGroup
		done     atomic.Int64
		failures atomic.Int64
		stop     = make(chan struct{})
		errMu    sync.Mutex
		errs     []string
	)
	fail := func(format string, args ...any) {
		failures.Add(1)
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				select {
				case <-stop:
					return
				default:
				}
				p := phase.Load()
				resp, err := g.client.Get(g.url() + "/svc")
				if err != nil {
					fail("phase %d: transport error: %v", p, err)
					done.Add(1)
					continue
				}
				var e echo
				err = json.NewDecoder(resp.Body).Decode(&e)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !wantUpstream[p][e.Upstream] {
					fail("phase %d: status %d from upstream %q, decoding error %v", p, resp.StatusCode, e.Upstream, err)
				}
				done.Add(1)
			}
		}()
	}
	// waitFor waits until n more requests have completed (or the workers
	// ran out of requests).
	waitFor := func(n int64) {
		t.Helper()
		target := done.Load() + n
		eventually(t, "load progress", func() bool { return done.Load() >= min(target, workers*perWorker) })
	}

	waitFor(40)
	g.rewrite(t, cfg("b"))
	if err := g.srv.Reload(); err != nil {
		t.Fatalf("Reload of a valid configuration: %v", err)
	}
	phase.Store(1)
	if e := g.getEcho(t, "/svc"); e.Upstream != "b" {
		t.Errorf("after Reload returned, /svc went to upstream %s, want b", e.Upstream)
	}

	waitFor(40)
	g.rewrite(t, cfg("nowhere"))
	err := g.srv.Reload()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("Reload of an invalid configuration returned %v (%T), want a *config.Error", err, err)
	}
	if !strings.Contains(err.Error(), `unknown upstream "nowhere"`) {
		t.Errorf("Reload error %q does not name the problem", err)
	}
	phase.Store(2)
	if e := g.getEcho(t, "/svc"); e.Upstream != "b" {
		t.Errorf("after a failed reload, /svc went to upstream %s, want b (the previous configuration)", e.Upstream)
	}

	waitFor(40)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d requests failed during reloads; first ones:\n%s", n, done.Load(), strings.Join(errs, "\n"))
	}
	t.Logf("%d requests during two reloads", done.Load())
}

// TestReloadByFileWatcher changes the file right after the gateway is
// ready: the watch must be in place by then (it used to start after Ready
// and miss such a change).
func TestReloadByFileWatcher(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	cfg := func(up string) string { return fmt.Sprintf(reloadConfig, a.URL(), b.URL(), up, "watch_config: true") }
	g := startGateway(t, cfg("a"))

	g.rewrite(t, cfg("b"))
	if err := g.nextReload(t); err != nil {
		t.Fatalf("reload after the file changed: %v", err)
	}
	if e := g.getEcho(t, "/svc"); e.Upstream != "b" {
		t.Errorf("after the watcher reloaded, /svc went to upstream %s, want b", e.Upstream)
	}

	// A broken file is reported and changes nothing. Results of reloads
	// that found the file unchanged (nil) may come first.
	g.rewrite(t, "listeners: [\n")
	err := g.nextReload(t)
	for i := 0; err == nil && i < 5; i++ {
		err = g.nextReload(t)
	}
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("reload of a broken file reported %v, want a *config.Error", err)
	}
	if e := g.getEcho(t, "/svc"); e.Upstream != "b" {
		t.Errorf("after a failed reload, /svc went to upstream %s, want b", e.Upstream)
	}
}

// TestReloadTurnsFileWatchOn is the regression test for server.watch_config
// being read once at start: a reload that turned it on never started the
// watcher (and one that turned it off did not stop it).
func TestReloadTurnsFileWatchOn(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	cfg := func(up, watch string) string {
		return fmt.Sprintf(reloadConfig, a.URL(), b.URL(), up, "watch_config: "+watch)
	}
	g := startGateway(t, cfg("a", "false"))
	g.rewrite(t, cfg("b", "true"))
	if err := g.srv.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if e := g.getEcho(t, "/svc"); e.Upstream != "b" {
		t.Fatalf("after Reload, /svc went to upstream %s, want b", e.Upstream)
	}
	g.rewrite(t, cfg("a", "true"))
	eventually(t, "the watcher reloads the changed file", func() bool { return g.getEcho(t, "/svc").Upstream == "a" })
}

func TestReloadRefusesListenerChange(t *testing.T) {
	a, b := newUpstream(t, "a"), newUpstream(t, "b")
	good := fmt.Sprintf(reloadConfig, a.URL(), b.URL(), "a", "watch_config: false")
	tests := []struct {
		desc string
		edit func(string) string
	}{
		{desc: "listener address", edit: func(s string) string { return strings.Replace(s, "address: 127.0.0.1:0", "address: 127.0.0.1:00", 1) }},
		{desc: "listener name", edit: func(s string) string { return strings.Replace(s, "name: public", "name: other", 1) }},
		{desc: "read_header_timeout", edit: func(s string) string {
			return strings.Replace(s, "watch_config: false", "watch_config: false\n  read_header_timeout: 1s", 1)
		}},
	}
	g := startGateway(t, good)
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			// The route changes too: nothing of the file may apply.
			g.rewrite(t, tt.edit(strings.Replace(good, "upstream: a", "upstream: b", 1)))
			err := g.srv.Reload()
			if err == nil {
				t.Fatal("Reload applied a configuration that changes a listener setting")
			}
			for _, want := range []string{"listeners", "restart", "nothing was applied"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Reload error %q does not say %q", err, want)
				}
			}
			if e := g.getEcho(t, "/svc"); e.Upstream != "a" {
				t.Errorf("after a refused reload, /svc went to upstream %s, want a", e.Upstream)
			}
		})
	}
}

const drainConfig = `
server:
  watch_config: false
  shutdown_grace: 5s
listeners:
  - address: 127.0.0.1:0
    %[2]s
upstreams:
  slow:
    targets: [%[1]s]
routes:
  - {name: slow, path: /slow, methods: [GET], upstream: slow, public: true}
`

func TestShutdownDrainsInFlightRequests(t *testing.T) {
	ca := tlstest.NewCA(t)
	certPEM, keyPEM, _ := ca.Issue(t, tlstest.Server, "gateway")
	certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), certPEM, keyPEM)

	tests := []struct {
		desc      string
		tls       bool
		wantProto int
	}{
		{desc: "HTTP/1.1", wantProto: 1},
		{desc: "HTTP/2 over TLS", tls: true, wantProto: 2},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			started := make(chan struct{}, 1)
			slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				started <- struct{}{}
				select {
				case <-time.After(300 * time.Millisecond):
					_, _ = io.WriteString(w, "finished")
				case <-r.Context().Done():
				}
			}))
			t.Cleanup(slow.Close)
			var listenerTLS string
			if tt.tls {
				listenerTLS = fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", certFile, keyFile)
			}
			g := startGateway(t, fmt.Sprintf(drainConfig, slow.URL, listenerTLS))
			c, url := g.client, g.url()+"/slow"
			if tt.tls {
				c, url = tlsClient(t, ca.ClientConfig(nil)), g.https(0)+"/slow"
			}

			type result struct {
				status, proto int
				body          string
				err           error
			}
			res := make(chan result, 1)
			go func() {
				resp, err := c.Get(url)
				if err != nil {
					res <- result{err: err}
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				res <- result{resp.StatusCode, resp.ProtoMajor, string(body), err}
			}()
			select {
			case <-started:
			case <-time.After(waitLimit):
				t.Fatal("the request did not reach the upstream")
			}

			g.cancel() // what the SIGTERM handler of moat serve does

			select {
			case r := <-res:
				if r.err != nil || r.status != 200 || r.body != "finished" || r.proto != tt.wantProto {
					t.Errorf("in-flight request: status %d over HTTP/%d, body %q, error %v; want 200 finished over HTTP/%d",
						r.status, r.proto, r.body, r.err, tt.wantProto)
				}
			case <-time.After(waitLimit):
				t.Fatal("the in-flight request did not complete")
			}
			if err := g.stop(t); err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
			if conn, err := net.DialTimeout("tcp", g.addrs[0], 5*time.Second); err == nil {
				conn.Close()
				t.Errorf("a new connection was accepted after Run returned")
			}
		})
	}
}

func TestSlowHeaderClient(t *testing.T) {
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server:
  watch_config: false
  shutdown_grace: 5s
  read_header_timeout: 300ms
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`, a.URL()))

	tests := []struct {
		desc    string
		trickle bool // keep sending a byte every 50ms instead of stalling
	}{
		{desc: "partial request line, then silence"},
		{desc: "headers trickled a byte at a time", trickle: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			conn, err := net.DialTimeout("tcp", g.addrs[0], 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "GET /books HTTP/1.1\r\nHost: gw"); err != nil {
				t.Fatal(err)
			}
			stopTrickle := make(chan struct{})
			var trickled sync.WaitGroup
			if tt.trickle {
				trickled.Add(1)
				go func() {
					defer trickled.Done()
					for range 100 { // 5s at most
						select {
						case <-stopTrickle:
							return
						case <-time.After(50 * time.Millisecond):
						}
						if _, err := conn.Write([]byte("x")); err != nil {
							return
						}
					}
				}()
			}
			defer func() { close(stopTrickle); trickled.Wait() }()

			// A normal client is served while the slow one holds its connection.
			if e := g.getEcho(t, "/books"); e.Upstream != "a" {
				t.Errorf("normal request went to %q", e.Upstream)
			}

			// The server closes the connection (EOF, or a reset when the
			// trickle wrote after the close), answering nothing or 408.
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(conn)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("the slow client's connection was still open after 5s (read %q)", got)
			}
			if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408 ") {
				t.Errorf("the slow client got %q, want nothing or 408", got)
			}
		})
	}
}
