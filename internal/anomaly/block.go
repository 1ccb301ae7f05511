package anomaly

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Blocker stores temporary blocks of subjects (kind KindIP or
// KindPrincipal). Implementations are safe for concurrent use.
type Blocker interface {
	// Block blocks the subject until the given time. A block never
	// shortens an existing longer one.
	Block(ctx context.Context, kind, subject string, until time.Time) error
	// Blocked reports whether the subject is blocked now and until when.
	// An error means the store could not tell.
	Blocked(ctx context.Context, kind, subject string) (bool, time.Time, error)
	// List returns the blocks in force, at most MaxListedBlocks of them,
	// sorted by end (latest first), then kind and subject.
	List(ctx context.Context) ([]Block, error)
	// Unblock lifts the subject's block at once, or returns ErrNotBlocked
	// when it has none in force.
	Unblock(ctx context.Context, kind, subject string) error
}

// Block is one block in force, as List reports it.
type Block struct {
	Kind    string // KindIP or KindPrincipal
	Subject string // as blocked; "sha256:<hex>" for a Redis subject over 128 bytes (see Hashed)
	Until   time.Time
	// Hashed says Subject is the SHA-256 a Redis blocker keeps instead of
	// a subject over 128 bytes. Unblock accepts it as the subject.
	Hashed bool
}

// MaxListedBlocks bounds what Blocker.List returns.
const MaxListedBlocks = 10000

// ErrNotBlocked is returned by Unblock when the subject has no block in
// force.
var ErrNotBlocked = errors.New("not blocked")

// sortBlocks orders blocks by end (latest first), then kind and subject.
func sortBlocks(bs []Block) {
	slices.SortFunc(bs, func(a, b Block) int {
		if c := b.Until.Compare(a.Until); c != 0 {
			return c
		}
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
}

// errBlockTableFull is returned by Memory.Block when it holds its maximum
// of live blocks.
var errBlockTableFull = errors.New("block table full")

// Memory is a Blocker for one instance. It holds at most max live blocks;
// expired ones are dropped when room is needed.
type Memory struct {
	mu    sync.Mutex
	until map[string]time.Time
	max   int
	now   func() time.Time
}

// NewMemory returns an empty Memory holding at most max blocks (default
// 100000 when max <= 0); now defaults to time.Now.
func NewMemory(max int, now func() time.Time) *Memory {
	if max <= 0 {
		max = 100000
	}
	if now == nil {
		now = time.Now
	}
	return &Memory{until: make(map[string]time.Time), max: max, now: now}
}

// Block implements Blocker.
func (m *Memory) Block(_ context.Context, kind, subject string, until time.Time) error {
	k := kind + "\x00" + subject
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.until[k]; ok {
		if until.After(cur) {
			m.until[k] = until
		}
		return nil
	}
	if len(m.until) >= m.max {
		now := m.now()
		for key, u := range m.until {
			if !u.After(now) {
				delete(m.until, key)
			}
		}
		if len(m.until) >= m.max {
			return errBlockTableFull
		}
	}
	m.until[k] = until
	return nil
}

// Blocked implements Blocker; it never fails.
func (m *Memory) Blocked(_ context.Context, kind, subject string) (bool, time.Time, error) {
	m.mu.Lock()
	u, ok := m.until[kind+"\x00"+subject]
	m.mu.Unlock()
	if ok && u.After(m.now()) {
		return true, u, nil
	}
	return false, time.Time{}, nil
}

// List implements Blocker; it never fails. It takes the lock for one pass
// over the table (at most max entries).
func (m *Memory) List(_ context.Context) ([]Block, error) {
	now := m.now()
	out := []Block{}
	m.mu.Lock()
	for k, u := range m.until {
		if !u.After(now) {
			continue
		}
		kind, subject, _ := strings.Cut(k, "\x00")
		out = append(out, Block{Kind: kind, Subject: subject, Until: u})
	}
	m.mu.Unlock()
	sortBlocks(out)
	if len(out) > MaxListedBlocks {
		out = out[:MaxListedBlocks]
	}
	return out, nil
}

// Unblock implements Blocker; it fails only with ErrNotBlocked.
func (m *Memory) Unblock(_ context.Context, kind, subject string) error {
	k := kind + "\x00" + subject
	m.mu.Lock()
	u, ok := m.until[k]
	delete(m.until, k)
	m.mu.Unlock()
	if !ok || !u.After(m.now()) {
		return ErrNotBlocked
	}
	return nil
}

// RedisOptions configures a Redis blocker.
type RedisOptions struct {
	// Prefix is put before every key; default "moat:block:".
	Prefix string
	// CacheTTL is how long an answer from Redis (blocked or not) is
	// trusted before Redis is asked again: the longest a block written by
	// another instance takes to be honoured here. 0 asks Redis every time.
	CacheTTL time.Duration
	// CacheSize bounds the cached answers; default 65536.
	CacheSize int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Redis is a Blocker shared by every instance using the same Redis. A block
// is a key prefix+kind+":"+subject holding the end of the block in unix
// milliseconds, expiring with it (SET PX); subjects longer than 128 bytes
// are hashed (SHA-256). Answers are cached locally for CacheTTL, so the
// request path reaches Redis at most once per subject per CacheTTL; blocks
// this instance writes are cached at once. Instances must have roughly
// synchronised clocks: the block's end is compared with the local clock.
// A Redis is safe for concurrent use.
type Redis struct {
	client   redis.UniversalClient
	prefix   string
	cacheTTL time.Duration
	perShard int
	now      func() time.Time
	seed     maphash.Seed
	cache    [16]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[string]cached
}

type cached struct {
	blocked bool
	until   time.Time
	expires time.Time
}

// blockScript sets the block unless a longer one is already there.
var blockScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)

// NewRedis returns a blocker using client, which it does not close.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = "moat:block:"
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 65536
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Redis{client: client, prefix: o.Prefix, cacheTTL: o.CacheTTL, now: o.Now, seed: maphash.MakeSeed(),
		perShard: max(1, o.CacheSize/16)}
	for i := range r.cache {
		r.cache[i].m = make(map[string]cached)
	}
	return r
}

func (r *Redis) key(kind, subject string) string {
	if len(subject) > 128 {
		sum := sha256.Sum256([]byte(subject))
		subject = "sha256:" + hex.EncodeToString(sum[:])
	}
	return r.prefix + kind + ":" + subject
}

// Block implements Blocker. A block already over is not written.
func (r *Redis) Block(ctx context.Context, kind, subject string, until time.Time) error {
	ttl := until.Sub(r.now())
	if ttl < time.Millisecond {
		return nil
	}
	k := r.key(kind, subject)
	err := blockScript.Run(ctx, r.client, []string{k}, strconv.FormatInt(until.UnixMilli(), 10), strconv.FormatInt(ttl.Milliseconds(), 10)).Err()
	if err != nil {
		return fmt.Errorf("writing block: %w", err)
	}
	r.store(k, cached{blocked: true, until: until, expires: r.now().Add(r.cacheTTL)})
	return nil
}

// Blocked implements Blocker: from the cache when fresh, else from Redis.
func (r *Redis) Blocked(ctx context.Context, kind, subject string) (bool, time.Time, error) {
	k := r.key(kind, subject)
	now := r.now()
	sh := &r.cache[maphash.String(r.seed, k)%16]
	sh.mu.Lock()
	c, ok := sh.m[k]
	sh.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.blocked && c.until.After(now), c.until, nil
	}
	v, err := r.client.Get(ctx, k).Result()
	var until time.Time
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return false, time.Time{}, fmt.Errorf("reading block: %w", err)
	default:
		ms, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil {
			return false, time.Time{}, fmt.Errorf("reading block: bad value %q", v)
		}
		until = time.UnixMilli(ms)
	}
	blocked := until.After(now)
	if r.cacheTTL > 0 {
		r.store(k, cached{blocked: blocked, until: until, expires: now.Add(r.cacheTTL)})
	}
	if !blocked {
		return false, time.Time{}, nil
	}
	return true, until, nil
}

