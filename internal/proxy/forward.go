package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// defaultRequestIDHeader is the header carrying the request ID upstream when
// RouteOptions names none.
const defaultRequestIDHeader = "X-Request-Id"

// RouteOptions are the settings of one route that shape forwarding.
type RouteOptions struct {
	// StripPrefix is removed from the start of the request path, at a path
	// segment boundary, before forwarding ("/api" turns "/api/books" into
	// "/books" but leaves "/apiary" alone). It is written unescaped; an
	// encoded slash (%2F) in the request never matches one of its slashes.
	StripPrefix string
	// AddPrefix is put in front of the path after StripPrefix. It is written
	// unescaped and escaped when the route is built.
	AddPrefix string
	// Timeout bounds the whole upstream exchange, response body included.
	// Zero means the upstream's overall timeout.
	Timeout time.Duration
	// ResponseStages run in order on the upstream's response before it is
	// written. The first error stops the chain: a *gateway.Reject is
	// rendered as is, any other error as 500 internal_error.
	ResponseStages []gateway.ResponseStage
	// RequestIDHeader carries Exchange.ID to the upstream. Default X-Request-Id.
	RequestIDHeader string
}

// route is the compiled form of RouteOptions.
type route struct {
	strip     string // unescaped, no trailing slash; "" for none
	add       string // escaped, no trailing slash; "" for none
	timeout   time.Duration
	stages    []gateway.ResponseStage
	ridHeader string // canonical
}

// RouteHandler forwards the requests of one route to an Upstream with that
// route's options. It is immutable and safe for concurrent use.
type RouteHandler struct {
	u  *Upstream
	rt route
}

// ForRoute returns the handler of a route that forwards to u, with the
// route's options compiled once. The gateway calls it at configuration load
// and stores the result as the route's gateway.Handler; per request it costs
// nothing beyond Forward.
func (u *Upstream) ForRoute(opts RouteOptions) *RouteHandler {
	return &RouteHandler{u: u, rt: u.compileRoute(opts)}
}

// Forward proxies r to a target of the upstream with the route's options; see
// Upstream.Forward.
func (h *RouteHandler) Forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) {
	h.u.forward(w, r, ex, &h.rt)
}

// Upstream returns the upstream h forwards to.
func (h *RouteHandler) Upstream() *Upstream { return h.u }

func (u *Upstream) compileRoute(o RouteOptions) route {
	rt := route{
		timeout:   o.Timeout,
		stages:    o.ResponseStages,
		ridHeader: http.CanonicalHeaderKey(o.RequestIDHeader),
	}
	if rt.timeout <= 0 {
		rt.timeout = u.overall
	}
	if rt.ridHeader == "" {
		rt.ridHeader = defaultRequestIDHeader
	}
	if p := trimSlash(o.StripPrefix); p != "" {
		rt.strip = ensureSlash(p)
	}
	if p := trimSlash(o.AddPrefix); p != "" {
		rt.add = (&url.URL{Path: ensureSlash(p)}).EscapedPath()
	}
	return rt
}

// Forward proxies r to a target of the upstream, without route options: the
// path is forwarded as is, under the target's base path, with the
// upstream's overall timeout. Routes with options use ForRoute.
//
// The gateway calls Forward once its request stages have passed; ex is the
// request's Exchange (when nil, the one in r's context is used). Forward
// writes the upstream's response to w, or renders a *gateway.Reject when the
// upstream cannot answer; when the client has gone away it writes nothing.
// It records ex.Target and ex.UpstreamLatency.
func (u *Upstream) Forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) {
	u.forward(w, r, ex, &u.defaults)
}

