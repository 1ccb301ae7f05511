package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/router"
)

// Exchange is all per-request state. The gateway creates one per request and
// hands it to every stage in turn; it is not safe for concurrent use, and a
// stage must not keep it after the request ends.
type Exchange struct {
	ID      string        // request ID: generated, or accepted from a trusted peer
	TraceID string        // W3C trace ID (32 lowercase hex digits) of the exchange's span; "" when tracing is off
	Request *http.Request // the client's request
	Route   *Route        // matched route; nil until routing succeeded
	Params  []router.Param

	Principal *Principal // set by the authentication stage; nil on public routes

	ClientIP    netip.Addr // the real client address, after trusted-proxy handling
	PeerIP      netip.Addr // the TCP peer
	PeerTrusted bool       // the peer is a configured trusted proxy

	Listener   *Listener            // the listener the request arrived on, or nil
	TLS        *tls.ConnectionState // nil on plain-text listeners
	ClientCert *x509.Certificate    // verified client certificate (mutual TLS), or nil

	Start           time.Time
	UpstreamLatency time.Duration
	Status          int          // status written to the client
	ReasonID        string       // set when the exchange was denied
	Detail          string       // internal detail of a denial or failure, for logs and audit
	Target          string       // upstream target the request was sent to, if any
	Limits          []LimitState // rate limits checked, in route order

	// Details of a stage's decision that go to logs and audit only: the WAF's
	// matched rule IDs and score, the object ID an ownership rule refused.
	// Keys are snake_case audit field names; values never hold secrets.
	Findings map[string]any

	body     []byte // buffered request body, once ReadBody ran
	bodyErr  error
	bodyRead bool
	json     any // parsed JSON body, once JSONBody ran
	jsonErr  error
	jsonDone bool

	onDone       []func()    // run when the exchange ends, last registered first
	bodyOverflow atomic.Bool // set by the body reader, which may run on the transport's goroutine
	gw           *Gateway
	paramBuf     [4]router.Param
}

// OnDone registers f to run when the exchange has ended: the response is
// written (or the client left) and every stage is done with it. Functions
// run in reverse order of registration, even after a panic. A stage uses it
// to release what it holds for the request, such as an in-flight slot.
func (ex *Exchange) OnDone(f func()) { ex.onDone = append(ex.onDone, f) }

// Param returns the value of the named path parameter, or "".
func (ex *Exchange) Param(name string) string {
	for _, p := range ex.Params {
		if p.Key == name {
			return p.Value
		}
	}
	return ""
}

// Note records a finding for logs and audit (see Findings).
func (ex *Exchange) Note(key string, value any) {
	if ex.Findings == nil {
		ex.Findings = make(map[string]any, 4)
	}
	ex.Findings[key] = value
}

// Tracer returns the Tracer of the Gateway serving ex, or nil when tracing
// is off or ex was not created by a Gateway. The proxy uses it to start the
// upstream call's span and to propagate the trace context.
func (ex *Exchange) Tracer() Tracer {
	if ex.gw == nil {
		return nil
	}
	return ex.gw.tracer
}

// BodyOverflowed reports whether the client body exceeded the route's cap while
// it was being streamed.
func (ex *Exchange) BodyOverflowed() bool { return ex.bodyOverflow.Load() }

type exchangeKey struct{}

// FromContext returns the Exchange carried by ctx, or nil.
func FromContext(ctx context.Context) *Exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*Exchange)
	return ex
}

// WithExchange returns a context that carries ex.
func WithExchange(ctx context.Context, ex *Exchange) context.Context {
	return context.WithValue(ctx, exchangeKey{}, ex)
}

// Listener describes the listener a request arrived on. The server puts it
// in each connection's base context; it is immutable.
type Listener struct {
	Name string
	HSTS string // Strict-Transport-Security value for this listener; "" for none
}

type listenerKey struct{}

// WithListener returns a context that carries l.
func WithListener(ctx context.Context, l *Listener) context.Context {
	return context.WithValue(ctx, listenerKey{}, l)
}

// ListenerFrom returns the Listener carried by ctx, or nil.
func ListenerFrom(ctx context.Context) *Listener {
	l, _ := ctx.Value(listenerKey{}).(*Listener)
	return l
}

// LimitState is the state of one rate limit after the exchange was checked
// against it; the rate-limit stage records it for response headers, logs
// and audit.
type LimitState struct {
	Name      string
	Kind      string        // "" for a rate limit, "quota" for a quota
	Quota     int64         // requests per Window (the limit's sustained rate)
	Window    time.Duration // the limit's period
	Remaining int64         // requests still admitted right now
	Reset     time.Duration // until the limit is back to its full burst
	Allowed   bool
	Headers   bool          // announce it in RateLimit headers on allowed responses
	Delay     time.Duration // how long the request was held by throttling
}