// listScanCount is the COUNT hint of each SCAN List sends; listMaxScans
// bounds the SCAN round trips of one List (the keyspace walked is at most
// about listScanCount x listMaxScans keys).
const (
	listScanCount = 1000
	listMaxScans  = 10000
)

// List implements Blocker: it walks the keys under the prefix with SCAN
// (bounded: see MaxListedBlocks and listMaxScans) and reads each block's
// end with one pipelined GET per page. Keys whose value is not a block end
// are skipped. Subjects over 128 bytes are listed as their hash (Hashed).
func (r *Redis) List(ctx context.Context) ([]Block, error) {
	now := r.now()
	out := []Block{}
	var cursor uint64
	for range listMaxScans {
		page, next, err := r.client.Scan(ctx, cursor, escapeGlob(r.prefix)+"*", listScanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("listing blocks: %w", err)
		}
		if len(page) > 0 {
			pipe := r.client.Pipeline()
			gets := make([]*redis.StringCmd, len(page))
			for i, k := range page {
				gets[i] = pipe.Get(ctx, k)
			}
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return nil, fmt.Errorf("listing blocks: %w", err)
			}
			for i, k := range page {
				v, err := gets[i].Result()
				if err != nil {
					continue // expired or deleted since the SCAN
				}
				ms, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					continue
				}
				until := time.UnixMilli(ms)
				kind, subject, ok := strings.Cut(strings.TrimPrefix(k, r.prefix), ":")
				if !ok || (kind != KindIP && kind != KindPrincipal) || !until.After(now) {
					continue
				}
				out = append(out, Block{Kind: kind, Subject: subject, Until: until, Hashed: isHashedSubject(subject)})
			}
		}
		if next == 0 || len(out) >= MaxListedBlocks {
			break
		}
		cursor = next
	}
	sortBlocks(out)
	if len(out) > MaxListedBlocks {
		out = out[:MaxListedBlocks]
	}
	return out, nil
}

