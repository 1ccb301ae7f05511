package ratelimit

import (
	"sync"
	"sync/atomic"
	"testing"
)

// concKeys counts the keys c holds, across its shards.
func concKeys(c *Concurrency) int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.inUse)
		s.mu.Unlock()
	}
	return n
}

// TestConcurrencyAcquire walks one key up to its maximum and back.
func TestConcurrencyAcquire(t *testing.T) {
	c := NewConcurrency()
	var releases []func()
	tests := []struct {
		desc    string
		key     string
		max     int64
		release int // release this many slots taken earlier, first
		ok      bool
		inUse   int64
	}{
		{desc: "first slot", key: "k", max: 2, ok: true, inUse: 1},
		{desc: "second slot", key: "k", max: 2, ok: true, inUse: 2},
		{desc: "full", key: "k", max: 2, ok: false, inUse: 2},
		{desc: "a larger max for the same key", key: "k", max: 3, ok: true, inUse: 3},
		{desc: "a smaller max refuses", key: "k", max: 1, ok: false, inUse: 3},
		{desc: "room again after a release", key: "k", max: 3, release: 1, ok: true, inUse: 3},
		{desc: "zero max refuses", key: "other", max: 0, ok: false, inUse: 0},
		{desc: "negative max refuses", key: "other", max: -1, ok: false, inUse: 0},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			for range tt.release {
				releases[0]()
				releases = releases[1:]
			}
			release, ok := c.Acquire(tt.key, tt.max)
			if release == nil {
				t.Fatal("Acquire returned a nil release")
			}
			if ok != tt.ok {
				t.Fatalf("ok %v, want %v", ok, tt.ok)
			}
			if ok {
				releases = append(releases, release)
			} else {
				release() // a refusal's release does nothing
			}
			if got := c.InUse(tt.key); got != tt.inUse {
				t.Fatalf("InUse = %d, want %d", got, tt.inUse)
			}
		})
	}
	for _, r := range releases {
		r()
	}
	if got := c.InUse("k"); got != 0 {
		t.Fatalf("InUse after every release = %d, want 0", got)
	}
	if n := concKeys(c); n != 0 {
		t.Fatalf("%d keys kept with no slots in use", n)
	}
}

// TestConcurrencyReleaseTwice checks that a second release gives back
// nothing that belongs to another request.
func TestConcurrencyReleaseTwice(t *testing.T) {
	c := NewConcurrency()
	r1, _ := c.Acquire("k", 2)
	_, ok := c.Acquire("k", 2)
	if !ok {
		t.Fatal("second slot refused")
	}
	r1()
	r1()
	if got := c.InUse("k"); got != 1 {
		t.Fatalf("InUse = %d after releasing one slot twice, want 1", got)
	}
	if _, ok := c.Acquire("k", 1); ok {
		t.Fatal("a double release freed the other request's slot")
	}
}

// TestConcurrencyForgetsKeys checks that keys without slots in use take no
// memory.
func TestConcurrencyForgetsKeys(t *testing.T) {
	c := NewConcurrency()
	var releases []func()
	for _, key := range []string{"a", "b", "c", "a"} {
		r, ok := c.Acquire(key, 5)
		if !ok {
			t.Fatalf("%s refused", key)
		}
		releases = append(releases, r)
	}
	if n := concKeys(c); n != 3 {
		t.Fatalf("%d keys, want 3", n)
	}
	releases[0]() // a: one left
	releases[1]() // b: forgotten
	if n := concKeys(c); n != 2 {
		t.Fatalf("%d keys, want 2", n)
	}
	releases[2]()
	releases[3]()
	if n := concKeys(c); n != 0 {
		t.Fatalf("%d keys, want 0", n)
	}
}

// TestConcurrencyExactMax has many goroutines hold slots for one key at
// once: exactly max are granted, and never more in use than max.
func TestConcurrencyExactMax(t *testing.T) {
	const (
		goroutines = 64
		max        = 10
	)
	c := NewConcurrency()
	var (
		granted atomic.Int64
		inUse   atomic.Int64
		peak    atomic.Int64
		wg      sync.WaitGroup
	)
	start := make(chan struct{})
	hold := make(chan struct{}) // granted goroutines keep their slot until closed
	var releases sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			<-start
			release, ok := c.Acquire("hot", max)
			if !ok {
				return
			}
			granted.Add(1)
			n := inUse.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			releases.Go(func() {
				<-hold
				inUse.Add(-1)
				release()
				release() // a second call changes nothing
			})
		})
	}
	close(start)
	wg.Wait()
	if got := granted.Load(); got != max {
		t.Fatalf("granted %d slots with max %d", got, max)
	}
	if got := c.InUse("hot"); got != max {
		t.Fatalf("InUse = %d, want %d", got, max)
	}
	close(hold)
	releases.Wait()
	if p := peak.Load(); p > max {
		t.Fatalf("%d slots in use at once, max %d", p, max)
	}
	if got := c.InUse("hot"); got != 0 {
		t.Fatalf("InUse after every release = %d, want 0", got)
	}
	if n := concKeys(c); n != 0 {
		t.Fatalf("%d keys kept with no slots in use", n)
	}
}

// TestConcurrencyChurn acquires and releases from many goroutines at once
// and checks the count never passes max.
func TestConcurrencyChurn(t *testing.T) {
	const max = 3
	c := NewConcurrency()
	var inUse atomic.Int64
	var over atomic.Bool
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				release, ok := c.Acquire("k", max)
				if !ok {
					continue
				}
				if inUse.Add(1) > max {
					over.Store(true)
				}
				inUse.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if over.Load() {
		t.Fatal("more than max slots in use at once")
	}
	if n := concKeys(c); n != 0 {
		t.Fatalf("%d keys kept with no slots in use", n)
	}
}

// BenchmarkConcurrencyAcquire measures one Acquire and its release.
func BenchmarkConcurrencyAcquire(b *testing.B) {
	c := NewConcurrency()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if release, ok := c.Acquire("per-client:ip:203.0.113.45", 1<<20); ok {
				release()
			}
		}
	})
}
