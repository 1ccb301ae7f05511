package keys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newCache(t testing.TB, s Store, opts CacheOptions) *Cache {
	t.Helper()
	c, err := NewCache(context.Background(), s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCacheFollowsStore(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{})
	a, key := issue(t, s, "alice", t0)
	c := newCache(t, silent{s}, CacheOptions{RefreshInterval: time.Hour})

	e, err := c.Lookup(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if h := HashKey(key); e.ID != a.ID || e.Subject != "alice" || e.Roles[0] != "reader" || e.Scopes[0] != "books:read" || !e.Hash.Equal(&h) || !e.RevokedAt.IsZero() {
		t.Fatalf("entry %+v does not match record %+v", e, a)
	}
	if _, err := c.Lookup(ctx, "AAAAAAAA"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown ID: %v", err)
	}

	// Changes reach the cache at the next refresh, without a notification.
	b, _ := issue(t, s, "bob", t0)
	s.Revoke(ctx, a.ID, t0.Add(time.Minute))
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Lookup(ctx, a.ID); e.RevokedAt.IsZero() {
		t.Fatal("revocation not applied by Refresh")
	}
	if _, err := c.Lookup(ctx, b.ID); err != nil {
		t.Fatalf("new key not found after Refresh: %v", err)
	}
	if st := c.Stats(); st.Keys != 2 || st.Version != 3 {
		t.Fatalf("stats %+v, want 2 keys at version 3", st)
	}
	if n := testing.AllocsPerRun(100, func() { c.Lookup(ctx, a.ID); c.Lookup(ctx, "AAAAAAAA") }); n != 0 {
		t.Fatalf("Lookup allocates %v times, want 0", n)
	}
}

func TestCacheResyncsWhenBehind(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{LogSize: 2})
	c := newCache(t, silent{s}, CacheOptions{RefreshInterval: time.Hour})
	var ids []string
	for range 5 {
		r, _ := issue(t, s, "x", t0)
		ids = append(ids, r.ID)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := c.Lookup(ctx, id); err != nil {
			t.Fatalf("%s after resync: %v", id, err)
		}
	}
	if st := c.Stats(); st.Resyncs != 1 || st.Keys != 5 {
		t.Fatalf("stats %+v, want one resync and 5 keys", st)
	}
}

func TestCacheRecordsLastUse(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{})
	a, _ := issue(t, s, "a", t0)
	b, _ := issue(t, s, "b", t0)
	c, err := NewCache(ctx, s, CacheOptions{FlushInterval: time.Hour, TouchQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	ea, _ := c.Lookup(ctx, a.ID)
	eb, _ := c.Lookup(ctx, b.ID)
	c.Used(ea, t0.Add(time.Minute))
	c.Used(ea, t0.Add(2*time.Minute)) // already queued: updates the time only
	c.Used(eb, t0.Add(time.Minute))   // queue full: dropped
	if st := c.Stats(); st.TouchDropped != 1 {
		t.Fatalf("TouchDropped %d, want 1", st.TouchDropped)
	}
	if err := c.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, a.ID)
	if !got.LastUsedAt.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("LastUsedAt %v, want %v", got.LastUsedAt, t0.Add(2*time.Minute))
	}
	if got, _ := s.Get(ctx, b.ID); !got.LastUsedAt.IsZero() {
		t.Fatal("a dropped use was written")
	}
}

// failing is a store whose Changes fail after the first Snapshot.
type failing struct {
	Store
	fail atomic.Bool
}

func (f *failing) Changes(ctx context.Context, since uint64) (uint64, []Record, error) {
	if f.fail.Load() {
		return 0, nil, errors.New("store unreachable")
	}
	return f.Store.Changes(ctx, since)
}

