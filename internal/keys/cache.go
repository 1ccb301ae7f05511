package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"
)

// ErrStale is returned by Cache.Lookup when the cache could not refresh from
// its store for longer than CacheOptions.MaxStale: a revocation might have
// been missed, so the request path fails closed.
var ErrStale = errors.New("api key cache is stale: the key store is unreachable")

// Lookup is what the request path needs from a key store: the entry of a key
// ID, and a place to record that it was used. Cache implements it.
type Lookup interface {
	// Lookup returns the entry with id, or ErrNotFound. Any other error is a
	// fault of the store and must fail the request closed. The entry is
	// shared and must not be modified. Lookup is safe for concurrent use.
	Lookup(ctx context.Context, id string) (*Entry, error)
	// Used records that e was used at at. It never blocks: updates are
	// written in the background, and dropped (and counted) when the
	// background writer falls behind.
	Used(e *Entry, at time.Time)
}

// Entry is what the request path needs of a key: its hash, validity and the
// principal it stands for. Entries are immutable and shared between
// requests; a change to the record replaces the entry.
type Entry struct {
	ID        string
	Subject   string
	Roles     []string // shared between entries and requests: never modify
	Scopes    []string // shared between entries and requests: never modify
	Plan      string
	ExpiresAt time.Time // zero: never
	RevokedAt time.Time // zero: not revoked
	Hash      Hash

	lastUsed atomic.Int64 // unix seconds of the last recorded use
	queued   atomic.Bool  // waiting in the last-use queue
}

// CacheOptions tune a Cache. The zero value gives the defaults.
type CacheOptions struct {
	// RefreshInterval is how often the cache asks the store for changes,
	// which bounds how long a revocation takes to reach this instance when
	// no notification arrives. Default 500ms.
	RefreshInterval time.Duration
	// FlushInterval is how often last-use times are written. Default 5s.
	FlushInterval time.Duration
	// TouchQueue is how many keys may wait for their last-use write; uses of
	// further keys are dropped and counted. Default 65536.
	TouchQueue int
	// MaxStale, when positive, makes Lookup fail with ErrStale once the
	// store has not answered a refresh for this long. Zero keeps serving the
	// last state seen (a store that cannot be reached cannot take a
	// revocation either, except across a network partition).
	MaxStale time.Duration
	// Log receives refresh and flush failures. Default slog.Default().
	Log *slog.Logger
	// Now is the clock MaxStale is measured with. Default time.Now.
	Now func() time.Time
	// OnChange, when set, is called after a refresh for each key the
	// store changed since the cache last looked: with the cache's previous
	// entry (nil for a key it did not know) and the new record. It is
	// called with the cache's refresh lock held and must not block; audit
	// records key creations, revocations and rotations with it. The
	// initial load reports nothing.
	OnChange func(old *Entry, r *Record)
}

const shardCount = 256 // a power of two

// Cache mirrors every key of a Store in memory, so that Lookup is a map read:
// O(1), lock-free and allocation-free at any number of keys. It is loaded
// with Snapshot, then kept current by asking the store for Changes every
// RefreshInterval and whenever a Notifier store announces one. A Cache is
// safe for concurrent use. Close stops it; it does not close the store.
//
// The map is split into shards, each an immutable map behind an atomic
// pointer: a change copies one shard (1/256 of the keys) and swaps it, so
// readers never take a lock.
type Cache struct {
	store Store
	opts  CacheOptions
	log   *slog.Logger

	shards [shardCount]atomic.Pointer[map[string]*Entry]

	mu      sync.Mutex          // serialises refreshes
	version atomic.Uint64       // store version reflected; written under mu
	interns map[string][]string // role and scope lists, shared between entries

	lastOK  atomic.Int64 // unix nanoseconds of the last successful refresh
	count   atomic.Int64
	touch   chan *Entry
	dropped atomic.Uint64
	stats   struct{ refreshes, refreshErrors, resyncs, flushErrors atomic.Uint64 }

	cancel context.CancelFunc
	done   sync.WaitGroup
}