// call is the state of one forwarded request, shared by Rewrite,
// ModifyResponse, ErrorHandler and the body reader through the outbound
// request's context. All but gotResponseByte are used on the handler's
// goroutine only.
type call struct {
	rt     *route
	ex     *gateway.Exchange
	in     *http.Request   // the client's request, for the renderer
	parent context.Context // the client's context: tells a client that left from our timeout
	t      *target
	sent   time.Time
	tracer gateway.Tracer // nil when tracing is off
	status int            // status of the upstream's response, once it arrived
	err    error          // the error ReverseProxy reported, if any

	gotResponseByte atomic.Bool // set by the transport's reader goroutine
	responded       bool        // response headers arrived
	failed          bool        // the upstream failed: transport error, timeout or 502/503/504
	bodyErr         error       // reading the response body failed
	body            upstreamBody
	trace           httptrace.ClientTrace
}

type callKey struct{}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func (c *call) gotFirstResponseByte() { c.gotResponseByte.Store(true) }

// outcome tells the breaker and passive health what the exchange says about
// the upstream.
func (c *call) outcome() outcome {
	switch {
	case c.failed, c.bodyErr != nil && c.parent.Err() == nil:
		return outcomeFailure
	case c.responded:
		return outcomeSuccess
	default:
		return outcomeExcluded
	}
}

func (u *Upstream) forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange, rt *route) {
	if ex == nil {
		if ex = gateway.FromContext(r.Context()); ex == nil {
			ex = &gateway.Exchange{Request: r, Start: time.Now()}
		}
	}
	if hasDotSegment(r.URL.Path) {
		// The gateway refuses these before routing; this keeps a rewritten
		// path from climbing out of add_prefix or the target's base path
		// whoever calls Forward.
		u.render(w, r, ex, gateway.Rejectf(http.StatusBadRequest, gateway.ReasonInvalidPath, "dot segment in path"))
		return
	}
	var done func(error)
	if u.breaker != nil {
		var err error
		if done, err = u.breaker.Allow(); err != nil {
			u.render(w, r, ex, &gateway.Reject{Status: http.StatusServiceUnavailable, ReasonID: gateway.ReasonUpstreamCircuitOpen,
				Detail: "circuit breaker of upstream " + u.name + " is " + u.breaker.State().String(), Err: err})
			return
		}
	}
	t := u.pick()
	if t == nil {
		u.settle(nil, outcomeExcluded, done)
		u.render(w, r, ex, gateway.Rejectf(http.StatusServiceUnavailable, gateway.ReasonUpstreamUnavailable,
			"no healthy target in upstream %s", u.name))
		return
	}
	ex.Target = t.str

	c := &call{rt: rt, ex: ex, in: r, parent: r.Context(), t: t, tracer: ex.Tracer()}
	c.trace.GotFirstResponseByte = c.gotFirstResponseByte
	ctx, cancel := context.WithTimeout(r.Context(), rt.timeout)
	var span gateway.Span
	if c.tracer != nil {
		ctx, span = c.tracer.StartUpstream(ctx, ex)
	}
	ctx = httptrace.WithClientTrace(context.WithValue(ctx, callKey{}, c), &c.trace)
	defer func() {
		// Deferred so that it runs when ReverseProxy aborts a response whose
		// body failed mid-copy (panic(http.ErrAbortHandler)).
		cancel()
		oc := c.outcome()
		u.settle(t, oc, done)
		if span != nil {
			span.End(c.status, c.spanError(oc))
		}
	}()
	u.proxy.ServeHTTP(w, r.WithContext(ctx))
}

