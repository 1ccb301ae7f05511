package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configures a Memory store. The zero value is ready to use.
type MemoryOptions struct {
	// Shards is how many independently locked parts the keys are spread
	// over: 0 means 64; other values are rounded up to a power of two, at
	// most 65536.
	Shards int

	// SweepInterval is how often a background goroutine forgets idle keys
	// (see Memory.Sweep): 0 means one minute, and a negative value starts
	// no goroutine, leaving sweeping to the caller.
	SweepInterval time.Duration
}

// Defaults for MemoryOptions.
const (
	defaultShards        = 64
	maxShards            = 1 << 16
	defaultSweepInterval = time.Minute
)

// smallChecks is how many checks Allow handles without allocating; requests
// rarely meet more than three limits.
const smallChecks = 4

// shrinkMin is the smallest shard peak (in keys) worth rebuilding after a
// sweep: Go maps never give back memory when entries are deleted, so a
// shard that held many keys in a burst of traffic and now holds a quarter
// of them or fewer is copied into a map of the right size.
const shrinkMin = 1024

// Memory is a Store that keeps limits in this process: one TAT (an int64 of
// Unix nanoseconds) per key, in a map split into shards with a mutex each.
// It decides exactly as decide does, never returns ErrUnavailable, and
// ignores the Policy and LocalShare of its checks (they concern shared
// stores).
//
// Memory use is bounded by the keys active within one refill time (the
// time a key takes to return to its full burst) plus one sweep interval:
// a key whose TAT is not after now is back to its full burst, so Sweep
// forgets it without changing any decision. Each key costs a copy of the
// key (its length rounded up to a size class: 32 bytes for 25 to 32) plus
// a 24-byte map slot in a table between 7/16 and 7/8 full, with overhead
// 35 to 56 bytes: a million keys of 32 bytes take 75 to 96 MB (see
// BenchmarkMemoryKeys1M).
//
// Create a Memory with NewMemory and stop its janitor with Close. A Memory
// is safe for concurrent use.
type Memory struct {
	seed   maphash.Seed
	mask   uint64
	shards []memShard

	// trackQuotas makes charges of quota keys mark them dirty, for a
	// QuotaFile to persist (see QuotaFile).
	trackQuotas atomic.Bool

	stopOnce sync.Once
	stop     chan struct{} // closed by Close; nil without a janitor
	done     chan struct{} // closed when the janitor has returned
	stopTick func()        // stops the janitor's ticker
}

// memShard is one locked part of a Memory, padded to its own cache line so
// that busy shards do not slow their neighbours.
type memShard struct {
	mu    sync.Mutex
	tats  map[string]int64    // key -> TAT in Unix nanoseconds
	peak  int                 // most keys held since the map was last sized
	dirty map[string]struct{} // quota keys charged since the last drain, when tracked
	_     [32]byte
}

// NewMemory returns an empty Memory and, unless o.SweepInterval is
// negative, starts the goroutine that sweeps it; Close stops it.
func NewMemory(o MemoryOptions) *Memory {
	n := o.Shards
	if n <= 0 {
		n = defaultShards
	}
	n = min(n, maxShards)
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	m := &Memory{
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]memShard, n),
	}
	for i := range m.shards {
		m.shards[i].tats = make(map[string]int64)
	}
	if o.SweepInterval >= 0 {
		iv := o.SweepInterval
		if iv == 0 {
			iv = defaultSweepInterval
		}
		t := time.NewTicker(iv)
		m.startJanitor(t.C, time.Now, t.Stop)
	}
	return m
}

// startJanitor runs Sweep(now()) on every tick until Close. Tests call it
// directly, on a Memory created without a janitor, with their own ticks and
// clock.
func (m *Memory) startJanitor(tick <-chan time.Time, now func() time.Time, stopTick func()) {
	m.stop = make(chan struct{})
	m.done = make(chan struct{})
	m.stopTick = stopTick
	go func() {
		defer close(m.done)
		for {
			select {
			case <-m.stop:
				return
			case <-tick:
				m.Sweep(now())
			}
		}
	}()
}

