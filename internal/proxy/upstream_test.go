package proxy

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

func TestRoundRobin(t *testing.T) {
	a, _ := namedServer(t, "a")
	b, _ := namedServer(t, "b")
	c, _ := namedServer(t, "c")
	u := newTestUpstream(t, testConfig(t, a.URL, b.URL, c.URL), &renders{})

	var got []string
	for range 9 {
		rec := get(u, "/x")
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		got = append(got, rec.Body.String())
	}
	if want := "a b c a b c a b c"; strings.Join(got, " ") != want {
		t.Errorf("targets %q, want %q", strings.Join(got, " "), want)
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	servers := make([]*atomic.Int64, 3)
	var targets []string
	for i := range servers {
		ts, hits := namedServer(t, "s")
		servers[i] = hits
		targets = append(targets, ts.URL)
	}
	u := newTestUpstream(t, testConfig(t, targets...), &renders{})

	var wg sync.WaitGroup
	for range 30 {
		wg.Go(func() {
			if rec := get(u, "/x"); rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
		})
	}
	wg.Wait()
	for i, hits := range servers {
		if n := hits.Load(); n != 10 {
			t.Errorf("target %d got %d requests, want 10", i, n)
		}
	}
}

func TestNoTargetAvailable(t *testing.T) {
	ts, hits := namedServer(t, "a")
	rs := &renders{}
	u := newTestUpstream(t, testConfig(t, ts.URL), rs)
	u.targets[0].healthy.Store(false)

	ex := newExchange()
	rec := send(u, httptest.NewRequest(http.MethodGet, "/x", nil), ex)
	if rec.Code != http.StatusServiceUnavailable || rs.last(t).ReasonID != gateway.ReasonUpstreamUnavailable {
		t.Errorf("got %d %+v, want 503 upstream_unavailable", rec.Code, rs.last(t))
	}
	if hits.Load() != 0 || ex.Target != "" {
		t.Errorf("upstream contacted: hits %d, target %q", hits.Load(), ex.Target)
	}
}

func TestPassiveEjection(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	var aHits atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		aHits.Add(1)
		if broken.Load() {
			hangUp(w)
			return
		}
		w.Write([]byte("a"))
	}))
	t.Cleanup(a.Close)
	b, _ := namedServer(t, "b")
	c, _ := namedServer(t, "c")
	cfg := testConfig(t, a.URL, b.URL, c.URL)
	cfg.Passive = config.PassiveHealth{MaxFailures: 2, Ejection: config.Duration(30 * time.Second)}
	rs := &renders{}
	u := newTestUpstream(t, cfg, rs)
	clock := newFakeClock()
	u.now = clock.Now

	// a, b, c, a: the second failure of a ejects it.
	wantCodes := []int{502, 200, 200, 502, 200, 200}
	for i, want := range wantCodes {
		if rec := get(u, "/x"); rec.Code != want {
			t.Fatalf("request %d: status %d, want %d", i, rec.Code, want)
		}
	}
	if r := rs.last(t); r.ReasonID != gateway.ReasonUpstreamUnreachable {
		t.Errorf("reason %q, want upstream_unreachable", r.ReasonID)
	}
	st := u.Status()[0]
	if st.Available || !st.EjectedUntil.Equal(clock.Now().Add(30*time.Second)) || st.ConsecutiveFailures != 0 {
		t.Errorf("status of ejected target = %+v", st)
	}

	for i := range 9 {
		rec := get(u, "/x")
		if rec.Code != http.StatusOK || rec.Body.String() == "a" {
			t.Fatalf("request %d while a is ejected: %d %q", i, rec.Code, rec.Body)
		}
	}
	if n := aHits.Load(); n != 2 {
		t.Errorf("ejected target got traffic: %d requests, want 2", n)
	}

	broken.Store(false)
	clock.Advance(30*time.Second + time.Nanosecond)
	var names []string
	for range 3 {
		names = append(names, get(u, "/x").Body.String())
	}
	if !strings.Contains(strings.Join(names, ""), "a") {
		t.Errorf("target not back after ejection: %q", names)
	}
	if st := u.Status()[0]; !st.Available || !st.EjectedUntil.IsZero() {
		t.Errorf("status after ejection = %+v", st)
	}
}

