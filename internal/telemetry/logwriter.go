// Package telemetry sets up the gateway's process and access logs.
package telemetry

import (
	"io"
	"sync"
	"time"
)

// BufferedWriter batches log lines into few large writes. slog handlers write
// each record with one Write call, so a record is never split across
// flushes. Buffered lines are written when the buffer is full, every flush
// interval, and on Flush and Close; at most one interval of lines is lost if
// the process dies without closing it. A BufferedWriter is safe for
// concurrent use.
type BufferedWriter struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	err  error // first write error; later lines are dropped, not retried
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewBufferedWriter returns a writer that buffers up to size bytes for w and
// flushes at least every interval. Close stops its flusher goroutine.
func NewBufferedWriter(w io.Writer, size int, interval time.Duration) *BufferedWriter {
	b := &BufferedWriter{w: w, buf: make([]byte, 0, size), stop: make(chan struct{}), done: make(chan struct{})}
	go b.flusher(interval)
	return b
}

func (b *BufferedWriter) flusher(interval time.Duration) {
	defer close(b.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			b.Flush()
		}
	}
}

// Write appends p to the buffer, writing the buffer out first if p does not
// fit, and writing p directly if it is larger than the buffer.
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > cap(b.buf) {
		b.flushLocked()
		if len(p) > cap(b.buf) {
			if _, err := b.w.Write(p); err != nil && b.err == nil {
				b.err = err
			}
			return len(p), nil
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *BufferedWriter) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	if _, err := b.w.Write(b.buf); err != nil && b.err == nil {
		b.err = err
	}
	b.buf = b.buf[:0]
}

// Close stops the periodic flush and writes out what is buffered. Writes
// after Close still work; they are flushed when the buffer fills or on the
// next Flush.
func (b *BufferedWriter) Close() error {
	b.once.Do(func() { close(b.stop) })
	<-b.done
	return b.Flush()
}