// rewrite builds the outbound request: target URL and path, Host, forwarding
// headers and the request ID. ReverseProxy has already removed hop-by-hop
// headers and the client's Forwarded and X-Forwarded-* headers from pr.Out.
func (u *Upstream) rewrite(pr *httputil.ProxyRequest) {
	c := callFrom(pr.Out.Context())
	in, out, ex := pr.In, pr.Out, c.ex

	out.URL.Scheme = c.t.url.Scheme
	out.URL.Host = c.t.url.Host
	out.URL.Opaque = ""
	out.URL.User = nil
	out.URL.Fragment, out.URL.RawFragment = "", ""
	setEscapedPath(out.URL, joinPath(c.t.escBase, c.rt.path(in.URL.EscapedPath())))
	if u.passHost {
		out.Host = in.Host
	} else {
		out.Host = "" // the target's host, from out.URL
	}

	peer := ex.PeerIP
	if !peer.IsValid() {
		if ap, err := netip.ParseAddrPort(in.RemoteAddr); err == nil {
			peer = ap.Addr().Unmap()
		}
	}
	var xff string
	if peer.IsValid() {
		xff = peer.String()
	}
	h := out.Header
	if ex.PeerTrusted {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			if xff == "" {
				xff = strings.Join(prior, ", ")
			} else {
				xff = strings.Join(prior, ", ") + ", " + xff
			}
		}
		copyHeader(h, in.Header, "Forwarded")
		copyHeader(h, in.Header, "X-Forwarded-Proto")
		copyHeader(h, in.Header, "X-Forwarded-Host")
	} else {
		// The trace context of an untrusted client is not passed on: a
		// client must not choose the upstream's trace IDs.
		h.Del("X-Real-Ip")
		h.Del("Traceparent")
		h.Del("Tracestate")
	}
	if c.tracer != nil {
		// The upstream's parent is the client span of this call.
		c.tracer.Inject(out.Context(), h)
	}
	if xff != "" {
		h.Set("X-Forwarded-For", xff)
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		if in.TLS != nil {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if _, ok := h["X-Forwarded-Host"]; !ok {
		h.Set("X-Forwarded-Host", in.Host)
	}
	h.Del(c.rt.ridHeader)
	if ex.ID != "" {
		h.Set(c.rt.ridHeader, ex.ID)
	}
	c.sent = time.Now()
}

// modifyResponse records the upstream's answer and runs the route's response
// stages on it.
func (u *Upstream) modifyResponse(res *http.Response) error {
	c := callFrom(res.Request.Context())
	c.responded = true
	c.status = res.StatusCode
	c.ex.UpstreamLatency = time.Since(c.sent)
	switch res.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		c.failed = true
	}
	// Watch the body for upstream failures while it streams. A 101 response
	// keeps its read-write body for the protocol switch.
	if res.StatusCode != http.StatusSwitchingProtocols && res.Body != nil && res.Body != http.NoBody {
		c.body = upstreamBody{rc: res.Body, c: c}
		res.Body = &c.body
	}
	ctx := res.Request.Context()
	for _, st := range c.rt.stages {
		if err := st.ProcessResponse(ctx, c.ex, res); err != nil {
			return err
		}
	}
	return nil
}

// handleError answers an exchange that produced no response: a transport
// error, a timeout, or a response stage's verdict. The client sees a reason,
// never the error text or the target; both go to Reject.Detail and Err for
// the logs.
func (u *Upstream) handleError(w http.ResponseWriter, out *http.Request, err error) {
	c := callFrom(out.Context())
	if c == nil { // not a request of ours; cannot happen
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	c.err = err
	if rej := c.reject(err, out.Context().Err()); rej != nil {
		u.render(w, c.in, c.ex, rej)
	}
}

// reject maps the error of an exchange to the Reject the client gets, and
// marks upstream failures; ctxErr is the error of the outbound request's
// context. It returns nil when the client has gone away: there is no one to
// answer.
func (c *call) reject(err, ctxErr error) *gateway.Reject {
	var rej *gateway.Reject
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &rej):
		return rej
	case c.responded:
		return &gateway.Reject{Status: http.StatusInternalServerError, ReasonID: gateway.ReasonInternalError,
			Detail: "response stage failed", Err: err}
	case c.ex.BodyOverflowed() || errors.As(err, &tooLarge):
		return &gateway.Reject{Status: http.StatusRequestEntityTooLarge, ReasonID: gateway.ReasonBodyTooLarge,
			Detail: "request body over the route's cap while forwarding", Err: err}
	case c.parent.Err() != nil:
		c.ex.Status = StatusClientClosedRequest
		c.ex.Detail = "client closed the request before the upstream answered"
		return nil
	}
	c.failed = true
	detail := "target " + c.t.str
	switch {
	case isTimeout(err) || errors.Is(ctxErr, context.DeadlineExceeded):
		return &gateway.Reject{Status: http.StatusGatewayTimeout, ReasonID: gateway.ReasonUpstreamTimeout, Detail: detail, Err: err}
	case c.gotResponseByte.Load():
		// Bytes arrived but did not make a response: garbage, a truncated
		// or oversized header block.
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamBadResponse, Detail: detail, Err: err}
	default:
		// Nothing came back: refused, reset, closed, DNS or TLS failure.
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamUnreachable, Detail: detail, Err: err}
	}
}

