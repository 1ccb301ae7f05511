package versioning

import (
	"sync"
	"sync/atomic"
)

// Counter counts events per key with a bounded number of keys: once max
// keys are held, events of new keys are counted under OverflowKey, so a
// flood of distinct principals cannot grow it without limit. It is safe for
// concurrent use; counting a known key takes a read lock and an atomic add.
type Counter struct {
	mu  sync.RWMutex
	m   map[string]*atomic.Uint64
	max int
}

// NewCounter returns a Counter holding at most max keys besides OverflowKey
// (DefaultMaxPrincipals when max < 1).
func NewCounter(max int) *Counter {
	if max < 1 {
		max = DefaultMaxPrincipals
	}
	return &Counter{m: make(map[string]*atomic.Uint64), max: max}
}

// Add counts one event for key.
func (c *Counter) Add(key string) {
	c.mu.RLock()
	n := c.m[key]
	c.mu.RUnlock()
	if n == nil {
		c.mu.Lock()
		if n = c.m[key]; n == nil {
			if len(c.m) >= c.max {
				key = OverflowKey
				n = c.m[key]
			}
			if n == nil {
				n = new(atomic.Uint64)
				c.m[key] = n
			}
		}
		c.mu.Unlock()
	}
	n.Add(1)
}

// Snapshot returns a copy of the counts, by key.
func (c *Counter) Snapshot() map[string]uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]uint64, len(c.m))
	for k, n := range c.m {
		out[k] = n.Load()
	}
	return out
}
