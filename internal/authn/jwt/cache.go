package jwt

import (
	"crypto/sha256"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// cacheMaxAge bounds how long a verified token stays cached, however far
// away its exp is: a cached hit skips the signature, so this is how long a
// token may outlive a change that is not seen as a new key set.
const cacheMaxAge = 5 * time.Minute

// cacheEntry is a verified token. Every field but prev and next is set
// before the entry is shared and never changed.
type cacheEntry struct {
	sum       [sha256.Size]byte
	principal gateway.Principal // a copy is returned per request
	notBefore time.Time         // nbf or iat less the leeway; zero when the token has neither
	notAfter  time.Time         // exp plus the leeway: the token is expired from then on
	evictAt   time.Time         // min(notAfter, verification + cacheMaxAge)
	cnf       string            // cnf.x5t#S256, re-checked against each request's certificate
	iss       *issuer
	keys      *keySet // the set of the verifying key, which must still be current

	prev, next *cacheEntry
}

// tokenCache is a bounded map of verified tokens by the SHA-256 of the
// token, evicting the least recently used. It is split into shards with a
// lock each; a sum is uniform, so its first byte picks the shard. A
// tokenCache is safe for concurrent use.
type tokenCache struct {
	shards []cacheShard
	mask   byte
}

// cacheShard is one locked part of a tokenCache: a map and a doubly linked
// list through a sentinel, most recently used first.
type cacheShard struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]*cacheEntry
	lru     cacheEntry // sentinel: lru.next is the most recent, lru.prev the least
	limit   int
	_       [32]byte // keep busy shards off each other's cache lines
}

// newTokenCache returns a cache of at most size entries (size > 0).
func newTokenCache(size int) *tokenCache {
	n := 1
	for n < 16 && size/(n*2) >= 256 {
		n *= 2
	}
	c := &tokenCache{shards: make([]cacheShard, n), mask: byte(n - 1)}
	for i := range c.shards {
		s := &c.shards[i]
		s.entries = make(map[[sha256.Size]byte]*cacheEntry)
		s.lru.next, s.lru.prev = &s.lru, &s.lru
		s.limit = (size + n - 1) / n
	}
	return c
}

// get returns the entry for sum, or nil when there is none or it is due
// for eviction at now.
func (c *tokenCache) get(sum *[sha256.Size]byte, now time.Time) *cacheEntry {
	s := &c.shards[sum[0]&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[*sum]
	if e == nil {
		return nil
	}
	if !now.Before(e.evictAt) {
		s.remove(e)
		return nil
	}
	s.unlink(e)
	s.pushFront(e)
	return e
}

// put stores e, replacing an entry of the same sum and evicting the least
// recently used entry when the shard is full.
func (c *tokenCache) put(e *cacheEntry) {
	s := &c.shards[e.sum[0]&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.entries[e.sum]; old != nil {
		s.remove(old)
	}
	s.entries[e.sum] = e
	s.pushFront(e)
	if len(s.entries) > s.limit {
		s.remove(s.lru.prev)
	}
}

// drop removes the entry for sum, if any.
func (c *tokenCache) drop(sum *[sha256.Size]byte) {
	s := &c.shards[sum[0]&c.mask]
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[*sum]; e != nil {
		s.remove(e)
	}
}

// len returns the number of entries.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.entries)
		s.mu.Unlock()
	}
	return n
}

func (s *cacheShard) remove(e *cacheEntry) {
	s.unlink(e)
	delete(s.entries, e.sum)
}

func (s *cacheShard) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (s *cacheShard) pushFront(e *cacheEntry) {
	e.prev, e.next = &s.lru, s.lru.next
	s.lru.next.prev = e
	s.lru.next = e
}
