package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix is the prefix of every Redis key a Redis store uses. Its
// {keys} hash tag puts them all in one Cluster slot, which the atomic scripts
// need.
const DefaultRedisPrefix = "moat:{keys}:"

// RedisOptions tune a Redis store. The zero value gives the defaults.
type RedisOptions struct {
	// Prefix of every key; it must contain a {hash tag} on Redis Cluster.
	// Default DefaultRedisPrefix.
	Prefix string
	// LogSize is how many keys the change log remembers; a Cache that falls
	// further behind reloads every record. Default 100000.
	LogSize int
	// Batch is how many records a Snapshot or List reads per round trip.
	// Default 1000.
	Batch int
}

// Redis is the shared key store of several gateway instances. Under Prefix:
//
//	k:<id>  hash: rec = JSON Record, used = last use (unix milliseconds)
//	ids     set of every key ID
//	ver     version: incremented by every create, revoke and rotation
//	log     sorted set: key ID scored by the version of its last change
//	floor   highest version trimmed from log
//
// Every write runs as one Lua script that checks the current record
// (compare-and-set), writes it, bumps ver, logs the ID and publishes the
// version on the channel <prefix>changes. A Cache on each instance applies
// the change as soon as that message arrives, and also asks for Changes every
// RefreshInterval (500ms): a lost message (a reconnect, a partition) delays a
// revocation by at most that interval, never longer.
//
// Last-use times are kept in their own hash field so that writing them
// never races with a revocation. Redis is safe for concurrent use.
type Redis struct {
	c    redis.UniversalClient
	opts RedisOptions
	own  bool // Close closes c

	ids, ver, log, floor, channel string
}

// NewRedis returns a store kept in Redis through c, which the caller keeps
// and closes.
func NewRedis(c redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.LogSize <= 0 {
		opts.LogSize = 100000
	}
	if opts.Batch <= 0 {
		opts.Batch = 1000
	}
	p := opts.Prefix
	return &Redis{c: c, opts: opts, ids: p + "ids", ver: p + "ver", log: p + "log", floor: p + "floor", channel: p + "changes"}
}

func (s *Redis) recKey(id string) string { return s.opts.Prefix + "k:" + id }

// putScript writes records with compare-and-set. KEYS: ids, ver, log, floor,
// then one record key per record. ARGV: log size, channel, then per record
// its ID, the JSON expected ("" if it must not exist) and the new JSON.
// It returns {version, 0}, or {code, index} with code -1 (exists), -2 (not
// found) or -3 (changed meanwhile) for the index-th record.
var putScript = redis.NewScript(`
local n = #KEYS - 4
for i = 1, n do
  local cur = redis.call('HGET', KEYS[4+i], 'rec')
  local exp = ARGV[3*i+1]
  if exp == '' then
    if cur then return {-1, i} end
  elseif not cur then return {-2, i}
  elseif cur ~= exp then return {-3, i}
  end
end
local v = 0
for i = 1, n do
  local id = ARGV[3*i]
  redis.call('HSET', KEYS[4+i], 'rec', ARGV[3*i+2])
  redis.call('SADD', KEYS[1], id)
  v = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[3], v, id)
end
local size = tonumber(ARGV[1])
local count = redis.call('ZCARD', KEYS[3])
if count > size then
  local cut = redis.call('ZRANGE', KEYS[3], count-size-1, count-size-1, 'WITHSCORES')
  redis.call('SET', KEYS[4], cut[2])
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, count-size-1)
end
redis.call('PUBLISH', ARGV[2], v)
return {v, 0}
`)

