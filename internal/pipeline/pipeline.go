// Package pipeline compiles a loaded configuration into a gateway.Gateway:
// upstreams with their transports, every route's request and response
// stages, and the router. It is the only package that knows every stage, so
// the stage packages depend on internal/gateway and never on each other.
package pipeline

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/anomaly"
	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/authz"
	"github.com/moat-gateway/moat/internal/clientip"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/cors"
	"github.com/moat-gateway/moat/internal/exposure"
	"github.com/moat-gateway/moat/internal/expr"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/ratelimit"
	"github.com/moat-gateway/moat/internal/router"
	"github.com/moat-gateway/moat/internal/validate/payload"
	"github.com/moat-gateway/moat/internal/versioning"
	"github.com/moat-gateway/moat/internal/waf"
)

// Build compiles cfg. Nothing is started: no goroutine runs and no socket is
// opened until Gateway.Start, so moat validate and a failed reload leave no
// trace. Problems are returned as *config.Error with the position of the
// field at fault; a nil log discards logs.
//
// Counters live in state, which outlives the Gateway; a nil state gets a
// fresh one (moat validate).
func Build(cfg *config.Config, log *slog.Logger, state *State) (*gateway.Gateway, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ephemeral := state == nil
	if ephemeral {
		state = NewState(log)
		defer state.Close()
	}
	probs := cfg.Problems()
	var starters, closers []func()
	fail := func() (*gateway.Gateway, error) {
		for _, c := range closers {
			c()
		}
		return nil, probs.Err()
	}

	trusted := make([]netip.Prefix, len(cfg.Server.TrustedProxies))
	for i, p := range cfg.Server.TrustedProxies {
		trusted[i] = p.Prefix
	}
	resolver, err := clientip.New(trusted, cfg.Server.ClientIPHeader)
	if err != nil {
		probs.Add("server.trusted_proxies", err)
	}

	headers, err := exposure.NewHeaders(cfg.SecurityHeaders)
	if err != nil {
		probs.Add("security_headers", err)
	}
	for i, l := range cfg.Listeners {
		if l.TLS != nil && !l.TLS.HSTS.Disabled {
			if _, err := exposure.HSTSValue(l.TLS.HSTS); err != nil {
				probs.Add(fmt.Sprintf("listeners[%d].tls.hsts", i), err)
			}
		}
	}
	rid := &requestID{header: cfg.Server.RequestIDHeader}
	global := []gateway.ResponseStage{rid}
	if headers != nil {
		global = append(global, headers)
	}

	upstreams := map[string]*proxy.Upstream{}
	names := make([]string, 0, len(cfg.Upstreams))
	for name := range cfg.Upstreams {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		u, err := proxy.New(name, cfg.Upstreams[name], log.With("upstream", name), state.upstreamOptions()...)
		if err != nil {
			probs.Add("upstreams."+name, err)
			continue
		}
		upstreams[name] = u
		starters = append(starters, u.Start)
		closers = append(closers, u.Close)
	}

	auths := buildAuthenticators(cfg, log, probs)
	starters = append(starters, auths.starters...)
	closers = append(closers, auths.closers...)

	var detection *anomalyRuntime
	var ipBlock, principalBlock gateway.RequestStage
	if a := cfg.Anomaly; a != nil && a.IsEnabled() {
		rt, err := state.anomalyFor(cfg)
		if err != nil {
			probs.Add("anomaly", err)
		} else {
			detection = rt
			starters = append(starters, rt.Start)
			if rt.blocker != nil {
				o := anomaly.BlockStageOptions{Blocker: rt.blocker, IPv6Prefix: a.IPv6Prefix, Status: a.Block.Status,
					FailOpen: a.Block.OnStoreError == "fail_open", Log: log.With("component", "anomaly")}
				o.IP = true
				ipBlock = anomaly.NewBlockStage(o)
				o.IP, o.Principal = false, true
				principalBlock = anomaly.NewBlockStage(o)
			}
		}
	}
	lb := &limitBuilder{cfg: cfg, state: state, persist: !ephemeral, exprs: map[string]*expr.Program{}}
	rb := router.NewBuilder[*gateway.Route]()
	specs := routeSpecs(cfg, state, probs)
	grouping := groupVersions(specs, probs)
	built := make([]*gateway.Route, len(specs))
	for i, spec := range specs {
		path, rc := spec.path, spec.rc
		route := &gateway.Route{Name: rc.Name, Template: rc.Path, MaxBody: int64(*rc.MaxBody)}

		corsCfg := cfg.CORS
		corsPath := "cors"
		if rc.CORS != nil {
			corsCfg, corsPath = rc.CORS, path+".cors"
		}
		c, err := cors.New(corsCfg, rc.Methods)
		if err != nil {
			probs.Add(corsPath, err)
		}
		if c != nil {
			route.CORS = true
			route.Request = append(route.Request, c)
		}

		// Request stages, in order: CORS (preflights need no credential),
		// temporary blocks of client addresses, authentication, temporary
		// blocks of principals, rate limits.
		if ipBlock != nil {
			route.Request = append(route.Request, ipBlock)
		}
		auth, err := authStage(cfg, state, auths, rc)
		if err != nil {
			probs.Add(path+".auth", err)
		} else {
			route.Request = append(route.Request, auth)
		}
		if principalBlock != nil && rc.Auth != nil {
			route.Request = append(route.Request, principalBlock)
		}
		// The version check after authentication (usage is counted per
		// principal), before anything that costs more; then the same for
		// the deprecated operations of an OpenAPI document.
		newVersion := versioning.New
		if grouping.grouped[i] {
			newVersion = versioning.NewMember
		}
		ver, err := newVersion(rc.Version, nil)
		if err != nil {
			probs.Add(path+".version", err)
		}
		if ver != nil {
			route.Request = append(route.Request, ver)
		}
		if spec.deprecation != nil {
			route.Request = append(route.Request, spec.deprecation)
		}

		limits, err := lb.rateLimitStage(rc)
		if err != nil {
			probs.Add(path+".rate_limits", err)
		}
		if limits != nil {
			route.Request = append(route.Request, limits)
		}

		// Payload limits, on every route, before any stage reads the body;
		// then authorization, which may read it.
		pl := cfg.PayloadLimits.Merge(rc.PayloadLimits)
		if ps, err := payload.New(pl); err != nil {
			probs.Add(path+".payload_limits", err)
		} else {
			route.Request = append(route.Request, ps)
		}
		if rc.Auth != nil {
			az, err := authz.New(rc.Auth.Authorization, rc.Name, authz.Options{Template: rc.Path})
			if err != nil {
				probs.Add(path+".auth", err)
			} else {
				route.Request = append(route.Request, az)
			}
		}
		// OpenAPI validation after authorization: a principal that may not
		// call the route learns nothing about its schema.
		if spec.validate != nil {
			route.Request = append(route.Request, spec.validate)
		}
		if spec.response != nil {
			route.Request = append(route.Request, spec.response) // asks the upstream for an uncompressed body
		}

		// The WAF last: the most expensive stage sees only requests every
		// cheaper check admitted, with a body already bounded and decoded.
		var wafResponse gateway.ResponseStage
		if w, err := waf.New(rc.WAF, log.With("route", rc.Name)); err != nil {
			probs.Add(path+".waf", err)
		} else if w != nil {
			route.Request = append(route.Request, w)
			closers = append(closers, w.Close)
			wafResponse = w.ResponseStage()
		}

		masking, err := exposure.NewMasking(rc.Masking)
		if err != nil {
			probs.Add(path+".masking", err)
		}
		if masking != nil {
			route.Request = append(route.Request, masking)
		}

		// Response stages run in order on upstream and local responses:
		// the WAF's response inspection (on the upstream's own headers and
		// body), request ID, header hardening, then CORS (which sees the
		// final headers).
		// Safe errors first: a body about to be replaced is not scanned.
		seCfg := cfg.SafeErrors
		if rc.SafeErrors != nil {
			seCfg = rc.SafeErrors
		}
		if se, err := exposure.NewSafeErrors(seCfg); err != nil {
			probs.Add(path+".safe_errors", err)
		} else if se != nil {
			route.Response = append(route.Response, se)
		}
		if uh, err := exposure.NewUpstreamHeaders(rc.UpstreamHeaders); err != nil {
			probs.Add(path+".upstream_headers", err)
		} else if uh != nil {
			route.Response = append(route.Response, uh)
		}
		if spec.response != nil { // response schemas first: masking then scans what is left
			route.Response = append(route.Response, spec.response)
		}
		if wafResponse != nil {
			route.Response = append(route.Response, wafResponse)
		}
		if masking != nil {
			route.Response = append(route.Response, masking)
		}
		route.Response = append(route.Response, global...)
		if limits != nil {
			route.Response = append(route.Response, limits)
		}
		if ver != nil {
			route.Response = append(route.Response, ver)
		}
		if spec.deprecation != nil {
			route.Response = append(route.Response, spec.deprecation)
		}
		if c != nil {
			route.Response = append(route.Response, c)
		}

		if u := upstreams[rc.Upstream]; u != nil {
			route.Upstream = u.ForRoute(proxy.RouteOptions{
				StripPrefix:     rc.Rewrite.StripPrefix,
				AddPrefix:       rc.Rewrite.AddPrefix,
				Timeout:         rc.Timeout.D(),
				ResponseStages:  route.Response,
				RequestIDHeader: cfg.Server.RequestIDHeader,
			})
		}
		built[i] = route
		if methods := grouping.ownMethods(i, rc.Methods); len(methods) > 0 || len(rc.Methods) == 0 {
			if err := rb.Add(rc.Host, methods, rc.Path, route); err != nil {
				probs.Add(path, err)
			}
		}
	}
	addVersionGroups(rb, grouping, specs, built, probs)
	if err := probs.Err(); err != nil {
		return fail()
	}
	onFinish := finishHook(state.Auditor(), detection, state.observerList())
	return gateway.New(gateway.Options{
		OnFinish:        onFinish,
		Tracer:          state.Tracer(),
		Router:          rb.Build(),
		Global:          global,
		ClientIP:        resolver,
		RequestIDHeader: cfg.Server.RequestIDHeader,
		AccessLog:       *cfg.Log.Access,
		Log:             log,
		Starters:        starters,
		Closers:         closers,
	}), nil
}

