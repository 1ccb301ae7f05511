// Command idleconns measures what idle keep-alive client connections cost a
// server in memory. It reads the server process's resident set (VmRSS in
// /proc/PID/status), opens -n connections to it on loopback, sends one GET on
// each and reads the whole response so that the connection is a real,
// used keep-alive connection, keeps them all open and idle, waits -settle,
// and reads the resident set again. bench/run.sh runs it for its "idle
// connections" scenario.
//
// It prints one machine-readable line on standard output:
//
//	IDLE conns=10000 failed=0 rss_before_kib=... rss_kib=... hwm_kib=... fds=... open_ms=...
//
// rss_kib is VmRSS with every connection open, hwm_kib the process's peak
// (VmHWM), fds the number of descriptors the server holds then (at least
// conns when it really keeps them). The exit status is 1 when a connection
// could not be opened or answered, 2 for bad flags; the whole run stops after
// -timeout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "server address, a loopback host:port")
	n := flag.Int("n", 10000, "connections to open and keep idle")
	path := flag.String("path", "/bench", "path of the one GET sent on each connection")
	pid := flag.Int("pid", 0, "server process ID whose VmRSS is reported")
	parallel := flag.Int("parallel", 64, "connections opened at once")
	settle := flag.Duration("settle", 2*time.Second, "wait between opening the last connection and reading VmRSS")
	timeout := flag.Duration("timeout", 60*time.Second, "limit on the whole run")
	flag.Parse()
	if err := run(*addr, *n, *path, *pid, *parallel, *settle, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a problem with the flags.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func run(addr string, n int, path string, pid, parallel int, settle, timeout time.Duration) error {
	ap, err := netip.ParseAddrPort(addr)
	switch {
	case err != nil:
		return usageError{fmt.Sprintf("-addr %q: %v", addr, err)}
	case !ap.Addr().IsLoopback():
		return usageError{fmt.Sprintf("-addr %q: not a loopback address", addr)}
	case n < 1:
		return usageError{fmt.Sprintf("-n %d: must be at least 1", n)}
	case pid < 1:
		return usageError{"-pid is required"}
	case parallel < 1:
		return usageError{fmt.Sprintf("-parallel %d: must be at least 1", parallel)}
	case !strings.HasPrefix(path, "/"):
		return usageError{fmt.Sprintf("-path %q: must start with /", path)}
	}
	before, _, err := memory(pid)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: moat-bench-idleconns\r\nAccept: */*\r\n\r\n"
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var next, failed atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 5 * time.Second}
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := open(ctx, &d, addr, req)
				if err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	openTime := time.Since(start)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("opening %d connections took longer than -timeout %v", n, timeout)
	}
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return fmt.Errorf("-timeout %v reached while settling", timeout)
	}
	rss, hwm, err := memory(pid)
	if err != nil {
		return err
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return fmt.Errorf("counting the server's descriptors: %w", err)
	}
	fmt.Printf("IDLE conns=%d failed=%d rss_before_kib=%d rss_kib=%d hwm_kib=%d fds=%d open_ms=%d\n",
		int64(n)-failed.Load(), failed.Load(), before, rss, hwm, len(fds), openTime.Milliseconds())
	if firstErr != nil {
		return fmt.Errorf("%d of %d connections failed, the first: %w", failed.Load(), n, firstErr)
	}
	return nil
}

// open dials addr, sends req and reads the whole response, which must be
// 2xx and keep the connection open. The connection is returned idle, with
// no deadline.
func open(ctx context.Context, d *net.Dialer, addr, req string) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading the response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		c.Close()
		return nil, fmt.Errorf("reading the response body: %w", err)
	case resp.StatusCode/100 != 2:
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	case resp.Close:
		c.Close()
		return nil, errors.New("the server closed the connection after the response (no keep-alive)")
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// memory returns VmRSS and VmHWM of process pid, in KiB.
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("reading the server's memory: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, name, err)
		}
		if name == "VmRSS" {
			rss = v
		} else {
			hwm = v
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
	}
	return rss, hwm, nil
}