// Close stops the janitor goroutine and waits for it to return. The Memory
// remains usable (without background sweeping). Close may be called more
// than once, and concurrently with other methods.
func (m *Memory) Close() {
	m.stopOnce.Do(func() {
		if m.stop == nil {
			return
		}
		close(m.stop)
		<-m.done
		if m.stopTick != nil {
			m.stopTick()
		}
	})
}

// Allow implements Store. It decides with the TATs as they are when it
// locks the shards of all the checks (in ascending order, so concurrent
// calls cannot deadlock): if two checks have the same Key they apply in
// order to the evolving TAT, and the new TATs are written only if every
// check is allowed.
//
// For a refused request, the results of the checks that would have
// admitted it show their state without the charge (Allowed true, Remaining
// and ResetAfter as stored); the refusing checks show what decide returns.
//
// Allow returns an error, deciding nothing, when results is shorter than
// checks or when a check has a Limit that fails Validate or would overflow
// (a full refill or a cost of more than fifty years). It ignores ctx: it
// never waits on anything but its own locks.
func (m *Memory) Allow(_ context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	if len(results) < len(checks) {
		return false, fmt.Errorf("allowing %d checks: only %d results", len(checks), len(results))
	}
	for i := range checks {
		if err := checkSpan(checks[i]); err != nil {
			return false, fmt.Errorf("checking limit %d: %w", i, err)
		}
	}
	if len(checks) == 0 {
		return true, nil
	}
	if len(checks) == 1 {
		return m.allowOne(now.UnixNano(), &checks[0], &results[0]), nil
	}
	return m.allowMany(now.UnixNano(), checks, results), nil
}