// finishHook is what the gateway calls for every finished request: the
// audit record, the anomaly detector's observation, and the server's
// observers (metrics, the admin API's events), each if present.
func finishHook(a *audit.Auditor, d *anomalyRuntime, observers []func(*gateway.Exchange)) func(*gateway.Exchange) {
	var fns []func(*gateway.Exchange)
	if a != nil {
		fns = append(fns, a.RecordExchange)
	}
	if d != nil {
		fns = append(fns, func(ex *gateway.Exchange) { d.detector.Observe(anomaly.ObservationFrom(ex)) })
	}
	fns = append(fns, observers...)
	switch len(fns) {
	case 0:
		return nil
	case 1:
		return fns[0]
	}
	return func(ex *gateway.Exchange) {
		for _, f := range fns {
			f(ex)
		}
	}
}

// limitBuilder turns configured limits into ratelimit rules, compiling each
// key expression once however many routes and plans apply it.
type limitBuilder struct {
	cfg     *config.Config
	state   *State
	persist bool // a real State: memory quotas are saved to state.quotas_file
	exprs   map[string]*expr.Program
	plans   map[string][]ratelimit.Rule // plan rules by plan name, per upstream is not needed: plans never key by upstream
}

// rateLimitStage compiles the limits of a route: its upstream's, then its
// own, and, on routes with auth, those of the principal's plan.
func (b *limitBuilder) rateLimitStage(rc *config.Route) (*ratelimit.Stage, error) {
	var names []string
	if u := b.cfg.Upstreams[rc.Upstream]; u != nil {
		names = append(names, u.RateLimits...)
	}
	names = append(names, rc.RateLimits...)
	rules, err := b.rules(names, rc.Upstream)
	if err != nil {
		return nil, err
	}
	plans := ratelimit.Plans{Default: b.cfg.DefaultPlan, Claim: b.cfg.PlanClaim}
	if rc.Auth != nil && len(b.cfg.Plans) > 0 {
		plans.Rules = make(map[string][]ratelimit.Rule, len(b.cfg.Plans))
		for name, pl := range b.cfg.Plans {
			if pl == nil {
				continue
			}
			pr, err := b.rules(pl.RateLimits, rc.Upstream)
			if err != nil {
				return nil, fmt.Errorf("plan %s: %w", name, err)
			}
			plans.Rules[name] = pr
		}
	} else {
		plans.Default = ""
	}
	return ratelimit.NewPlanStage(rules, plans)
}

