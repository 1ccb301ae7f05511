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
	"sort"
	"strings"

	"github.com/moat-gateway/moat/internal/clientip"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/cors"
	"github.com/moat-gateway/moat/internal/exposure"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/ratelimit"
	"github.com/moat-gateway/moat/internal/router"
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
	if state == nil {
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
		u, err := proxy.New(name, cfg.Upstreams[name], log.With("upstream", name))
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

	rb := router.NewBuilder[*gateway.Route]()
	for i, rc := range cfg.Routes {
		path := fmt.Sprintf("routes[%d]", i)
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
		// authentication, rate limits.
		auth, err := authStage(cfg, state, auths, rc)
		if err != nil {
			probs.Add(path+".auth", err)
		} else {
			route.Request = append(route.Request, auth)
		}

		limits, err := rateLimitStage(cfg, state, rc)
		if err != nil {
			probs.Add(path+".rate_limits", err)
		}
		if limits != nil {
			route.Request = append(route.Request, limits)
		}

		// Response stages run in order on upstream and local responses:
		// request ID, header hardening, then CORS (which sees the final headers).
		route.Response = append(route.Response, global...)
		if limits != nil {
			route.Response = append(route.Response, limits)
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
		if err := rb.Add(rc.Host, rc.Methods, rc.Path, route); err != nil {
			probs.Add(path, err)
		}
	}
	if err := probs.Err(); err != nil {
		return fail()
	}
	return gateway.New(gateway.Options{
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

// rateLimitStage compiles the limits of a route: its upstream's, then its
// own.
func rateLimitStage(cfg *config.Config, state *State, rc *config.Route) (*ratelimit.Stage, error) {
	var names []string
	if u := cfg.Upstreams[rc.Upstream]; u != nil {
		names = append(names, u.RateLimits...)
	}
	names = append(names, rc.RateLimits...)
	var rules []ratelimit.Rule
	for _, name := range names {
		lc := cfg.RateLimits[name]
		if lc == nil {
			continue
		}
		if lc.MaxInFlight > 0 {
			r := ratelimit.Rule{Name: name, MaxInFlight: lc.MaxInFlight, InFlight: state.InFlight(), IPv6Prefix: lc.IPv6Prefix, Upstream: rc.Upstream}
			if err := setRuleKey(&r, lc.Key); err != nil {
				return nil, err
			}
			rules = append(rules, r)
			continue
		}
		rule := ratelimit.Rule{
			Name:       name,
			Limit:      ratelimit.Limit{Rate: lc.Rate, Period: lc.Per.D(), Burst: lc.Burst},
			IPv6Prefix: lc.IPv6Prefix,
			Upstream:   rc.Upstream,
			LocalShare: lc.LocalShare,
			Headers:    *lc.Headers,
		}
		policy, err := ratelimit.ParsePolicy(lc.OnRedisError)
		if err != nil {
			return nil, err
		}
		rule.Policy = policy
		if err := setRuleKey(&rule, lc.Key); err != nil {
			return nil, err
		}
		if lc.Store == "redis" && cfg.State.Redis != nil {
			st, err := state.shared(cfg.State.Redis)
			if err != nil {
				return nil, err
			}
			rule.Store = st
		} else {
			rule.Store = state.Memory()
		}
		rules = append(rules, rule)
	}
	return ratelimit.NewStage(rules)
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
