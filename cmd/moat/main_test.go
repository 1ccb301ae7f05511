package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the moat command when re-executed by a
// test, so signal handling is tested on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("MOAT_TEST_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func writeConfig(t *testing.T, upstream string, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	doc := fmt.Sprintf(`server:
  shutdown_grace: 10s
  watch_config: false
listeners:
  - address: 127.0.0.1:0
upstreams:
  api:
    targets: [%q]
routes:
  - path: /{rest...}
    methods: [GET]
    upstream: api
    public: true
%s`, upstream, extra)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommands(t *testing.T) {
	valid := writeConfig(t, "http://127.0.0.1:9", "")
	invalid := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(invalid, []byte("listeners: []\nroutes:\n  - path: /x\n    methods: [GET]\n    upstream: nope\n    publik: true\n"), 0o600)
	tests := []struct {
		desc    string
		args    []string
		code    int
		stdout  []string
		stderr  []string
		jsonOut bool
	}{
		{desc: "version", args: []string{"version"}, code: exitOK, stdout: []string{"moat "}},
		{desc: "validate ok", args: []string{"validate", "-c", valid}, code: exitOK, stdout: []string{": ok (1 listeners, 1 upstreams, 1 routes)"}},
		{desc: "validate positional", args: []string{"validate", valid}, code: exitOK, stdout: []string{"ok"}},
		{desc: "validate reports every problem", args: []string{"validate", "-c", invalid}, code: exitConfig,
			stderr: []string{"bad.yaml:1:", "listeners: at least one listener", "routes[0].publik: unknown field \"publik\" (did you mean \"public\"?)", "routes[0].upstream: unknown upstream \"nope\"", "problem(s) in the configuration"}},
		{desc: "validate missing file", args: []string{"validate", "-c", "/nonexistent/moat.yaml"}, code: exitConfig, stderr: []string{"no such file", "moat demo"}},
		{desc: "serve invalid config", args: []string{"serve", "-c", invalid}, code: exitConfig, stderr: []string{"unknown upstream"}},
		{desc: "schema", args: []string{"schema"}, code: exitOK, jsonOut: true},
		{desc: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{"unknown command", "moat --help"}},
		{desc: "unknown flag", args: []string{"serve", "--nope"}, code: exitUsage, stderr: []string{"unknown flag"}},
		{desc: "demo refuses a public address", args: []string{"demo", "--listen", "0.0.0.0:8080"}, code: exitRuntime, stderr: []string{"loopback only"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
			if tt.jsonOut && !json.Valid(out.Bytes()) {
				t.Errorf("stdout is not JSON: %.200s", out.String())
			}
		})
	}
}

// TestSchemaIsCommitted keeps docs/moat.schema.json in step with the types.
func TestSchemaIsCommitted(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"schema"}, &out, io.Discard); code != 0 {
		t.Fatalf("schema exited %d", code)
	}
	want, err := os.ReadFile("../../docs/moat.schema.json")
	if err != nil {
		t.Fatalf("docs/moat.schema.json: %v (regenerate: go run ./cmd/moat schema > docs/moat.schema.json)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Error("docs/moat.schema.json is stale; regenerate: go run ./cmd/moat schema > docs/moat.schema.json")
	}
}

// TestSIGTERMDrains runs moat serve as a real process, sends SIGTERM while a
// request is in flight, and checks that the request completes and the
// process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		io.WriteString(w, "done")
	}))
	defer up.Close()
	cfg := writeConfig(t, up.URL, "")

	cmd, base, logs := startServe(t, cfg)

	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		client := &http.Client{Timeout: 10 * time.Second}
		resp, err := client.Get(base + "/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode, body: string(b)}
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("request never reached the upstream")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Let shutdown begin while the request is still held, then release it.
	waitFor(t, func() bool { return strings.Contains(logs.String(), "shutting down") })
	close(release)

	r := <-res
	if r.err != nil || r.status != http.StatusOK || r.body != "done" {
		t.Fatalf("in-flight request: status %d body %q err %v, want 200 done", r.status, r.body, r.err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("moat exited with %v; logs:\n%s", err, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("moat did not exit after SIGTERM")
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("a new connection was accepted after shutdown")
	}
}

// startServe runs "moat serve -c cfg" as a child process and returns it, its
// base URL (from the "listening" log line) and its collected logs.
func startServe(t *testing.T, cfg string) (*exec.Cmd, string, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "serve", "-c", cfg)
	cmd.Env = append(os.Environ(), "MOAT_TEST_AS_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	addrRe := regexp.MustCompile(`"msg":"listening".*"address":"([^"]+)"`)
	addr := make(chan string, 1)
	logs := &syncBuffer{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.add(sc.Text())
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a, logs
	case <-time.After(20 * time.Second):
		t.Fatalf("moat did not start; logs:\n%s", logs)
	}
	return nil, "", nil
}

// TestSIGHUPReloads edits the configuration of a running moat serve, sends
// SIGHUP, and checks that the new routes serve; then that a broken file
// sent with SIGHUP is refused while the last good configuration serves on.
func TestSIGHUPReloads(t *testing.T) {
	upstream := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(s.Close)
		return s
	}
	a, b := upstream("a"), upstream("b")
	cfg := writeConfig(t, a.URL, "")
	cmd, base, logs := startServe(t, cfg)

	get := func() string {
		resp, err := http.Get(base + "/x")
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	if got := get(); got != "a" {
		t.Fatalf("before reload: %q, want a", got)
	}
	next := writeConfig(t, b.URL, "")
	data, _ := os.ReadFile(next)
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return get() == "b" })

	if err := os.WriteFile(cfg, []byte("routes: [not, valid"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(logs.String(), "reload failed") })
	if got := get(); got != "b" {
		t.Errorf("after a failed reload: %q, want the last good configuration (b)", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("condition not met within 5s")
}

// syncBuffer collects log lines from a reader goroutine.
type syncBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *syncBuffer) add(s string) {
	b.mu.Lock()
	b.lines = append(b.lines, s)
	b.mu.Unlock()
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
