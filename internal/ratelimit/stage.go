package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// Reasons the rate-limit stage refuses requests with.
const (
	ReasonRateLimited        = "rate_limited"
	ReasonQuotaExceeded      = "quota_exceeded"
	ReasonLimiterUnavailable = "limiter_unavailable"
	ReasonConcurrencyLimited = "concurrency_limited"
	ReasonPlanUnknown        = "plan_unknown"
)

// KeyKind says what a rule counts requests by.
type KeyKind uint8

// The key kinds; see config.RateLimit.Key.
const (
	KeyClientIP KeyKind = iota
	KeyRoute
	KeyUpstream
	KeyGlobal
	KeyHeader
	KeyPrincipal // the authenticated subject; unauthenticated requests count by client address
	KeyAPIKey    // the API key ID; requests without one count by principal, then client address
	KeyExpr      // the string a compiled expression (CEL) returns for the request
)

// Rule is one configured limit as a route applies it. Build rules at
// configuration load with NewStage.
type Rule struct {
	Name       string
	Limit      Limit
	Key        KeyKind
	Header     string // KeyHeader: canonical header name
	IPv6Prefix int    // KeyClientIP: IPv6 clients are counted per prefix of this length
	Upstream   string // KeyUpstream: the route's upstream name
	Policy     Policy
	LocalShare float64
	Headers    bool  // announce on allowed responses
	Store      Store // where the rule's counters live

	// MaxInFlight, when set, makes the rule a concurrency limit counted in
	// InFlight instead of a rate (Limit and Store are then unused).
	MaxInFlight int64
	InFlight    *Concurrency

	// Quota, when set, makes the rule a quota per calendar window instead
	// of a rate (Limit is then unused).
	Quota *Quota

	// MaxDelay throttles: a request over the rate that fits within MaxDelay
	// is held until its turn instead of refused. 0 refuses.
	MaxDelay time.Duration

	// Expr computes the key of a KeyExpr rule. An evaluation error counts
	// the request under one shared "!error" key, so a request cannot escape
	// the limit by making the expression fail.
	Expr func(ex *gateway.Exchange) (string, error)
}

// maxKeyValue bounds the part of a key taken from the request: longer header
// values are hashed, so a client cannot make keys arbitrarily large.
const maxKeyValue = 64

// Stage applies a route's rate limits and quotas, and those of the
// principal's plan. It is a request stage (deciding) and a response stage
// (announcing the limits in RateLimit headers). A Stage is immutable and
// safe for concurrent use.
type Stage struct {
	base        *ruleSet            // the route's own rules
	plans       map[string]*ruleSet // the route's rules plus each plan's
	defaultPlan string              // plan of principals that name none
	planClaim   string              // claim naming the plan, for token principals
	headers     bool                // some rule announces itself on allowed responses
}

// ruleSet is the rules one request meets, compiled for checking.
type ruleSet struct {
	inflight []*Rule // concurrency limits, checked first
	groups   []group // rate limits and quotas by store, memory before shared stores
}

type group struct {
	store Store
	rules []*Rule
}

// NewStage returns the stage for rules, or nil when there are none. Rules on
// different stores are checked store by store, local stores first; a request
// refused by a later store keeps the charge on an earlier one (a refusal by a
// store charges nothing in that store).
func NewStage(rules []Rule) (*Stage, error) {
	return NewPlanStage(rules, Plans{})
}

// Plans are the limits principals meet by plan, on top of a route's.
type Plans struct {
	Rules   map[string][]Rule // by plan name
	Default string            // plan of principals that name none; "" for none
	Claim   string            // token claim naming the plan when the principal's Plan is empty
}

