// Package filewatch notices when files may have changed on disk: through
// file system events on their directories (so writes in place, temporary
// files renamed over the original and Kubernetes ..data symlink swaps are
// all seen) and through a periodic poll for whatever events miss. Its
// owners (TLS material, htpasswd files) decide what a change means.
package filewatch

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for Options.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultDebounce     = 100 * time.Millisecond
)

// Options says what to watch and whom to tell.
type Options struct {
	Files        []string      // watched through their directories and, for symlinks, their targets'
	PollInterval time.Duration // 0: DefaultPollInterval
	Debounce     time.Duration // quiet time after the last event before OnChange; 0: DefaultDebounce
	NoEvents     bool          // poll only (tests)
	What         string        // names the files in log messages, such as "tls" or "htpasswd"
	Log          *slog.Logger
	// OnChange is called once at Start ("start") and whenever events have
	// settled ("file changed"). OnPoll is called every PollInterval. Both run
	// on the watcher's goroutine (OnChange("start") on the caller's).
	OnChange func(reason string)
	OnPoll   func()
}

// Watcher runs one watch. The zero value is ready to Start; it is safe for
// concurrent use.
type Watcher struct {
	mu       sync.Mutex
	started  bool
	closed   bool
	cancel   context.CancelFunc
	done     chan struct{}
	closeErr error // set by the goroutine before it closes done

	failed map[string]bool // directories that could not be watched (logged once)
}

// Start sets up the watches, calls OnChange("start") for a change between
// the owner's first load and the watches, and runs the watch until ctx ends
// or Close is called. It returns once the watches are in place. Calls after
// the first, or after Close, do nothing.
func (w *Watcher) Start(ctx context.Context, o Options) {
	w.mu.Lock()
	if w.started || w.closed {
		w.mu.Unlock()
		return
	}
	w.started = true
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	w.cancel, w.done = cancel, done
	w.mu.Unlock()

	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	var fw *fsnotify.Watcher
	if !o.NoEvents {
		var err error
		if fw, err = fsnotify.NewWatcher(); err != nil {
			o.Log.Warn(o.What+" file events unavailable; polling only", "error", err, "poll_interval", o.PollInterval)
			fw = nil
		} else {
			w.sync(fw, &o)
		}
	}
	o.OnChange("start")
	go w.run(ctx, done, fw, &o)
}

// Done returns a channel closed when the watch goroutine has exited, or nil
// if the watch never started.
func (w *Watcher) Done() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// Close stops the watch and waits for its goroutine. It returns the error,
// if any, from closing the file system watcher, and is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	w.closed = true
	cancel, done := w.cancel, w.done
	w.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return w.closeErr
}

func (w *Watcher) run(ctx context.Context, done chan struct{}, fw *fsnotify.Watcher, o *Options) {
	defer close(done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		defer func() { w.closeErr = fw.Close() }()
		events, errs = fw.Events, fw.Errors
	}
	ticker := time.NewTicker(o.PollInterval)
	defer ticker.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Op&^fsnotify.Chmod == 0 {
				continue // permission or timestamp change only
			}
			settle.Reset(o.Debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// fsnotify stops delivering events until its errors are read;
			// events may have been lost (queue overflow): look anyway.
			o.Log.Warn(o.What+" file watcher error", "error", err)
			settle.Reset(o.Debounce)
		case <-settle.C:
			o.OnChange("file changed")
			if fw != nil {
				w.sync(fw, o) // a symlink may point elsewhere now
			}
		case <-ticker.C:
			if fw != nil {
				w.sync(fw, o)
			}
			o.OnPoll()
		}
	}
}

// dirs returns the directories of the files and of their symlink targets.
func dirs(files []string) []string {
	var out []string
	for _, p := range files {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		out = append(out, filepath.Dir(abs))
		if target, err := filepath.EvalSymlinks(abs); err == nil {
			out = append(out, filepath.Dir(target))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// sync makes fw watch exactly the directories of o.Files. A directory that
// cannot be watched is logged once and left to the poll. It runs on one
// goroutine at a time (Start, then the watch goroutine).
func (w *Watcher) sync(fw *fsnotify.Watcher, o *Options) {
	want := dirs(o.Files)
	have := fw.WatchList()
	for _, d := range have {
		if !slices.Contains(want, d) {
			_ = fw.Remove(d)
		}
	}
	for _, d := range want {
		if slices.Contains(have, d) {
			continue
		}
		if err := fw.Add(d); err != nil {
			if !w.failed[d] {
				if w.failed == nil {
					w.failed = map[string]bool{}
				}
				w.failed[d] = true
				o.Log.Warn("cannot watch "+o.What+" directory; relying on polling", "dir", d, "error", err)
			}
			continue
		}
		delete(w.failed, d)
	}
}
