package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/cors/origin"
	"github.com/moat-gateway/moat/internal/httpsyntax"
	"github.com/moat-gateway/moat/internal/router"
)

// validate checks the decoded, defaulted configuration and records every
// problem in p. It changes nothing.
func validate(c *Config, p *problems) {
	validateServer(&c.Server, p)
	validateListeners(c.Listeners, p)
	validateLog(&c.Log, p)
	validateHeaders(&c.SecurityHeaders, p)
	validateCORS(c.CORS, "cors", p)
	validateState(&c.State, p)
	c.PayloadLimits.validate("payload_limits", p)
	if c.Audit != nil {
		validateAudit(c.Audit, p)
	}
	if c.SafeErrors != nil {
		for _, pr := range c.SafeErrors.Validate("safe_errors") {
			p.add(pr.Path, "%s", pr.Msg)
		}
	}
	if c.Tracing.IsOn() {
		for _, pr := range c.Tracing.Validate() {
			p.add(join("tracing", pr.Path), "%s", pr.Msg)
		}
	}
	if c.Admin != nil {
		for _, pr := range c.Admin.Validate() {
			p.add(join("admin", pr.Path), "%s", pr.Msg)
		}
	}
	if c.Anomaly != nil {
		for _, pr := range c.Anomaly.Validate() {
			p.add(join("anomaly", pr.Path), "%s", pr.Msg)
		}
	}
	for name, a := range c.Authenticators {
		validateAuthenticator(name, a, p)
	}
	validatePrincipalHeaders(&c.PrincipalHeaders, p)
	if b := c.BruteForce; !b.Disabled {
		if b.MaxFailures < 1 {
			p.add("brute_force.max_failures", "must be at least 1")
		}
		if b.Window <= 0 || b.Cooldown <= 0 {
			p.add("brute_force", "window and cooldown must be greater than zero")
		}
	}
	for name, l := range c.RateLimits {
		validateRateLimit(c, name, l, p)
	}
	for name, pl := range c.Plans {
		path := "plans." + name
		if pl == nil || len(pl.RateLimits) == 0 {
			p.add(path+".rate_limits", "a plan lists at least one rate limit or quota")
			continue
		}
		validateRefs(p, path+".rate_limits", pl.RateLimits, c.RateLimits, "rate limit")
	}
	if c.DefaultPlan != "" {
		if _, ok := c.Plans[c.DefaultPlan]; !ok {
			msg := fmt.Sprintf("unknown plan %q", c.DefaultPlan)
			if s := closest(c.DefaultPlan, keys(c.Plans)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.add("default_plan", "%s", msg)
		}
	}
	for name, u := range c.Upstreams {
		validateUpstream(name, u, p)
		if u != nil && u.OpenAPI != nil {
			u.OpenAPI.validate("upstreams."+name+".openapi", p)
			if rf := u.OpenAPI.ResponseFiltering; rf != nil {
				for _, pr := range rf.Validate("upstreams." + name + ".openapi.response_filtering") {
					p.add(pr.Path, "%s", pr.Msg)
				}
			}
		}
		if u != nil {
			validateRefs(p, "upstreams."+name+".rate_limits", u.RateLimits, c.RateLimits, "rate limit")
		}
	}
	validateRoutes(c, p)
	for i, r := range c.Routes {
		if r != nil {
			validateRefs(p, fmt.Sprintf("routes[%d].rate_limits", i), r.RateLimits, c.RateLimits, "rate limit")
		}
	}
}

func validateState(s *State, p *problems) {
	r := s.Redis
	if r == nil {
		return
	}
	if len(r.Addresses) == 0 {
		p.add("state.redis.addresses", "at least one host:port is required")
	}
	for i, a := range r.Addresses {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			p.add(fmt.Sprintf("state.redis.addresses[%d]", i), "%q is not host:port", a)
		}
	}
	if r.DB < 0 {
		p.add("state.redis.db", "must not be negative")
	}
	if r.CAFile != "" {
		if !r.TLS {
			p.add("state.redis.ca_file", "set tls: true to use a CA file")
		}
		checkFile(p, "state.redis.ca_file", r.CAFile)
	}
	if r.Budget <= 0 {
		p.add("state.redis.budget", "must be greater than zero")
	}
	if r.PoolSize < 1 {
		p.add("state.redis.pool_size", "must be at least 1")
	}
}

