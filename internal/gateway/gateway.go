package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/router"
)

// Route is a compiled route: everything needed to serve a matched request,
// built once at configuration load. A Route is immutable.
type Route struct {
	Name     string
	Template string
	MaxBody  int64
	CORS     bool // the route has a CORS policy: preflights are routed by Access-Control-Request-Method
	Request  []RequestStage
	Response []ResponseStage
	Upstream Handler
	// Pick, when set, makes the route a dispatcher among routes that share
	// its host, method and path, such as the versions of an API
	// (internal/versioning): the request, preflights included, is served
	// by the route Pick returns, which is the Exchange's Route. Pick must
	// be safe for concurrent use and return a route without a Pick, never
	// nil. The other fields of a dispatcher are not used.
	Pick func(r *http.Request) *Route
}

// ClientIPResolver finds the real client address of a request.
type ClientIPResolver interface {
	Resolve(remoteAddr string, h http.Header) (client, peer netip.Addr, peerTrusted bool)
}

// Options holds what a Gateway needs besides its routes.
type Options struct {
	Router          *router.Router[*Route]
	Global          []ResponseStage // response stages for responses outside any route (404, 400)
	ClientIP        ClientIPResolver
	RequestIDHeader string // canonical header name
	AccessLog       bool
	Log             *slog.Logger
	Starters        []func() // run by Start (health checkers)
	Closers         []func() // run by Close once in-flight requests are done
	// OnFinish is called once per request when the response is written (or
	// the client left), after the access log: audit and anomaly detection
	// read the finished Exchange there. It must not block and must not keep
	// ex after it returns.
	OnFinish func(ex *Exchange)
	// Tracer records a span per exchange, per request stage and per
	// upstream call; nil turns tracing off at no cost.
	Tracer Tracer
}

// Gateway is the compiled request pipeline of one configuration. It is an
// http.Handler, safe for concurrent use; a reload builds a new Gateway and
// swaps it in, then closes the old one.
type Gateway struct {
	router    *router.Router[*Route]
	global    []ResponseStage
	clientIP  ClientIPResolver
	ridHeader string
	accessLog bool
	// accessWriter is the logger's handler when it writes access lines
	// itself (AccessLineWriter), else nil.
	accessWriter AccessLineWriter
	onFinish     func(*Exchange)
	tracer       Tracer
	log          *slog.Logger
	starters     []func()
	closers      []func()

	inflight atomic.Int64
	closed   atomic.Bool
}

// New returns a Gateway serving the given compiled routes.
func New(o Options) *Gateway {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RequestIDHeader == "" {
		o.RequestIDHeader = "X-Request-Id"
	}
	aw, _ := o.Log.Handler().(AccessLineWriter)
	return &Gateway{router: o.Router, global: o.Global, clientIP: o.ClientIP, ridHeader: o.RequestIDHeader,
		accessLog: o.AccessLog, accessWriter: aw, log: o.Log, starters: o.Starters, closers: o.Closers, onFinish: o.OnFinish, tracer: o.Tracer}
}

// Start starts background work (active health checks). Build does not, so
// that moat validate and failed reloads start nothing.
func (g *Gateway) Start() {
	for _, f := range g.starters {
		f()
	}
}

// Close waits until the requests this Gateway is serving have finished, or
// until timeout, then releases its resources (upstream connections, health
// checkers). Requests that arrive after Close are still served.
func (g *Gateway) Close(timeout time.Duration) {
	if g.closed.Swap(true) {
		return
	}
	deadline := time.Now().Add(timeout)
	for g.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range g.closers {
		c()
	}
}

// InFlight returns the number of requests being served.
func (g *Gateway) InFlight() int64 { return g.inflight.Load() }

