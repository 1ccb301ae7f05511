package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// slogLine is the line slog's own JSON handler writes for l.
func slogLine(t testing.TB, l *gateway.AccessLine) []byte {
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, nil)
	r := slog.NewRecord(l.Time, slog.LevelInfo, "access", 0)
	r.AddAttrs(l.Attrs()...)
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestAccessLineMatchesSlog pins the access line's bytes to slog's: log
// pipelines that parse today's lines keep working.
func TestAccessLineMatchesSlog(t *testing.T) {
	at := time.Date(2026, 11, 21, 17, 4, 5, 123456789, time.FixedZone("CET", 3600))
	tests := []gateway.AccessLine{
		{Time: at, RequestID: "0123456789abcdef0123456789abcdef", Method: "GET", Host: "api.example.com", Path: "/books/1", Status: 200,
			ClientIP: netip.MustParseAddr("192.0.2.7"), LatencyMS: 1.234, Bytes: 90, Route: "books", Upstream: "http://10.0.0.1:8080", UpstreamMS: 0.987},
		{Time: at.UTC(), Method: "POST", Path: "/", Status: 403, ReasonID: "waf_blocked", Detail: "score 10 \"quoted\" \\ <tag> & \n\r\t\x01\x7f",
			ClientIP: netip.MustParseAddr("2001:db8::1"), LatencyMS: 0, Bytes: 0, Route: "r"},
		{Time: at, Method: "GET", Host: "h\u2028\u2029é\xff", Path: "/p", Status: 499, LatencyMS: 1e-7, UpstreamMS: 1e21, Upstream: "u"},
		{Time: at, Method: "GET", Status: 200, ClientIP: netip.MustParseAddr("fe80::1%eth\"0"), LatencyMS: 123456.789, Bytes: math.MaxInt64},
		{Time: time.Time{}, Status: 0, LatencyMS: -0.5},
	}
	for i, l := range tests {
		got := appendAccessLine(nil, &l)
		if want := slogLine(t, &l); !bytes.Equal(got, want) {
			t.Errorf("line %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// FuzzAccessLine checks the fast access line against slog for any text a
// client can put in the request (host, path) and any latency.
func FuzzAccessLine(f *testing.F) {
	f.Add("GET", "api.example.com", "/books/1", "detail", 1.5, int64(90))
	f.Add("P\x00ST", "\xff\xfe", "/\u2028/\"\\", "<script>&", 1e-9, int64(-1))
	f.Fuzz(func(t *testing.T, method, host, path, detail string, ms float64, n int64) {
		if math.IsNaN(ms) || math.IsInf(ms, 0) {
			return // never a latency; encoding/json refuses them
		}
		l := gateway.AccessLine{Time: time.Unix(1790000000, 42).UTC(), RequestID: "id", Method: method, Host: host, Path: path,
			Status: 200, ClientIP: netip.MustParseAddr("198.51.100.1"), LatencyMS: ms, Bytes: n, Detail: detail, Upstream: host, UpstreamMS: -ms}
		if got, want := appendAccessLine(nil, &l), slogLine(t, &l); !bytes.Equal(got, want) {
			t.Fatalf("\n got %s\nwant %s", got, want)
		}
	})
}

// TestLoggerWritesAccessLines checks that NewLogger's JSON logger takes
// the gateway's fast path, honours the level, and that its text logger
// does not claim to.
func TestLoggerWritesAccessLines(t *testing.T) {
	var buf bytes.Buffer
	lvl := new(slog.LevelVar)
	log, closeLog := NewLogger(&buf, "json", lvl, true)
	defer closeLog()
	aw, ok := log.Handler().(gateway.AccessLineWriter)
	if !ok {
		t.Fatal("the JSON logger does not write access lines itself")
	}
	l := gateway.AccessLine{Time: time.Now(), Method: "GET", Path: "/x", Status: 200}
	if !aw.WriteAccessLine(context.Background(), &l) || !bytes.Equal(buf.Bytes(), slogLine(t, &l)) {
		t.Fatalf("wrote %q", buf.String())
	}
	buf.Reset()
	lvl.Set(slog.LevelWarn)
	if !aw.WriteAccessLine(context.Background(), &l) || buf.Len() != 0 {
		t.Fatalf("wrote %q at level warn", buf.String())
	}
	text, closeText := NewLogger(&buf, "text", lvl, true)
	defer closeText()
	if _, ok := text.Handler().(gateway.AccessLineWriter); ok {
		t.Error("the text logger claims the JSON fast path")
	}
	if _, ok := log.With("k", "v").Handler().(gateway.AccessLineWriter); ok {
		t.Error("a derived logger, whose lines carry more attributes, claims the fast path")
	}
}

// BenchmarkAccessLineFast is BenchmarkAccessLine's full access line through
// the fast path, against slog for the same line.
func BenchmarkAccessLineFast(b *testing.B) {
	l := gateway.AccessLine{Time: time.Now(), RequestID: "0123456789abcdef0123456789abcdef", Method: "GET", Host: "api.example.com", Path: "/books/1", Status: 200,
		ClientIP: netip.MustParseAddr("192.0.2.7"), LatencyMS: 1.234, Bytes: 90, Route: "books", Upstream: "http://10.0.0.1:8080", UpstreamMS: 0.987}
	log, closeLog := NewLogger(discard{}, "json", new(slog.LevelVar), true)
	defer closeLog()
	b.Run("fast", func(b *testing.B) {
		aw := log.Handler().(gateway.AccessLineWriter)
		b.ReportAllocs()
		for b.Loop() {
			aw.WriteAccessLine(context.Background(), &l)
		}
	})
	b.Run("slog", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			log.LogAttrs(context.Background(), slog.LevelInfo, "access", l.Attrs()...)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
