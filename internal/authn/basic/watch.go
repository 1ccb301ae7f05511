package basic

import (
	"context"
	"os"

	"github.com/moat-gateway/moat/internal/filewatch"
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

// Start watches the htpasswd file (see internal/filewatch) and reloads it
// when its content changes: once file system events have been quiet for
// Debounce, and every PollInterval when its size or modification time
// changed or the last reload failed. A reload that fails keeps the previous
// users and is logged.
//
// Start returns once the watches are in place, after checking the file
// once. The watcher stops when ctx ends or Close is called. Calls after the
// first, or after Close, do nothing.
func (a *Authenticator) Start(ctx context.Context) {
	a.watcher.Start(ctx, filewatch.Options{
		Files:        []string{a.file},
		PollInterval: a.PollInterval,
		Debounce:     a.Debounce,
		NoEvents:     a.noEvents,
		What:         "htpasswd",
		Log:          a.log,
		OnChange:     a.checkContent,
		OnPoll:       a.pollStamp,
	})
}

// Close stops the watcher started by Start and waits for it to exit. The
// Authenticator keeps checking credentials against its current users, and
// Reload still works. Close is idempotent and returns the error, if any,
// from closing the file system watcher.
func (a *Authenticator) Close() error { return a.watcher.Close() }

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
