package ratelimit

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchKeys returns n (at most 2^25) distinct keys shaped like real ones:
// half IPv4 addresses, half IPv6 /64 prefixes, each behind a limit name
// ("per-client:ip:203.0.113.45", "per-client:ip:2001:db8:85a3:1c2f::/64";
// about 31 bytes on average).
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		j := i / 2
		if i%2 == 0 {
			keys[i] = fmt.Sprintf("per-client:ip:%d.%d.%d.%d", 100+j>>16, j>>8&0xff, j&0xff, 1+i%250)
		} else {
			keys[i] = fmt.Sprintf("per-client:ip:2001:db8:%x:%04x::/64", 0x8000|j>>16, j&0xffff)
		}
	}
	return keys
}

// BenchmarkMemoryAllow measures one Allow call: ns/op and allocs/op.
func BenchmarkMemoryAllow(b *testing.B) {
	ctx := context.Background()
	l := Limit{Rate: 100, Period: time.Second, Burst: 100}

	b.Run("one check, hot key", func(b *testing.B) {
		m := newTestMemory(b, MemoryOptions{})
		checks := []Check{{Key: "login:ip:203.0.113.7", Limit: l}}
		results := make([]Result, 1)
		now := epoch
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Millisecond) // admits one in ten once the burst is spent
			m.Allow(ctx, now, checks, results)
		}
	})

	b.Run("three checks", func(b *testing.B) {
		m := newTestMemory(b, MemoryOptions{})
		checks := []Check{
			{Key: "global", Limit: Limit{Rate: 1_000_000, Period: time.Second, Burst: 1000}},
			{Key: "route:/books", Limit: Limit{Rate: 10_000, Period: time.Second, Burst: 100}},
			{Key: "login:ip:203.0.113.7", Limit: l},
		}
		results := make([]Result, len(checks))
		now := epoch
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Millisecond)
			m.Allow(ctx, now, checks, results)
		}
	})

	// full is a Memory that knows 2^20 keys: the steady state of a gateway
	// seeing a million clients. Built once, on first use.
	const n = 1 << 20
	type fullMemory struct {
		keys []string
		m    *Memory
	}
	full := sync.OnceValue(func() fullMemory {
		f := fullMemory{keys: benchKeys(n), m: newTestMemory(b, MemoryOptions{})}
		for _, k := range f.keys {
			f.m.Allow(ctx, epoch, []Check{{Key: k, Limit: l}}, make([]Result, 1))
		}
		return f
	})

	b.Run("one check, random keys of 1M", func(b *testing.B) {
		f := full()
		checks := make([]Check, 1)
		results := make([]Result, 1)
		now := epoch
		x := uint32(2463534242) // xorshift32: a cheap, repeatable sequence
		b.ReportAllocs()
		for b.Loop() {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			now = now.Add(time.Microsecond)
			checks[0] = Check{Key: f.keys[x%n], Limit: l}
			f.m.Allow(ctx, now, checks, results)
		}
	})

	b.Run("one check, hot key, parallel", func(b *testing.B) {
		m := newTestMemory(b, MemoryOptions{})
		checks := []Check{{Key: "login:ip:203.0.113.7", Limit: l}}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			results := make([]Result, 1)
			for pb.Next() {
				m.Allow(ctx, epoch, checks, results)
			}
		})
	})

	b.Run("one check, random keys of 1M, parallel", func(b *testing.B) {
		f := full()
		var seeds atomic.Uint32
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			checks := make([]Check, 1)
			results := make([]Result, 1)
			x := 2463534242 + seeds.Add(1)
			for pb.Next() {
				x ^= x << 13
				x ^= x >> 17
				x ^= x << 5
				checks[0] = Check{Key: f.keys[x%n], Limit: l}
				f.m.Allow(ctx, epoch, checks, results)
			}
		})
	})
}

// BenchmarkMemoryKeys1M measures the heap a Memory takes for 1,000,000
// keys of realistic length, reported as B/key and MB in total. The keys
// are copied on insertion, so their bytes are part of the figure. Run it
// with -benchtime=1x: each iteration inserts a million keys.
func BenchmarkMemoryKeys1M(b *testing.B) {
	const n = 1_000_000
	keys := benchKeys(n)
	total := 0
	for _, k := range keys {
		total += len(k)
	}
	ctx := context.Background()
	l := Limit{Rate: 1, Period: time.Minute, Burst: 10}
	checks := make([]Check, 1)
	results := make([]Result, 1)
	var perKey float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m := NewMemory(MemoryOptions{SweepInterval: -1})
		for _, k := range keys {
			checks[0] = Check{Key: k, Limit: l}
			m.Allow(ctx, epoch, checks, results)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if m.Len() != n {
			b.Fatalf("Len() = %d, want %d", m.Len(), n)
		}
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(m)
	}
	runtime.KeepAlive(keys)
	b.ReportMetric(float64(total)/n, "bytes/keylen")
	b.ReportMetric(perKey, "B/key")
	b.ReportMetric(perKey*n/1e6, "MB")
}