// NewCache loads every record of s and starts the goroutines that keep the
// cache current and write last-use times. It fails if the first load fails.
func NewCache(ctx context.Context, s Store, opts CacheOptions) (*Cache, error) {
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 500 * time.Millisecond
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = 5 * time.Second
	}
	if opts.TouchQueue <= 0 {
		opts.TouchQueue = 1 << 16
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Cache{store: s, opts: opts, log: opts.Log, interns: map[string][]string{}, touch: make(chan *Entry, opts.TouchQueue)}
	empty := map[string]*Entry{}
	for i := range c.shards {
		c.shards[i].Store(&empty)
	}
	// Subscribe before loading, so that a change made during the load is
	// announced after it.
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	var notify <-chan struct{}
	if n, ok := s.(Notifier); ok {
		notify = n.Notify(runCtx)
	}
	if err := c.reload(ctx); err != nil {
		cancel()
		return nil, fmt.Errorf("loading api keys: %w", err)
	}
	c.done.Add(2)
	go c.refreshLoop(runCtx, notify)
	go c.flushLoop(runCtx)
	return c, nil
}

// Lookup implements Lookup.
func (c *Cache) Lookup(_ context.Context, id string) (*Entry, error) {
	if c.opts.MaxStale > 0 && c.opts.Now().Sub(time.Unix(0, c.lastOK.Load())) > c.opts.MaxStale {
		return nil, ErrStale
	}
	if e, ok := (*c.shards[shardOf(id)].Load())[id]; ok {
		return e, nil
	}
	return nil, ErrNotFound
}

// Used implements Lookup. A key's use is queued at most once per flush and
// recorded with one-second precision.
func (c *Cache) Used(e *Entry, at time.Time) {
	sec := at.Unix()
	if e.lastUsed.Load() >= sec {
		return
	}
	e.lastUsed.Store(sec)
	if e.queued.Load() || !e.queued.CompareAndSwap(false, true) {
		return
	}
	select {
	case c.touch <- e:
	default:
		e.queued.Store(false)
		c.dropped.Add(1)
	}
}

// Refresh applies the store's changes now. The background loop calls it
// every RefreshInterval; tests and admin endpoints may call it directly.
func (c *Cache) Refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	version, changed, err := c.store.Changes(ctx, c.version.Load())
	if errors.Is(err, ErrResync) {
		c.stats.resyncs.Add(1)
		return c.reloadLocked(ctx)
	}
	if err != nil {
		return err
	}
	c.apply(changed)
	c.version.Store(version)
	c.stats.refreshes.Add(1)
	c.lastOK.Store(c.opts.Now().UnixNano())
	return nil
}

// CacheStats describes a Cache, for metrics and the admin API.
type CacheStats struct {
	Keys          int       // keys in memory
	Version       uint64    // store version the cache reflects
	LastRefresh   time.Time // last successful refresh
	Refreshes     uint64    // successful refreshes
	RefreshErrors uint64    // failed refreshes
	Resyncs       uint64    // full reloads after ErrResync
	TouchDropped  uint64    // last-use updates dropped because the queue was full
	FlushErrors   uint64    // last-use batches the store refused
}

// Stats returns counters of c.
func (c *Cache) Stats() CacheStats {
	return CacheStats{
		Keys: int(c.count.Load()), Version: c.version.Load(), LastRefresh: time.Unix(0, c.lastOK.Load()),
		Refreshes: c.stats.refreshes.Load(), RefreshErrors: c.stats.refreshErrors.Load(),
		Resyncs: c.stats.resyncs.Load(), TouchDropped: c.dropped.Load(), FlushErrors: c.stats.flushErrors.Load(),
	}
}

// Close stops refreshing, writes the last-use times still queued, and
// returns. It does not close the store.
func (c *Cache) Close() error {
	c.cancel()
	c.done.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.flush(ctx)
}

func (c *Cache) refreshLoop(ctx context.Context, notify <-chan struct{}) {
	defer c.done.Done()
	t := time.NewTicker(c.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case _, ok := <-notify:
			if !ok {
				notify = nil
				continue
			}
		}
		rctx, cancel := context.WithTimeout(ctx, max(2*time.Second, 4*c.opts.RefreshInterval))
		err := c.Refresh(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			if c.stats.refreshErrors.Add(1)%100 == 1 { // the first and every 100th
				c.log.Warn("refreshing api keys", "err", err, "failures", c.stats.refreshErrors.Load())
			}
		}
	}
}

