package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// epoch is an arbitrary decision time; tests add offsets to it.
var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func newTestMemory(t testing.TB, o MemoryOptions) *Memory {
	t.Helper()
	if o.SweepInterval == 0 {
		o.SweepInterval = -1 // tests sweep by hand
	}
	m := NewMemory(o)
	t.Cleanup(m.Close)
	return m
}

// allow is Memory.Allow for tests: it fails the test on an error.
func allow(t testing.TB, m *Memory, now time.Time, checks ...Check) (bool, []Result) {
	t.Helper()
	results := make([]Result, len(checks))
	ok, err := m.Allow(context.Background(), now, checks, results)
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	return ok, results
}

// TestMemoryMatchesDecide walks a burst, refusals and refills through
// Memory, checking each result against fixed expectations and against
// decide on a model TAT.
func TestMemoryMatchesDecide(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 3} // T = 100ms, tau = 200ms
	tests := []struct {
		desc      string
		at        time.Duration // after epoch
		cost      int64
		allowed   bool
		remaining int64
		retry     time.Duration
		reset     time.Duration
	}{
		{desc: "first", at: 0, allowed: true, remaining: 2, reset: 100 * time.Millisecond},
		{desc: "burst 2", at: 0, allowed: true, remaining: 1, reset: 200 * time.Millisecond},
		{desc: "burst 3", at: 0, allowed: true, remaining: 0, reset: 300 * time.Millisecond},
		{desc: "over the burst", at: 0, allowed: false, remaining: 0, retry: 100 * time.Millisecond, reset: 300 * time.Millisecond},
		{desc: "still early", at: 50 * time.Millisecond, allowed: false, retry: 50 * time.Millisecond, reset: 250 * time.Millisecond},
		{desc: "one emission later", at: 100 * time.Millisecond, allowed: true, remaining: 0, reset: 300 * time.Millisecond},
		{desc: "half refilled", at: 300 * time.Millisecond, allowed: true, remaining: 1, reset: 200 * time.Millisecond},
		{desc: "cost 2 does not fit", at: 300 * time.Millisecond, cost: 2, allowed: false, remaining: 1, retry: 100 * time.Millisecond, reset: 200 * time.Millisecond},
		{desc: "cost 2 fits later", at: 400 * time.Millisecond, cost: 2, allowed: true, remaining: 0, reset: 300 * time.Millisecond},
		{desc: "long idle refills to the burst", at: 10 * time.Second, allowed: true, remaining: 2, reset: 100 * time.Millisecond},
		{desc: "cost above the burst never fits", at: 20 * time.Second, cost: 4, allowed: false, remaining: 3, retry: 100 * time.Millisecond},
	}
	m := newTestMemory(t, MemoryOptions{})
	var model int64
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			now := epoch.Add(tt.at)
			want, next := decide(model, now.UnixNano(), l, tt.cost)
			model = next
			ok, got := allow(t, m, now, Check{Key: "k", Limit: l, Cost: tt.cost})
			if got[0] != want || ok != want.Allowed {
				t.Fatalf("Memory says %v %+v, decide says %+v", ok, got[0], want)
			}
			if want.Allowed != tt.allowed || want.Remaining != tt.remaining || want.RetryAfter != tt.retry || want.ResetAfter != tt.reset {
				t.Fatalf("got %+v, want allowed %v remaining %d retry %v reset %v", want, tt.allowed, tt.remaining, tt.retry, tt.reset)
			}
		})
	}
}

// TestMemoryAllOrNothing checks that a limit that admits a request is not
// charged when another limit refuses it.
func TestMemoryAllOrNothing(t *testing.T) {
	a := Check{Key: "a", Limit: Limit{Rate: 1, Period: time.Second, Burst: 3}}
	b := Check{Key: "b", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}
	m := newTestMemory(t, MemoryOptions{})

	if ok, _ := allow(t, m, epoch, a, b); !ok {
		t.Fatal("first request refused")
	}
	ok, res := allow(t, m, epoch, a, b)
	if ok {
		t.Fatal("b's burst of 1 admitted a second request")
	}
	// a would admit but shows its state without the charge: one of three used.
	if want := (Result{Allowed: true, Remaining: 2, ResetAfter: time.Second}); res[0] != want {
		t.Errorf("a: got %+v, want %+v", res[0], want)
	}
	if want := (Result{Remaining: 0, RetryAfter: time.Second, ResetAfter: time.Second}); res[1] != want {
		t.Errorf("b: got %+v, want %+v", res[1], want)
	}
	// a was charged once, not twice: two more fit, then none.
	for i, want := range []bool{true, true, false} {
		if ok, _ := allow(t, m, epoch, a); ok != want {
			t.Fatalf("a alone, request %d: allowed %v, want %v", i+1, ok, want)
		}
	}
}