// ServeHTTP runs one exchange through the pipeline.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.inflight.Add(1)
	defer g.inflight.Add(-1)

	ex := &Exchange{Start: time.Now(), Request: r, gw: g}
	ex.Params = ex.paramBuf[:0]
	ex.ClientIP, ex.PeerIP, ex.PeerTrusted = g.clientIP.Resolve(r.RemoteAddr, r.Header)
	ex.ID = g.requestID(r, ex.PeerTrusted)
	ex.Listener = ListenerFrom(r.Context())
	if r.TLS != nil {
		ex.TLS = r.TLS
		if len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			ex.ClientCert = r.TLS.VerifiedChains[0][0]
		}
	}
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		// A chunked HTTP/1.1 request may have come with a Content-Length
		// too, which net/http drops silently; RFC 9112 section 6.1 then
		// requires closing the connection after the response, so that a
		// proxy in front that framed the request by Content-Length cannot
		// slip a second request in after it. Closing after every chunked
		// request is the safe superset: they are rare on APIs.
		w.Header().Set("Connection", "close")
	}
	rw := &responseWriter{ResponseWriter: w}
	ctx := WithExchange(r.Context(), ex)
	if g.tracer != nil {
		ctx = g.tracer.Start(ctx, ex)
	}
	r = r.WithContext(ctx)
	ex.Request = r
	defer g.finish(rw, r, ex)

	if rej := checkRequestTarget(r); rej != nil {
		if rej.Status == http.StatusMethodNotAllowed && g.router != nil {
			// A 405 must list the methods the path is served with (RFC
			// 9110 section 15.5.6); no route serves TRACE or CONNECT.
			if _, _, allow, _ := g.router.Match(r.Host, r.Method, r.URL.Path, ex.Params[:0]); allow != nil {
				rej.Header = http.Header{"Allow": {strings.Join(allow, ", ")}}
			}
		}
		Render(rw, r, ex, rej)
		return
	}
	route, ok := g.route(rw, r, ex)
	if !ok {
		return
	}
	ex.Route = route

	if r.ContentLength > route.MaxBody {
		Render(rw, r, ex, Rejectf(http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, "content-length %d over cap %d", r.ContentLength, route.MaxBody))
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = &capReader{rc: r.Body, left: route.MaxBody, ex: ex}
	}

	if g.tracer != nil {
		for i, st := range route.Request {
			if err := g.tracedStage(ctx, ex, i, st); err != nil {
				g.stageError(rw, r, ex, err)
				return
			}
		}
	} else {
		for _, st := range route.Request {
			if err := st.ProcessRequest(ctx, ex); err != nil {
				g.stageError(rw, r, ex, err)
				return
			}
		}
	}
	route.Upstream.Forward(rw, r, ex)
}

// errStagePanicked ends the span of a request stage that panicked.
var errStagePanicked = errors.New("request stage panicked")

// tracedStage runs the i-th request stage in its own span; a panic ends the
// span as failed and goes on up to finish.
func (g *Gateway) tracedStage(ctx context.Context, ex *Exchange, i int, st RequestStage) (err error) {
	sctx, span := g.tracer.StartStage(ctx, ex, i, st)
	ended := false
	defer func() {
		if !ended {
			span.End(0, errStagePanicked)
		}
	}()
	err = st.ProcessRequest(sctx, ex)
	ended = true
	span.End(0, err)
	return err
}

// route matches the request; when nothing matches it answers 404 or 405 and
// returns false.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request, ex *Exchange) (*Route, bool) {
	host, path := r.Host, r.URL.Path
	if isPreflight(r) {
		acrm := r.Header.Get("Access-Control-Request-Method")
		route, params, allow, ok := g.router.Match(host, acrm, path, ex.Params[:0])
		if ok && route.Pick != nil {
			route = route.Pick(r)
		}
		if ok && route.CORS {
			ex.Params = params
			return route, true
		}
		if !ok && allow != nil {
			// The path is served, but not with the method the browser asks
			// to use: a CORS refusal, not a 405 of the OPTIONS request.
			Render(w, r, ex, Rejectf(http.StatusForbidden, ReasonCORSPreflightDenied, "preflight for %q, which %s is not served with", acrm, path))
			return nil, false
		}
	}
	route, params, allow, ok := g.router.Match(host, r.Method, path, ex.Params[:0])
	if ok {
		if route.Pick != nil {
			route = route.Pick(r)
		}
		ex.Params = params
		return route, true
	}
	if allow != nil {
		rej := Rejectf(http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "%s not served on %s", r.Method, path)
		rej.Header = http.Header{"Allow": {strings.Join(allow, ", ")}}
		Render(w, r, ex, rej)
		return nil, false
	}
	Render(w, r, ex, &Reject{Status: http.StatusNotFound, ReasonID: ReasonRouteNotFound})
	return nil, false
}

