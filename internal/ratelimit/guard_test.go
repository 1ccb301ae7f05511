package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// guardFakeRemote is a remote store whose behaviour a test sets: it answers
// with fn, or fails with err.
type guardFakeRemote struct {
	mu    sync.Mutex
	err   error
	fn    func(ctx context.Context) error // runs first when set; may block
	calls atomic.Int64
}

func (f *guardFakeRemote) set(err error, fn func(ctx context.Context) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.fn = err, fn
}

func (f *guardFakeRemote) Allow(ctx context.Context, _ time.Time, checks []Check, results []Result) (bool, error) {
	f.calls.Add(1)
	f.mu.Lock()
	err, fn := f.err, f.fn
	f.mu.Unlock()
	if fn != nil {
		if err := fn(ctx); err != nil {
			return false, err
		}
	}
	if err != nil {
		return false, err
	}
	for i := range results {
		results[i] = Result{Allowed: true, Remaining: 42}
	}
	return true, nil
}

// guardSpy records the checks a store is given.
type guardSpy struct {
	Store
	mu    sync.Mutex
	calls [][]Check
}

func (s *guardSpy) Allow(ctx context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	s.mu.Lock()
	s.calls = append(s.calls, slices.Clone(checks))
	s.mu.Unlock()
	return s.Store.Allow(ctx, now, checks, results)
}