// rules builds the named limits as a route forwarding to upstream applies them.
func (b *limitBuilder) rules(names []string, upstream string) ([]ratelimit.Rule, error) {
	var rules []ratelimit.Rule
	for _, name := range names {
		lc := b.cfg.RateLimits[name]
		if lc == nil {
			continue
		}
		r := ratelimit.Rule{Name: name, IPv6Prefix: lc.IPv6Prefix, Upstream: upstream}
		if err := b.setKey(&r, name, lc); err != nil {
			return nil, err
		}
		if lc.MaxInFlight > 0 {
			r.MaxInFlight, r.InFlight = lc.MaxInFlight, b.state.InFlight()
			rules = append(rules, r)
			continue
		}
		r.Limit = ratelimit.Limit{Rate: lc.Rate, Period: lc.Per.D(), Burst: lc.Burst}
		r.MaxDelay = lc.MaxDelay.D()
		r.LocalShare = lc.LocalShare
		r.Headers = *lc.Headers
		if lc.Quota > 0 {
			period, err := ratelimit.ParsePeriod(lc.Period)
			if err != nil {
				return nil, err
			}
			loc := time.UTC
			if lc.TimeZone != "" {
				if loc, err = time.LoadLocation(lc.TimeZone); err != nil {
					return nil, fmt.Errorf("%s: time zone: %w", name, err)
				}
			}
			r.Quota = &ratelimit.Quota{Limit: lc.Quota, Period: period, Location: loc}
		}
		policy, err := ratelimit.ParsePolicy(lc.OnRedisError)
		if err != nil {
			return nil, err
		}
		r.Policy = policy
		if lc.Store == "redis" && b.cfg.State.Redis != nil {
			st, err := b.state.shared(b.cfg.State.Redis)
			if err != nil {
				return nil, err
			}
			r.Store = st
		} else {
			r.Store = b.state.Memory()
			if r.Quota != nil && b.persist {
				if err := b.state.persistQuotas(quotasPath(b.cfg)); err != nil {
					return nil, err
				}
			}
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// setKey sets what r counts by: a key kind, or a compiled key expression.
func (b *limitBuilder) setKey(r *ratelimit.Rule, name string, lc *config.RateLimit) error {
	if lc.KeyExpr == "" {
		return setRuleKey(r, lc.Key)
	}
	p := b.exprs[name]
	if p == nil {
		var err error
		if p, err = expr.Compile(lc.KeyExpr, expr.String, expr.Options{}); err != nil {
			return fmt.Errorf("%s: key_expr: %w", name, err)
		}
		b.exprs[name] = p
	}
	r.Key, r.Expr = ratelimit.KeyExpr, p.EvalString
	return nil
}

// quotasPath is state.quotas_file, relative to the configuration file.
func quotasPath(cfg *config.Config) string {
	p := cfg.State.QuotasFile
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(cfg.File()), p)
}

// setRuleKey sets what a rule counts by from the configuration's key.
func setRuleKey(r *ratelimit.Rule, key string) error {
	switch {
	case key == "client_ip":
		r.Key = ratelimit.KeyClientIP
	case key == "route":
		r.Key = ratelimit.KeyRoute
	case key == "upstream":
		r.Key = ratelimit.KeyUpstream
	case key == "global":
		r.Key = ratelimit.KeyGlobal
	case key == "principal":
		r.Key = ratelimit.KeyPrincipal
	case key == "api_key":
		r.Key = ratelimit.KeyAPIKey
	case strings.HasPrefix(key, "header:"):
		r.Key = ratelimit.KeyHeader
		r.Header = http.CanonicalHeaderKey(strings.TrimPrefix(key, "header:"))
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	return nil
}
