// Package metrics keeps the gateway's Prometheus metrics: per-request
// counters and latency histograms fed from the gateway's finish hook, reload
// counters, and collectors that read the auditor's and the rate limiter's
// counters at scrape time. docs/metrics.md lists every metric.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/moat-gateway/moat/internal/gateway"
)

// Label values that stand for what is not a configured name.
const (
	RouteUnmatched = "unmatched" // the request matched no route
	LabelOther     = "other"     // a value outside the known set: a route or limit not in the configuration, an unknown reason, a WAF rule over the cap
	ReasonNone     = "none"      // the request was not denied
)

// MaxWAFRules caps the distinct rule label values of moat_waf_blocks_total;
// further rules are counted under "other".
const MaxWAFRules = 2000

var (
	// DurationBuckets are the buckets of moat_request_duration_seconds and
	// moat_upstream_duration_seconds.
	DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	// OverheadBuckets are the buckets of moat_gateway_overhead_seconds: the
	// time the gateway itself adds is expected in microseconds.
	OverheadBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
)

// statusClasses are the status label values; index 0 is a status outside
// 100-599 (0: the client left before anything was written).
var statusClasses = [...]string{LabelOther, "1xx", "2xx", "3xx", "4xx", "5xx"}

// Options adjust a Registry; the zero value is fine.
type Options struct {
	// Reasons are reason IDs counted under their own label besides the
	// built-in set (every reason in docs/reasons.md).
	Reasons []string
	// NoRuntime leaves out the Go runtime and process collectors.
	NoRuntime bool
	// Now replaces time.Now (tests).
	Now func() time.Time
	// Log receives exposition errors; nil discards them.
	Log *slog.Logger
}

// Registry holds moat's metrics. Observe and ObserveReload are safe for
// concurrent use, as are SetRoutes and SetLimits, which a reload calls while
// requests are observed. Create it with New.
type Registry struct {
	reg *prometheus.Registry
	now func() time.Time
	log *slog.Logger

	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	overhead     *prometheus.HistogramVec
	upstream     *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	limitVec     *prometheus.CounterVec
	wafVec       *prometheus.CounterVec
	deprecated   *deprecatedUse
	reloads      [2]prometheus.Counter // success, failure

	reasonIndex map[string]int // immutable after New: reason ID -> index into reasonNames
	reasonNames []string       // 0: none, 1: other, then the known reasons
	authByIdx   []prometheus.Counter

	routes atomic.Pointer[routeTable]
	limits atomic.Pointer[limitTable]
	setMu  sync.Mutex // serialises SetRoutes and SetLimits

	wafMu    sync.Mutex
	wafRules sync.Map // int -> prometheus.Counter
	wafCount int      // entries in wafRules; guarded by wafMu
	wafOther prometheus.Counter
}

// New returns a Registry with every metric registered and no route or limit
// known yet (call SetRoutes and SetLimits with the configuration's names).
func New(o Options) *Registry {
	r := &Registry{reg: prometheus.NewRegistry(), now: o.Now, log: o.Log}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_requests_total",
		Help: "Requests finished, by route, status class and reason_id (none when the request was not denied)."},
		[]string{"route", "status", "reason"})
	r.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_request_duration_seconds",
		Help: "Time from the request's arrival to the end of the response, by route.", Buckets: DurationBuckets}, []string{"route"})
	r.overhead = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_gateway_overhead_seconds",
		Help: "Request duration minus the upstream's time: what the gateway adds, by route.", Buckets: OverheadBuckets}, []string{"route"})
	r.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "moat_upstream_duration_seconds",
		Help: "Time the upstream took to answer, for requests sent upstream, by route.", Buckets: DurationBuckets}, []string{"route"})
	r.authFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_auth_failures_total",
		Help: "Requests refused by authentication, by specific reason_id."}, []string{"reason"})
	r.limitVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_ratelimit_decisions_total",
		Help: "Rate-limit and quota checks, by limit name and whether the request was admitted."}, []string{"limit", "allowed"})
	r.wafVec = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_waf_blocks_total",
		Help: "Rules matched by requests the WAF blocked, by rule ID."}, []string{"rule"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_reloads_total",
		Help: "Configuration reload attempts, by result."}, []string{"result"})
	r.reloads = [2]prometheus.Counter{reloads.WithLabelValues("success"), reloads.WithLabelValues("failure")}
	r.wafOther = r.wafVec.WithLabelValues(LabelOther)
	r.deprecated = newDeprecatedUse()

	r.reg.MustRegister(r.requests, r.duration, r.overhead, r.upstream, r.authFailures, r.limitVec, r.wafVec, r.deprecated.vec, reloads)
	if !o.NoRuntime {
		r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}

	r.reasonNames = []string{ReasonNone, LabelOther}
	r.reasonIndex = map[string]int{"": 0}
	r.authByIdx = []prometheus.Counter{nil, nil}
	addReason := func(id string, kind reasonKind) {
		if _, ok := r.reasonIndex[id]; ok || id == ReasonNone || id == LabelOther {
			return
		}
		r.reasonIndex[id] = len(r.reasonNames)
		r.reasonNames = append(r.reasonNames, id)
		var c prometheus.Counter
		if kind == kindAuth {
			c = r.authFailures.WithLabelValues(id)
		}
		r.authByIdx = append(r.authByIdx, c)
	}
	for id, kind := range knownReasons {
		addReason(id, kind)
	}
	for _, id := range o.Reasons {
		addReason(id, kindOther)
	}
	r.routes.Store(r.newRouteTable(nil, nil))
	r.limits.Store(&limitTable{byName: map[string]*limitSet{}, other: r.newLimitSet(LabelOther)})
	return r
}

