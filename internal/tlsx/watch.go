package tlsx

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

// stamp is what the poll compares: a file's size and modification time,
// following symlinks.
type stamp struct {
	ok      bool
	size    int64
	modNano int64
}

// stamps holds the certificate, key and CA files' stamps, in that order.
type stamps [3]stamp

// stat stamps the files; a missing CA file (none configured) stamps as zero.
func (m *Manager) stat() stamps {
	var s stamps
	for i, p := range []string{m.certFile, m.keyFile, m.caFile} {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			s[i] = stamp{ok: true, size: fi.Size(), modNano: fi.ModTime().UnixNano()}
		}
	}
	return s
}

// Start watches the files and reloads when their content changes. It
// watches the files' parent directories (and those of their symlink
// targets) with file system events, so a write in place, a temporary file
// renamed over the original and a Kubernetes ..data symlink swap are all
// seen; it reloads once events have been quiet for Debounce. Every
// PollInterval it also compares the files' size and modification time and
// retries a failed reload. A reload that fails (say the key was replaced
// and the certificate not yet) keeps the previous material serving and is
// retried on the next event or poll.
//
// Start returns once the watches are in place, after checking the files
// once. The watcher stops when ctx ends or Close is called. Calls after the
// first, or after Close, do nothing.
func (m *Manager) Start(ctx context.Context) {
	m.lifeMu.Lock()
	if m.started || m.closed {
		m.lifeMu.Unlock()
		return
	}
	m.started = true
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	m.cancel, m.done = cancel, done
	m.lifeMu.Unlock()

	poll, debounce := m.PollInterval, m.Debounce
	if poll <= 0 {
		poll = defaultPollInterval
	}
	if debounce <= 0 {
		debounce = defaultDebounce
	}

	var w *fsnotify.Watcher
	if !m.noEvents {
		var err error
		if w, err = fsnotify.NewWatcher(); err != nil {
			m.log.Warn("tls file events unavailable; polling only", "error", err, "poll_interval", poll)
			w = nil
		} else {
			m.syncWatches(w)
		}
	}
	// A change between the initial load and the watches being set.
	m.checkContent("start")
	go m.watch(ctx, done, w, poll, debounce)
}

// Close stops the watcher started by Start and waits for it to exit. The
// Manager keeps serving its current material through TLSConfig; Reload
// still works. Close is idempotent and returns the error, if any, from
// closing the file system watcher.
func (m *Manager) Close() error {
	m.lifeMu.Lock()
	m.closed = true
	cancel, done := m.cancel, m.done
	m.lifeMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	<-done
	return m.closeErr
}

// watch is the watcher goroutine; it closes done when it exits.
func (m *Manager) watch(ctx context.Context, done chan struct{}, w *fsnotify.Watcher, poll, debounce time.Duration) {
	defer close(done)
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer func() { m.closeErr = w.Close() }()
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
			m.log.Warn("tls file watcher error", "error", err)
			settle.Reset(debounce)
		case <-settle.C:
			m.checkContent("file changed")
			if w != nil {
				m.syncWatches(w) // a symlink may point elsewhere now
			}
		case <-ticker.C:
			if w != nil {
				m.syncWatches(w)
			}
			m.pollStamps()
		}
	}
}

// checkContent reloads if the files' content differs from the serving
// material.
func (m *Manager) checkContent(reason string) {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	m.stamps = m.stat()
	_ = m.reloadLocked(reason, false)
}

// pollStamps reloads if a file's size or modification time changed since
// it was last read, or the last attempt failed.
func (m *Manager) pollStamps() {
	m.reloadMu.Lock()
	defer m.reloadMu.Unlock()
	s := m.stat()
	if s == m.stamps && !m.failed {
		return
	}
	m.stamps = s
	_ = m.reloadLocked("poll", false)
}

// watchDirs returns the directories holding the files and, for files
// reached through symlinks, their targets.
func (m *Manager) watchDirs() []string {
	var dirs []string
	for _, p := range []string{m.certFile, m.keyFile, m.caFile} {
		if p == "" {
			continue
		}
		abs, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		dirs = append(dirs, filepath.Dir(abs))
		if target, err := filepath.EvalSymlinks(abs); err == nil {
			dirs = append(dirs, filepath.Dir(target))
		}
	}
	slices.Sort(dirs)
	return slices.Compact(dirs)
}

// syncWatches makes w watch exactly watchDirs. A directory that cannot be
// watched is logged once and left to the poll.
func (m *Manager) syncWatches(w *fsnotify.Watcher) {
	want := m.watchDirs()
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
			if !m.watchFailed[d] {
				if m.watchFailed == nil {
					m.watchFailed = map[string]bool{}
				}
				m.watchFailed[d] = true
				m.log.Warn("cannot watch tls directory; relying on polling", "dir", d, "error", err)
			}
			continue
		}
		delete(m.watchFailed, d)
	}
}
