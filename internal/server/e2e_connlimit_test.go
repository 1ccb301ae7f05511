package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/server"
)

// keepAliveConn is a raw HTTP/1.1 client connection kept open between
// requests.
type keepAliveConn struct {
	net.Conn
	br *bufio.Reader
}

func dialKeepAlive(t *testing.T, addr string) *keepAliveConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAliveConn{Conn: c, br: bufio.NewReader(c)}
}

// send writes GET path on the connection.
func (c *keepAliveConn) send(t *testing.T, path string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
}

// read reads one response, waiting at most d; it returns the status, or 0
// and the error when none came.
func (c *keepAliveConn) read(d time.Duration) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(d))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// roundTrip sends GET path and wants 200 within waitLimit.
func (c *keepAliveConn) roundTrip(t *testing.T, path string) {
	t.Helper()
	c.send(t, path)
	if status, err := c.read(waitLimit); err != nil || status != 200 {
		t.Fatalf("GET %s: status %d, %v", path, status, err)
	}
}

// TestConnectionLimit: with server.max_connections N, N kept-alive
// connections are served; the next one is not accepted (its request gets no
// answer) until one of the N closes, and then it is served; once all have
// closed, N new connections are served again.
func TestConnectionLimit(t *testing.T) {
	const limit = 3
	a := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server:
  watch_config: false
  shutdown_grace: 5s
  idle_timeout: 30s
  max_connections: %d
listeners:
  - address: 127.0.0.1:0
upstreams:
  a:
    targets: [%s]
routes:
  - {name: books, path: /books, methods: [GET], upstream: a, public: true}
`, limit, a.URL()))

	held := make([]*keepAliveConn, limit)
	for i := range held {
		held[i] = dialKeepAlive(t, g.addrs[0])
		held[i].roundTrip(t, "/books")
	}

	// The kernel completes the handshake (the listen backlog), but the
	// gateway does not accept the connection: the request waits.
	extra := dialKeepAlive(t, g.addrs[0])
	extra.send(t, "/books")
	var ne net.Error
	if status, err := extra.read(500 * time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection %d of %d: status %d, %v; want no answer while the limit is reached", limit+1, limit, status, err)
	}
	// The held connections are still served meanwhile.
	for _, c := range held {
		c.roundTrip(t, "/books")
	}

	// One closes: the waiting connection is accepted and its request served.
	held[0].Close()
	if status, err := extra.read(waitLimit); err != nil || status != 200 {
		t.Fatalf("waiting connection after a slot freed: status %d, %v", status, err)
	}
	held[0] = extra

	// All close: N new connections are served.
	for _, c := range held {
		c.Close()
	}
	for range limit {
		dialKeepAlive(t, g.addrs[0]).roundTrip(t, "/books")
	}
}

// TestLimitListener covers the wrapper itself: the slot accounting, the
// wait counter, a double Close, and Close waking a waiting Accept.
func TestLimitListener(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := server.LimitListener(inner, 2, nil)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	acceptErr := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- c
		}
	}()
	next := func(what string) net.Conn {
		t.Helper()
		select {
		case c := <-accepted:
			return c
		case <-time.After(waitLimit):
			t.Fatalf("%s: not accepted within %s", what, waitLimit)
			return nil
		}
	}
	dial := func() net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", inner.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	dial()
	dial()
	c1, c2 := next("first"), next("second")
	if got := ln.Open(); got != 2 {
		t.Errorf("Open = %d, want 2", got)
	}
	dial()
	eventually(t, "Accept waiting for a slot", ln.Waiting)
	if got := ln.Waits(); got != 1 {
		t.Errorf("Waits = %d, want 1", got)
	}
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with max 2")
	case <-time.After(200 * time.Millisecond):
	}

	// Closing twice gives one slot back, not two.
	c1.Close()
	c1.Close()
	c3 := next("third, after a close")
	if got := ln.Open(); got != 2 {
		t.Errorf("Open after a double close and an accept = %d, want 2", got)
	}
	// The accept loop is waiting again; closing the listener wakes it.
	eventually(t, "Accept waiting again", ln.Waiting)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-acceptErr:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Close did not wake the waiting Accept")
	}
	c2.Close()
	c3.Close()
	if got := ln.Open(); got != 0 {
		t.Errorf("Open after every connection closed = %d, want 0", got)
	}
	// The wrapped connection keeps CloseWrite, which net/http uses to
	// half-close before closing after an error response.
	if _, ok := c3.(interface{ CloseWrite() error }); !ok {
		t.Error("accepted connection has no CloseWrite")
	}
}