// unblockScript deletes a block and returns the end it had, or false.
var unblockScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
return v
`)

// Unblock implements Blocker: it deletes the key (one script: GET, DEL)
// and forgets this instance's cached answer; ErrNotBlocked when there was
// no key or its end had passed by the local clock. Other instances honour
// their cached answer for up to CacheTTL.
func (r *Redis) Unblock(ctx context.Context, kind, subject string) error {
	k := r.key(kind, subject)
	v, err := unblockScript.Run(ctx, r.client, []string{k}).Text()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("deleting block: %w", err)
	}
	sh := &r.cache[maphash.String(r.seed, k)%16]
	sh.mu.Lock()
	delete(sh.m, k)
	sh.mu.Unlock()
	ms, perr := strconv.ParseInt(v, 10, 64)
	if err != nil || perr != nil || !time.UnixMilli(ms).After(r.now()) {
		return ErrNotBlocked
	}
	return nil
}

// isHashedSubject reports whether a subject read back from a key is the
// hash key() puts in place of a long subject.
func isHashedSubject(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// escapeGlob escapes the characters SCAN MATCH treats as pattern syntax.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (r *Redis) store(k string, c cached) {
	if r.cacheTTL <= 0 {
		return
	}
	sh := &r.cache[maphash.String(r.seed, k)%16]
	sh.mu.Lock()
	if _, ok := sh.m[k]; !ok && len(sh.m) >= r.perShard {
		clear(sh.m) // cheap and bounded; the next lookups go to Redis
	}
	sh.m[k] = c
	sh.mu.Unlock()
}

var (
	_ Blocker = (*Memory)(nil)
	_ Blocker = (*Redis)(nil)
)
