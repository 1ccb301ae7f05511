package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/server"
)

// TestShortSoak runs the soak stack in this process for 12 seconds at a
// fixed 300 requests/s (a rate a shared 2-CPU machine sustains under the
// race detector) and wants every request answered as expected, none
// dropped by the generator, and the process's goroutines back to their
// baseline (within a small bound) once client and upstream connections are
// closed.
func TestShortSoak(t *testing.T) {
	t.Setenv(auditKeyEnv, "0123456789abcdef0123456789abcdef-soak-test")
	up, upURL, err := goUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	spec, err := filepath.Abs("../../internal/server/testdata/orders.openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := writeStack(t.TempDir(), upURL, spec)
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan []net.Addr, 1)
	srv, err := server.New(st.configPath, server.Options{
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		NoSignals: true,
		Ready:     func(a []net.Addr) { ready <- a },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("gateway did not stop within 15s")
		}
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("gateway not ready within 15s")
	}

	runCtx, runCancel := context.WithTimeout(ctx, 60*time.Second)
	defer runCancel()
	s, err := run(runCtx, st, soakParams{
		duration: 12 * time.Second, interval: 3 * time.Second, warmup: time.Second,
		rate: 300, probeConns: 8, workers: 64,
		quiesce: func() { up.SetKeepAlivesEnabled(false); up.SetKeepAlivesEnabled(true) },
	})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	s.markdown(&b, 3*time.Second)
	t.Logf("\n%s", b.String())

	if want := int64(12 * 300); s.sent+s.dropped != want {
		t.Errorf("sent %d + dropped %d, want %d requests scheduled", s.sent, s.dropped, want)
	}
	if s.errors != 0 || s.dropped != 0 {
		t.Errorf("%d errors (first: %s), %d dropped; want none", s.errors, s.firstErr, s.dropped)
	}
	if len(s.intervals) != 4 {
		t.Errorf("%d intervals, want 4", len(s.intervals))
	}
	for i, iv := range s.intervals {
		if iv.goroutine <= 0 || iv.rssKB <= 0 {
			t.Errorf("interval %d not sampled: goroutines %d, RSS %d", i+1, iv.goroutine, iv.rssKB)
		}
	}
	const bound = 10
	if s.grEnd > s.grStart+bound {
		var dump strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Errorf("goroutines %d before, %d after the soak (quiescent): grew by more than %d\n%s", s.grStart, s.grEnd, bound, dump.String())
	}

	// Every request is audited; the file sink writes each event as a line,
	// all of them flushed once the gateway has stopped.
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	done <- nil // for the deferred stop
	n, _, err := countAudit(st.auditFile)
	if err != nil {
		t.Fatalf("audit file: %v", err)
	}
	if int64(n) < s.sent {
		t.Errorf("audit file has %d events, want at least the %d requests", n, s.sent)
	}
}

// TestCountAudit counts the events of a file sink across its rotated
// files, compressed or not, and not those of unrelated files.
func TestCountAudit(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("audit.jsonl", "{}\n{}\n")
	write("audit-2026-11-21T10-00-00.000.jsonl", "{}\n{}\n{}\n")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write([]byte("{}\n{}\n{}\n{}\n")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	write("audit-2026-11-21T09-00-00.000.jsonl.gz", gz.String())
	write("auditor.jsonl", "{}\n")
	write("spool-1.jsonl", "{}\n")
	events, files, err := countAudit(filepath.Join(dir, "audit.jsonl"))
	if err != nil || events != 9 || files != 3 {
		t.Fatalf("countAudit = %d events in %d files, %v; want 9 in 3", events, files, err)
	}
}
