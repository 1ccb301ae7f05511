// Package proxy forwards accepted exchanges to upstreams: it owns the pooled
// transport of each upstream, the choice of target (round robin over the
// healthy ones), passive ejection, active health checks and the circuit
// breaker.
//
// Everything is built by New when the configuration loads. Per request,
// Forward only picks a target, rewrites the outbound request and maps
// failures to a *gateway.Reject, which it hands to the renderer; it never
// writes error details to the client.
//
// The transport never takes a proxy from the environment (HTTP_PROXY and
// friends): a gateway must not silently route traffic through a third party.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// RenderFunc answers the client with a rejection. The gateway owns the
// problem+json renderer; gateway.Render is the default.
type RenderFunc func(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange, rej *gateway.Reject)

// Option changes how New builds an Upstream.
type Option func(*Upstream)

// WithDialContext makes the Upstream open its connections with dial instead
// of a TCP dialer: an in-process upstream for benchmarks and tests that
// must not count the kernel's network stack. nil keeps the TCP dialer.
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(u *Upstream) {
		if dial != nil {
			u.transport.DialContext = dial
		}
	}
}

// WithRender makes the Upstream answer failures (no target, open circuit,
// unreachable or slow upstream, a response stage's Reject) through render
// instead of gateway.Render.
func WithRender(render RenderFunc) Option {
	return func(u *Upstream) {
		if render != nil {
			u.render = render
		}
	}
}

// Upstream is a named backend: its targets and their health, the connection
// pool and the circuit breaker.
//
// New builds it at configuration load. Forward, or the handler returned by
// ForRoute, serves requests. Start begins active health checks once the
// configuration is live; Close ends them and releases idle connections after
// the last in-flight request. An Upstream is safe for concurrent use.
type Upstream struct {
	name    string
	log     *slog.Logger
	targets []*target
	next    atomic.Uint64 // round-robin counter

	passHost    bool
	overall     time.Duration // default overall timeout of an exchange
	passive     bool
	maxFailures int32
	ejection    time.Duration
	health      *healthCheck // nil: no active checks

	transport *http.Transport // https targets and the requests h1Transport does not serve
	rt        *splitTransport // what requests and health checks go through
	proxy     *httputil.ReverseProxy
	breaker   *gobreaker.TwoStepCircuitBreaker[struct{}] // nil: no breaker
	render    RenderFunc
	defaults  route            // used by Upstream.Forward
	now       func() time.Time // clock of passive ejection; replaced in tests

	mu      sync.Mutex // guards started, closed, cancel
	started bool
	closed  bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup // health-check goroutines
}

// New builds the Upstream called name from its configuration: the transport
// (with its TLS settings), the targets, their health state and the circuit
// breaker. cfg is expected to be defaulted and validated; zero values still
// fall back to the documented defaults. New returns an error naming the file
// when a TLS file cannot be read or used. log may be nil.
func New(name string, cfg *config.Upstream, log *slog.Logger, opts ...Option) (*Upstream, error) {
	if cfg == nil {
		return nil, fmt.Errorf("upstream %s: no configuration", name)
	}
	if log == nil {
		log = slog.Default()
	}
	u := &Upstream{
		name:     name,
		log:      log.With("upstream", name),
		passHost: cfg.PassHost,
		overall:  orDefault(cfg.Timeouts.Overall.D(), config.DefaultUpstreamTimeout.D()),
		render:   gateway.Render,
		now:      time.Now,
	}
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", name)
	}
	https := false
	for i, tu := range cfg.Targets {
		t, err := newTarget(tu.URL)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: targets[%d]: %w", name, i, err)
		}
		https = https || t.url.Scheme == "https"
		u.targets = append(u.targets, t)
	}
	var err error
	if u.transport, err = newTransport(cfg, len(u.targets), https); err != nil {
		return nil, fmt.Errorf("upstream %s: %w", name, err)
	}
	if !cfg.Passive.Disabled {
		u.passive = true
		u.maxFailures = int32(cfg.Passive.MaxFailures)
		if u.maxFailures <= 0 {
			u.maxFailures = config.DefaultPassiveMaxFailures
		}
		u.ejection = orDefault(cfg.Passive.Ejection.D(), config.DefaultPassiveEjection.D())
	}
	if cfg.HealthCheck != nil {
		u.health = newHealthCheck(cfg.HealthCheck)
		for _, t := range u.targets {
			t.healthURL = t.url.JoinPath(u.health.path).String()
		}
	}
	if cfg.CircuitBreaker != nil {
		u.breaker = newBreaker(name, cfg.CircuitBreaker, u.log)
	}
	for _, o := range opts {
		o(u)
	}
	u.rt = newSplitTransport(u.transport, u.targets)
	u.defaults = u.compileRoute(RouteOptions{})
	u.proxy = &httputil.ReverseProxy{
		Rewrite:        u.rewrite,
		Transport:      u.rt,
		ModifyResponse: u.modifyResponse,
		ErrorHandler:   u.handleError,
		BufferPool:     buffers,
		ErrorLog:       slog.NewLogLogger(u.log.Handler(), slog.LevelWarn),
	}
	return u, nil
}

