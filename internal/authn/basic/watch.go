package basic

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	defaultPollInterval = 30 * time.Second
	defaultDebounce     = 100 * time.Millisecond
)

// stamp is what the poll compares: the file's size and modification time,
// following symlinks.
type stamp struct {
	ok      bool
	size    int64
	modNano int64
}

func statFile(path string) stamp {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}
	}
	return stamp{ok: true, size: fi.Size(), modNano: fi.ModTime().UnixNano()}
}

// Start watches the htpasswd file and reloads it when its content changes.
// It watches the file's directory (and that of its symlink target) with
// file system events, so a write in place, a temporary file renamed over
// the original and a Kubernetes ..data symlink swap are all seen, and
// reloads once events have been quiet for Debounce. Every PollInterval it
// also compares the file's size and modification time and retries a failed
// reload. A reload that fails keeps the previous users and is logged.
//
// Start returns once the watches are in place, after checking the file
// once. The watcher stops when ctx ends or Close is called. Calls after the
// first, or after Close, do nothing.
func (a *Authenticator) Start(ctx context.Context) {
	a.lifeMu.Lock()
	if a.started || a.closed {
		a.lifeMu.Unlock()
		return
	}
	a.started = true
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	a.cancel, a.done = cancel, done
	a.lifeMu.Unlock()

	poll, debounce := a.PollInterval, a.Debounce
	if poll <= 0 {
		poll = defaultPollInterval
	}
	if debounce <= 0 {
		debounce = defaultDebounce
	}
	var w *fsnotify.Watcher
	if !a.noEvents {
		var err error
		if w, err = fsnotify.NewWatcher(); err != nil {
			a.log.Warn("htpasswd file events unavailable; polling only", "error", err, "poll_interval", poll)
			w = nil
		} else {
			a.syncWatches(w)
		}
	}
	// A change between the load and the watches being set.
	a.checkContent("start")
	go a.watch(ctx, done, w, poll, debounce)
}

// Close stops the watcher started by Start and waits for it to exit. The
// Authenticator keeps checking credentials against its current users, and
// Reload still works. Close is idempotent and returns the error, if any,
// from closing the file system watcher.
func (a *Authenticator) Close() error {
	a.lifeMu.Lock()
	a.closed = true
	cancel, done := a.cancel, a.done
	a.lifeMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return a.closeErr
}

// watch is the watcher goroutine; it closes done when it exits.
func (a *Authenticator) watch(ctx context.Context, done chan struct{}, w *fsnotify.Watcher, poll, debounce time.Duration) {
	defer close(done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer func() { a.closeErr = w.Close() }()
		events, errs = w.Events, w.Errors
	}
	ticker := time.NewTicker(poll)
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
			settle.Reset(debounce)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// Events may have been lost (queue overflow): look anyway.
			a.log.Warn("htpasswd file watcher error", "error", err)
			settle.Reset(debounce)
		case <-settle.C:
			a.checkContent("file changed")
			if w != nil {
				a.syncWatches(w) // a symlink may point elsewhere now
			}
		case <-ticker.C:
			if w != nil {
				a.syncWatches(w)
			}
			a.pollStamp()
		}
	}
}

// checkContent reloads if the file's content differs from the users
// loaded.
func (a *Authenticator) checkContent(reason string) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	a.stamp = statFile(a.file)
	_ = a.reloadLocked(reason)
}

// pollStamp reloads if the file's size or modification time changed since
// it was last read, or the last attempt failed.
func (a *Authenticator) pollStamp() {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	s := statFile(a.file)
	if s == a.stamp && !a.failed {
		return
	}
	a.stamp = s
	_ = a.reloadLocked("poll")
}

// watchDirs returns the file's directory and, for a file reached through
// a symlink, its target's.
func (a *Authenticator) watchDirs() []string {
	abs, err := filepath.Abs(a.file)
	if err != nil {
		return nil
	}
	dirs := []string{filepath.Dir(abs)}
	if target, err := filepath.EvalSymlinks(abs); err == nil {
		dirs = append(dirs, filepath.Dir(target))
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// syncWatches makes w watch exactly watchDirs. A directory that cannot be
// watched is logged once and left to the poll.
func (a *Authenticator) syncWatches(w *fsnotify.Watcher) {
	want := a.watchDirs()
	have := w.WatchList()
	for _, d := range have {
		if !slices.Contains(want, d) {
			_ = w.Remove(d)
		}
	}
	for _, d := range want {
		if slices.Contains(have, d) {
			continue
		}
		if err := w.Add(d); err != nil {
			if !a.watchFailed[d] {
				if a.watchFailed == nil {
					a.watchFailed = map[string]bool{}
				}
				a.watchFailed[d] = true
				a.log.Warn("cannot watch htpasswd directory; relying on polling", "dir", d, "error", err)
			}
			continue
		}
		delete(a.watchFailed, d)
	}
}
