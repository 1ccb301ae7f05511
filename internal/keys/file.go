package keys

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	bolt "go.etcd.io/bbolt"
)

// FileOptions tune a File store. The zero value gives the defaults.
type FileOptions struct {
	// LockTimeout bounds the wait for the file lock that another process
	// (the gateway, or moat keys) holds. Default 5s; a context deadline
	// that comes sooner wins.
	LockTimeout time.Duration
	// LogSize is how many changes the change log keeps. A Cache that falls
	// further behind reloads every record. Default 100000.
	LogSize int
}

var (
	bucketKeys = []byte("keys") // key ID -> JSON Record
	bucketLog  = []byte("log")  // 8-byte big-endian version -> key ID; the bucket's sequence is the version
)

// File is the embedded key store: one bbolt file, created with mode 0600,
// holding a "keys" bucket (ID -> JSON Record) and a "log" bucket (version ->
// ID of each created, revoked or rotated key, the last LogSize changes).
//
// bbolt lets one process write a file at a time, so File holds the file
// open only for the duration of each call: moat keys (which writes) and a
// running gateway (which reads, and writes last-use times) take turns, each
// waiting up to LockTimeout for the other's lock. A gateway's Cache calls
// Changes every RefreshInterval (500ms); that opens the file read-only,
// compares the log bucket's sequence with the version it has, and reads only
// the records changed since, so a revocation made with moat keys is refused
// by the running gateway within one refresh interval, even with a million
// keys. A file that was replaced (another inode) or whose log no longer
// reaches back far enough is reloaded in full.
//
// A missing file is an empty store; the first write creates it. File is safe
// for concurrent use; Snapshot and Changes track the file a Cache loaded, so
// a File serves at most one Cache.
type File struct {
	path string
	opts FileOptions

	mu   sync.Mutex  // one open at a time: bbolt's lock is per open file
	seen os.FileInfo // the file the last Snapshot read; nil if there was none
}

// OpenFile returns the store kept in the bbolt file at path. If the file
// exists, it must be a bbolt file; if not, it is created by the first write.
func OpenFile(path string, opts FileOptions) (*File, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.LogSize <= 0 {
		opts.LogSize = 100000
	}
	f := &File{path: path, opts: opts}
	err := f.view(context.Background(), func(*bolt.Tx) error { return nil })
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return f, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Create implements Store.
func (f *File) Create(ctx context.Context, r Record) error {
	if err := r.validate(); err != nil {
		return err
	}
	return f.update(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys).Get([]byte(r.ID)) != nil {
			return fmt.Errorf("creating %s: %w", r.ID, ErrExists)
		}
		return f.put(tx, &r, true)
	})
}

// Get implements Store.
func (f *File) Get(ctx context.Context, id string) (Record, error) {
	var r Record
	err := f.view(ctx, func(tx *bolt.Tx) error { return getRecord(tx, id, &r) })
	if errors.Is(err, os.ErrNotExist) {
		return Record{}, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return r, err
}

// List implements Store.
func (f *File) List(ctx context.Context) ([]Record, error) {
	f.mu.Lock()
	_, rs, _, err := f.snapshotLocked(ctx)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	sortRecords(rs)
	return rs, nil
}

// Revoke implements Store.
func (f *File) Revoke(ctx context.Context, id string, at time.Time) error {
	return f.update(ctx, func(tx *bolt.Tx) error {
		var r Record
		if err := getRecord(tx, id, &r); err != nil {
			return err
		}
		if !r.RevokedAt.IsZero() {
			return nil
		}
		r.RevokedAt = at
		return f.put(tx, &r, true)
	})
}

// Rotate implements Store.
func (f *File) Rotate(ctx context.Context, id string, at time.Time, grace time.Duration) (Record, string, error) {
	var next Record
	var key string
	err := f.update(ctx, func(tx *bolt.Tx) error {
		var old Record
		if err := getRecord(tx, id, &old); err != nil {
			return err
		}
		b := tx.Bucket(bucketKeys)
		n, k, retired, err := rotation(old, at, grace, func(id string) bool { return b.Get([]byte(id)) == nil })
		if err != nil {
			return err
		}
		if err := f.put(tx, &n, true); err != nil {
			return err
		}
		next, key = n, k
		return f.put(tx, &retired, true)
	})
	if err != nil {
		return Record{}, "", err
	}
	return next, key, nil
}

// TouchLastUsed implements Store. It does not add to the change log: last-use
// times do not affect lookups.
func (f *File) TouchLastUsed(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return f.update(ctx, func(tx *bolt.Tx) error {
		for id, at := range used {
			var r Record
			if err := getRecord(tx, id, &r); errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return err
			}
			if !at.After(r.LastUsedAt) {
				continue
			}
			r.LastUsedAt = at
			if err := f.put(tx, &r, false); err != nil {
				return err
			}
		}
		return nil
	})
}

// Snapshot implements Store.
func (f *File) Snapshot(ctx context.Context) (uint64, []Record, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	version, rs, st, err := f.snapshotLocked(ctx)
	if err != nil {
		return 0, nil, err
	}
	f.seen = st // Changes compares against the file loaded here
	return version, rs, nil
}