// TestMemorySameKeyTwice applies one key twice in a request: the second
// check sees the first one's charge, and a refusal charges neither.
func TestMemorySameKeyTwice(t *testing.T) {
	l := Limit{Rate: 1, Period: time.Second, Burst: 3}
	c := Check{Key: "k", Limit: l}
	tests := []struct {
		desc    string
		checks  []Check
		allowed bool
		results []Result
	}{
		{
			desc:    "both fit",
			checks:  []Check{c, c},
			allowed: true,
			results: []Result{
				{Allowed: true, Remaining: 2, ResetAfter: time.Second},
				{Allowed: true, Remaining: 1, ResetAfter: 2 * time.Second},
			},
		},
		{
			desc:    "the first fits, the second does not",
			checks:  []Check{c, c},
			allowed: false,
			results: []Result{
				{Allowed: true, Remaining: 1, ResetAfter: 2 * time.Second}, // uncharged state
				{Remaining: 0, RetryAfter: time.Second, ResetAfter: 3 * time.Second},
			},
		},
		{
			desc:    "nothing was charged: one still fits",
			checks:  []Check{c},
			allowed: true,
			results: []Result{{Allowed: true, Remaining: 0, ResetAfter: 3 * time.Second}},
		},
	}
	m := newTestMemory(t, MemoryOptions{})
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ok, res := allow(t, m, epoch, tt.checks...)
			if ok != tt.allowed {
				t.Fatalf("allowed %v, want %v", ok, tt.allowed)
			}
			for i := range res {
				if res[i] != tt.results[i] {
					t.Errorf("result %d: got %+v, want %+v", i, res[i], tt.results[i])
				}
			}
		})
	}
	if m.Len() != 1 {
		t.Errorf("Len() = %d, want 1", m.Len())
	}
}

// TestMemoryManyChecks goes past the checks Allow handles without
// allocating, across shards and with repeated keys.
func TestMemoryManyChecks(t *testing.T) {
	m := newTestMemory(t, MemoryOptions{Shards: 2})
	var checks []Check
	for i := range 10 {
		checks = append(checks, Check{Key: fmt.Sprint("k", i%7), Limit: Limit{Rate: 1, Period: time.Second, Burst: 2}})
	}
	if ok, _ := allow(t, m, epoch, checks...); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := allow(t, m, epoch, checks...); ok {
		t.Fatal("k0, k1 and k2 appear twice each: their burst of 2 is spent")
	}
	if m.Len() != 7 {
		t.Errorf("Len() = %d, want 7", m.Len())
	}
	if ok, _ := allow(t, m, epoch, checks[3:7]...); !ok {
		t.Fatal("k3..k6 were charged once: one more fits")
	}
}

func TestMemoryAllowErrors(t *testing.T) {
	ok := Limit{Rate: 1, Period: time.Second, Burst: 1}
	tests := []struct {
		desc    string
		checks  []Check
		results int
	}{
		{desc: "results too short", checks: []Check{{Key: "a", Limit: ok}, {Key: "b", Limit: ok}}, results: 1},
		{desc: "zero limit", checks: []Check{{Key: "a", Limit: ok}, {Key: "b"}}, results: 2},
		{desc: "burst overflows", checks: []Check{{Key: "a", Limit: Limit{Rate: 1, Period: time.Hour, Burst: math.MaxInt64 / 2}}}, results: 1},
		{desc: "cost overflows", checks: []Check{{Key: "a", Limit: ok, Cost: math.MaxInt64 / 2}}, results: 1},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			m := newTestMemory(t, MemoryOptions{})
			allowed, err := m.Allow(context.Background(), epoch, tt.checks, make([]Result, tt.results))
			if err == nil || allowed {
				t.Fatalf("Allow = %v, %v; want an error", allowed, err)
			}
			if errors.Is(err, ErrUnavailable) {
				t.Errorf("Memory returned ErrUnavailable: %v", err)
			}
			if m.Len() != 0 {
				t.Errorf("a failed Allow stored %d keys", m.Len())
			}
		})
	}
}

func TestMemoryNoChecks(t *testing.T) {
	m := newTestMemory(t, MemoryOptions{})
	if ok, err := m.Allow(context.Background(), epoch, nil, nil); !ok || err != nil {
		t.Fatalf("Allow(no checks) = %v, %v; want true, nil", ok, err)
	}
}