// Name returns the upstream's configuration key.
func (u *Upstream) Name() string { return u.name }

// Start marks every target healthy and starts one health-check goroutine per
// target, if the upstream has active health checks. It is idempotent, and
// does nothing after Close.
func (u *Upstream) Start() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.started || u.closed {
		return
	}
	u.started = true
	if u.health == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	for _, t := range u.targets {
		t.healthy.Store(true)
		u.wg.Add(1)
		go u.healthLoop(ctx, t)
	}
}

// Close stops the health checks, waits for their goroutines to end and closes
// idle connections. Call it once the last in-flight request has finished;
// requests still running keep their connections until they end. Calls after
// the first do nothing.
func (u *Upstream) Close() {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return
	}
	u.closed = true
	cancel := u.cancel
	u.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	u.wg.Wait()
	u.rt.CloseIdleConnections()
}

// TargetStatus is a snapshot of one target's health, for the admin API.
type TargetStatus struct {
	URL                 string
	Healthy             bool      // active health checks pass (always true without them)
	EjectedUntil        time.Time // end of a passive ejection in progress; zero when not ejected
	ConsecutiveFailures int       // failed requests since the last success or ejection
	Available           bool      // the target would receive traffic now
}

// Status returns a snapshot of every target, in configuration order.
func (u *Upstream) Status() []TargetStatus {
	now := u.now().UnixNano()
	out := make([]TargetStatus, len(u.targets))
	for i, t := range u.targets {
		s := TargetStatus{
			URL:                 t.str,
			Healthy:             t.healthy.Load(),
			ConsecutiveFailures: int(t.failures.Load()),
			Available:           u.available(t, now),
		}
		if until := t.ejectedUntil.Load(); u.passive && until > now {
			s.EjectedUntil = time.Unix(0, until)
		}
		out[i] = s
	}
	return out
}

// BreakerState returns the circuit breaker's state: "closed", "open" or
// "half-open"; "" when the upstream has no breaker.
func (u *Upstream) BreakerState() string {
	if u.breaker == nil {
		return ""
	}
	return u.breaker.State().String()
}

// pick returns the next available target in round-robin order, or nil when
// every target is unhealthy or ejected.
func (u *Upstream) pick() *target {
	n := uint64(len(u.targets))
	start := u.next.Add(1) - 1
	var now int64
	if u.passive {
		now = u.now().UnixNano()
	}
	for i := range n {
		t := u.targets[(start+i)%n]
		if u.available(t, now) {
			return t
		}
	}
	return nil
}

func (u *Upstream) available(t *target, now int64) bool {
	return t.healthy.Load() && (!u.passive || t.ejectedUntil.Load() <= now)
}

// Outcomes reported to the circuit breaker.
var (
	errFailure  = errors.New("upstream failure")
	errExcluded = errors.New("outcome not attributable to the upstream")
)

type outcome int

const (
	outcomeExcluded outcome = iota // neither success nor failure: client went away, body too large
	outcomeSuccess
	outcomeFailure
)

// settle reports the outcome of an exchange to the breaker and the target's
// passive health.
func (u *Upstream) settle(t *target, o outcome, done func(error)) {
	if done != nil {
		switch o {
		case outcomeSuccess:
			done(nil)
		case outcomeFailure:
			done(errFailure)
		default:
			done(errExcluded)
		}
	}
	if !u.passive || t == nil {
		return
	}
	switch o {
	case outcomeSuccess:
		t.recordSuccess()
	case outcomeFailure:
		now := u.now()
		if t.recordFailure(now, u.maxFailures, u.ejection) {
			u.log.Warn("upstream target ejected", "target", t.str, "until", now.Add(u.ejection), "failures", u.maxFailures)
		}
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// bufferPool recycles the 32 KiB buffers ReverseProxy copies bodies with.
type bufferPool struct{ p sync.Pool }

var buffers = &bufferPool{}

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) == 32<<10 {
		buf = buf[:cap(buf)]
		b.p.Put(&buf)
	}
}

// trimSlash removes trailing slashes.
func trimSlash(s string) string { return strings.TrimRight(s, "/") }

var (
	_ gateway.Handler     = (*Upstream)(nil)
	_ httputil.BufferPool = (*bufferPool)(nil)
)