// allowOne is Allow for the common single check.
func (m *Memory) allowOne(now int64, c *Check, r *Result) bool {
	s := &m.shards[m.shardOf(c.Key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	tat, found := s.tats[c.Key]
	res, next := decideCheck(tat, now, c)
	*r = res
	if res.Allowed {
		s.store(c.Key, next, found)
		if c.Kind == KindQuota && m.trackQuotas.Load() {
			s.markDirty(c.Key)
		}
	}
	return res.Allowed
}

// shardOf returns the index of the shard that holds key.
func (m *Memory) shardOf(key string) uint64 {
	return maphash.String(m.seed, key) & m.mask
}

// pending is the state of one check within allowMany.
type pending struct {
	shard      uint64 // shard index
	hash       uint64
	stored     int64 // the key's TAT before this request (0 if none)
	found      bool  // the key is in the map
	tat        int64 // the TAT after this check if every check admits
	superseded bool  // a later check has the same key and writes it
}

// allowMany is Allow for two checks or more.
func (m *Memory) allowMany(now int64, checks []Check, results []Result) bool {
	var pendBuf [smallChecks]pending
	var lockBuf [smallChecks]uint64
	pend, locks := pendBuf[:0], lockBuf[:0]
	if len(checks) > smallChecks {
		pend = make([]pending, 0, len(checks))
		locks = make([]uint64, 0, len(checks))
	}
	for i := range checks {
		h := maphash.String(m.seed, checks[i].Key)
		pend = append(pend, pending{shard: h & m.mask, hash: h})
		locks = insertSorted(locks, h&m.mask)
	}

	for _, i := range locks {
		m.shards[i].mu.Lock()
	}
	defer m.unlock(locks)

	allowed := true
	for i := range checks {
		c, p := &checks[i], &pend[i]
		tat := int64(0)
		if j := prevSameKey(checks, pend, i); j >= 0 {
			tat = pend[j].tat
			p.stored, p.found = pend[j].stored, pend[j].found
			pend[j].superseded = true
		} else {
			p.stored, p.found = m.shards[p.shard].tats[c.Key]
			tat = p.stored
		}
		results[i], p.tat = decideCheck(tat, now, c)
		allowed = allowed && results[i].Allowed
	}

	if !allowed {
		for i := range checks {
			if results[i].Allowed {
				results[i] = unchargedCheck(pend[i].stored, now, &checks[i])
			}
		}
		return false
	}
	track := m.trackQuotas.Load()
	for i := range checks {
		if p := &pend[i]; !p.superseded {
			m.shards[p.shard].store(checks[i].Key, p.tat, p.found)
			if track && checks[i].Kind == KindQuota {
				m.shards[p.shard].markDirty(checks[i].Key)
			}
		}
	}
	return true
}

// unlock releases the shards in locks.
func (m *Memory) unlock(locks []uint64) {
	for _, i := range locks {
		m.shards[i].mu.Unlock()
	}
}

// insertSorted adds v to the ascending set s unless it is already there.
func insertSorted(s []uint64, v uint64) []uint64 {
	i := 0
	for i < len(s) && s[i] < v {
		i++
	}
	if i < len(s) && s[i] == v {
		return s
	}
	s = append(s, 0)
	copy(s[i+1:], s[i:])
	s[i] = v
	return s
}

// prevSameKey returns the index of the last check before i with the same
// key as check i, or -1.
func prevSameKey(checks []Check, pend []pending, i int) int {
	for j := i - 1; j >= 0; j-- {
		if pend[j].hash == pend[i].hash && checks[j].Key == checks[i].Key {
			return j
		}
	}
	return -1
}

// store sets the TAT of key; s.mu must be held. A new key is copied, so the
// map never keeps alive a larger string the caller's key was cut from.
func (s *memShard) store(key string, tat int64, found bool) {
	if found {
		s.tats[key] = tat
		return
	}
	s.tats[strings.Clone(key)] = tat
	if len(s.tats) > s.peak {
		s.peak = len(s.tats)
	}
}

// markDirty records that the quota key changed; s.mu must be held.
func (s *memShard) markDirty(key string) {
	if s.dirty == nil {
		s.dirty = make(map[string]struct{})
	}
	if _, ok := s.dirty[key]; !ok {
		s.dirty[strings.Clone(key)] = struct{}{}
	}
}

// quotaState is a quota key's value as a QuotaFile persists it; v is 0 when
// the key is gone (swept).
type quotaState struct {
	key string
	v   int64
}

// drainDirty returns the quota keys charged since the last call, with
// their current values, and forgets them.
func (m *Memory) drainDirty() []quotaState {
	var out []quotaState
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k := range s.dirty {
			out = append(out, quotaState{key: k, v: s.tats[k]})
		}
		clear(s.dirty)
		s.mu.Unlock()
	}
	return out
}

// restore sets key to v unless the key holds a larger value already (a
// charge since the process started); QuotaFile loads saved counts with it.
func (m *Memory) restore(key string, v int64) {
	s := &m.shards[m.shardOf(key)]
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, found := s.tats[key]
	if found && cur >= v {
		return
	}
	s.store(key, v, found)
}

// Sweep forgets every key whose TAT is at or before now: such a key is back
// to its full burst, so forgetting it changes no decision made at now or
// later. It returns how many keys it removed. Sweep locks one shard at a
// time, so Allow calls go on meanwhile; it also gives back the memory of a
// shard left with a quarter or less of its peak keys.
func (m *Memory) Sweep(now time.Time) int {
	t := now.UnixNano()
	n := 0
	for i := range m.shards {
		n += m.shards[i].sweep(t)
	}
	return n
}

// sweep is Sweep for one shard.
func (s *memShard) sweep(now int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, tat := range s.tats {
		if tat <= now {
			delete(s.tats, k)
			n++
		}
	}
	if s.peak >= shrinkMin && len(s.tats) <= s.peak/4 {
		fresh := make(map[string]int64, len(s.tats))
		for k, tat := range s.tats {
			fresh[k] = tat
		}
		s.tats, s.peak = fresh, len(fresh)
	}
	return n
}

// Len returns how many keys m holds. With concurrent Allow calls the count
// is approximate: each shard is counted under its own lock.
func (m *Memory) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

var _ Store = (*Memory)(nil)