var (
	errGuardTestDown = errors.New("remote down")
	guardTestNow     = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	guardTestLog     = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func guardCheck(key string, p Policy) Check {
	return Check{Key: key, Limit: Limit{Rate: 10, Period: time.Minute, Burst: 10}, OnUnavailable: p, LocalShare: 0.5}
}

// TestGuardPolicies decides requests with a failing remote by each policy
// and by their mixtures.
func TestGuardPolicies(t *testing.T) {
	closedResult := Result{RetryAfter: time.Second}
	localFresh := Result{Allowed: true, Remaining: 4, ResetAfter: 12 * time.Second} // 5 per minute locally, one used
	tests := []struct {
		desc        string
		checks      []Check
		allowed     bool
		unavailable bool // error wraps ErrUnavailable
		results     []Result
		localCalls  int
		stats       GuardStats
	}{
		{
			desc:        "fail closed refuses",
			checks:      []Check{guardCheck("a", FailClosed)},
			unavailable: true,
			results:     []Result{closedResult},
			stats:       GuardStats{RemoteErrors: 1, FailClosed: 1},
		},
		{
			desc:    "fail open admits",
			checks:  []Check{guardCheck("a", FailOpen)},
			allowed: true,
			results: []Result{{Allowed: true}},
			stats:   GuardStats{RemoteErrors: 1, FailOpen: 1},
		},
		{
			desc:       "local decides with its share",
			checks:     []Check{guardCheck("a", Local)},
			allowed:    true,
			results:    []Result{localFresh},
			localCalls: 1,
			stats:      GuardStats{RemoteErrors: 1, LocalFallbacks: 1},
		},
		{
			desc:       "open and local together",
			checks:     []Check{guardCheck("a", FailOpen), guardCheck("b", Local), guardCheck("c", Local)},
			allowed:    true,
			results:    []Result{{Allowed: true}, localFresh, localFresh},
			localCalls: 1,
			stats:      GuardStats{RemoteErrors: 1, FailOpen: 1, LocalFallbacks: 2},
		},
		{
			desc:        "closed refuses the request and spares the local limits",
			checks:      []Check{guardCheck("a", Local), guardCheck("b", FailClosed), guardCheck("c", FailOpen)},
			unavailable: true,
			results:     []Result{closedResult, closedResult, {Allowed: true}},
			stats:       GuardStats{RemoteErrors: 1, FailClosed: 1, FailOpen: 1},
		},
		{
			desc:        "an unknown policy fails closed",
			checks:      []Check{guardCheck("a", Policy(9))},
			unavailable: true,
			results:     []Result{closedResult},
			stats:       GuardStats{RemoteErrors: 1, FailClosed: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			remote := &guardFakeRemote{err: errGuardTestDown}
			local := &guardSpy{Store: newGCRAModel()}
			g := NewGuarded(remote, local, GuardOptions{Log: guardTestLog})
			results := make([]Result, len(tt.checks))
			allowed, err := g.Allow(context.Background(), guardTestNow, tt.checks, results)
			if allowed != tt.allowed {
				t.Errorf("allowed %v, want %v", allowed, tt.allowed)
			}
			if errors.Is(err, ErrUnavailable) != tt.unavailable {
				t.Errorf("err %v, want ErrUnavailable %v", err, tt.unavailable)
			}
			if tt.unavailable && !errors.Is(err, errGuardTestDown) {
				t.Errorf("err %v does not wrap the remote's error", err)
			}
			if !tt.unavailable && err != nil {
				t.Errorf("err %v, want none", err)
			}
			if !slices.Equal(results, tt.results) {
				t.Errorf("results %+v\nwant %+v", results, tt.results)
			}
			if len(local.calls) != tt.localCalls {
				t.Errorf("%d calls to the local store, want %d", len(local.calls), tt.localCalls)
			}
			if s := g.Stats(); s != tt.stats {
				t.Errorf("stats %+v, want %+v", s, tt.stats)
			}
		})
	}
}

// TestGuardOutOfRange checks that a check no store can decide is the
// caller's error: the remote is not called and not blamed.
func TestGuardOutOfRange(t *testing.T) {
	remote := &guardFakeRemote{}
	g := NewGuarded(remote, newGCRAModel(), GuardOptions{TripAfter: 1, Log: guardTestLog})
	bad := Check{Key: "k", Limit: Limit{Rate: 1, Period: 365 * 24 * time.Hour, Burst: 1}, Cost: 100, OnUnavailable: FailOpen}
	for range 3 {
		ok, err := g.Allow(context.Background(), guardTestNow, []Check{bad}, make([]Result, 1))
		if ok || err == nil || errors.Is(err, ErrUnavailable) {
			t.Fatalf("allowed %v, err %v; want a plain error", ok, err)
		}
	}
	if n := remote.calls.Load(); n != 0 {
		t.Errorf("%d remote calls", n)
	}
	if ok, err := g.Allow(context.Background(), guardTestNow, []Check{guardCheck("k", FailClosed)}, make([]Result, 1)); !ok || err != nil {
		t.Errorf("a valid check after them: allowed %v, err %v; the breaker must still be closed", ok, err)
	}
	if s := g.Stats(); s != (GuardStats{}) {
		t.Errorf("stats %+v, want none", s)
	}
}

// TestGuardLocalShare checks the limit the local store gets: Rate and Burst
// times LocalShare, at least 1, Period unchanged.
func TestGuardLocalShare(t *testing.T) {
	tests := []struct {
		desc  string
		share float64
		limit Limit
		want  Limit
	}{
		{desc: "half", share: 0.5, limit: Limit{Rate: 100, Period: time.Minute, Burst: 20}, want: Limit{Rate: 50, Period: time.Minute, Burst: 10}},
		{desc: "rounds down", share: 0.3, limit: Limit{Rate: 10, Period: time.Second, Burst: 5}, want: Limit{Rate: 3, Period: time.Second, Burst: 1}},
		{desc: "at least 1", share: 0.01, limit: Limit{Rate: 10, Period: time.Second, Burst: 10}, want: Limit{Rate: 1, Period: time.Second, Burst: 1}},
		{desc: "whole", share: 1, limit: Limit{Rate: 10, Period: time.Second, Burst: 10}, want: Limit{Rate: 10, Period: time.Second, Burst: 10}},
		{desc: "unset counts as whole", share: 0, limit: Limit{Rate: 10, Period: time.Second, Burst: 10}, want: Limit{Rate: 10, Period: time.Second, Burst: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			local := &guardSpy{Store: newGCRAModel()}
			g := NewGuarded(&guardFakeRemote{err: errGuardTestDown}, local, GuardOptions{Log: guardTestLog})
			c := Check{Key: "k", Limit: tt.limit, OnUnavailable: Local, LocalShare: tt.share}
			if _, err := g.Allow(context.Background(), guardTestNow, []Check{c}, make([]Result, 1)); err != nil {
				t.Fatal(err)
			}
			if got := local.calls[0][0].Limit; got != tt.want {
				t.Errorf("local limit %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestGuardLocalAllOrNothing checks that the Local checks of a request are
// decided together: when one refuses, the other is not charged.
func TestGuardLocalAllOrNothing(t *testing.T) {
	model := newGCRAModel()
	g := NewGuarded(&guardFakeRemote{err: errGuardTestDown}, model, GuardOptions{Log: guardTestLog})
	ctx := context.Background()
	tight := Check{Key: "tight", Limit: Limit{Rate: 2, Period: time.Minute, Burst: 2}, OnUnavailable: Local, LocalShare: 0.5} // 1 locally
	loose := guardCheck("loose", Local)
	results := make([]Result, 2)
	if ok, err := g.Allow(ctx, guardTestNow, []Check{tight, loose}, results); !ok || err != nil {
		t.Fatalf("first request: %v %v", ok, err)
	}
	before, _ := model.get("loose")
	if ok, err := g.Allow(ctx, guardTestNow, []Check{tight, loose}, results); ok || err != nil {
		t.Fatalf("second request: allowed %v, err %v; want a plain refusal", ok, err)
	}
	if after, _ := model.get("loose"); after != before {
		t.Errorf("the refused request charged the loose limit: TAT %d, was %d", after, before)
	}
	if results[0].Allowed || !results[1].Allowed {
		t.Errorf("results %+v: want tight refusing, loose admitting without the charge", results)
	}
}

// TestGuardRemoteDecides checks that a working remote decides alone:
// its refusals are refusals, not failures.
func TestGuardRemoteDecides(t *testing.T) {
	remote := newGCRAModel()
	local := &guardSpy{Store: newGCRAModel()}
	g := NewGuarded(remote, local, GuardOptions{Log: guardTestLog})
	c := Check{Key: "k", Limit: Limit{Rate: 1, Period: time.Minute, Burst: 1}, OnUnavailable: FailOpen}
	results := make([]Result, 1)
	for i, want := range []bool{true, false, false} {
		ok, err := g.Allow(context.Background(), guardTestNow, []Check{c}, results)
		if ok != want || err != nil {
			t.Fatalf("request %d: allowed %v, err %v; want %v", i, ok, err, want)
		}
	}
	if results[0].RetryAfter != time.Minute {
		t.Errorf("RetryAfter %v, want the remote's 1m", results[0].RetryAfter)
	}
	if s := g.Stats(); s != (GuardStats{}) || len(local.calls) != 0 {
		t.Errorf("stats %+v, local calls %d; want no fallback", s, len(local.calls))
	}
}

// TestGuardBudget checks that a remote that hangs, and ignores its
// context, holds a request no longer than the budget.
func TestGuardBudget(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	remote := &guardFakeRemote{}
	remote.set(nil, func(context.Context) error { <-release; return nil })
	budget := 30 * time.Millisecond
	g := NewGuarded(remote, newGCRAModel(), GuardOptions{Budget: budget, Log: guardTestLog})

	start := time.Now()
	results := make([]Result, 1)
	ok, err := g.Allow(context.Background(), guardTestNow, []Check{guardCheck("k", FailClosed)}, results)
	took := time.Since(start)
	if ok || !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("allowed %v, err %v; want ErrUnavailable after the deadline", ok, err)
	}
	if took > budget+500*time.Millisecond {
		t.Errorf("Allow took %v with a budget of %v", took, budget)
	}
	t.Logf("a hanging remote held the request %v (budget %v)", took, budget)
	if s := g.Stats(); s.RemoteErrors != 1 || s.FailClosed != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestGuardBreaker walks the breaker through its states: closed, open
// after 5 failures (no remote calls), half-open with a single probe while
// other requests fall back, and closed again when the probe succeeds.
func TestGuardBreaker(t *testing.T) {
	remote := &guardFakeRemote{err: errGuardTestDown}
	openFor := 100 * time.Millisecond
	g := NewGuarded(remote, newGCRAModel(), GuardOptions{OpenFor: openFor, Budget: 5 * time.Second, Log: guardTestLog})
	checks := []Check{guardCheck("k", FailOpen)}
	allow := func() error {
		ok, err := g.Allow(context.Background(), guardTestNow, checks, make([]Result, 1))
		if !ok || err != nil {
			return fmt.Errorf("fail-open request: allowed %v, err %v", ok, err)
		}
		return nil
	}

	for range 5 {
		if err := allow(); err != nil {
			t.Fatal(err)
		}
	}
	if n := remote.calls.Load(); n != 5 {
		t.Fatalf("%d remote calls before the breaker opened, want 5", n)
	}
	for range 20 {
		if err := allow(); err != nil {
			t.Fatal(err)
		}
	}
	if n := remote.calls.Load(); n != 5 {
		t.Fatalf("the open breaker let %d calls through", n-5)
	}
	if s := g.Stats(); s.BreakerOpen != 20 || s.RemoteErrors != 5 || s.FailOpen != 25 {
		t.Fatalf("stats %+v", s)
	}

	// Half-open: the first request is the probe; it hangs a while, and
	// meanwhile the others fall back without calling the remote.
	inProbe, release := make(chan struct{}), make(chan struct{})
	remote.set(nil, func(context.Context) error { close(inProbe); <-release; return nil })
	time.Sleep(openFor + 20*time.Millisecond)
	probe := make(chan error, 1)
	go func() { probe <- allow() }()
	<-inProbe
	remote.set(nil, nil)
	if err := allow(); err != nil {
		t.Fatal(err)
	}
	if n := remote.calls.Load(); n != 6 {
		t.Errorf("%d remote calls while the probe was out, want only the probe", n-5)
	}
	if s := g.Stats(); s.BreakerOpen != 21 {
		t.Errorf("the call during the probe was not counted as skipped: %+v", s)
	}
	close(release)
	if err := <-probe; err != nil {
		t.Fatalf("probe: %v", err)
	}

	for range 10 {
		if err := allow(); err != nil {
			t.Fatal(err)
		}
	}
	if n := remote.calls.Load() - 6; n != 10 {
		t.Errorf("after the probe succeeded %d of 10 calls reached the remote", n)
	}
	if s := g.Stats(); s.RemoteErrors != 5 || s.BreakerOpen != 21 {
		t.Errorf("stats %+v", s)
	}
}

// TestGuardCallerGone checks that a caller whose context ends gets that
// error, and that it does not count against the remote.
func TestGuardCallerGone(t *testing.T) {
	remote := &guardFakeRemote{}
	remote.set(nil, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	g := NewGuarded(remote, newGCRAModel(), GuardOptions{TripAfter: 1, Budget: time.Second, Log: guardTestLog})
	for range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { time.Sleep(5 * time.Millisecond); cancel() }()
		ok, err := g.Allow(ctx, guardTestNow, []Check{guardCheck("k", FailOpen)}, make([]Result, 1))
		if ok || !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("allowed %v, err %v; want context.Canceled", ok, err)
		}
	}
	if n := remote.calls.Load(); n != 3 {
		t.Errorf("%d remote calls, want 3: canceled calls must not open the breaker", n)
	}
	if s := g.Stats(); s != (GuardStats{}) {
		t.Errorf("stats %+v, want none", s)
	}
}

// guardLogRecorder keeps the fallback records a Guarded logs.
type guardLogRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *guardLogRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *guardLogRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *guardLogRecorder) WithGroup(string) slog.Handler            { return h }
func (h *guardLogRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

// fallbacks returns the suppressed counts of the fallback records of policy p.
func (h *guardLogRecorder) fallbacks(p Policy) []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int64
	for _, r := range h.records {
		var policy string
		var suppressed int64 = -1
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "policy":
				policy = a.Value.String()
			case "suppressed":
				suppressed = int64(a.Value.Uint64())
			}
			return true
		})
		if policy == p.String() {
			out = append(out, suppressed)
		}
	}
	return out
}

// TestGuardLogThrottle checks that fallbacks are logged at most once per
// 10s per policy, with the number held back.
func TestGuardLogThrottle(t *testing.T) {
	rec := &guardLogRecorder{}
	g := NewGuarded(&guardFakeRemote{err: errGuardTestDown}, newGCRAModel(), GuardOptions{Log: slog.New(rec), OpenFor: time.Hour})
	ctx := context.Background()
	checks := []Check{guardCheck("a", FailOpen), guardCheck("b", Local)}
	now := guardTestNow
	for i := range 50 {
		g.Allow(ctx, now.Add(time.Duration(i)*100*time.Millisecond), checks, make([]Result, 2)) // 5s in all
	}
	if got := rec.fallbacks(FailOpen); !slices.Equal(got, []int64{0}) {
		t.Fatalf("fail_open records %v, want one", got)
	}
	g.Allow(ctx, now.Add(10*time.Second), checks, make([]Result, 2))
	if got := rec.fallbacks(FailOpen); !slices.Equal(got, []int64{0, 49}) {
		t.Errorf("fail_open records %v, want a second one with 49 suppressed", got)
	}
	if got := rec.fallbacks(Local); len(got) != 2 {
		t.Errorf("local records %v, want two (its own gate)", got)
	}
	if got := rec.fallbacks(FailClosed); len(got) != 0 {
		t.Errorf("fail_closed records %v, want none", got)
	}
}

// TestGuardRedisStoppedMidTraffic runs a bounded loop of requests, one per
// policy, against a redis-server of the test's own, kills it halfway, and
// restarts it on the same port: no call waits much past the budget, each
// policy does what it says while Redis is down, and shared limiting
// resumes once the breaker lets a probe through.
func TestGuardRedisStoppedMidTraffic(t *testing.T) {
	srv := startRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.addr}) // default options: the guard must bound the wait itself
	defer client.Close()
	prefix := testPrefix()
	budget, openFor := 50*time.Millisecond, 200*time.Millisecond
	local := newGCRAModel()
	g := NewGuarded(NewRedis(client, RedisOptions{Prefix: prefix, ServerTime: true}), local,
		GuardOptions{Budget: budget, OpenFor: openFor, Log: guardTestLog})
	ctx := context.Background()
	limit := Limit{Rate: 100, Period: time.Hour, Burst: 100} // all 100 requests before the kill fit
	checks := map[Policy]Check{
		FailClosed: {Key: "closed", Limit: limit, OnUnavailable: FailClosed},
		FailOpen:   {Key: "open", Limit: limit, OnUnavailable: FailOpen},
		Local:      {Key: "local", Limit: limit, OnUnavailable: Local, LocalShare: 0.1}, // 10 locally
	}
	policies := []Policy{FailClosed, FailOpen, Local}

	var slowest time.Duration
	call := func(p Policy) (bool, error) {
		start := time.Now()
		ok, err := g.Allow(ctx, time.Now(), []Check{checks[p]}, make([]Result, 1))
		slowest = max(slowest, time.Since(start))
		return ok, err
	}
	for range 100 {
		for _, p := range policies {
			if ok, err := call(p); !ok || err != nil {
				t.Fatalf("%s with Redis up: allowed %v, err %v", p, ok, err)
			}
		}
	}
	srv.stop()
	var localAdmitted int
	for i := range 200 {
		time.Sleep(2 * time.Millisecond) // let the outage span a few open periods and probes
		for _, p := range policies {
			ok, err := call(p)
			switch p {
			case FailClosed:
				if ok || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("request %d, fail_closed with Redis down: allowed %v, err %v", i, ok, err)
				}
			case FailOpen:
				if !ok || err != nil {
					t.Fatalf("request %d, fail_open with Redis down: allowed %v, err %v", i, ok, err)
				}
			case Local:
				if err != nil {
					t.Fatalf("request %d, local with Redis down: %v", i, err)
				}
				if ok {
					localAdmitted++
				}
			}
		}
	}
	if localAdmitted != 10 {
		t.Errorf("local admitted %d with Redis down, want its share, 10", localAdmitted)
	}
	s := g.Stats()
	if s.RemoteErrors == 0 || s.BreakerOpen == 0 || s.FailClosed != 200 || s.FailOpen != 200 || s.LocalFallbacks != 200 {
		t.Errorf("stats %+v", s)
	}
	t.Logf("Redis down: slowest call %v (budget %v); stats %+v", slowest, budget, s)
	if slowest > budget+500*time.Millisecond {
		t.Errorf("a call took %v with a budget of %v", slowest, budget)
	}

	srv.start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := call(FailClosed); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fail_closed still unavailable 10s after Redis came back; stats %+v", g.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := g.Stats()
	for _, p := range policies {
		if ok, err := call(p); !ok || err != nil {
			t.Errorf("%s after Redis came back: allowed %v, err %v", p, ok, err)
		}
	}
	if after := g.Stats(); after != before {
		t.Errorf("fallbacks after recovery: stats %+v, were %+v", after, before)
	}
	if n, err := client.Exists(ctx, prefix+"open", prefix+"local").Result(); err != nil || n != 2 {
		t.Errorf("the restarted Redis holds %d of the limits (err %v), want 2", n, err)
	}
}