func TestCacheMaxStale(t *testing.T) {
	ctx := context.Background()
	fs, _ := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{})
	a, _ := issue(t, fs, "a", t0)
	s := &failing{Store: fs}
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	tick := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	c := newCache(t, s, CacheOptions{RefreshInterval: time.Hour, MaxStale: 5 * time.Second, Now: clock})
	s.fail.Store(true)
	tick(4 * time.Second)
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("Refresh of a failing store succeeded")
	}
	if _, err := c.Lookup(ctx, a.ID); err != nil {
		t.Fatalf("within MaxStale: %v", err)
	}
	tick(2 * time.Second)
	if _, err := c.Lookup(ctx, a.ID); !errors.Is(err, ErrStale) {
		t.Fatalf("beyond MaxStale: %v, want ErrStale", err)
	}
	s.fail.Store(false)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, a.ID); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

// silent hides a store's Notifier, as if every pub/sub message were lost.
type silent struct{ Store }

// waitRevoked polls c until id is revoked, for at most limit, and returns how
// long that took.
func waitRevoked(t *testing.T, c *Cache, id string, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	for {
		if e, err := c.Lookup(context.Background(), id); err == nil && !e.RevokedAt.IsZero() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("revocation of %s not seen within %v", id, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFileRevocationReachesRunningGateway revokes through one File (as moat
// keys does) while caches read through others (as a gateway does): one
// notified by fsnotify, one that relies on polling.
func TestFileRevocationReachesRunningGateway(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	cli, _ := OpenFile(path, FileOptions{})
	a, _ := issue(t, cli, "a", t0)
	gw, _ := OpenFile(path, FileOptions{})
	quiet := slog.New(slog.DiscardHandler)                                                      // lock timeouts of last-use writes are expected here
	notified := newCache(t, gw, CacheOptions{FlushInterval: 50 * time.Millisecond, Log: quiet}) // default refresh: 500ms
	gw2, _ := OpenFile(path, FileOptions{})
	polling := newCache(t, silent{gw2}, CacheOptions{})
	// Keep the gateway writing last-use times meanwhile, to contend for the lock.
	e, _ := notified.Lookup(context.Background(), a.ID)
	notified.Used(e, time.Now())
	time.Sleep(50 * time.Millisecond) // let the watcher start: this test is about delay, not loss
	start := time.Now()
	if err := cli.Revoke(context.Background(), a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("file fsnotify: revocation seen after %v", waitRevoked(t, notified, a.ID, start, time.Second))
	t.Logf("file polling only: revocation seen after %v", waitRevoked(t, polling, a.ID, start, time.Second))
}

// TestRedisRevocationReachesEveryInstance revokes through one Redis client
// and watches two gateway caches on their own clients: one notified by
// pub/sub, one that loses every message and relies on polling.
func TestRedisRevocationReachesEveryInstance(t *testing.T) {
	prefix := testPrefix(t)
	cli := NewRedis(testRedis(t), RedisOptions{Prefix: prefix})
	a, _ := issue(t, cli, "a", t0)
	notified := newCache(t, NewRedis(testRedis(t), RedisOptions{Prefix: prefix}), CacheOptions{})
	polling := newCache(t, silent{NewRedis(testRedis(t), RedisOptions{Prefix: prefix})}, CacheOptions{})
	for _, c := range []*Cache{notified, polling} {
		if _, err := c.Lookup(context.Background(), a.ID); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(50 * time.Millisecond) // let the subscription start: this test is about delay, not loss
	start := time.Now()
	if err := cli.Revoke(context.Background(), a.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis pub/sub: revocation seen after %v", waitRevoked(t, notified, a.ID, start, time.Second))
	t.Logf("redis polling only: revocation seen after %v", waitRevoked(t, polling, a.ID, start, time.Second))

	// A key created on one instance is known to the others as quickly.
	b, _ := issue(t, cli, "b", t0)
	start = time.Now()
	for _, c := range []*Cache{notified, polling} {
		for {
			if _, err := c.Lookup(context.Background(), b.ID); err == nil {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatal("new key not seen within 1s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// memStore serves a fixed snapshot, for benchmarks.
type memStore struct {
	Store
	records []Record
}

func (m *memStore) Snapshot(context.Context) (uint64, []Record, error) { return 1, m.records, nil }
func (m *memStore) Changes(context.Context, uint64) (uint64, []Record, error) {
	return 1, nil, nil
}
func (m *memStore) TouchLastUsed(context.Context, map[string]time.Time) error { return nil }

var million struct {
	once  sync.Once
	cache *Cache
	keys  []string // a sample of the keys
	bytes float64  // heap per key held by the cache
}

// millionKeys builds, once, a Cache of 1,000,000 keys shaped like real ones:
// 10,000 subjects, a handful of role and scope sets, a plan, an expiry.
func millionKeys(b *testing.B) {
	million.once.Do(func() {
		const n = 1_000_000
		records := make([]Record, n)
		roleSets := [][]string{{"reader"}, {"reader", "writer"}, {"admin"}}
		scopeSets := [][]string{{"books:read"}, {"books:read", "books:write"}}
		for i := range records {
			key, id := Generate()
			records[i] = Record{
				ID: id, Subject: fmt.Sprintf("customer-%05d", i%10000), Roles: append([]string(nil), roleSets[i%3]...),
				Scopes: append([]string(nil), scopeSets[i%2]...), Plan: "standard", ExpiresAt: t0.Add(365 * 24 * time.Hour),
				CreatedAt: t0, Hash: HashKey(key),
			}
			if i%1000 == 0 {
				million.keys = append(million.keys, key)
			}
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c, err := NewCache(context.Background(), &memStore{records: records}, CacheOptions{RefreshInterval: time.Hour, FlushInterval: time.Hour})
		if err != nil {
			panic(err)
		}
		records = nil
		runtime.GC()
		runtime.ReadMemStats(&after)
		million.cache = c
		million.bytes = float64(after.HeapAlloc-before.HeapAlloc) / n
	})
}

// BenchmarkLookup1M measures the request path's store work with a million
// keys: the ID lookup, and the whole check (parse, hash, constant-time
// compare). bytes/key is the heap the cache holds per key, including
// records' strings and the map.
func BenchmarkLookup1M(b *testing.B) {
	millionKeys(b)
	c, ks := million.cache, million.keys
	ids := make([]string, len(ks))
	for i, k := range ks {
		ids[i], _, _ = Parse(k)
	}
	ctx := context.Background()
	b.Run("lookup", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := c.Lookup(ctx, ids[i%len(ids)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(million.bytes, "bytes/key") // after the loop, which resets metrics
	})
	b.Run("lookup-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Lookup(ctx, ids[i%len(ids)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			key := ks[i%len(ks)]
			id, _, err := Parse(key)
			if err != nil {
				b.Fatal(err)
			}
			e, err := c.Lookup(ctx, id)
			if err != nil {
				b.Fatal(err)
			}
			if h := HashKey(key); !e.Hash.Equal(&h) {
				b.Fatal("hash mismatch")
			}
			i++
		}
	})
}

// TestCacheReportsChanges checks OnChange: nothing for the initial load,
// then each created and revoked key with the entry it replaced.
func TestCacheReportsChanges(t *testing.T) {
	ctx := context.Background()
	s, _ := OpenFile(filepath.Join(t.TempDir(), "keys.db"), FileOptions{})
	a, _ := issue(t, s, "alice", t0)
	type change struct {
		id         string
		hadOld     bool
		oldRevoked bool
		revoked    bool
	}
	var got []change
	c := newCache(t, silent{s}, CacheOptions{RefreshInterval: time.Hour, OnChange: func(old *Entry, r *Record) {
		got = append(got, change{id: r.ID, hadOld: old != nil, oldRevoked: old != nil && !old.RevokedAt.IsZero(), revoked: !r.RevokedAt.IsZero()})
	}})
	if len(got) != 0 {
		t.Fatalf("the initial load reported %v", got)
	}
	b, _ := issue(t, s, "bob", t0)
	s.Revoke(ctx, a.ID, t0.Add(time.Minute))
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]change{
		b.ID: {id: b.ID},                              // created: no previous entry
		a.ID: {id: a.ID, hadOld: true, revoked: true}, // revoked: the previous entry was active
	}
	if len(got) != len(want) {
		t.Fatalf("changes %v, want %v", got, want)
	}
	for _, ch := range got {
		if want[ch.id] != ch {
			t.Errorf("change %+v, want %+v", ch, want[ch.id])
		}
	}
}