// stageError answers a request stage's verdict: a Reject, an Answer, or any
// other error, which fails closed as 500 internal_error.
func (g *Gateway) stageError(w http.ResponseWriter, r *http.Request, ex *Exchange, err error) {
	var rej *Reject
	var ans *Answer
	switch {
	case errors.As(err, &rej):
		Render(w, r, ex, rej)
	case errors.As(err, &ans):
		answer(w, r, ex, ans)
	default:
		Render(w, r, ex, &Reject{Status: http.StatusInternalServerError, ReasonID: ReasonInternalError, Err: err})
	}
}

// finish recovers from a panic in the pipeline (answering 500 when nothing was
// written yet) and writes the access log line.
func (g *Gateway) finish(rw *responseWriter, r *http.Request, ex *Exchange) {
	defer func() {
		for i := len(ex.onDone) - 1; i >= 0; i-- {
			ex.onDone[i]()
		}
	}()
	if p := recover(); p != nil {
		if p == http.ErrAbortHandler {
			g.logAccess(rw, r, ex)
			g.finished(r, ex)
			panic(p)
		}
		g.log.Error("panic while serving a request", "request_id", ex.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		if !rw.wroteHeader {
			Render(rw, r, ex, &Reject{Status: http.StatusInternalServerError, ReasonID: ReasonInternalError, Detail: "panic"})
		}
	}
	g.logAccess(rw, r, ex)
	g.finished(r, ex)
}

// finished ends the exchange's span and hands the finished exchange to the
// OnFinish hook; a panic in either is logged, never allowed to take the
// connection down.
func (g *Gateway) finished(r *http.Request, ex *Exchange) {
	if g.onFinish == nil && g.tracer == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			g.log.Error("panic in the request finish hook", "request_id", ex.ID, "panic", fmt.Sprint(p))
		}
	}()
	if g.tracer != nil {
		g.tracer.Finish(r.Context(), ex)
	}
	if g.onFinish != nil {
		g.onFinish(ex)
	}
}

// requestID returns the request ID: the client's, when it comes from a
// trusted peer and is well formed, or a new random one.
func (g *Gateway) requestID(r *http.Request, trusted bool) string {
	if trusted {
		if v := r.Header.Get(g.ridHeader); validRequestID(v) {
			return v
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

// checkRequestTarget refuses request targets that could be read differently
// by the gateway and the upstream: dot segments, empty segments, encoded
// slashes, backslashes and NULs, and methods the gateway never forwards.
func checkRequestTarget(r *http.Request) *Reject {
	if r.Method == http.MethodTrace || r.Method == http.MethodConnect {
		rej := Rejectf(http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "%s is refused", r.Method)
		return rej
	}
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		return Rejectf(http.StatusBadRequest, ReasonInvalidPath, "path must start with /")
	}
	if strings.ContainsAny(p, "\\\x00") {
		return Rejectf(http.StatusBadRequest, ReasonInvalidPath, "backslash or NUL in path")
	}
	if raw := r.URL.RawPath; raw != "" {
		lower := strings.ToLower(raw)
		if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%00") {
			return Rejectf(http.StatusBadRequest, ReasonInvalidPath, "encoded slash, backslash or NUL in path")
		}
	}
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i+1:], '/')
		var seg string
		if j < 0 {
			seg = p[i+1:]
		} else {
			seg = p[i+1 : i+1+j]
		}
		if seg == "." || seg == ".." {
			return Rejectf(http.StatusBadRequest, ReasonInvalidPath, "dot segment in path")
		}
		if seg == "" && j >= 0 {
			return Rejectf(http.StatusBadRequest, ReasonInvalidPath, "empty segment in path")
		}
		if j < 0 {
			break
		}
		i += j + 1
	}
	return nil
}