func TestPassiveDisabled(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hangUp(w) }))
	t.Cleanup(a.Close)
	cfg := testConfig(t, a.URL)
	cfg.Passive = config.PassiveHealth{Disabled: true, MaxFailures: 1}
	u := newTestUpstream(t, cfg, &renders{})
	for i := range 3 {
		if rec := get(u, "/x"); rec.Code != http.StatusBadGateway {
			t.Fatalf("request %d: status %d, want 502 (never ejected)", i, rec.Code)
		}
	}
}

func TestActiveHealthChecks(t *testing.T) {
	var bHealthy atomic.Bool
	bHealthy.Store(true)
	var bHits atomic.Int64
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == defaultHealthPath {
			if r.Header.Get("User-Agent") != healthCheckUserAgent {
				t.Errorf("health check User-Agent %q", r.Header.Get("User-Agent"))
			}
			if !bHealthy.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			return
		}
		bHits.Add(1)
		w.Write([]byte("b"))
	}))
	t.Cleanup(b.Close)
	a, _ := namedServer(t, "a")
	c, _ := namedServer(t, "c")
	cfg := testConfig(t, a.URL, b.URL, c.URL)
	cfg.HealthCheck = &config.HealthCheck{
		Path:               defaultHealthPath,
		Interval:           config.Duration(10 * time.Millisecond),
		Timeout:            config.Duration(5 * time.Second),
		HealthyThreshold:   2,
		UnhealthyThreshold: 2,
	}
	var logs syncBuffer
	u, err := New("api", cfg, slog.New(slog.NewTextHandler(&logs, nil)), WithRender((&renders{}).render))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	before := healthCheckers()
	u.Start()
	u.Start() // idempotent
	if n := healthCheckers() - before; n != 3 {
		t.Errorf("%d health-check goroutines, want 3", n)
	}

	bHealthy.Store(false)
	waitFor(t, "b to be marked unhealthy", func() bool { return !u.Status()[1].Healthy })
	for range 6 {
		if rec := get(u, "/x"); rec.Code != http.StatusOK || rec.Body.String() == "b" {
			t.Fatalf("got %d %q while b is unhealthy", rec.Code, rec.Body)
		}
	}
	if n := bHits.Load(); n != 0 {
		t.Errorf("unhealthy target got %d requests", n)
	}

	bHealthy.Store(true)
	waitFor(t, "b to be marked healthy", func() bool { return u.Status()[1].Healthy })
	for range 3 {
		get(u, "/x")
	}
	if n := bHits.Load(); n != 1 {
		t.Errorf("healthy target got %d of 3 requests, want 1", n)
	}

	// Close waits for the checkers to return; each may still be unwinding
	// its last frame for a moment.
	u.Close()
	waitFor(t, "health checkers to exit", func() bool { return healthCheckers() == before })
	u.Start() // after Close: nothing
	if n := healthCheckers() - before; n != 0 {
		t.Errorf("Start after Close started %d goroutines", n)
	}
	for _, want := range []string{"healthy=false", "healthy=true", "upstream=api", "target=" + b.URL} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, logs.String())
		}
	}
}

func TestHealthCheckPass(t *testing.T) {
	tests := []struct {
		desc   string
		expect []int
		status int
		want   bool
	}{
		{desc: "any 2xx by default", status: 204, want: true},
		{desc: "3xx fails by default", status: 301, want: false},
		{desc: "5xx fails by default", status: 503, want: false},
		{desc: "listed status passes", expect: []int{200, 429}, status: 429, want: true},
		{desc: "unlisted 2xx fails", expect: []int{200}, status: 204, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h := newHealthCheck(&config.HealthCheck{ExpectStatus: tt.expect})
			if got := h.pass(tt.status); got != tt.want {
				t.Errorf("pass(%d) = %v, want %v", tt.status, got, tt.want)
			}
		})
	}
}

func TestCloseWithoutStart(t *testing.T) {
	ts, _ := namedServer(t, "a")
	u, err := New("test", testConfig(t, ts.URL), nil)
	if err != nil {
		t.Fatal(err)
	}
	u.Close()
	u.Close()
}