// routeTable maps the configured route names to their pre-resolved children.
type routeTable struct {
	byName    map[string]*routeSet
	unmatched *routeSet
	other     *routeSet
}

// routeSet holds a route's histogram children and a lazily filled table of
// its request counters, one per status class and reason.
type routeSet struct {
	name                         string
	duration, overhead, upstream prometheus.Observer
	requests                     []atomic.Pointer[counterBox] // [class*len(reasonNames)+reason]
}

type counterBox struct{ c prometheus.Counter }

func (r *Registry) newRouteSet(name string) *routeSet {
	return &routeSet{
		name:     name,
		duration: r.duration.WithLabelValues(name),
		overhead: r.overhead.WithLabelValues(name),
		upstream: r.upstream.WithLabelValues(name),
		requests: make([]atomic.Pointer[counterBox], len(statusClasses)*len(r.reasonNames)),
	}
}

func (r *Registry) newRouteTable(names []string, old *routeTable) *routeTable {
	t := &routeTable{byName: make(map[string]*routeSet, len(names))}
	reuse := func(name string) *routeSet {
		if old != nil {
			switch {
			case name == RouteUnmatched:
				return old.unmatched
			case name == LabelOther:
				return old.other
			case old.byName[name] != nil:
				return old.byName[name]
			}
		}
		return r.newRouteSet(name)
	}
	t.unmatched, t.other = reuse(RouteUnmatched), reuse(LabelOther)
	for _, n := range names {
		if n == "" || n == RouteUnmatched || n == LabelOther {
			continue // a route named like a placeholder shares its series
		}
		t.byName[n] = reuse(n)
	}
	return t
}

// SetRoutes sets the route names that get their own label value; requests of
// any other route are counted as "other". Call it with the configuration's
// route names at start and after every successful reload. Series of routes
// that were removed are kept (their counters stay valid for rate()).
func (r *Registry) SetRoutes(names []string) {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	r.routes.Store(r.newRouteTable(names, r.routes.Load()))
}

// limitTable maps the configured limit names to their pre-resolved children.
type limitTable struct {
	byName map[string]*limitSet
	other  *limitSet
}

type limitSet struct{ denied, allowed prometheus.Counter }

func (r *Registry) newLimitSet(name string) *limitSet {
	return &limitSet{denied: r.limitVec.WithLabelValues(name, "false"), allowed: r.limitVec.WithLabelValues(name, "true")}
}

// SetLimits sets the rate-limit and quota names (gateway.LimitState.Name)
// that get their own label value; others are counted as "other". Call it
// with the configuration's names at start and after every successful reload.
func (r *Registry) SetLimits(names []string) {
	r.setMu.Lock()
	defer r.setMu.Unlock()
	old := r.limits.Load()
	t := &limitTable{byName: make(map[string]*limitSet, len(names)), other: old.other}
	for _, n := range names {
		if n == "" || n == LabelOther {
			continue
		}
		if s := old.byName[n]; s != nil {
			t.byName[n] = s
		} else {
			t.byName[n] = r.newLimitSet(n)
		}
	}
	r.limits.Store(t)
}

