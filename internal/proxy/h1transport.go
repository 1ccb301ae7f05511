package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// max1xxResponses bounds the informational responses accepted before the
// final one, as http.Transport does.
const max1xxResponses = 5

// h1Transport is a lean HTTP/1.1 client for plain http:// targets. Unlike
// http.Transport it runs each exchange on the caller's goroutine: it takes an
// idle connection or dials one, writes the request, flushes, and reads the
// response head, with no reader or writer goroutine per connection and no
// hand-off between goroutines. The response body is read from the same
// connection; at its end the connection goes back to the pool.
//
// It serves only the requests split picks: no body, an idempotent method, no
// protocol upgrade and no Expect. Everything else goes to http.Transport.
//
// Limits, compared with http.Transport: an idle connection the server closed
// is noticed when it is next used (the request is then sent again on a new
// connection, which is safe because every request it serves is idempotent
// and bodiless); only the GotFirstResponseByte and Got1xxResponse trace hooks
// are called. An h1Transport is safe for concurrent use.
type h1Transport struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration // ResponseHeaderTimeout; 0: none
	idleTimeout   time.Duration // idle connections are closed after this
	maxIdle       int           // idle connections kept per target
	pools         map[string]*h1Pool
}

// newH1Transport returns a transport for the given target hosts (URL.Host
// forms). Requests to other hosts are not its business: pool returns nil.
func newH1Transport(hosts []string, dial func(ctx context.Context, network, addr string) (net.Conn, error),
	headerTimeout, idleTimeout time.Duration, maxIdle int) *h1Transport {
	t := &h1Transport{dial: dial, headerTimeout: headerTimeout, idleTimeout: idleTimeout, maxIdle: maxIdle,
		pools: make(map[string]*h1Pool, len(hosts))}
	for _, h := range hosts {
		if _, ok := t.pools[h]; !ok {
			t.pools[h] = &h1Pool{t: t, addr: hostPort(h)}
		}
	}
	return t
}

// hostPort returns the address to dial for URL.Host h of an http:// URL.
func hostPort(h string) string {
	if _, port, err := net.SplitHostPort(h); err == nil && port != "" {
		return h
	}
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1] // a bare IPv6 literal
	}
	return net.JoinHostPort(h, "80")
}

// pool returns the pool that serves req, or nil when req must go through
// http.Transport.
func (t *h1Transport) pool(req *http.Request) *h1Pool {
	if req.URL.Scheme != "http" || (req.Body != nil && req.Body != http.NoBody) || req.ContentLength > 0 ||
		len(req.TransferEncoding) != 0 || len(req.Trailer) != 0 {
		return nil
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
	default:
		return nil
	}
	h := req.Header
	if len(h["Upgrade"]) != 0 || len(h["Connection"]) != 0 || len(h["Expect"]) != 0 {
		return nil
	}
	return t.pools[req.URL.Host]
}

// roundTrip sends req through p. A request that fails on a reused
// connection before any byte of the response arrived is sent again, on the
// next idle connection or a new one: the server probably closed the idle
// connection, and when it closed one it often closed them all (a restart,
// an idle timeout), so each stale connection is tried and dropped in turn,
// as http.Transport does. A failure on a new connection is final. Every
// attempt consumes the connection it used, so there are at most
// maxIdle+1 of them.
func (t *h1Transport) roundTrip(req *http.Request, p *h1Pool) (*http.Response, error) {
	if err := checkHeader(req.Header); err != nil {
		return nil, err
	}
	ctx := req.Context()
	for attempt := 0; ; attempt++ {
		pc, err := p.get(ctx)
		if err != nil {
			return nil, err
		}
		res, err := pc.roundTrip(req)
		if err == nil {
			return res, nil
		}
		var stale *staleConnError
		if !errors.As(err, &stale) {
			return nil, err
		}
		if !pc.reused || ctx.Err() != nil || attempt > t.maxIdle {
			return nil, stale.err
		}
	}
}

