package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder counts writes and keeps what was written.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
	fail   bool
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("disk full")
	}
	r.writes++
	return r.buf.Write(p)
}

func (r *recorder) snapshot() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.String(), r.writes
}

func TestBufferedWriter(t *testing.T) {
	tests := []struct {
		desc       string
		size       int
		lines      []string
		wantWrites int // before Close
	}{
		{desc: "small lines stay buffered", size: 64, lines: []string{"a\n", "b\n"}, wantWrites: 0},
		{desc: "a full buffer is written out", size: 4, lines: []string{"aa\n", "bb\n"}, wantWrites: 1},
		{desc: "a line larger than the buffer goes straight through", size: 4, lines: []string{"a\n", "0123456789\n"}, wantWrites: 2},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			rec := &recorder{}
			b := NewBufferedWriter(rec, tt.size, time.Hour)
			for _, l := range tt.lines {
				b.Write([]byte(l))
			}
			if _, n := rec.snapshot(); n != tt.wantWrites {
				t.Errorf("%d writes before Close, want %d", n, tt.wantWrites)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if got, _ := rec.snapshot(); got != strings.Join(tt.lines, "") {
				t.Errorf("wrote %q, want every line in order", got)
			}
		})
	}
}

func TestBufferedWriterFlushesPeriodically(t *testing.T) {
	rec := &recorder{}
	b := NewBufferedWriter(rec, 1<<10, 10*time.Millisecond)
	defer b.Close()
	b.Write([]byte("line\n"))
	for i := 0; i < 500; i++ {
		if got, _ := rec.snapshot(); got == "line\n" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the buffered line was never flushed")
}

func TestBufferedWriterReportsErrors(t *testing.T) {
	rec := &recorder{fail: true}
	b := NewBufferedWriter(rec, 1<<10, time.Hour)
	b.Write([]byte("x\n"))
	if err := b.Close(); err == nil {
		t.Error("Close hid a write error")
	}
}

// TestLoggerLinesIntact checks that concurrent records are never interleaved
// or split, whatever the buffer size.
func TestLoggerLinesIntact(t *testing.T) {
	rec := &recorder{}
	log, closeLog := NewLogger(rec, "json", new(slog.LevelVar), false)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				log.Info("access", "path", strings.Repeat("p", i%300), "g", g)
			}
		}()
	}
	wg.Wait()
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}
	out, _ := rec.snapshot()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 8*500 {
		t.Fatalf("%d lines, want %d", len(lines), 8*500)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"time":`) || !strings.HasSuffix(l, "}") {
			t.Fatalf("damaged line %q", l)
		}
	}
}

func BenchmarkAccessLine(b *testing.B) {
	for _, sync := range []bool{true, false} {
		name := "buffered"
		if sync {
			name = "sync"
		}
		b.Run(name, func(b *testing.B) {
			log, closeLog := NewLogger(io.Discard, "json", new(slog.LevelVar), sync)
			defer closeLog()
			b.ReportAllocs()
			for b.Loop() {
				log.LogAttrs(context.Background(), slog.LevelInfo, "access", slog.String("request_id", "0123456789abcdef0123456789abcdef"),
					slog.String("method", "GET"), slog.String("path", "/books/1"), slog.Int("status", 200))
			}
		})
	}
}
