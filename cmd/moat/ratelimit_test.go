package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ownRedis is a redis-server of the test's own on a free loopback port, so
// the test can stop and restart it without disturbing other tests.
type ownRedis struct {
	t    *testing.T
	addr string
	port string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (scripts/test installs it)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	r := &ownRedis{t: t, addr: addr, port: port}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *ownRedis) start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.cmd = cmd
	c := redis.NewClient(&redis.Options{Addr: r.addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server on %s did not answer within 10s", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *ownRedis) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
		r.cmd = nil
	}
}

// TestTwoProcessesShareALimit runs two moat processes against one Redis and
// a limit of 25 requests per hour shared between them: sending 60 requests
// alternately, exactly 25 pass. Then Redis is stopped: a fail_closed limit
// answers 503 limiter_unavailable in both processes, and
// a fail_open one admits. Redis restarts (empty, as after a crash): shared
// limiting resumes, and the two processes again admit exactly the limit
// between them.
func TestTwoProcessesShareALimit(t *testing.T) {
	rdb := startOwnRedis(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	var b [6]byte
	rand.Read(b[:])
	name := "shared-" + hex.EncodeToString(b[:])

	dir := t.TempDir()
	cfg := filepath.Join(dir, "moat.yaml")
	doc := fmt.Sprintf(`server: {watch_config: false, shutdown_grace: 2s}
listeners: [{address: 127.0.0.1:0}]
state:
  redis: {addresses: [%q], budget: 200ms}
rate_limits:
  %s: {rate: 25, per: 1h, key: global}
  open-when-down: {rate: 1000000, per: 1s, key: global, on_redis_error: fail_open}
upstreams:
  api: {targets: [%q]}
routes:
  - {path: /closed, methods: [GET], upstream: api, public: true, rate_limits: [%s]}
  - {path: /open, methods: [GET], upstream: api, public: true, rate_limits: [open-when-down]}
`, rdb.addr, name, up.URL, name)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, a, _ := startServe(t, cfg)
	_, b2, _ := startServe(t, cfg)
	urls := []string{a, b2}
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, time.Duration) {
		start := time.Now()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	count := func() (ok, limited int) {
		for i := range 60 {
			switch code, _ := get(urls[i%2] + "/closed"); code {
			case 200:
				ok++
			case 429:
				limited++
			default:
				t.Fatalf("request %d: status %d", i, code)
			}
		}
		return ok, limited
	}
	// Warm up: connections and the script cache, through a limit of its own,
	// so that a slow first round trip on a loaded machine is not a 503.
	for _, u := range urls {
		for i := 0; ; i++ {
			if code, _ := get(u + "/open"); code == 200 {
				break
			}
			if i == 50 {
				t.Fatalf("%s: no 200 from a fail_open limit", u)
			}
		}
	}
	if ok, limited := count(); ok != 25 || limited != 35 {
		t.Fatalf("two processes admitted %d and refused %d of 60, want exactly 25 admitted", ok, limited)
	}

	rdb.stop()
	var slowest time.Duration
	for i := range 20 {
		code, took := get(urls[i%2] + "/closed")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("fail_closed limit with Redis down: status %d, want 503", code)
		}
		slowest = max(slowest, took)
		if code, _ := get(urls[i%2] + "/open"); code != 200 {
			t.Fatalf("fail_open limit with Redis down: status %d, want 200", code)
		}
	}
	t.Logf("slowest answer with Redis down: %v (budget 200ms)", slowest)

	rdb.start() // empty: a restarted Redis has lost its counters
	deadline := time.Now().Add(15 * time.Second)
	for { // the breaker probes again within a second
		if code, _ := get(a + "/open"); code == 200 {
			if code, _ := get(b2 + "/open"); code == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("shared limiting did not resume after Redis restarted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Wait until both processes decide through Redis again (not 503).
	for _, u := range urls {
		for {
			code, _ := get(u + "/open")
			c2, _ := get(u + "/closed")
			if code == 200 && c2 == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still not deciding through Redis: %d %d", u, code, c2)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// Two requests were admitted while probing; the rest of the limit is shared exactly.
	if ok, _ := count(); ok != 23 {
		t.Fatalf("after the restart the two processes admitted %d, want the 23 left of 25", ok)
	}
}