func validateRateLimit(c *Config, name string, l *RateLimit, p *problems) {
	path := "rate_limits." + name
	if l == nil {
		p.add(path, "empty rate limit: rate and per are required")
		return
	}
	kinds := 0
	for _, set := range []bool{l.MaxInFlight != 0, l.Rate != 0 || l.Per != 0, l.Quota != 0 || l.Period != ""} {
		if set {
			kinds++
		}
	}
	if kinds > 1 {
		p.add(path, "a limit is one of a rate (rate, per), a quota (quota, period) or a concurrency limit (max_in_flight)")
	}
	switch {
	case l.MaxInFlight != 0:
		if l.MaxInFlight < 0 {
			p.add(path+".max_in_flight", "must be at least 1")
		}
		if l.Store == "redis" {
			p.add(path+".store", "in-flight limits are per instance: use store: memory")
		}
	case l.Quota != 0 || l.Period != "":
		if l.Quota < 1 || l.Quota > 1_000_000_000_000_000 {
			p.add(path+".quota", "must be between 1 and 10^15")
		}
		if l.Period != "day" && l.Period != "month" {
			p.add(path+".period", "must be day or month")
		}
		if l.TimeZone != "" {
			if _, err := time.LoadLocation(l.TimeZone); err != nil || l.TimeZone == "Local" {
				p.add(path+".time_zone", "%q is not an IANA time zone such as Europe/Berlin", l.TimeZone)
			}
		}
	default:
		validateRate(path, l, p)
	}
	if l.TimeZone != "" && l.Quota == 0 && l.Period == "" {
		p.add(path+".time_zone", "only quotas (quota, period) have a time zone")
	}
	if l.MaxDelay != 0 {
		if l.MaxInFlight != 0 || l.Quota != 0 {
			p.add(path+".max_delay", "only rate limits (rate, per) can throttle")
		} else if l.MaxDelay < 0 || l.MaxDelay > Duration(time.Minute) {
			p.add(path+".max_delay", "must be between 0 and 60s: held requests keep their connection")
		}
	}
	switch {
	case l.KeyExpr != "":
		if l.Key != "" {
			p.add(path+".key_expr", "set key or key_expr, not both")
		}
	case l.Key == "client_ip", l.Key == "route", l.Key == "upstream", l.Key == "global", l.Key == "principal", l.Key == "api_key":
	case strings.HasPrefix(l.Key, "header:") && httpsyntax.IsToken(strings.TrimPrefix(l.Key, "header:")):
	case l.Key == "":
		p.add(path+".key", "required: client_ip, principal, api_key, route, upstream, global or header:NAME (or key_expr)")
	default:
		p.add(path+".key", "%q is not client_ip, principal, api_key, route, upstream, global or header:NAME", l.Key)
	}
	if l.IPv6Prefix < 1 || l.IPv6Prefix > 128 {
		p.add(path+".ipv6_prefix", "must be between 1 and 128")
	}
	switch l.Store {
	case "memory":
	case "redis":
		if c.State.Redis == nil {
			p.add(path+".store", "redis needs state.redis")
		}
	default:
		p.add(path+".store", "must be memory or redis")
	}
	switch l.OnRedisError {
	case "fail_closed", "fail_open", "local":
	default:
		p.add(path+".on_redis_error", "must be fail_closed, fail_open or local")
	}
	if l.LocalShare <= 0 || l.LocalShare > 1 {
		p.add(path+".local_share", "must be in (0, 1]")
	}
}

// validateRate checks a rate limit's rate, period and burst.
func validateRate(path string, l *RateLimit, p *problems) {
	if l.Rate < 1 {
		p.add(path+".rate", "must be at least 1")
	}
	if l.Per < Duration(time.Millisecond) {
		p.add(path+".per", "required, at least 1ms (such as 1s or 1m)")
	} else if l.Rate >= 1 && l.Per.D()/time.Duration(l.Rate) < 1 {
		p.add(path+".rate", "%d per %s is finer than the clock (1ns per request)", l.Rate, l.Per.D())
	}
	if l.Burst < 1 {
		p.add(path+".burst", "must be at least 1")
	} else if l.Rate >= 1 && l.Per > 0 && l.Burst > int64((50*365*24*time.Hour)/(l.Per.D()/time.Duration(max(l.Rate, 1)))) {
		p.add(path+".burst", "%d at this rate spans more than 50 years", l.Burst)
	}
}

