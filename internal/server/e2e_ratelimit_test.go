package server_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func uniqueName(t *testing.T) string {
	var b [6]byte
	rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:])
}

// TestRateLimitMemory: a limit refuses past its burst with 429, Retry-After
// and RateLimit headers, and its counters survive a reload.
func TestRateLimitMemory(t *testing.T) {
	up := newUpstream(t, "a")
	doc := `
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
rate_limits:
  per-ip: {rate: 3, per: 1h, key: client_ip}
upstreams:
  a: {targets: [%q]}
routes:
  - {name: %s, path: /x, methods: [GET], upstream: a, public: true, rate_limits: [per-ip]}
`
	g := startGateway(t, fmt.Sprintf(doc, up.URL(), "first"))
	for i := 1; i <= 3; i++ {
		resp, body := g.get(t, "/x")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, clip(body))
		}
		if got, want := resp.Header.Get("RateLimit"), fmt.Sprintf(`"per-ip";r=%d;t=`, 3-i); !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit %q, want %s...", i, got, want)
		}
		if got := resp.Header.Get("RateLimit-Policy"); got != `"per-ip";q=3;w=3600` {
			t.Errorf("RateLimit-Policy %q", got)
		}
	}
	resp, body := g.get(t, "/x")
	wantProblem(t, resp, body, 429, "rate_limited")
	if resp.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	hits := up.hits.Load()

	g.rewrite(t, fmt.Sprintf(doc, up.URL(), "renamed"))
	if err := g.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, body = g.get(t, "/x")
	wantProblem(t, resp, body, 429, "rate_limited")
	if up.hits.Load() != hits {
		t.Error("a refused request reached the upstream")
	}
}

// TestRateLimitSharedThroughRedis: two gateway instances with their own Redis
// clients share one limit and admit exactly the limit between them.
func TestRateLimitSharedThroughRedis(t *testing.T) {
	if err := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping").Run(); err != nil {
		t.Skip("no Redis on 127.0.0.1:6379 (scripts/test starts one)")
	}
	up := newUpstream(t, "a")
	name := uniqueName(t)
	doc := fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state:
  redis: {addresses: ["127.0.0.1:6379"], budget: 2s}
rate_limits:
  %s: {rate: 25, per: 1h, key: global}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /x, methods: [GET], upstream: a, public: true, rate_limits: [%s]}
`, name, up.URL(), name)
	a, b := startGateway(t, doc), startGateway(t, doc)

	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := a
			if w%2 == 1 {
				g = b
			}
			for i := 0; i < 15; i++ {
				resp, body := send(t, g.client, newRequest(t, "GET", g.url()+"/x", nil))
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					t.Errorf("status %d: %s", resp.StatusCode, clip(body))
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 25 || limited.Load() != 35 {
		t.Errorf("admitted %d and refused %d of 60, want exactly 25 and 35", ok.Load(), limited.Load())
	}
}

// TestInFlightLimit: with max_in_flight 1, a second request while the first
// is still being answered gets 429 concurrency_limited; once the first has
// ended, requests are admitted again.
func TestInFlightLimit(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(slow.Close)
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
rate_limits:
  one-at-a-time: {max_in_flight: 1, key: client_ip}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /slow, methods: [GET], upstream: a, public: true, rate_limits: [one-at-a-time]}
  - {path: /fast, methods: [GET], upstream: a, public: true, rate_limits: [one-at-a-time]}
`, slow.URL))

	first := make(chan int, 1)
	go func() {
		resp, _ := send(t, g.client, newRequest(t, "GET", g.url()+"/slow", nil))
		first <- resp.StatusCode
	}()
	select {
	case <-started:
	case <-time.After(waitLimit):
		t.Fatal("the first request never reached the upstream")
	}
	resp, body := g.get(t, "/fast")
	wantProblem(t, resp, body, 429, "concurrency_limited")
	close(release)
	if code := <-first; code != 200 {
		t.Fatalf("first request: %d", code)
	}
	eventually(t, "the slot to be released", func() bool {
		resp, _ := g.get(t, "/fast")
		return resp.StatusCode == 200
	})
}