func (c *Cache) flushLoop(ctx context.Context) {
	defer c.done.Done()
	t := time.NewTicker(c.opts.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, c.opts.FlushInterval)
			if err := c.flush(fctx); err != nil && ctx.Err() == nil {
				c.log.Warn("writing api key last-use times", "err", err)
			}
			cancel()
		}
	}
}

// flush writes the queued last-use times in one batch. A failed batch is
// counted and dropped: last-use times are informative, not security state.
func (c *Cache) flush(ctx context.Context) error {
	used := map[string]time.Time{}
drain:
	for {
		select {
		case e := <-c.touch:
			e.queued.Store(false) // before reading lastUsed, so no later use is lost
			used[e.ID] = time.Unix(e.lastUsed.Load(), 0).UTC()
		default:
			break drain
		}
	}
	if len(used) == 0 {
		return nil
	}
	if err := c.store.TouchLastUsed(ctx, used); err != nil {
		c.stats.flushErrors.Add(1)
		return err
	}
	return nil
}

func (c *Cache) reload(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reloadLocked(ctx)
}

func (c *Cache) reloadLocked(ctx context.Context) error {
	version, records, err := c.store.Snapshot(ctx)
	if err != nil {
		return err
	}
	var maps [shardCount]map[string]*Entry
	for i := range maps {
		maps[i] = make(map[string]*Entry, len(records)/shardCount+1)
	}
	for i := range records {
		e := c.entry(&records[i])
		maps[shardOf(e.ID)][e.ID] = e
	}
	for i := range maps {
		for id, e := range maps[i] {
			if old := (*c.shards[i].Load())[id]; old != nil {
				e.lastUsed.Store(old.lastUsed.Load())
			}
		}
		c.shards[i].Store(&maps[i])
	}
	c.count.Store(int64(len(records)))
	c.version.Store(version)
	c.stats.refreshes.Add(1)
	c.lastOK.Store(c.opts.Now().UnixNano())
	return nil
}

// apply replaces the entries of changed records, copying each shard touched
// once.
func (c *Cache) apply(changed []Record) {
	if len(changed) == 0 {
		return
	}
	byShard := map[int][]*Entry{}
	var prevs map[string]*Entry // for OnChange: the entries replaced
	if c.opts.OnChange != nil {
		prevs = make(map[string]*Entry, len(changed))
	}
	for i := range changed {
		e := c.entry(&changed[i])
		s := shardOf(e.ID)
		byShard[s] = append(byShard[s], e)
	}
	for s, es := range byShard {
		old := *c.shards[s].Load()
		next := make(map[string]*Entry, len(old)+len(es))
		for id, e := range old {
			next[id] = e
		}
		for _, e := range es {
			prev := next[e.ID]
			if prevs != nil {
				if _, seen := prevs[e.ID]; !seen {
					prevs[e.ID] = prev
				}
			}
			if prev != nil {
				e.lastUsed.Store(prev.lastUsed.Load())
			} else {
				c.count.Add(1)
			}
			next[e.ID] = e
		}
		c.shards[s].Store(&next)
	}
	if c.opts.OnChange != nil {
		for i := range changed {
			c.opts.OnChange(prevs[changed[i].ID], &changed[i])
		}
	}
}

// entry converts a record, sharing equal strings and lists between entries
// to keep a million keys small.
func (c *Cache) entry(r *Record) *Entry {
	return &Entry{
		ID:        r.ID,
		Subject:   unique.Make(r.Subject).Value(),
		Plan:      unique.Make(r.Plan).Value(),
		Roles:     c.intern(r.Roles),
		Scopes:    c.intern(r.Scopes),
		ExpiresAt: r.ExpiresAt,
		RevokedAt: r.RevokedAt,
		Hash:      r.Hash,
	}
}

const maxInterned = 10000

func (c *Cache) intern(list []string) []string {
	if len(list) == 0 {
		return nil
	}
	k := strings.Join(list, "\x00")
	if l, ok := c.interns[k]; ok {
		return l
	}
	l := make([]string, len(list))
	for i, s := range list {
		l[i] = unique.Make(s).Value()
	}
	if len(c.interns) < maxInterned {
		c.interns[k] = l
	}
	return l
}

// shardOf spreads key IDs, which are random, over the shards (FNV-1a).
func shardOf(id string) int {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return int(h & (shardCount - 1))
}

var _ Lookup = (*Cache)(nil)