// validateRefs checks a list of names that must each name an entry of known
// (rate limits, authenticators), once.
func validateRefs[V any](p *problems, path string, names []string, known map[string]V, kind string) {
	seen := map[string]bool{}
	for i, n := range names {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if _, ok := known[n]; !ok {
			msg := fmt.Sprintf("unknown %s %q", kind, n)
			if s := closest(n, keys(known)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.add(ip, "%s", msg)
		}
		if seen[n] {
			p.add(ip, "%s %q listed twice", kind, n)
		}
		seen[n] = true
	}
}

func validateServer(s *Server, p *problems) {
	positive := map[string]Duration{
		"server.read_header_timeout": s.ReadHeaderTimeout,
		"server.read_timeout":        s.ReadTimeout,
		"server.write_timeout":       s.WriteTimeout,
		"server.idle_timeout":        s.IdleTimeout,
		"server.shutdown_grace":      s.ShutdownGrace,
	}
	for path, d := range positive {
		if d <= 0 {
			p.add(path, "must be greater than zero")
		}
	}
	if s.ReadTimeout > 0 && s.ReadHeaderTimeout > s.ReadTimeout {
		p.add("server.read_header_timeout", "must not exceed read_timeout (%s)", s.ReadTimeout.D())
	}
	if s.MaxHeaderBytes < 1<<10 || s.MaxHeaderBytes > 1<<20 {
		p.add("server.max_header_bytes", "must be between 1KiB and 1MiB")
	}
	if s.MaxBody <= 0 {
		p.add("server.max_body", "must be greater than zero")
	}
	if s.MaxConnections < 1 || s.MaxConnections > 1_000_000 {
		p.add("server.max_connections", "must be between 1 and 1000000")
	}
	switch strings.ToLower(s.ClientIPHeader) {
	case "x-forwarded-for", "forwarded", "x-real-ip":
		s.ClientIPHeader = strings.ToLower(s.ClientIPHeader)
	default:
		p.add("server.client_ip_header", "must be x-forwarded-for, forwarded or x-real-ip")
	}
	if !httpsyntax.IsToken(s.RequestIDHeader) {
		p.add("server.request_id_header", "%q is not a valid header name", s.RequestIDHeader)
	}
}

func validateListeners(ls []Listener, p *problems) {
	if len(ls) == 0 {
		p.add("listeners", "at least one listener is required")
	}
	names, addrs := map[string]bool{}, map[string]bool{}
	for i := range ls {
		l := &ls[i]
		path := fmt.Sprintf("listeners[%d]", i)
		if l.Address == "" {
			p.add(path+".address", "required, such as 127.0.0.1:8080 or :8443")
		} else if host, port, err := net.SplitHostPort(l.Address); err != nil {
			p.add(path+".address", "%q is not host:port", l.Address)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			p.add(path+".address", "invalid port %q", port)
		} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
			p.add(path+".address", "host must be an IP address, localhost or empty (all interfaces)")
		}
		if _, port, _ := net.SplitHostPort(l.Address); addrs[l.Address] && port != "0" {
			p.add(path+".address", "address %s is used by another listener", l.Address)
		}
		addrs[l.Address] = true
		if names[l.Name] {
			p.add(path+".name", "duplicate listener name %q", l.Name)
		}
		names[l.Name] = true
		if t := l.TLS; t != nil {
			if l.H2C {
				p.add(path+".h2c", "h2c applies to plain listeners only; TLS listeners always offer HTTP/2")
			}
			if l.RedirectHTTPS != nil {
				p.add(path+".redirect_https", "only a plain listener can redirect to HTTPS")
			}
			checkFile(p, path+".tls.cert_file", t.CertFile)
			checkFile(p, path+".tls.key_file", t.KeyFile)
			if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
				p.add(path+".tls.min_version", "must be 1.2 or 1.3 (older versions are insecure)")
			}
			if ca := t.ClientAuth; ca != nil {
				if ca.Mode != "require" && ca.Mode != "optional" {
					p.add(path+".tls.client_auth.mode", "must be require or optional")
				}
				checkFile(p, path+".tls.client_auth.ca_file", ca.CAFile)
			}
			if t.HSTS.MaxAge < 0 {
				p.add(path+".tls.hsts.max_age", "must not be negative")
			}
		}
		if r := l.RedirectHTTPS; r != nil && (r.Port < 1 || r.Port > 65535) {
			p.add(path+".redirect_https.port", "must be between 1 and 65535")
		}
	}
}

func checkFile(p *problems, path, file string) {
	if file == "" {
		p.add(path, "required")
		return
	}
	f, err := os.Open(file)
	if err != nil {
		p.add(path, "cannot read %s: %v", file, errText(err))
		return
	}
	f.Close()
}

