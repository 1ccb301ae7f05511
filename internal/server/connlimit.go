package server

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
)

// LimitedListener caps the connections a listener holds open at once
// (server.max_connections).
//
// At the limit it stops calling Accept on the wrapped listener until one of
// its connections closes: new connections wait in the kernel's listen
// backlog, first come first served, and once that backlog is full the kernel
// drops further connection attempts (the client retries its SYN). This is
// what nginx (worker_connections) and HAProxy (maxconn) do, and what
// golang.org/x/net/netutil.LimitListener does; accepting and closing at once
// instead would spend CPU on every refused attempt during a flood and turn a
// short burst into errors. Connections already held are bounded in time by
// server.read_header_timeout, read_timeout, write_timeout and idle_timeout,
// so a slot held by a slow or idle client comes back.
//
// Every connection it returns gives its slot back exactly once, on its
// first Close. It counts the connections open and the number of times
// Accept found the listener full and had to wait, and logs once, at warn,
// each time the listener becomes full.
type LimitedListener struct {
	net.Listener
	max   int
	sem   chan struct{}
	done  chan struct{}
	close sync.Once
	log   *slog.Logger

	waits   atomic.Uint64
	full    atomic.Bool // logged as full and not yet below the limit again
	blocked atomic.Int64
}

// LimitListener wraps ln so that at most max connections accepted from it
// are open at once; max must be at least 1. log (nil for none) receives the
// "listener full" warnings.
func LimitListener(ln net.Listener, max int, log *slog.Logger) *LimitedListener {
	if max < 1 {
		panic("server: LimitListener needs max >= 1")
	}
	return &LimitedListener{Listener: ln, max: max, sem: make(chan struct{}, max), done: make(chan struct{}), log: log}
}

// Accept waits for a free slot, then for a connection. It returns
// net.ErrClosed once the listener is closed, even while waiting for a slot.
func (l *LimitedListener) Accept() (net.Conn, error) {
	if !l.acquire() {
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.release()
		return nil, err
	}
	return &limitedConn{Conn: c, release: l.release}, nil
}

func (l *LimitedListener) acquire() bool {
	select {
	case <-l.done:
		return false
	default:
	}
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	// Full: count it, warn once per episode, then wait.
	l.waits.Add(1)
	l.blocked.Add(1)
	defer l.blocked.Add(-1)
	if l.full.CompareAndSwap(false, true) && l.log != nil {
		l.log.Warn("listener at server.max_connections; new connections wait in the kernel backlog",
			"max_connections", l.max, "address", l.Addr().String())
	}
	select {
	case l.sem <- struct{}{}:
		return true
	case <-l.done:
		return false
	}
}

func (l *LimitedListener) release() {
	<-l.sem
	if l.full.Load() && len(l.sem) < l.max/2+1 && l.full.CompareAndSwap(true, false) && l.log != nil {
		l.log.Info("listener below server.max_connections again", "open", len(l.sem), "address", l.Addr().String())
	}
}

// Close closes the wrapped listener and wakes an Accept waiting for a slot.
func (l *LimitedListener) Close() error {
	err := l.Listener.Close()
	l.close.Do(func() { close(l.done) })
	return err
}

// Open returns the number of connections accepted and not yet closed.
func (l *LimitedListener) Open() int { return len(l.sem) }

// Max returns the limit.
func (l *LimitedListener) Max() int { return l.max }

// Waits returns how many times Accept found the listener full and had to
// wait for a connection to close: the number of times the limit was hit.
func (l *LimitedListener) Waits() uint64 { return l.waits.Load() }

// Waiting reports whether Accept is waiting for a slot now, that is, whether
// connections may be queueing in the kernel backlog.
func (l *LimitedListener) Waiting() bool { return l.blocked.Load() > 0 }

// limitedConn gives its listener slot back on its first Close. It keeps the
// optional methods net/http uses on a *net.TCPConn: CloseWrite (half-close
// before closing after an error response, so the client reads the response
// instead of a reset) and ReadFrom (sendfile/splice).
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the connection when the wrapped one can.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom uses the wrapped connection's ReadFrom when it has one.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