// NewPlanStage is NewStage with plans: an authenticated request whose
// principal names a plan (its Plan, else the string claim plans.Claim), or
// any authenticated request when plans.Default is set, meets the rules of
// that plan besides the route's. A principal naming a plan that is not in
// plans.Rules is refused with 403 plan_unknown. It returns nil when there
// are no rules and no plans.
func NewPlanStage(rules []Rule, plans Plans) (*Stage, error) {
	if len(rules) == 0 && len(plans.Rules) == 0 {
		return nil, nil
	}
	if plans.Default != "" && plans.Rules[plans.Default] == nil {
		return nil, errors.New("default plan " + strconv.Quote(plans.Default) + " is not defined")
	}
	s := &Stage{defaultPlan: plans.Default, planClaim: plans.Claim}
	var errs []error
	var err error
	if s.base, err = s.compile(rules); err != nil {
		errs = append(errs, err)
	}
	if len(plans.Rules) > 0 {
		s.plans = make(map[string]*ruleSet, len(plans.Rules))
		for name, extra := range plans.Rules {
			all := append(append([]Rule(nil), rules...), extra...)
			rs, err := s.compile(all)
			if err != nil {
				errs = append(errs, errors.New("plan "+name+": "+err.Error()))
				continue
			}
			s.plans[name] = rs
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// compile groups rules by store for checking.
func (s *Stage) compile(rules []Rule) (*ruleSet, error) {
	rs := &ruleSet{}
	var errs []error
	for i := range rules {
		r := &rules[i]
		if r.MaxInFlight > 0 {
			if r.InFlight == nil {
				errs = append(errs, errors.New(r.Name+": no in-flight counter"))
				continue
			}
			rs.inflight = append(rs.inflight, r)
			continue
		}
		if r.Key == KeyExpr && r.Expr == nil {
			errs = append(errs, errors.New(r.Name+": no key expression"))
			continue
		}
		if r.Quota != nil {
			if err := r.Quota.Validate(); err != nil {
				errs = append(errs, errors.New(r.Name+": "+err.Error()))
				continue
			}
		} else if err := r.Limit.Validate(); err != nil {
			errs = append(errs, errors.New(r.Name+": "+err.Error()))
			continue
		}
		if r.MaxDelay < 0 || int64(r.MaxDelay) > maxSpan {
			errs = append(errs, errors.New(r.Name+": max delay out of range"))
			continue
		}
		if r.Store == nil {
			errs = append(errs, errors.New(r.Name+": no store"))
			continue
		}
		s.headers = s.headers || r.Headers
		placed := false
		for gi := range rs.groups {
			if rs.groups[gi].store == r.Store {
				rs.groups[gi].rules = append(rs.groups[gi].rules, r)
				placed = true
			}
		}
		if !placed {
			g := group{store: r.Store, rules: []*Rule{r}}
			if _, local := r.Store.(*Memory); local {
				rs.groups = append([]group{g}, rs.groups...)
			} else {
				rs.groups = append(rs.groups, g)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return rs, nil
}

// rules returns the rule set ex meets: the route's, or with its plan's.
func (s *Stage) rules(ex *gateway.Exchange) (*ruleSet, error) {
	if s.plans == nil || ex.Principal == nil {
		return s.base, nil
	}
	plan := ex.Principal.Plan
	if plan == "" && s.planClaim != "" {
		plan, _ = ex.Principal.Claims[s.planClaim].(string)
	}
	if plan == "" {
		if s.defaultPlan == "" {
			return s.base, nil
		}
		plan = s.defaultPlan
	}
	rs := s.plans[plan]
	if rs == nil {
		return nil, &gateway.Reject{Status: http.StatusForbidden, ReasonID: ReasonPlanUnknown,
			Detail: "principal's plan " + strconv.Quote(plan) + " is not configured"}
	}
	return rs, nil
}

// ProcessRequest checks every limit of the route and records their state on
// the exchange. It refuses with 429 rate_limited (Retry-After and RateLimit
// headers), or 503 limiter_unavailable when a fail_closed limit's shared
// store cannot decide.
func (s *Stage) ProcessRequest(ctx context.Context, ex *gateway.Exchange) error {
	rs, err := s.rules(ex)
	if err != nil {
		return err
	}
	for _, r := range rs.inflight {
		release, ok := r.InFlight.Acquire(r.key(ex), r.MaxInFlight)
		ex.OnDone(release) // also on refusal: release is then a no-op
		if !ok {
			return &gateway.Reject{Status: http.StatusTooManyRequests, ReasonID: ReasonConcurrencyLimited,
				Header: http.Header{"Retry-After": {"1"}}, Detail: "over " + r.Name}
		}
	}
	now := time.Now()
	var checksBuf [4]Check
	var resultsBuf [4]Result
	var delay time.Duration
	for _, g := range rs.groups {
		checks, results := checksBuf[:0], resultsBuf[:0]
		var windowsBuf [4]time.Duration // quota window lengths, by check
		windows := windowsBuf[:0]
		for _, r := range g.rules {
			c := Check{Key: r.key(ex), Limit: r.Limit, OnUnavailable: r.Policy, LocalShare: r.LocalShare, MaxDelay: r.MaxDelay}
			var window time.Duration
			if r.Quota != nil {
				id, start, end := r.Quota.Window(now)
				c.Kind, c.Quota, c.WindowEnd, c.Key = KindQuota, r.Quota.Limit, end.UnixNano(), c.Key+":"+id
				window = end.Sub(start)
			}
			checks = append(checks, c)
			results = append(results, Result{})
			windows = append(windows, window)
		}
		allowed, err := g.store.Allow(ctx, now, checks, results)
		for i, r := range g.rules {
			res := results[i]
			st := gateway.LimitState{Name: r.Name, Quota: r.Limit.Rate, Window: r.Limit.Period,
				Remaining: res.Remaining, Reset: res.ResetAfter, Allowed: res.Allowed, Headers: r.Headers, Delay: res.Delay}
			if r.Quota != nil {
				st.Quota, st.Window, st.Kind = r.Quota.Limit, windows[i], "quota"
			}
			ex.Limits = append(ex.Limits, st)
			delay = max(delay, res.Delay)
		}
		if err != nil {
			rej := &gateway.Reject{Status: http.StatusServiceUnavailable, ReasonID: ReasonLimiterUnavailable, Err: err,
				Header: http.Header{"Retry-After": {"1"}}}
			if !errors.Is(err, ErrUnavailable) {
				rej.Detail = "limiter failed"
			}
			return rej
		}
		if !allowed {
			var retry time.Duration
			var names []string
			reason := ReasonRateLimited
			for i, r := range g.rules {
				if !results[i].Allowed {
					retry = max(retry, results[i].RetryAfter)
					names = append(names, r.Name)
					if r.Quota != nil {
						reason = ReasonQuotaExceeded
					}
				}
			}
			h := http.Header{"Retry-After": {strconv.FormatInt(ceilSeconds(retry), 10)}}
			setHeaders(h, ex.Limits, true)
			return &gateway.Reject{Status: http.StatusTooManyRequests, ReasonID: reason, Header: h,
				Detail: "over " + strings.Join(names, ", ")}
		}
	}
	if delay > 0 {
		return hold(ctx, delay)
	}
	return nil
}

// hold waits d, the throttling delay of an admitted request, or until the
// client leaves. The charge stays either way: the request had its turn.
func hold(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return &gateway.Reject{Status: http.StatusTooManyRequests, ReasonID: ReasonRateLimited,
			Detail: "client left while throttled", Err: context.Cause(ctx)}
	}
}

// ProcessResponse announces the limits on allowed responses (RateLimit and
// RateLimit-Policy, draft-ietf-httpapi-ratelimit-headers). Refusals carry
// them already.
func (s *Stage) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if s.headers && res.StatusCode != http.StatusTooManyRequests && len(ex.Limits) > 0 {
		setHeaders(res.Header, ex.Limits, false)
	}
	return nil
}

// setHeaders writes RateLimit-Policy ("name";q=quota;w=window) and RateLimit
// ("name";r=remaining;t=reset) for the limits, all of them or only those
// marked for announcement.
func setHeaders(h http.Header, limits []gateway.LimitState, all bool) {
	var policy, state []string
	for _, l := range limits {
		if !all && !l.Headers {
			continue
		}
		name := strconv.Quote(l.Name)
		policy = append(policy, name+";q="+strconv.FormatInt(l.Quota, 10)+";w="+strconv.FormatInt(ceilSeconds(l.Window), 10))
		state = append(state, name+";r="+strconv.FormatInt(l.Remaining, 10)+";t="+strconv.FormatInt(ceilSeconds(l.Reset), 10))
	}
	if len(policy) > 0 {
		h.Set("RateLimit-Policy", strings.Join(policy, ", "))
		h.Set("RateLimit", strings.Join(state, ", "))
	}
}

// ceilSeconds rounds d up to whole seconds, at least 1 for a positive d.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// key returns the counter key of ex under r: the rule name, then what it
// counts by.
func (r *Rule) key(ex *gateway.Exchange) string {
	var v string
	switch r.Key {
	case KeyClientIP:
		v = clientKey(ex.ClientIP, r.IPv6Prefix)
	case KeyRoute:
		if ex.Route != nil {
			v = ex.Route.Name
		}
	case KeyUpstream:
		v = r.Upstream
	case KeyGlobal:
		v = "*"
	case KeyAPIKey:
		if p := ex.Principal; p != nil && p.Kind == "api_key" && p.KeyID != "" {
			v = "key:" + p.KeyID
			break
		}
		fallthrough
	case KeyPrincipal:
		if p := ex.Principal; p != nil && p.Subject != "" {
			v = "sub:" + p.Authenticator + ":" + p.Subject
		} else {
			v = "ip:" + clientKey(ex.ClientIP, r.IPv6Prefix)
		}
	case KeyExpr:
		var err error
		if v, err = r.Expr(ex); err != nil {
			v = "!error" // one shared counter: failing the expression is no way around the limit
		} else if v == "" {
			v = "-"
		}
	case KeyHeader:
		if ex.Request != nil {
			v = ex.Request.Header.Get(r.Header)
		}
		if v == "" {
			v = "-" // requests without the header share one counter: omitting it is no way around the limit
		}
	}
	if len(v) > maxKeyValue {
		sum := sha256.Sum256([]byte(v))
		v = "#" + hex.EncodeToString(sum[:16])
	}
	return r.Name + ":" + v
}

// clientKey is the client address, IPv6 addresses cut to their prefix.
func clientKey(a netip.Addr, v6prefix int) string {
	if !a.IsValid() {
		return "-"
	}
	if a.Is6() && !a.Is4In6() && v6prefix < 128 {
		if p, err := a.Prefix(v6prefix); err == nil {
			return p.String()
		}
	}
	return a.Unmap().String()
}

var (
	_ gateway.RequestStage  = (*Stage)(nil)
	_ gateway.ResponseStage = (*Stage)(nil)
)