// checkHeader refuses the header fields http.Transport refuses: a name that
// is not a token, a value with a control character other than tab.
// Request.Write only turns CR and LF in values into spaces: without this
// check a NUL would reach the upstream and a broken header be forwarded
// where http.Transport refuses it. The errors are http.Transport's; they
// never show the value.
func checkHeader(h http.Header) error {
	for k, vv := range h {
		if !httpsyntax.IsToken(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			for i := 0; i < len(v); i++ {
				if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
					return fmt.Errorf("net/http: invalid header field value for %q", k)
				}
			}
		}
	}
	return nil
}

// closeIdle closes the idle connections of every pool and stops pooling:
// connections of requests still in flight are closed when they end.
func (t *h1Transport) closeIdle() {
	for _, p := range t.pools {
		p.closeIdle()
	}
}

// h1Pool holds the idle connections to one target, most recently used last.
type h1Pool struct {
	t    *h1Transport
	addr string // host:port to dial

	mu     sync.Mutex // guards idle and closed
	idle   []*h1Conn
	closed bool
}

// get returns an idle connection, or dials a new one.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, error) {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		pc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		pc.timer.Stop()
		if time.Since(pc.idleSince) < p.t.idleTimeout {
			return pc, nil
		}
		pc.close() // the timer has not run yet
	}
	conn, err := p.t.dial(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	pc := &h1Conn{pool: p, conn: conn, limit: math.MaxInt64}
	pc.br = bufio.NewReader(pc)
	pc.bw = bufio.NewWriter(pc)
	return pc, nil
}

// put makes pc idle, or closes it when the pool is full or closed or pc has
// unread bytes (the server sent more than one response).
func (p *h1Pool) put(pc *h1Conn) {
	pc.reused = true
	if pc.br.Buffered() != 0 {
		pc.close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.t.maxIdle {
		p.mu.Unlock()
		pc.close()
		return
	}
	pc.idleSince = time.Now()
	if pc.timer == nil {
		pc.timer = time.AfterFunc(p.t.idleTimeout, pc.idleExpired)
	} else {
		pc.timer.Reset(p.t.idleTimeout)
	}
	p.idle = append(p.idle, pc)
	p.mu.Unlock()
}

func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.timer.Stop()
		pc.close()
	}
}

// idleCount returns the number of idle connections, for tests.
func (p *h1Pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// h1Conn is one connection to a target. It is used by one request at a
// time; its Read and Write are those the bufio.Reader and Writer see.
type h1Conn struct {
	pool   *h1Pool
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	limit  int64 // bytes Read may still return: the response header limit, or MaxInt64
	wrote  int64 // bytes written to conn for the current request
	reused bool  // a previous request completed on it

	idleSince time.Time
	timer     *time.Timer // closes the connection when idle too long; nil before the first put
}

func (pc *h1Conn) Read(p []byte) (int, error) {
	if pc.limit <= 0 {
		return 0, errHeaderTooLarge
	}
	if int64(len(p)) > pc.limit {
		p = p[:pc.limit]
	}
	n, err := pc.conn.Read(p)
	pc.limit -= int64(n)
	return n, err
}

func (pc *h1Conn) Write(p []byte) (int, error) {
	n, err := pc.conn.Write(p)
	pc.wrote += int64(n)
	return n, err
}

func (pc *h1Conn) close() { _ = pc.conn.Close() }

// idleExpired closes pc if it is still idle and has been for the idle
// timeout; a timer that fired while pc was in use finds it busy or idle
// again since a later time.
func (pc *h1Conn) idleExpired() {
	p := pc.pool
	p.mu.Lock()
	i := slices.Index(p.idle, pc)
	if i < 0 || time.Since(pc.idleSince) < p.t.idleTimeout {
		p.mu.Unlock()
		return
	}
	p.idle = slices.Delete(p.idle, i, i+1)
	p.mu.Unlock()
	pc.close()
}

var (
	errHeaderTooLarge = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxResponseHeaderBytes)
	errTooMany1xx     = errors.New("net/http: too many 1xx informational responses")
	errUnexpected101  = errors.New("upstream switched protocols without an upgrade request")
	errBodyClosed     = errors.New("http: read on closed response body")
	aLongTimeAgo      = time.Unix(1, 0)
)

