// Command soak runs moat's full stack at a fixed fraction of its measured
// capacity for a long time, on loopback, and reports errors, latency per
// interval (drift), and moat's RSS and goroutine count at the start and end.
//
// It builds ./cmd/moat, starts a Go upstream serving the orders API, writes a
// configuration (API-key auth, a rate limit, a body cap and payload limits,
// strict OpenAPI validation, security headers, a file audit sink, an admin
// listener with public /metrics, server.max_connections), starts moat, issues
// one API key, measures capacity closed-loop, then sends the request mix
// open-loop at LOAD x capacity for DURATION.
//
// Environment (defaults in brackets):
//
//	DURATION [10m]  open-loop soak;  INTERVAL [1m]  reporting interval
//	LOAD [0.7]      fraction of the measured capacity;  RATE [0]  fixed req/s instead
//	WARMUP [3s]  PROBE [10s]  CONNS [50]  closed-loop warm-up, capacity probe and its clients
//	WORKERS [256]   most requests in flight during the soak
//	GOMAXPROCS_MOAT [1]  moat's GOMAXPROCS;  PIN [1 with 2+ CPUs]  moat on CPU 1, soak on CPU 0 (taskset)
//	KEEP_TMP [0]    keep the temporary directory
//
// The report (markdown) goes to stdout and bench/out/soak-<UTC stamp>.md.
// Everything listens on 127.0.0.1; moat is stopped (TERM, then KILL) and the
// temporary directory removed on exit; a watchdog ends the run at
// DURATION + WARMUP + PROBE + 3m.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := mainErr(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func envDur(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as 10m, got %q", name, v)
	}
	return d, nil
}

func envNum(name string, def float64) (float64, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("%s must be a non-negative number, got %q", name, v)
	}
	return f, nil
}

func logf(format string, a ...any) { fmt.Fprintf(os.Stderr, "[soak] "+format+"\n", a...) }