// snapshotLocked reads every record; a missing file is empty (version 0,
// identity nil).
func (f *File) snapshotLocked(ctx context.Context) (uint64, []Record, os.FileInfo, error) {
	var version uint64
	var rs []Record
	st, err := f.viewLocked(ctx, func(tx *bolt.Tx) error {
		version = tx.Bucket(bucketLog).Sequence()
		b := tx.Bucket(bucketKeys)
		rs = make([]Record, 0, b.Stats().KeyN)
		return b.ForEach(func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decoding api key %s: %w", k, err)
			}
			rs = append(rs, r)
			return nil
		})
	})
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil, nil, nil
	}
	if err != nil {
		return 0, nil, nil, err
	}
	return version, rs, st, nil
}

// Changes implements Store.
func (f *File) Changes(ctx context.Context, since uint64) (uint64, []Record, error) {
	var version uint64
	var rs []Record
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := f.viewLocked(ctx, func(tx *bolt.Tx) error {
		log := tx.Bucket(bucketLog)
		version = log.Sequence()
		if version == since {
			return nil
		}
		if version < since {
			return ErrResync
		}
		c := log.Cursor()
		k, v := c.Seek(u64(since + 1))
		if k == nil || binary.BigEndian.Uint64(k) != since+1 {
			return ErrResync // trimmed
		}
		ids := map[string]bool{}
		for ; k != nil; k, v = c.Next() {
			ids[string(v)] = true
		}
		for id := range ids {
			var r Record
			if err := getRecord(tx, id, &r); err != nil {
				return err
			}
			rs = append(rs, r)
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		if since == 0 {
			return 0, nil, nil
		}
		return 0, nil, ErrResync
	}
	if err != nil {
		return 0, nil, err
	}
	if (f.seen == nil && since != 0) || (f.seen != nil && !os.SameFile(f.seen, st)) {
		return 0, nil, ErrResync // another file than the one loaded
	}
	f.seen = st
	return version, rs, nil
}

// Notify implements Notifier: it watches the file's directory and announces
// every write to the file, so that a Cache applies a change made by moat
// keys at once rather than at its next poll. If the directory cannot be
// watched, the channel never receives and polling alone applies changes.
func (f *File) Notify(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(f.path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		go func() { <-ctx.Done(); close(out) }()
		return out
	}
	name := filepath.Clean(f.path)
	go func() {
		defer close(out)
		defer w.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if filepath.Clean(ev.Name) != name {
					continue
				}
				select {
				case out <- struct{}{}:
				default: // a refresh is already due
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out
}

// Close implements Store. File holds nothing open between calls.
func (f *File) Close() error { return nil }

// put writes r and, when logged, records the change in the log.
func (f *File) put(tx *bolt.Tx, r *Record, logged bool) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketKeys).Put([]byte(r.ID), v); err != nil {
		return err
	}
	if !logged {
		return nil
	}
	log := tx.Bucket(bucketLog)
	seq, err := log.NextSequence()
	if err != nil {
		return err
	}
	if err := log.Put(u64(seq), []byte(r.ID)); err != nil {
		return err
	}
	if seq > uint64(f.opts.LogSize) {
		return log.Delete(u64(seq - uint64(f.opts.LogSize)))
	}
	return nil
}

func getRecord(tx *bolt.Tx, id string, r *Record) error {
	v := tx.Bucket(bucketKeys).Get([]byte(id))
	if v == nil {
		return fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	if err := json.Unmarshal(v, r); err != nil {
		return fmt.Errorf("decoding api key %s: %w", id, err)
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// update runs fn in a write transaction, creating the file and its buckets
// if needed.
func (f *File) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{Timeout: f.lockTimeout(ctx)})
	if err != nil {
		return f.openError(err)
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketKeys, bucketLog} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// view runs fn in a read-only transaction. It returns an error wrapping
// os.ErrNotExist if there is no file, or the file holds no buckets (it was
// never written by a File).
func (f *File) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, err := f.viewLocked(ctx, fn)
	return err
}

// viewLocked is view for callers holding f.mu; it also returns the identity
// of the file read.
func (f *File) viewLocked(ctx context.Context, fn func(*bolt.Tx) error) (os.FileInfo, error) {
	st, err := os.Stat(f.path)
	if err != nil {
		return nil, err
	}
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{Timeout: f.lockTimeout(ctx), ReadOnly: true})
	if err != nil {
		return nil, f.openError(err)
	}
	defer db.Close()
	return st, db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketKeys) == nil || tx.Bucket(bucketLog) == nil {
			return fmt.Errorf("%s holds no api keys: %w", f.path, os.ErrNotExist)
		}
		return fn(tx)
	})
}

func (f *File) lockTimeout(ctx context.Context) time.Duration {
	t := f.opts.LockTimeout
	if dl, ok := ctx.Deadline(); ok {
		t = min(t, max(time.Until(dl), time.Millisecond))
	}
	return t
}

func (f *File) openError(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return err
	}
	if errors.Is(err, bolt.ErrTimeout) {
		return fmt.Errorf("opening key store %s: another process holds its lock: %w", f.path, err)
	}
	return fmt.Errorf("opening key store %s: %w", f.path, err)
}

var (
	_ Store    = (*File)(nil)
	_ Notifier = (*File)(nil)
)
