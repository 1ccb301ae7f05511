package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// TestRunRejectsBadFlags checks that every bad flag is a usage error that
// names it, before any connection is opened.
func TestRunRejectsBadFlags(t *testing.T) {
	pid := os.Getpid()
	for _, tc := range []struct {
		desc, addr, path string
		n, pid, parallel int
		want             string
	}{
		{desc: "not host:port", addr: "localhost", path: "/", n: 1, pid: pid, parallel: 1, want: "-addr"},
		{desc: "not loopback", addr: "192.0.2.1:80", path: "/", n: 1, pid: pid, parallel: 1, want: "not a loopback address"},
		{desc: "no connections", addr: "127.0.0.1:80", path: "/", n: 0, pid: pid, parallel: 1, want: "-n 0"},
		{desc: "no pid", addr: "127.0.0.1:80", path: "/", n: 1, pid: 0, parallel: 1, want: "-pid"},
		{desc: "no parallelism", addr: "127.0.0.1:80", path: "/", n: 1, pid: pid, parallel: 0, want: "-parallel 0"},
		{desc: "relative path", addr: "127.0.0.1:80", path: "bench", n: 1, pid: pid, parallel: 1, want: "-path"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := run(tc.addr, tc.n, tc.path, tc.pid, tc.parallel, 0, time.Second)
			var u usageError
			if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run() = %v, want a usage error naming %q", err, tc.want)
			}
		})
	}
}

// TestRunHoldsConnections opens a few connections to a local server and
// checks that each got its answer and was still open (idle) when the server
// was asked how many it holds.
func TestRunHoldsConnections(t *testing.T) {
	const n = 20
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	open := make(chan struct{}, 2*n)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateIdle {
			open <- struct{}{}
		}
	}
	srv.Start()
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	// This process is the server, so its own VmRSS is read.
	if err := run(addr, n, "/bench", os.Getpid(), 4, 0, 10*time.Second); err != nil {
		t.Fatalf("run() = %v", err)
	}
	// The server marks a connection idle just after writing its answer,
	// which the client may have read already: wait for the last ones.
	timeout := time.After(10 * time.Second)
	for got := 0; got < n; got++ {
		select {
		case <-open:
		case <-timeout:
			t.Fatalf("%d connections went idle after their request, want %d", got, n)
		}
	}
}

// TestRunReportsFailures checks that a non-2xx answer fails the run.
func TestRunReportsFailures(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	err := run(strings.TrimPrefix(srv.URL, "http://"), 3, "/bench", os.Getpid(), 1, 0, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("run() = %v, want an error naming status 404", err)
	}
}