// Observe counts a finished exchange. The gateway's finish hook calls it
// once per request; it reads ex and keeps nothing of it. It takes no lock on
// the steady path and allocates only the first time a label combination is
// seen.
func (r *Registry) Observe(ex *gateway.Exchange) {
	rt := r.routes.Load()
	rs := rt.unmatched
	if ex.Route != nil {
		if rs = rt.byName[ex.Route.Name]; rs == nil {
			rs = rt.other
		}
	}
	ri, known := r.reasonIndex[ex.ReasonID]
	if !known {
		ri = 1
	}
	class := 0
	if ex.Status >= 100 && ex.Status < 600 {
		class = ex.Status / 100
	}
	slot := &rs.requests[class*len(r.reasonNames)+ri]
	b := slot.Load()
	if b == nil {
		b = &counterBox{r.requests.WithLabelValues(rs.name, statusClasses[class], r.reasonNames[ri])}
		slot.Store(b) // a racing store holds the same child
	}
	b.c.Inc()

	total := r.now().Sub(ex.Start)
	if total < 0 || ex.Start.IsZero() {
		total = 0
	}
	up := ex.UpstreamLatency
	over := total - up
	if over < 0 {
		over = 0
	}
	rs.duration.Observe(total.Seconds())
	rs.overhead.Observe(over.Seconds())
	if up > 0 {
		rs.upstream.Observe(up.Seconds())
	}
	if c := r.authByIdx[ri]; c != nil {
		c.Inc()
	}
	if len(ex.Limits) > 0 {
		lt := r.limits.Load()
		for i := range ex.Limits {
			ls := lt.byName[ex.Limits[i].Name]
			if ls == nil {
				ls = lt.other
			}
			if ex.Limits[i].Allowed {
				ls.allowed.Inc()
			} else {
				ls.denied.Inc()
			}
		}
	}
	if ex.ReasonID == reasonWAFBlocked {
		ids, _ := ex.Findings["waf_rule_ids"].([]int)
		for _, id := range ids {
			r.wafRule(id).Inc()
		}
	}
	if len(ex.Findings) > 0 {
		r.deprecated.observe(rs.name, ex)
	}
}

// wafRule returns the counter of a WAF rule, creating it while fewer than
// MaxWAFRules exist.
func (r *Registry) wafRule(id int) prometheus.Counter {
	if c, ok := r.wafRules.Load(id); ok {
		return c.(prometheus.Counter)
	}
	if id <= 0 || id > 99999999 {
		return r.wafOther
	}
	r.wafMu.Lock()
	defer r.wafMu.Unlock()
	if c, ok := r.wafRules.Load(id); ok {
		return c.(prometheus.Counter)
	}
	if r.wafCount >= MaxWAFRules {
		return r.wafOther
	}
	c := r.wafVec.WithLabelValues(strconv.Itoa(id))
	r.wafRules.Store(id, c)
	r.wafCount++
	return c
}

// ObserveReload counts a reload attempt: err nil is a success.
func (r *Registry) ObserveReload(err error) {
	if err == nil {
		r.reloads[0].Inc()
	} else {
		r.reloads[1].Inc()
	}
}

// Register adds a collector, such as one built by AuditCollector or
// GuardCollector.
func (r *Registry) Register(c prometheus.Collector) error { return r.reg.Register(c) }

// GaugeFunc registers a gauge whose value f returns at scrape time. f must be
// safe for concurrent use and fast.
func (r *Registry) GaugeFunc(name, help string, f func() float64) error {
	return r.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter whose value f returns at scrape time; the
// value must never decrease. f must be safe for concurrent use and fast.
func (r *Registry) CounterFunc(name, help string, f func() float64) error {
	return r.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Gatherer returns the underlying registry, for tests and for pushing.
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the metrics in the Prometheus text or OpenMetrics format, as
// the scraper asks. At most 4 scrapes run at once; more are answered 503.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorLog:            slogErrorLog{r.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		EnableOpenMetrics:   true,
		Timeout:             10 * time.Second,
	})
}

// slogErrorLog adapts a slog.Logger to promhttp.Logger.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) {
	s.l.Warn("metrics exposition error", "error", fmt.Sprint(v...))
}