func TestMemoryShards(t *testing.T) {
	tests := []struct {
		desc   string
		shards int
		want   int
	}{
		{desc: "default", shards: 0, want: 64},
		{desc: "negative", shards: -3, want: 64},
		{desc: "one", shards: 1, want: 1},
		{desc: "power of two", shards: 16, want: 16},
		{desc: "rounded up", shards: 100, want: 128},
		{desc: "capped", shards: 1 << 40, want: 1 << 16},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			m := newTestMemory(t, MemoryOptions{Shards: tt.shards})
			if len(m.shards) != tt.want || m.mask != uint64(tt.want-1) {
				t.Fatalf("%d shards, mask %x; want %d", len(m.shards), m.mask, tt.want)
			}
		})
	}
}

// TestMemorySweep checks that Sweep forgets only keys back at their full
// burst, and that forgetting them changes no decision.
func TestMemorySweep(t *testing.T) {
	l := Limit{Rate: 1, Period: time.Second, Burst: 2} // T = 1s
	swept := newTestMemory(t, MemoryOptions{Shards: 4})
	kept := newTestMemory(t, MemoryOptions{Shards: 4})
	// both makes the same request of both stores and compares the answers.
	// A cost above the burst is never admitted, so it reads a key's state
	// without changing it.
	both := func(at time.Duration, key string, cost int64) {
		t.Helper()
		c := Check{Key: key, Limit: l, Cost: cost}
		ok1, r1 := allow(t, swept, epoch.Add(at), c)
		ok2, r2 := allow(t, kept, epoch.Add(at), c)
		if ok1 != ok2 || r1[0] != r2[0] {
			t.Fatalf("%s at %v: swept store says %v %+v, unswept %v %+v", key, at, ok1, r1[0], ok2, r2[0])
		}
	}
	keys := []string{"idle", "busy", "busier"}
	// TATs: idle at 1s, busy at 2s, busier at 3s.
	both(0, "idle", 1)
	both(0, "busy", 1)
	both(0, "busy", 1)
	both(time.Second, "busier", 1)
	both(time.Second, "busier", 1)

	tests := []struct {
		desc    string
		at      time.Duration
		removed int
		left    int
	}{
		{desc: "nothing idle yet", at: 999 * time.Millisecond, removed: 0, left: 3},
		{desc: "a TAT equal to now is idle", at: time.Second, removed: 1, left: 2},
		{desc: "again removes nothing", at: time.Second, removed: 0, left: 2},
		{desc: "busy is idle at 2s", at: 2 * time.Second, removed: 1, left: 1},
		{desc: "the rest", at: time.Hour, removed: 1, left: 0},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if n := swept.Sweep(epoch.Add(tt.at)); n != tt.removed {
				t.Errorf("Sweep removed %d, want %d", n, tt.removed)
			}
			if swept.Len() != tt.left {
				t.Errorf("Len() = %d, want %d", swept.Len(), tt.left)
			}
			for _, key := range keys {
				both(tt.at, key, l.Burst+1)
			}
		})
	}
	for _, key := range keys {
		for range 3 {
			both(time.Hour, key, 1)
		}
	}
}

// TestMemorySweepShrinks checks that a shard whose keys were mostly swept
// gets a map sized for the keys left.
func TestMemorySweepShrinks(t *testing.T) {
	m := newTestMemory(t, MemoryOptions{Shards: 1})
	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	for i := range 4 * shrinkMin {
		allow(t, m, epoch, Check{Key: fmt.Sprint("old", i), Limit: l})
	}
	allow(t, m, epoch.Add(time.Hour), Check{Key: "new", Limit: l})
	s := &m.shards[0]
	before := s.tats
	if n := m.Sweep(epoch.Add(time.Hour)); n != 4*shrinkMin {
		t.Fatalf("Sweep removed %d, want %d", n, 4*shrinkMin)
	}
	if s.peak != 1 || len(s.tats) != 1 {
		t.Errorf("after the sweep: peak %d, %d keys; want 1 and 1", s.peak, len(s.tats))
	}
	// Comparing maps is not allowed, but their headers are pointers.
	if fmt.Sprintf("%p", before) == fmt.Sprintf("%p", s.tats) {
		t.Error("the shard kept its oversized map")
	}
	if ok, _ := allow(t, m, epoch.Add(time.Hour), Check{Key: "new", Limit: l}); ok {
		t.Error("the rebuilt map lost the key it kept")
	}
}

