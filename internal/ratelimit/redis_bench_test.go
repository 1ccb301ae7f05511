//go:build linux || darwin

package ratelimit

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user and system) this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchChecks are n limits that always admit, so every op is one round trip.
func benchChecks(n int) []Check {
	checks := make([]Check, n)
	for i := range checks {
		checks[i] = Check{Key: fmt.Sprintf("bench-%d", i), Limit: Limit{Rate: 1_000_000, Period: time.Second, Burst: 1_000_000_000}}
	}
	return checks
}

// BenchmarkRedisAllow measures one Allow against the shared Redis, serially
// (latency: one round trip) and from parallel goroutines (throughput).
// cpu-ns/check is this process's CPU time (not redis-server's) per check.
func BenchmarkRedisAllow(b *testing.B) {
	client, prefix := testRedis(b)
	ctx := context.Background()
	for _, serverTime := range []bool{false, true} {
		r := NewRedis(client, RedisOptions{Prefix: prefix, ServerTime: serverTime})
		for _, n := range []int{1, 3} {
			checks := benchChecks(n)
			b.Run(fmt.Sprintf("servertime=%v/checks=%d/serial", serverTime, n), func(b *testing.B) {
				results := make([]Result, n)
				b.ReportAllocs()
				cpu := processCPU(b)
				for b.Loop() {
					if ok, err := r.Allow(ctx, time.Now(), checks, results); !ok || err != nil {
						b.Fatal(ok, err)
					}
				}
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N*n), "cpu-ns/check")
			})
			b.Run(fmt.Sprintf("servertime=%v/checks=%d/parallel", serverTime, n), func(b *testing.B) {
				b.ReportAllocs()
				cpu := processCPU(b)
				b.RunParallel(func(pb *testing.PB) {
					results := make([]Result, n)
					for pb.Next() {
						if ok, err := r.Allow(ctx, time.Now(), checks, results); !ok || err != nil {
							b.Error(ok, err)
							return
						}
					}
				})
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N*n), "cpu-ns/check")
			})
		}
	}
}

// BenchmarkGuardedRedisAllow is BenchmarkRedisAllow through Guarded: the
// cost of the budget goroutine and the breaker on top of Redis.
func BenchmarkGuardedRedisAllow(b *testing.B) {
	client, prefix := testRedis(b)
	ctx := context.Background()
	for _, sync := range []bool{false, true} {
		g := NewGuarded(NewRedis(client, RedisOptions{Prefix: prefix}), newGCRAModel(), GuardOptions{Budget: time.Second, Synchronous: sync})
		benchGuarded(b, ctx, g, fmt.Sprintf("sync=%v/", sync))
	}
}

func benchGuarded(b *testing.B, ctx context.Context, g *Guarded, name string) {
	for _, n := range []int{1, 3} {
		checks := benchChecks(n)
		b.Run(fmt.Sprintf("%schecks=%d/serial", name, n), func(b *testing.B) {
			results := make([]Result, n)
			b.ReportAllocs()
			cpu := processCPU(b)
			for b.Loop() {
				if ok, err := g.Allow(ctx, time.Now(), checks, results); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N*n), "cpu-ns/check")
		})
	}
}