func mainErr() error {
	var p soakParams
	var err error
	for _, d := range []struct {
		v    *time.Duration
		name string
		def  time.Duration
	}{{&p.duration, "DURATION", 10 * time.Minute}, {&p.interval, "INTERVAL", time.Minute}, {&p.warmup, "WARMUP", 3 * time.Second}, {&p.probe, "PROBE", 10 * time.Second}} {
		if *d.v, err = envDur(d.name, d.def); err != nil {
			return err
		}
	}
	var conns, workers, procs, pin float64
	pinDef := 0.0
	if runtime.NumCPU() >= 2 {
		pinDef = 1
	}
	for _, n := range []struct {
		v    *float64
		name string
		def  float64
	}{{&p.load, "LOAD", 0.7}, {&p.rate, "RATE", 0}, {&conns, "CONNS", 50}, {&workers, "WORKERS", 256}, {&procs, "GOMAXPROCS_MOAT", 1}, {&pin, "PIN", pinDef}} {
		if *n.v, err = envNum(n.name, n.def); err != nil {
			return err
		}
	}
	p.probeConns, p.workers = max(1, int(conns)), max(1, int(workers))
	if p.load <= 0 || p.load > 1 {
		return fmt.Errorf("LOAD must be in (0, 1], got %v", p.load)
	}

	root, err := repoRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, p.duration+p.warmup+p.probe+3*time.Minute)
	defer cancel()

	dir, err := os.MkdirTemp("", "moat-soak.")
	if err != nil {
		return err
	}
	if os.Getenv("KEEP_TMP") == "1" {
		defer logf("kept %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if pin == 1 {
		// This process (load generator and upstream) on CPU 0, moat on CPU 1.
		_ = exec.Command("taskset", "-a", "-p", "-c", "0", strconv.Itoa(os.Getpid())).Run()
	}

	logf("building moat")
	bin := filepath.Join(dir, "moat")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/moat")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/moat: %w", err)
	}

	up, upURL, err := goUpstream()
	if err != nil {
		return err
	}
	defer up.Close()
	st, err := writeStack(dir, upURL, filepath.Join(root, "internal/server/testdata/orders.openapi.yaml"))
	if err != nil {
		return err
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)

	args := []string{bin, "serve", "-c", st.configPath}
	if pin == 1 {
		args = append([]string{"taskset", "-c", "1"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	logFile, err := os.Create(filepath.Join(dir, "moat.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), auditKeyEnv+"="+hex.EncodeToString(key), "GOMAXPROCS="+strconv.Itoa(max(1, int(procs))))
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{}) // closed when moat has exited; waitErr is then set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	var stopOnce sync.Once
	stopMoat := func() {
		stopOnce.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
	}
	defer stopMoat()
	if err := waitUp(ctx, st, exited, &waitErr); err != nil {
		tail(logFile.Name())
		return err
	}

	logf("moat pid %d on %s; warm-up %s, capacity probe %s, soak %s at %.0f%%", cmd.Process.Pid, st.gateway, p.warmup, p.probe, p.duration, p.load*100)
	p.pid = cmd.Process.Pid // with taskset, exec replaces it: same pid
	p.quiesce = func() { up.SetKeepAlivesEnabled(false); up.SetKeepAlivesEnabled(true) }
	t0 := time.Now()
	s, err := run(ctx, st, p)
	if err != nil {
		tail(logFile.Name())
		return err
	}
	stopMoat() // the auditor flushes at shutdown
	auditLines, auditFiles, auditErr := countAudit(st.auditFile)

	stamp := time.Now().UTC().Format("20060102T150405Z")
	out := filepath.Join(root, "bench/out")
	_ = os.MkdirAll(out, 0o755)
	f, err := os.Create(filepath.Join(out, "soak-"+stamp+".md"))
	if err != nil {
		return err
	}
	defer f.Close()
	w := io.MultiWriter(os.Stdout, f)
	host, _ := os.Hostname()
	fmt.Fprintf(w, "## moat soak, %s\n\n", stamp)
	s.markdown(w, p.interval)
	switch {
	case auditErr != nil:
		fmt.Fprintf(w, "audit events: could not be counted: %v\n\n", auditErr)
	default:
		verdict := "every soak request is there"
		if int64(auditLines) < s.sent {
			verdict = "FEWER than the soak's requests"
		}
		fmt.Fprintf(w, "audit events after moat stopped: %d in %d file(s) (the file and its rotated siblings; warm-up and capacity probe included) against %d soak requests: %s\n\n",
			auditLines, auditFiles, s.sent, verdict)
	}
	fmt.Fprintf(w, "- DURATION=%s INTERVAL=%s LOAD=%.2f RATE=%.0f WARMUP=%s PROBE=%s CONNS=%d WORKERS=%d GOMAXPROCS_MOAT=%d PIN=%d (took %s)\n",
		p.duration, p.interval, p.load, p.rate, p.warmup, p.probe, p.probeConns, p.workers, max(1, int(procs)), int(pin), time.Since(t0).Round(time.Second))
	fmt.Fprintf(w, "- machine: %s, %d CPUs, %s; upstream: Go net/http in the soak process; load generator: bench/soak open loop\n", host, runtime.NumCPU(), runtime.Version())
	fmt.Fprintln(w, "- stack: API key auth, per-key rate limit (never reached), max_body 4KiB, payload limits, strict OpenAPI (orders.openapi.yaml), security headers, file audit sink, admin /metrics, max_connections 1000")
	if s.errors > 0 || s.dropped > 0 {
		return fmt.Errorf("%d errors, %d dropped", s.errors, s.dropped)
	}
	return nil
}

// waitUp waits for the gateway and the admin listener to answer.
func waitUp(ctx context.Context, st *stack, exited <-chan struct{}, waitErr *error) error {
	deadline := time.Now().Add(30 * time.Second)
	c := newClient(st.gateway, st.apiKey, 1)
	defer c.close()
	for {
		err := c.do(ctx, 4) // GET /api/health
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("moat exited: %v", *waitErr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("moat not answering within 30s: %w", err)
		}
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "cmd/moat")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run from inside the moat repository")
		}
		dir = parent
	}
}

// countAudit counts the events of a file sink: the lines of path and of the
// files rotated from it (audit.jsonl -> audit-<time>.jsonl, .gz when
// compressed). It returns the events and the number of files read.
func countAudit(path string) (events, files int, err error) {
	ext := filepath.Ext(path)
	rotated, err := filepath.Glob(strings.TrimSuffix(path, ext) + "-*" + ext + "*")
	if err != nil {
		return 0, 0, err
	}
	for _, p := range append(rotated, path) {
		n, err := countLines(p)
		if err != nil {
			return 0, 0, err
		}
		events += n
		files++
	}
	return events, files, nil
}

// countLines counts the lines of a file, gunzipping it when its name ends
// in .gz.
func countLines(path string) (int, error) {
	if strings.HasSuffix(path, ".gz") {
		f, err := os.Open(path)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		return bytes.Count(b, []byte{'\n'}), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n, nil
}

func tail(path string) {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	fmt.Fprintf(os.Stderr, "moat log tail:\n%s\n", b)
}