// errText drops the path os errors repeat, keeping the cause.
func errText(err error) string {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err.Error()
	}
	return err.Error()
}

func validateLog(l *Log, p *problems) {
	if l.Format != "json" && l.Format != "text" {
		p.add("log.format", "must be json or text")
	}
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "must be debug, info, warn or error")
	}
}

func validateHeaders(h *SecurityHeaders, p *problems) {
	vals := map[string]string{
		"security_headers.content_type_options":    h.ContentTypeOptions,
		"security_headers.frame_options":           h.FrameOptions,
		"security_headers.content_security_policy": h.ContentSecurityPolicy,
		"security_headers.referrer_policy":         h.ReferrerPolicy,
		"security_headers.cache_control":           h.CacheControl,
	}
	for path, v := range vals {
		if strings.ContainsAny(v, "\r\n\x00") {
			p.add(path, "header values must not contain control characters")
		}
	}
	for i, name := range h.Remove {
		if !httpsyntax.IsToken(strings.TrimSuffix(name, "*")) {
			p.add(fmt.Sprintf("security_headers.remove[%d]", i), "%q is not a header name (a trailing * matches a prefix)", name)
		}
	}
}

func validateCORS(c *CORS, path string, p *problems) {
	if c == nil || c.Disabled {
		return
	}
	if len(c.AllowOrigins) == 0 {
		p.add(path+".allow_origins", "at least one origin is required (or set disabled: true)")
	}
	for i, o := range c.AllowOrigins {
		if o == "*" && c.AllowCredentials {
			p.add(fmt.Sprintf("%s.allow_origins[%d]", path, i), `"*" cannot be combined with allow_credentials: list the origins`)
		} else if err := origin.Validate(o); err != nil {
			p.add(fmt.Sprintf("%s.allow_origins[%d]", path, i), "%v", err)
		}
	}
	for i, m := range c.AllowMethods {
		if !httpsyntax.IsToken(m) {
			p.add(fmt.Sprintf("%s.allow_methods[%d]", path, i), "%q is not a method", m)
		}
	}
	for i, h := range c.AllowHeaders {
		if !httpsyntax.IsToken(h) {
			p.add(fmt.Sprintf("%s.allow_headers[%d]", path, i), "%q is not a header name", h)
		}
	}
	for i, h := range c.ExposeHeaders {
		if !httpsyntax.IsToken(h) {
			p.add(fmt.Sprintf("%s.expose_headers[%d]", path, i), "%q is not a header name", h)
		}
	}
}

func validateUpstream(name string, u *Upstream, p *problems) {
	path := "upstreams." + name
	if u == nil {
		p.add(path, "empty upstream: targets are required")
		return
	}
	if len(u.Targets) == 0 {
		p.add(path+".targets", "at least one target URL is required")
	}
	for i, t := range u.Targets {
		if t.URL == nil {
			p.add(fmt.Sprintf("%s.targets[%d]", path, i), "empty target")
		}
	}
	if u.MaxIdleConns < 1 {
		p.add(path+".max_idle_conns", "must be at least 1")
	}
	if tl := u.TLS; tl != nil {
		if tl.CAFile != "" {
			checkFile(p, path+".tls.ca_file", tl.CAFile)
		}
		if (tl.CertFile == "") != (tl.KeyFile == "") {
			p.add(path+".tls", "cert_file and key_file go together")
		} else if tl.CertFile != "" {
			checkFile(p, path+".tls.cert_file", tl.CertFile)
			checkFile(p, path+".tls.key_file", tl.KeyFile)
		}
	}
	if h := u.HealthCheck; h != nil {
		if !strings.HasPrefix(h.Path, "/") {
			p.add(path+".health_check.path", "must start with /")
		}
		if h.Timeout >= h.Interval {
			p.add(path+".health_check.timeout", "must be shorter than interval")
		}
		for i, s := range h.ExpectStatus {
			if s < 100 || s > 599 {
				p.add(fmt.Sprintf("%s.health_check.expect_status[%d]", path, i), "%d is not an HTTP status", s)
			}
		}
		if h.HealthyThreshold < 1 || h.UnhealthyThreshold < 1 {
			p.add(path+".health_check", "thresholds must be at least 1")
		}
	}
	if u.Passive.MaxFailures < 1 {
		p.add(path+".passive.max_failures", "must be at least 1")
	}
	if b := u.CircuitBreaker; b != nil {
		if b.FailureRatio <= 0 || b.FailureRatio > 1 {
			p.add(path+".circuit_breaker.failure_ratio", "must be in (0, 1]")
		}
		if b.MinRequests < 1 {
			p.add(path+".circuit_breaker.min_requests", "must be at least 1")
		}
		if b.HalfOpenRequests < 1 {
			p.add(path+".circuit_breaker.half_open_requests", "must be at least 1")
		}
	}
}