// changesScript returns {version, resync (0 or 1), IDs changed after
// ARGV[1]}. KEYS: ver, log, floor.
var changesScript = redis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local since = tonumber(ARGV[1])
if v == since then return {v, 0, {}} end
local floor = tonumber(redis.call('GET', KEYS[3]) or '0')
if v < since or since < floor then return {v, 1, {}} end
return {v, 0, redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf')}
`)

// touchScript sets the used field of existing records to ARGV[i] (unix
// milliseconds) if that is later. KEYS: record keys.
var touchScript = redis.NewScript(`
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    local cur = tonumber(redis.call('HGET', k, 'used') or '0')
    if tonumber(ARGV[i]) > cur then redis.call('HSET', k, 'used', ARGV[i]) end
  end
end
return 0
`)

type put struct {
	r        *Record
	expected string // "" for a new record
}

var errConflict = errors.New("api key changed meanwhile")

// put writes records atomically.
func (s *Redis) put(ctx context.Context, ps ...put) error {
	keys := []string{s.ids, s.ver, s.log, s.floor}
	args := []any{s.opts.LogSize, s.channel}
	for _, p := range ps {
		b, err := json.Marshal(p.r)
		if err != nil {
			return err
		}
		keys = append(keys, s.recKey(p.r.ID))
		args = append(args, p.r.ID, p.expected, string(b))
	}
	res, err := putScript.Run(ctx, s.c, keys, args...).Int64Slice()
	if err != nil {
		return fmt.Errorf("writing api key: %w", err)
	}
	if len(res) != 2 || res[0] >= 0 {
		return nil
	}
	id := ps[res[1]-1].r.ID
	switch res[0] {
	case -1:
		return fmt.Errorf("%s: %w", id, ErrExists)
	case -2:
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return fmt.Errorf("%s: %w", id, errConflict)
}

// Create implements Store.
func (s *Redis) Create(ctx context.Context, r Record) error {
	if err := r.validate(); err != nil {
		return err
	}
	r.LastUsedAt = time.Time{}
	return s.put(ctx, put{r: &r})
}

// getRaw returns the record with id and its JSON as stored.
func (s *Redis) getRaw(ctx context.Context, id string) (Record, string, error) {
	vals, err := s.c.HMGet(ctx, s.recKey(id), "rec", "used").Result()
	if err != nil {
		return Record{}, "", fmt.Errorf("reading api key %s: %w", id, err)
	}
	raw, ok := vals[0].(string)
	if !ok {
		return Record{}, "", fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	r, err := s.decode(id, raw, vals[1])
	return r, raw, err
}

func (s *Redis) decode(id, raw string, used any) (Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return Record{}, fmt.Errorf("decoding api key %s: %w", id, err)
	}
	if u, ok := used.(string); ok {
		if ms, err := strconv.ParseInt(u, 10, 64); err == nil {
			if t := time.UnixMilli(ms).UTC(); t.After(r.LastUsedAt) {
				r.LastUsedAt = t
			}
		}
	}
	return r, nil
}

// Get implements Store.
func (s *Redis) Get(ctx context.Context, id string) (Record, error) {
	r, _, err := s.getRaw(ctx, id)
	return r, err
}

// List implements Store.
func (s *Redis) List(ctx context.Context) ([]Record, error) {
	_, rs, err := s.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	sortRecords(rs)
	return rs, nil
}

// modify applies fn to the record with id and writes it back, retrying if
// another writer changed it meanwhile. fn returns false to write nothing.
func (s *Redis) modify(ctx context.Context, id string, fn func(*Record) (bool, error)) error {
	for range 10 {
		r, raw, err := s.getRaw(ctx, id)
		if err != nil {
			return err
		}
		r.LastUsedAt = time.Time{} // kept in its own field
		if ok, err := fn(&r); err != nil || !ok {
			return err
		}
		if err := s.put(ctx, put{r: &r, expected: raw}); !errors.Is(err, errConflict) {
			return err
		}
	}
	return fmt.Errorf("%s: %w ten times", id, errConflict)
}

// Revoke implements Store.
func (s *Redis) Revoke(ctx context.Context, id string, at time.Time) error {
	return s.modify(ctx, id, func(r *Record) (bool, error) {
		if !r.RevokedAt.IsZero() {
			return false, nil
		}
		r.RevokedAt = at
		return true, nil
	})
}

// Rotate implements Store.
func (s *Redis) Rotate(ctx context.Context, id string, at time.Time, grace time.Duration) (Record, string, error) {
	for range 10 {
		old, raw, err := s.getRaw(ctx, id)
		if err != nil {
			return Record{}, "", err
		}
		old.LastUsedAt = time.Time{}
		var lookupErr error
		next, key, retired, err := rotation(old, at, grace, func(id string) bool {
			n, err := s.c.Exists(ctx, s.recKey(id)).Result()
			if err != nil {
				lookupErr = err
			}
			return err == nil && n == 0
		})
		if lookupErr != nil {
			return Record{}, "", fmt.Errorf("rotating %s: %w", id, lookupErr)
		}
		if err != nil {
			return Record{}, "", err
		}
		err = s.put(ctx, put{r: &next}, put{r: &retired, expected: raw})
		if errors.Is(err, errConflict) || (errors.Is(err, ErrExists)) {
			continue
		}
		if err != nil {
			return Record{}, "", err
		}
		return next, key, nil
	}
	return Record{}, "", fmt.Errorf("rotating %s: %w ten times", id, errConflict)
}

// TouchLastUsed implements Store.
func (s *Redis) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	keys := make([]string, 0, min(len(used), s.opts.Batch))
	args := make([]any, 0, cap(keys))
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := touchScript.Run(ctx, s.c, keys, args...).Err()
		keys, args = keys[:0], args[:0]
		return err
	}
	for id, at := range used {
		keys = append(keys, s.recKey(id))
		args = append(args, at.UnixMilli())
		if len(keys) == s.opts.Batch {
			if err := flush(); err != nil {
				return fmt.Errorf("writing api key last use: %w", err)
			}
		}
	}
	if err := flush(); err != nil {
		return fmt.Errorf("writing api key last use: %w", err)
	}
	return nil
}

// Snapshot implements Store. The version is read before the records, so the
// records are at least that recent; changes after it are applied again by
// the next Changes, which is harmless.
func (s *Redis) Snapshot(ctx context.Context) (uint64, []Record, error) {
	version, err := s.c.Get(ctx, s.ver).Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, nil, fmt.Errorf("reading api keys: %w", err)
	}
	n, err := s.c.SCard(ctx, s.ids).Result()
	if err != nil {
		return 0, nil, fmt.Errorf("reading api keys: %w", err)
	}
	rs := make([]Record, 0, n)
	var cursor uint64
	for {
		ids, next, err := s.c.SScan(ctx, s.ids, cursor, "", int64(s.opts.Batch)).Result()
		if err != nil {
			return 0, nil, fmt.Errorf("reading api keys: %w", err)
		}
		got, err := s.getMany(ctx, ids)
		if err != nil {
			return 0, nil, err
		}
		rs = append(rs, got...)
		if cursor = next; cursor == 0 {
			break
		}
	}
	// SSCAN may return an ID more than once.
	seen := make(map[string]bool, len(rs))
	out := rs[:0]
	for _, r := range rs {
		if !seen[r.ID] {
			seen[r.ID] = true
			out = append(out, r)
		}
	}
	return version, out, nil
}

// getMany reads records in pipelined batches; IDs without a record are
// skipped.
func (s *Redis) getMany(ctx context.Context, ids []string) ([]Record, error) {
	var rs []Record
	for start := 0; start < len(ids); start += s.opts.Batch {
		batch := ids[start:min(start+s.opts.Batch, len(ids))]
		cmds := make([]*redis.SliceCmd, len(batch))
		_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range batch {
				cmds[i] = p.HMGet(ctx, s.recKey(id), "rec", "used")
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading api keys: %w", err)
		}
		for i, cmd := range cmds {
			vals := cmd.Val()
			raw, ok := vals[0].(string)
			if !ok {
				continue
			}
			r, err := s.decode(batch[i], raw, vals[1])
			if err != nil {
				return nil, err
			}
			rs = append(rs, r)
		}
	}
	return rs, nil
}

// Changes implements Store.
func (s *Redis) Changes(ctx context.Context, since uint64) (uint64, []Record, error) {
	res, err := changesScript.Run(ctx, s.c, []string{s.ver, s.log, s.floor}, since).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("reading api key changes: %w", err)
	}
	if len(res) != 3 {
		return 0, nil, fmt.Errorf("reading api key changes: unexpected reply %v", res)
	}
	version, _ := res[0].(int64)
	if resync, _ := res[1].(int64); resync == 1 {
		return 0, nil, ErrResync
	}
	list, _ := res[2].([]any)
	if len(list) == 0 {
		return uint64(version), nil, nil
	}
	ids := make([]string, 0, len(list))
	for _, v := range list {
		if id, ok := v.(string); ok {
			ids = append(ids, id)
		}
	}
	rs, err := s.getMany(ctx, ids)
	if err != nil {
		return 0, nil, err
	}
	return uint64(version), rs, nil
}

// Notify implements Notifier with Redis pub/sub. The subscription
// reconnects by itself; messages lost meanwhile are caught by polling.
func (s *Redis) Notify(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	sub := s.c.Subscribe(ctx, s.channel)
	go func() {
		defer close(out)
		defer sub.Close()
		in := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default: // a refresh is already due
				}
			}
		}
	}()
	return out
}

// Close implements Store. It closes the client only if the store made it
// (Open).
func (s *Redis) Close() error {
	if s.own {
		return s.c.Close()
	}
	return nil
}

var (
	_ Store    = (*Redis)(nil)
	_ Notifier = (*Redis)(nil)
)