// staleConnError is a failure before the response's first byte that a
// reused connection explains: the server closed it while idle. Such a
// request may be sent again on a new connection.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

// roundTrip writes req on pc and reads the response head. On success the
// response's body owns pc; on failure pc is closed.
func (pc *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	stop := noStop
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = pc.conn.SetDeadline(aLongTimeAgo) })
	}
	fail := func(err error) (*http.Response, error) {
		stop()
		pc.close()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}

	pc.wrote = 0
	err := req.Write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err != nil {
		if pc.wrote == 0 {
			err = &staleConnError{err}
		}
		return fail(err)
	}

	if pc.pool.t.headerTimeout > 0 {
		_ = pc.conn.SetReadDeadline(time.Now().Add(pc.pool.t.headerTimeout))
	}
	pc.limit = maxResponseHeaderBytes
	if _, err := pc.br.Peek(1); err != nil {
		if !isTimeout(err) {
			err = &staleConnError{err}
		}
		return fail(err)
	}
	trace := httptrace.ContextClientTrace(ctx)
	if trace != nil && trace.GotFirstResponseByte != nil {
		trace.GotFirstResponseByte()
	}
	var res *http.Response
	for n1xx := 0; ; n1xx++ {
		res, err = http.ReadResponse(pc.br, req)
		if err != nil {
			if pc.limit <= 0 {
				err = errHeaderTooLarge
			}
			return fail(err)
		}
		if res.StatusCode >= 200 {
			break
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			return fail(errUnexpected101)
		}
		if n1xx == max1xxResponses {
			return fail(errTooMany1xx)
		}
		pc.limit = maxResponseHeaderBytes
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err)
			}
		}
	}
	pc.limit = math.MaxInt64
	if pc.pool.t.headerTimeout > 0 {
		_ = pc.conn.SetReadDeadline(time.Time{})
		if ctx.Err() != nil { // the cancellation's deadline may just have been cleared
			_ = pc.conn.SetDeadline(aLongTimeAgo)
		}
	}

	keep := !res.Close && !req.Close
	if res.Body == http.NoBody { // HEAD, 204, 304, Content-Length: 0
		if stop() && keep {
			pc.pool.put(pc)
		} else {
			pc.close()
		}
		return res, nil
	}
	res.Body = &h1Body{pc: pc, rc: res.Body, ctx: ctx, stop: stop, keep: keep}
	return res, nil
}

func noStop() bool { return true }

// h1Body is a response body read from an h1Conn. Reading it to the end
// returns the connection to the pool when both sides allow keep-alive;
// closing it before the end, or a read error, closes the connection. Like
// http.Transport's bodies, it answers io.EOF again after the end, the read
// error again after one, and an error after Close.
type h1Body struct {
	pc   *h1Conn
	rc   io.ReadCloser // http.ReadResponse's body
	ctx  context.Context
	stop func() bool // stops the cancellation of the request
	keep bool

	mu   sync.Mutex // guards rerr
	rerr error      // what Read answers once the body is done
}

func (b *h1Body) Read(p []byte) (int, error) {
	if err := b.done(); err != nil {
		return 0, err
	}
	n, err := b.rc.Read(p)
	switch {
	case err == nil:
	case err == io.EOF:
		b.finish(io.EOF)
	default:
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
		b.finish(err)
	}
	return n, err
}

// Close releases the connection: closed unless the body was read to its end.
func (b *h1Body) Close() error {
	b.finish(errBodyClosed)
	return nil
}

func (b *h1Body) done() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rerr
}

// finish ends the body with err, which later Reads answer: io.EOF pools the
// connection if keep-alive allows, anything else closes it. Only the first
// call counts.
func (b *h1Body) finish(err error) {
	b.mu.Lock()
	if b.rerr != nil {
		b.mu.Unlock()
		return
	}
	b.rerr = err
	b.mu.Unlock()
	if b.stop() && err == io.EOF && b.keep {
		b.pc.pool.put(b.pc)
		return
	}
	b.pc.close()
}
