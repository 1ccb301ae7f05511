package filewatch

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// recorder collects the callbacks.
type recorder struct {
	mu      sync.Mutex
	changes []string
	polls   int
}

func (r *recorder) change(reason string) {
	r.mu.Lock()
	r.changes = append(r.changes, reason)
	r.mu.Unlock()
}
func (r *recorder) poll() { r.mu.Lock(); r.polls++; r.mu.Unlock() }
func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changes), r.polls
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not happen within 5s", what)
}

func TestWatcher(t *testing.T) {
	tests := []struct {
		desc     string
		noEvents bool
	}{
		{desc: "file system events"},
		{desc: "poll only", noEvents: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "watched")
			os.WriteFile(file, []byte("a"), 0o600)
			rec := &recorder{}
			var w Watcher
			w.Start(context.Background(), Options{Files: []string{file}, PollInterval: 20 * time.Millisecond,
				Debounce: 10 * time.Millisecond, NoEvents: tt.noEvents, What: "test", OnChange: rec.change, OnPoll: rec.poll})
			if n, _ := rec.counts(); n != 1 {
				t.Fatalf("Start made %d OnChange calls, want 1 (start)", n)
			}
			if tt.noEvents {
				waitUntil(t, "a poll", func() bool { _, p := rec.counts(); return p > 0 })
			} else {
				// An editor's save: a temporary file renamed over the original.
				tmp := filepath.Join(dir, ".watched.tmp")
				os.WriteFile(tmp, []byte("b"), 0o600)
				os.Rename(tmp, file)
				waitUntil(t, "OnChange after a rename", func() bool { n, _ := rec.counts(); return n > 1 })
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-w.Done():
			default:
				t.Fatal("Close returned before the goroutine exited")
			}
			w.Start(context.Background(), Options{OnChange: rec.change, OnPoll: rec.poll}) // after Close: nothing
			if w.Close() != nil {
				t.Fatal("second Close failed")
			}
		})
	}
}