func TestCircuitBreaker(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	t.Cleanup(ts.Close)
	cfg := testConfig(t, ts.URL)
	cfg.Passive.Disabled = true
	cfg.CircuitBreaker = &config.CircuitBreaker{
		FailureRatio:     0.5,
		MinRequests:      3,
		Window:           config.Duration(time.Minute),
		OpenFor:          config.Duration(50 * time.Millisecond),
		HalfOpenRequests: 1,
	}
	rs := &renders{}
	u := newTestUpstream(t, cfg, rs)

	if s := u.BreakerState(); s != "closed" {
		t.Fatalf("initial state %q", s)
	}
	for i := range 3 {
		if rec := get(u, "/x"); rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("request %d: status %d, want the upstream's 503", i, rec.Code)
		}
	}
	if rs.count() != 0 {
		t.Errorf("upstream 503s were rendered as rejects: %d", rs.count())
	}
	if s := u.BreakerState(); s != "open" {
		t.Fatalf("state after 3 failures %q, want open", s)
	}

	ex := newExchange()
	rec := send(u, httptest.NewRequest(http.MethodGet, "/x", nil), ex)
	if rec.Code != http.StatusServiceUnavailable || rs.last(t).ReasonID != gateway.ReasonUpstreamCircuitOpen {
		t.Fatalf("open circuit: %d %+v, want 503 upstream_circuit_open", rec.Code, rs.last(t))
	}
	if n := hits.Load(); n != 3 || ex.Target != "" {
		t.Errorf("open circuit reached the upstream: %d requests, target %q", n, ex.Target)
	}

	failing.Store(false)
	waitFor(t, "the breaker to half-open", func() bool { return u.BreakerState() == "half-open" })
	if rec := get(u, "/x"); rec.Code != http.StatusOK {
		t.Fatalf("probe: status %d", rec.Code)
	}
	if s := u.BreakerState(); s != "closed" {
		t.Errorf("state after a successful probe %q, want closed", s)
	}
}

func TestBreakerRatio(t *testing.T) {
	tests := []struct {
		desc      string
		successes int
		failures  int
		wantOpen  bool
	}{
		{desc: "below min requests", failures: 3, wantOpen: false},
		{desc: "ratio below threshold", successes: 3, failures: 2, wantOpen: false},
		{desc: "ratio at threshold", successes: 2, failures: 2, wantOpen: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			b := newBreaker("test", &config.CircuitBreaker{FailureRatio: 0.5, MinRequests: 4}, quietLog)
			report := func(err error) {
				done, aerr := b.Allow()
				if aerr != nil {
					t.Fatalf("Allow: %v", aerr)
				}
				done(err)
			}
			for range 10 { // excluded outcomes count for nothing
				report(errExcluded)
			}
			for range tt.successes {
				report(nil)
			}
			for range tt.failures {
				report(errFailure)
			}
			if open := b.State().String() == "open"; open != tt.wantOpen {
				t.Errorf("open = %v, want %v", open, tt.wantOpen)
			}
		})
	}
}

func TestTargetPassiveCounting(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		desc        string
		events      string // f: failure, s: success
		wantEjected bool
	}{
		{desc: "max consecutive failures eject", events: "fff", wantEjected: true},
		{desc: "fewer failures do not", events: "ff", wantEjected: false},
		{desc: "a success resets the count", events: "ffsff", wantEjected: false},
		{desc: "failures after a success count again", events: "ffsfff", wantEjected: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tg, err := newTarget(mustURL(t, "http://127.0.0.1:1"))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range tt.events {
				if e == 's' {
					tg.recordSuccess()
				} else {
					tg.recordFailure(now, 3, time.Minute)
				}
			}
			if ejected := tg.ejectedUntil.Load() > now.UnixNano(); ejected != tt.wantEjected {
				t.Errorf("ejected = %v, want %v", ejected, tt.wantEjected)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		desc string
		cfg  *config.Upstream
		want string
	}{
		{desc: "nil config", cfg: nil, want: "no configuration"},
		{desc: "no targets", cfg: &config.Upstream{}, want: "no targets"},
		{desc: "empty target", cfg: &config.Upstream{Targets: []config.URL{{}}}, want: "targets[0]"},
		{desc: "bad scheme", cfg: &config.Upstream{Targets: []config.URL{{URL: mustURL(t, "ftp://h")}}}, want: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := New("api", tt.cfg, quietLog)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "api") {
				t.Errorf("New error = %v, want one naming the upstream and %q", err, tt.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