// spanError is the error the upstream call's span ends with: what made the
// call fail, or nil when the upstream answered or the client left.
func (c *call) spanError(oc outcome) error {
	switch {
	case oc != outcomeFailure:
		return nil
	case c.err != nil:
		return c.err
	case c.bodyErr != nil:
		return c.bodyErr
	case c.status != 0:
		return errUpstreamStatus
	default:
		return errUpstreamFailed
	}
}

var (
	errUpstreamStatus = errors.New("upstream answered with a gateway error status")
	errUpstreamFailed = errors.New("upstream call failed")
)

// StatusClientClosedRequest is recorded in Exchange.Status when the client
// went away before the upstream answered (nginx's 499); nothing is written.
const StatusClientClosedRequest = 499

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// upstreamBody records read errors of the response body (the upstream broke
// off, or the overall timeout hit) so they count as upstream failures.
type upstreamBody struct {
	rc io.ReadCloser
	c  *call
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && b.c.bodyErr == nil {
		b.c.bodyErr = err
	}
	return n, err
}

func (b *upstreamBody) Close() error { return b.rc.Close() }

// path rewrites the escaped request path esc: strip, then add the prefix.
// The result is "" (the target's base path itself) or starts with a slash.
func (rt *route) path(esc string) string {
	if esc != "" && esc[0] != '/' {
		esc = "/" + esc
	}
	if rt.strip != "" {
		if rest, ok := stripPrefix(esc, rt.strip); ok {
			esc = rest
		}
	}
	if rt.add != "" {
		esc = rt.add + esc
	}
	return esc
}

// stripPrefix removes the unescaped prefix from the escaped path esc when it
// ends at a segment boundary. Percent-encoded bytes in esc match their
// decoded form, except that an encoded slash never matches a slash.
func stripPrefix(esc, prefix string) (string, bool) {
	i := 0
	for j := 0; j < len(prefix); j++ {
		if i >= len(esc) {
			return esc, false
		}
		b, w := esc[i], 1
		if b == '%' && i+2 < len(esc) && ishex(esc[i+1]) && ishex(esc[i+2]) {
			b, w = unhex(esc[i+1])<<4|unhex(esc[i+2]), 3
			if b == '/' {
				return esc, false
			}
		}
		if b != prefix[j] {
			return esc, false
		}
		i += w
	}
	if rest := esc[i:]; rest == "" || rest[0] == '/' {
		return rest, true
	}
	return esc, false
}

// joinPath puts the escaped path p (empty or starting with a slash) under
// the escaped base path (no trailing slash).
func joinPath(base, p string) string {
	switch {
	case p != "":
		return base + p
	case base != "":
		return base
	default:
		return "/"
	}
}

// setEscapedPath sets both forms of u's path from an escaped path. The
// client's escaping is kept: url.URL.EscapedPath uses RawPath whenever it is a
// valid encoding of Path.
func setEscapedPath(u *url.URL, esc string) {
	p, err := url.PathUnescape(esc)
	if err != nil { // esc comes from URL.EscapedPath and checked prefixes
		p = esc
	}
	u.Path, u.RawPath = p, esc
}

// hasDotSegment reports whether the unescaped path has a "." or ".." segment.
func hasDotSegment(p string) bool {
	for p != "" {
		seg := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			seg, p = p[:i], p[i+1:]
		} else {
			p = ""
		}
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func ensureSlash(p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return "/" + p
}

func copyHeader(dst, src http.Header, name string) {
	if v, ok := src[name]; ok {
		dst[name] = slices.Clone(v)
	}
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

var _ gateway.Handler = (*RouteHandler)(nil)