// TestMemoryJanitor drives the janitor with its own ticks and clock, and
// checks that Close stops it.
func TestMemoryJanitor(t *testing.T) {
	m := NewMemory(MemoryOptions{SweepInterval: -1})
	if m.stop != nil {
		t.Fatal("a negative SweepInterval started a janitor")
	}
	tick := make(chan time.Time)
	var sweepAt atomic.Int64
	sweepAt.Store(epoch.UnixNano())
	var tickerStopped atomic.Bool
	m.startJanitor(tick, func() time.Time { return time.Unix(0, sweepAt.Load()) }, func() { tickerStopped.Store(true) })

	l := Limit{Rate: 1, Period: time.Second, Burst: 1}
	allow(t, m, epoch, Check{Key: "a", Limit: l}) // TAT epoch+1s
	allow(t, m, epoch.Add(time.Second), Check{Key: "b", Limit: l})

	// The tick channel is unbuffered: the second send is received only once
	// the sweep started by the first has finished.
	tick <- time.Time{}
	tick <- time.Time{}
	if m.Len() != 2 {
		t.Fatalf("a sweep at the epoch left %d keys, want 2", m.Len())
	}
	sweepAt.Store(epoch.Add(time.Second).UnixNano())
	tick <- time.Time{}
	tick <- time.Time{}
	if m.Len() != 1 {
		t.Fatalf("a sweep at epoch+1s left %d keys, want 1", m.Len())
	}

	m.Close()
	select {
	case <-m.done:
	default:
		t.Fatal("Close returned before the janitor")
	}
	if !tickerStopped.Load() {
		t.Error("Close did not stop the ticker")
	}
	select {
	case tick <- time.Time{}:
		t.Fatal("the janitor still takes ticks after Close")
	default:
	}
	m.Close() // a second Close is harmless
	if ok, _ := allow(t, m, epoch.Add(time.Second), Check{Key: "c", Limit: l}); !ok {
		t.Error("Allow after Close refused")
	}
}

// TestMemoryCloseStopsRealJanitor checks, with the real ticker, that
// Close leaves no goroutine behind.
func TestMemoryCloseStopsRealJanitor(t *testing.T) {
	m := NewMemory(MemoryOptions{SweepInterval: time.Millisecond})
	done := m.done
	m.Close()
	select {
	case <-done:
	default:
		t.Fatal("the janitor was running after Close returned")
	}
	// Without a janitor, Close does nothing and does not block.
	NewMemory(MemoryOptions{SweepInterval: -1}).Close()
}

// TestMemoryConcurrentExact hammers one limit from 8 goroutines at a frozen
// instant: exactly the burst is admitted, however the calls interleave.
func TestMemoryConcurrentExact(t *testing.T) {
	const (
		goroutines = 8
		tries      = 500
		burst      = 1000
	)
	tests := []struct {
		desc   string
		checks func(m *Memory, g int) []Check
	}{
		{
			desc: "one limit",
			checks: func(*Memory, int) []Check {
				return []Check{{Key: "hot", Limit: Limit{Rate: burst, Period: time.Second, Burst: burst}}}
			},
		},
		{
			// Opposite orders across shards would deadlock without ordered locking.
			desc: "two limits in opposite orders, one never binding",
			checks: func(m *Memory, g int) []Check {
				a := Check{Key: "hot", Limit: Limit{Rate: burst, Period: time.Second, Burst: burst}}
				b := Check{Key: otherShard(m, "hot"), Limit: Limit{Rate: 1, Period: time.Second, Burst: goroutines * tries}}
				if g%2 == 0 {
					return []Check{a, b}
				}
				return []Check{b, a}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			m := newTestMemory(t, MemoryOptions{Shards: 4})
			var admitted atomic.Int64
			var wg sync.WaitGroup
			for g := range goroutines {
				checks := tt.checks(m, g)
				wg.Go(func() {
					results := make([]Result, len(checks))
					for range tries {
						ok, err := m.Allow(context.Background(), epoch, checks, results)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							admitted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			if got := admitted.Load(); got != burst {
				t.Fatalf("admitted %d of %d tries, want exactly %d", got, goroutines*tries, burst)
			}
		})
	}
}

// otherShard returns a key that m puts in another shard than key's.
func otherShard(m *Memory, key string) string {
	for i := 0; ; i++ {
		k := fmt.Sprint("other", i)
		if m.shardOf(k) != m.shardOf(key) {
			return k
		}
	}
}

// TestMemoryAllowAllocs pins that Allow does not allocate for up to
// smallChecks checks on known keys.
func TestMemoryAllowAllocs(t *testing.T) {
	m := newTestMemory(t, MemoryOptions{})
	l := Limit{Rate: 1000, Period: time.Second, Burst: 1000}
	for _, n := range []int{1, 2, smallChecks} {
		checks := make([]Check, n)
		for i := range checks {
			checks[i] = Check{Key: fmt.Sprint("key", i), Limit: l}
		}
		results := make([]Result, n)
		now := epoch
		allocs := testing.AllocsPerRun(100, func() {
			now = now.Add(time.Second)
			if _, err := m.Allow(context.Background(), now, checks, results); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%d checks: %v allocations per Allow, want 0", n, allocs)
		}
	}
}
