package tlsx

import (
	"context"
	"os"

	"github.com/moat-gateway/moat/internal/filewatch"
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

// Start watches the files (see internal/filewatch) and reloads when their
// content changes: once file system events have been quiet for Debounce,
// and every PollInterval when a file's size or modification time changed or
// the last reload failed. A reload that fails (say the key was replaced and
// the certificate not yet) keeps the previous material serving and is
// retried on the next event or poll.
//
// Start returns once the watches are in place, after checking the files
// once. The watcher stops when ctx ends or Close is called. Calls after the
// first, or after Close, do nothing.
func (m *Manager) Start(ctx context.Context) {
	m.watcher.Start(ctx, filewatch.Options{
		Files:        []string{m.certFile, m.keyFile, m.caFile},
		PollInterval: m.PollInterval,
		Debounce:     m.Debounce,
		NoEvents:     m.noEvents,
		What:         "tls",
		Log:          m.log,
		OnChange:     m.checkContent,
		OnPoll:       m.pollStamps,
	})
}

// Close stops the watcher started by Start and waits for it to exit. The
// Manager keeps serving its current material through TLSConfig; Reload
// still works. Close is idempotent and returns the error, if any, from
// closing the file system watcher.
func (m *Manager) Close() error { return m.watcher.Close() }

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
