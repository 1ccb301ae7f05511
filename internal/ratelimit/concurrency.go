package ratelimit

import (
	"hash/maphash"
	"strings"
	"sync"
)

// concShards is how many independently locked parts a Concurrency has.
const concShards = 64

// Concurrency limits requests in flight per key: at most max at once, where
// max is given on each Acquire. It keeps one counter per key with slots in
// use and forgets a key when its last slot is released, so its memory is
// bounded by the requests in flight. The zero value is not usable; create
// one with NewConcurrency. A Concurrency is safe for concurrent use.
type Concurrency struct {
	seed   maphash.Seed
	shards [concShards]concShard
}

// concShard is one locked part of a Concurrency, padded to its own cache
// line.
type concShard struct {
	mu    sync.Mutex
	inUse map[string]int64 // key -> slots in use, always > 0
	_     [48]byte
}

// NewConcurrency returns a Concurrency with no slots in use.
func NewConcurrency() *Concurrency {
	c := &Concurrency{seed: maphash.MakeSeed()}
	for i := range c.shards {
		c.shards[i].inUse = make(map[string]int64)
	}
	return c
}

// noRelease is the release returned with a refusal.
func noRelease() {}

// Acquire takes a slot for key if fewer than max are in use, and returns ok
// true and the function that gives the slot back. release must be called
// exactly once when the request ends; calling it again is a no-op, and it
// may be called from any goroutine. When ok is false (including when max is
// 0 or less) no slot was taken and release is a no-op, so callers may defer
// it either way.
func (c *Concurrency) Acquire(key string, max int64) (release func(), ok bool) {
	s := c.shard(key)
	s.mu.Lock()
	n, found := s.inUse[key]
	if n >= max {
		s.mu.Unlock()
		return noRelease, false
	}
	if !found {
		key = strings.Clone(key) // keep no larger string alive
	}
	s.inUse[key] = n + 1
	s.mu.Unlock()

	released := false // guarded by s.mu
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if released {
			return
		}
		released = true
		if n := s.inUse[key] - 1; n > 0 {
			s.inUse[key] = n
		} else {
			delete(s.inUse, key)
		}
	}, true
}

// InUse returns how many slots for key are taken now.
func (c *Concurrency) InUse(key string) int64 {
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inUse[key]
}

func (c *Concurrency) shard(key string) *concShard {
	return &c.shards[maphash.String(c.seed, key)%concShards]
}
