package telemetry

import (
	"io"
	"log/slog"
	"time"
)

// Log buffering defaults: lines reach the output within FlushInterval.
const (
	BufferSize    = 64 << 10
	FlushInterval = 100 * time.Millisecond
)

// NewLogger returns the process logger writing to w in format ("json" or
// "text") at the level held by lvl. Unless sync is set, lines are buffered
// (see BufferedWriter); the returned close function flushes them and must be
// called before the process exits.
func NewLogger(w io.Writer, format string, lvl *slog.LevelVar, sync bool) (*slog.Logger, func() error) {
	closer := func() error { return nil }
	if !sync {
		bw := NewBufferedWriter(w, BufferSize, FlushInterval)
		w, closer = bw, bw.Close
	}
	o := &slog.HandlerOptions{Level: lvl}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, o)), closer
	}
	return slog.New(newJSONHandler(w, o)), closer
}

// SetLevel sets lvl from a level name (debug, info, warn, error); unknown
// names leave it unchanged. Configuration validation rejects them earlier.
func SetLevel(lvl *slog.LevelVar, name string) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err == nil {
		lvl.Set(l)
	}
}