func validateRoutes(c *Config, p *problems) {
	if len(c.Routes) == 0 {
		p.add("routes", "at least one route is required")
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		if r == nil {
			p.add(path, "empty route")
			continue
		}
		if j, dup := names[r.Name]; dup {
			p.add(path+".name", "duplicate route name %q (also routes[%d])", r.Name, j)
		}
		names[r.Name] = i
		if r.Path == "" {
			p.add(path+".path", "required, such as /books/{id}")
		} else if err := router.ValidateTemplate(r.Path); err != nil {
			p.add(path+".path", "%v", err)
		}
		if err := router.ValidateHost(r.Host); err != nil {
			p.add(path+".host", "%v", err)
		}
		if len(r.Methods) == 0 {
			p.add(path+".methods", "at least one method is required, such as [GET]")
		}
		for j, m := range r.Methods {
			mp := fmt.Sprintf("%s.methods[%d]", path, j)
			switch {
			case m == "TRACE" || m == "CONNECT":
				p.add(mp, "%s is refused by the gateway", m)
			case !httpsyntax.IsToken(m):
				p.add(mp, "%q is not a method", m)
			}
		}
		if r.Upstream == "" {
			p.add(path+".upstream", "required: the name of an upstream")
		} else if _, ok := c.Upstreams[r.Upstream]; !ok {
			msg := fmt.Sprintf("unknown upstream %q", r.Upstream)
			if s := closest(r.Upstream, keys(c.Upstreams)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			p.add(path+".upstream", "%s", msg)
		}
		switch {
		case r.Auth != nil && r.Public:
			p.add(path+".public", "a route is either public or authenticated (auth), not both")
		case r.Auth == nil && !r.Public:
			p.add(path, "no authentication declared: zero trust requires every route to say how it is authenticated; add an auth block, or public: true to serve it without authentication")
		case r.Auth != nil:
			if len(r.Auth.Authenticators) == 0 {
				p.add(path+".auth.authenticators", "at least one authenticator is required")
			}
			validateRefs(p, path+".auth.authenticators", r.Auth.Authenticators, c.Authenticators, "authenticator")
			for _, pr := range ValidateAuthorization(&r.Auth.Authorization, path+".auth") {
				p.add(pr.Path, "%s", pr.Msg)
			}
		}
		if r.PayloadLimits != nil {
			r.PayloadLimits.validate(path+".payload_limits", p)
		}
		if r.WAF != nil {
			validateWAF(r.WAF, path+".waf", p)
		}
		var more []Problem
		if r.Masking != nil {
			more = append(more, r.Masking.Validate(path+".masking")...)
		}
		if r.SafeErrors != nil {
			more = append(more, r.SafeErrors.Validate(path+".safe_errors")...)
		}
		if r.UpstreamHeaders != nil {
			more = append(more, r.UpstreamHeaders.Validate(path+".upstream_headers")...)
		}
		if r.Version != nil {
			more = append(more, r.Version.Validate(path+".version")...)
		}
		if r.OpenAPI != nil {
			r.OpenAPI.validate(path+".openapi", p)
		}
		if r.ResponseFiltering != nil {
			more = append(more, r.ResponseFiltering.Validate(path+".response_filtering")...)
		}
		for _, pr := range more {
			p.add(pr.Path, "%s", pr.Msg)
		}
		if r.MaxBody != nil && *r.MaxBody <= 0 {
			p.add(path+".max_body", "must be greater than zero")
		}
		if r.Timeout < 0 {
			p.add(path+".timeout", "must not be negative")
		}
		for _, pre := range []struct{ field, v string }{{"strip_prefix", r.Rewrite.StripPrefix}, {"add_prefix", r.Rewrite.AddPrefix}} {
			if pre.v != "" && (!strings.HasPrefix(pre.v, "/") || strings.Contains(pre.v, "..") || strings.ContainsAny(pre.v, "?#{}")) {
				p.add(path+".rewrite."+pre.field, "must be a plain path starting with /")
			}
		}
		if sp := r.Rewrite.StripPrefix; sp != "" && !strings.HasPrefix(r.Path, sp) {
			p.add(path+".rewrite.strip_prefix", "%q is not a prefix of the route path %q", sp, r.Path)
		}
		validateCORS(r.CORS, path+".cors", p)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func validateAuthenticator(name string, a *Authenticator, p *problems) {
	path := "authenticators." + name
	if a == nil {
		p.add(path, "empty authenticator: set one of api_key, basic, jwt, introspection, client_cert")
		return
	}
	kinds := 0
	for _, set := range []bool{a.APIKey != nil, a.Basic != nil, a.JWT != nil, a.Introspection != nil, a.ClientCert != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		p.add(path, "set exactly one of api_key, basic, jwt, introspection, client_cert (found %d)", kinds)
		return
	}
	switch {
	case a.APIKey != nil:
		for i, h := range a.APIKey.Headers {
			if !httpsyntax.IsToken(h) {
				p.add(fmt.Sprintf("%s.api_key.headers[%d]", path, i), "%q is not a header name", h)
			}
		}
	case a.Basic != nil:
		checkFile(p, path+".basic.htpasswd_file", a.Basic.HtpasswdFile)
		if strings.ContainsAny(a.Basic.Realm, "\"\r\n") {
			p.add(path+".basic.realm", "must not contain quotes or line breaks")
		}
	case a.JWT != nil:
		j := a.JWT
		if len(j.Issuers) == 0 {
			p.add(path+".jwt.issuers", "at least one issuer is required")
		}
		for i, is := range j.Issuers {
			ip := fmt.Sprintf("%s.jwt.issuers[%d]", path, i)
			if is.Issuer == "" {
				p.add(ip+".issuer", "required: the exact iss value")
			}
			if len(is.Audiences) == 0 {
				p.add(ip+".audiences", "at least one audience is required: tokens for other services must not pass")
			}
			if len(is.Algorithms) == 0 {
				p.add(ip+".algorithms", "required: list the algorithms this issuer signs with")
			}
			sources := 0
			for _, set := range []bool{is.JWKSURL != "", is.Discovery, len(is.KeyFiles) > 0, is.Secret.IsSet()} {
				if set {
					sources++
				}
			}
			if sources == 0 {
				p.add(ip, "no keys: set jwks_url, discovery, key_files or secret")
			}
			for k, f := range is.KeyFiles {
				checkFile(p, fmt.Sprintf("%s.key_files[%d]", ip, k), f)
			}
			if is.Secret.IsSet() {
				need := 32 // HS256; RFC 7518 asks for a key at least as long as the hash
				for _, alg := range is.Algorithms {
					switch alg {
					case "HS384":
						need = max(need, 48)
					case "HS512":
						need = max(need, 64)
					}
				}
				if len(is.Secret.Value()) < need {
					p.add(ip+".secret", "an HMAC secret for %v must be at least %d bytes", is.Algorithms, need)
				}
			}
		}
	case a.Introspection != nil:
		in := a.Introspection
		if u, err := url.Parse(in.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			p.add(path+".introspection.endpoint", "required: an https URL")
		} else if ip := net.ParseIP(u.Hostname()); u.Scheme == "http" && u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
			p.add(path+".introspection.endpoint", "must be https (plain http only to a loopback address): the client secret and tokens travel in it")
		}
		if in.ClientID == "" {
			p.add(path+".introspection.client_id", "required")
		}
		if !in.ClientSecret.IsSet() {
			p.add(path+".introspection.client_secret", "required (env:NAME reads it from the environment)")
		}
		if in.CAFile != "" {
			checkFile(p, path+".introspection.ca_file", in.CAFile)
		}
	case a.ClientCert != nil:
		switch a.ClientCert.Subject {
		case "cn", "dns", "uri", "email", "spiffe":
		default:
			p.add(path+".client_cert.subject", "must be cn, dns, uri, email or spiffe")
		}
		if a.ClientCert.CAFile != "" {
			checkFile(p, path+".client_cert.ca_file", a.ClientCert.CAFile)
		}
	}
}

func validatePrincipalHeaders(h *PrincipalHeaders, p *problems) {
	for field, v := range map[string]string{"subject": h.Subject, "authenticator": h.Authenticator, "roles": h.Roles, "scopes": h.Scopes} {
		if !httpsyntax.IsToken(v) {
			p.add("principal_headers."+field, "%q is not a header name", v)
		}
	}
	for claim, v := range h.Claims {
		if !httpsyntax.IsToken(v) {
			p.add("principal_headers.claims."+claim, "%q is not a header name", v)
		}
	}
}