// TestGuardRedisHangs points the store at a server that accepts
// connections and never answers: calls still end at the budget, and the
// breaker then stops calling it.
func TestGuardRedisHangs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("synchronous=%v", sync), func(t *testing.T) {
			guardAgainstHangingRedis(t, l.Addr().String(), sync)
		})
	}
}

// guardAgainstHangingRedis runs 20 requests against a server that never
// answers. In synchronous mode the client must honour context deadlines.
func guardAgainstHangingRedis(t *testing.T, addr string, sync bool) {
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: sync, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	budget := 50 * time.Millisecond
	g := NewGuarded(NewRedis(client, RedisOptions{ServerTime: true, Prefix: testPrefix()}), newGCRAModel(),
		GuardOptions{Budget: budget, OpenFor: time.Hour, Log: guardTestLog, Synchronous: sync})

	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		ok, err := g.Allow(context.Background(), time.Now(), []Check{guardCheck("k", FailClosed)}, make([]Result, 1))
		slowest = max(slowest, time.Since(start))
		if ok || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("request %d: allowed %v, err %v; want ErrUnavailable", i, ok, err)
		}
	}
	t.Logf("hanging Redis: slowest call %v (budget %v)", slowest, budget)
	if slowest > budget+500*time.Millisecond {
		t.Errorf("a call took %v with a budget of %v", slowest, budget)
	}
	if s := g.Stats(); s.RemoteErrors != 5 || s.BreakerOpen != 15 {
		t.Errorf("stats %+v, want 5 remote errors, then 15 calls skipped", s)
	}
}
