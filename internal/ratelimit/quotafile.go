package ratelimit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// QuotaFileOptions configures a QuotaFile. The zero value gives the defaults.
type QuotaFileOptions struct {
	// FlushInterval is how often charged quota counters are written to the
	// file; default 1s. A crash loses at most the charges of one interval.
	FlushInterval time.Duration
	// Log receives flush failures. Default slog.Default().
	Log *slog.Logger
	// Now is the clock used to skip expired counters; default time.Now.
	Now func() time.Time
}

const defaultQuotaFlush = time.Second

var quotaBucket = []byte("quotas")

// QuotaFile makes the quota counters of a Memory store survive restarts: it
// loads the counters of current windows from an embedded bbolt file when it
// opens, and writes the counters charged since the last flush every
// FlushInterval and when it closes. Counters of windows that have ended are
// dropped from the file at open and as they are swept.
//
// One process at a time holds the file (bbolt locks it); several instances
// sharing quotas use Redis instead. Writes happen in the background, so the
// request path never waits for the disk: what a crash can lose is one flush
// interval of charges, in the client's favour.
//
// A QuotaFile is safe for concurrent use.
type QuotaFile struct {
	db    *bolt.DB
	mem   *Memory
	log   *slog.Logger
	now   func() time.Time
	every time.Duration

	mu       sync.Mutex // serialises flushes
	stopOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
}

// OpenQuotaFile opens (or creates) the file at path, loads its unexpired
// counters into mem, and starts flushing mem's quota counters to it.
func OpenQuotaFile(path string, mem *Memory, o QuotaFileOptions) (*QuotaFile, error) {
	if o.FlushInterval <= 0 {
		o.FlushInterval = defaultQuotaFlush
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening quota file %s: %w", path, err)
	}
	f := &QuotaFile{db: db, mem: mem, log: o.Log, now: o.Now, every: o.FlushInterval,
		stop: make(chan struct{}), done: make(chan struct{})}
	if err := f.load(); err != nil {
		db.Close()
		return nil, err
	}
	mem.trackQuotas.Store(true)
	go f.run()
	return f, nil
}

// load reads every counter whose window has not ended into the memory store
// and deletes the others.
func (f *QuotaFile) load() error {
	now := f.now().UnixNano()
	err := f.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(quotaBucket)
		if err != nil {
			return err
		}
		var stale [][]byte
		err = b.ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				stale = append(stale, k) // not ours: drop rather than fail the start
				return nil
			}
			tat := int64(binary.BigEndian.Uint64(v))
			if tat <= now {
				stale = append(stale, k)
				return nil
			}
			f.mem.restore(string(k), tat)
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("loading quota file: %w", err)
	}
	return nil
}

func (f *QuotaFile) run() {
	defer close(f.done)
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			if err := f.Flush(); err != nil {
				f.log.Error("writing quota counters failed; retrying at the next flush", "error", err)
			}
		}
	}
}

// Flush writes the counters charged since the last flush. Counters that
// failed to be written are kept for the next flush.
func (f *QuotaFile) Flush() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	dirty := f.mem.drainDirty()
	if len(dirty) == 0 {
		return nil
	}
	now := f.now().UnixNano()
	err := f.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(quotaBucket)
		if b == nil {
			return errors.New("quota bucket missing")
		}
		for _, d := range dirty {
			if d.v <= now { // swept, or its window ended
				if err := b.Delete([]byte(d.key)); err != nil {
					return err
				}
				continue
			}
			// bbolt keeps the value slice until the transaction commits:
			// each Put needs its own.
			v := binary.BigEndian.AppendUint64(nil, uint64(d.v))
			if err := b.Put([]byte(d.key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, d := range dirty { // mark them again: the next flush retries
			s := &f.mem.shards[f.mem.shardOf(d.key)]
			s.mu.Lock()
			s.markDirty(d.key)
			s.mu.Unlock()
		}
		return fmt.Errorf("writing quota file: %w", err)
	}
	return nil
}

// Close stops the background flush, writes what is pending, and closes the
// file. The memory store keeps its counters.
func (f *QuotaFile) Close() error {
	var err error
	f.stopOnce.Do(func() {
		close(f.stop)
		<-f.done
		f.mem.trackQuotas.Store(false)
		err = errors.Join(f.Flush(), f.db.Close())
	})
	return err
}
