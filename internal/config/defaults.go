package config

import (
	"fmt"
	"net/http"
	"time"
)

// Secure defaults, in one place. docs/configuration.md lists the same values.
const (
	DefaultReadHeaderTimeout = Duration(5 * time.Second)
	DefaultReadTimeout       = Duration(30 * time.Second)
	DefaultWriteTimeout      = Duration(60 * time.Second)
	DefaultIdleTimeout       = Duration(120 * time.Second)
	DefaultMaxHeaderBytes    = Size(32 << 10)
	DefaultMaxBody           = Size(1 << 20)
	DefaultShutdownGrace     = Duration(30 * time.Second)
	DefaultMaxConnections    = 10000
	DefaultRequestIDHeader   = "X-Request-ID"
	DefaultClientIPHeader    = "x-forwarded-for"
	DefaultTLSMinVersion     = "1.2"
	DefaultHSTSMaxAge        = Duration(365 * 24 * time.Hour)

	DefaultConnectTimeout        = Duration(5 * time.Second)
	DefaultResponseHeaderTimeout = Duration(30 * time.Second)
	DefaultUpstreamTimeout       = Duration(60 * time.Second)
	DefaultMaxIdleConns          = 256
	DefaultPassiveMaxFailures    = 5
	DefaultPassiveEjection       = Duration(30 * time.Second)
	DefaultCORSMaxAge            = Duration(10 * time.Minute)
	DefaultRedisBudget           = Duration(50 * time.Millisecond)
)

func ptr[T any](v T) *T { return &v }

// applyDefaults fills every unset field with its secure default. It is called
// after decoding and before validation, so validation sees effective values.
func applyDefaults(c *Config) {
	s := &c.Server
	setDur(&s.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDur(&s.ReadTimeout, DefaultReadTimeout)
	setDur(&s.WriteTimeout, DefaultWriteTimeout)
	setDur(&s.IdleTimeout, DefaultIdleTimeout)
	setDur(&s.ShutdownGrace, DefaultShutdownGrace)
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if s.MaxBody == 0 {
		s.MaxBody = DefaultMaxBody
	}
	if s.RequestIDHeader == "" {
		s.RequestIDHeader = DefaultRequestIDHeader
	}
	s.RequestIDHeader = http.CanonicalHeaderKey(s.RequestIDHeader)
	if s.ClientIPHeader == "" {
		s.ClientIPHeader = DefaultClientIPHeader
	}
	if s.WatchConfig == nil {
		s.WatchConfig = ptr(true)
	}
	if s.MaxConnections == 0 {
		s.MaxConnections = DefaultMaxConnections
	}
	named := map[string]bool{}
	for _, l := range c.Listeners {
		named[l.Name] = true
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			l.Name = l.Address // two ephemeral-port listeners need telling apart
			if named[l.Name] {
				l.Name = fmt.Sprintf("%s#%d", l.Address, i)
			}
			named[l.Name] = true
		}
		if l.TLS != nil {
			if l.TLS.MinVersion == "" {
				l.TLS.MinVersion = DefaultTLSMinVersion
			}
			if l.TLS.HSTS.MaxAge == 0 {
				l.TLS.HSTS.MaxAge = DefaultHSTSMaxAge
			}
			if l.TLS.HSTS.IncludeSubdomains == nil {
				l.TLS.HSTS.IncludeSubdomains = ptr(true)
			}
		}
		if l.RedirectHTTPS != nil && l.RedirectHTTPS.Port == 0 {
			l.RedirectHTTPS.Port = 443
		}
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Access == nil {
		c.Log.Access = ptr(true)
	}
	corsDefaults(c.CORS)
	authDefaults(c)
	if r := c.State.Redis; r != nil {
		setDur(&r.Budget, DefaultRedisBudget)
		if r.PoolSize == 0 {
			r.PoolSize = 256
		}
		if r.ServerTime == nil {
			r.ServerTime = ptr(true)
		}
	}
	for _, l := range c.RateLimits {
		if l == nil {
			continue
		}
		if l.Burst == 0 {
			l.Burst = l.Rate
		}
		if l.IPv6Prefix == 0 {
			l.IPv6Prefix = 64
		}
		if l.Store == "" {
			l.Store = "memory"
			if c.State.Redis != nil && l.MaxInFlight == 0 {
				l.Store = "redis"
			}
		}
		if l.OnRedisError == "" {
			l.OnRedisError = "fail_closed"
		}
		if l.LocalShare == 0 {
			l.LocalShare = 1
		}
		if l.Headers == nil {
			l.Headers = ptr(true)
		}
	}
	for _, u := range c.Upstreams {
		if u == nil {
			continue
		}
		setDur(&u.Timeouts.Connect, DefaultConnectTimeout)
		setDur(&u.Timeouts.ResponseHeader, DefaultResponseHeaderTimeout)
		setDur(&u.Timeouts.Overall, DefaultUpstreamTimeout)
		if u.MaxIdleConns == 0 {
			u.MaxIdleConns = DefaultMaxIdleConns
		}
		if u.Passive.MaxFailures == 0 {
			u.Passive.MaxFailures = DefaultPassiveMaxFailures
		}
		setDur(&u.Passive.Ejection, DefaultPassiveEjection)
		if h := u.HealthCheck; h != nil {
			if h.Path == "" {
				h.Path = "/healthz"
			}
			setDur(&h.Interval, Duration(10*time.Second))
			setDur(&h.Timeout, Duration(2*time.Second))
			if h.HealthyThreshold == 0 {
				h.HealthyThreshold = 2
			}
			if h.UnhealthyThreshold == 0 {
				h.UnhealthyThreshold = 3
			}
		}
		if b := u.CircuitBreaker; b != nil {
			if b.FailureRatio == 0 {
				b.FailureRatio = 0.5
			}
			if b.MinRequests == 0 {
				b.MinRequests = 20
			}
			setDur(&b.Window, Duration(10*time.Second))
			setDur(&b.OpenFor, Duration(30*time.Second))
			if b.HalfOpenRequests == 0 {
				b.HalfOpenRequests = 5
			}
		}
	}
	c.PayloadLimits.ApplyDefaults()
	if c.Audit != nil {
		c.Audit.ApplyDefaults()
	}
	if c.Anomaly != nil {
		c.Anomaly.ApplyDefaults()
	}
	c.Tracing.ApplyDefaults()
	if c.Admin != nil {
		c.Admin.ApplyDefaults()
	}
	if c.SafeErrors != nil {
		c.SafeErrors.ApplyDefaults()
	}
	for _, u := range c.Upstreams {
		if u != nil && u.OpenAPI != nil {
			u.OpenAPI.ApplyDefaults()
			if u.OpenAPI.ResponseFiltering != nil {
				u.OpenAPI.ResponseFiltering.ApplyDefaults()
			}
		}
	}
	for _, r := range c.Routes {
		if r == nil {
			continue
		}
		for i, m := range r.Methods {
			r.Methods[i] = upper(m)
		}
		if r.Name == "" {
			r.Name = joinMethods(r.Methods) + " " + r.Host + r.Path
		}
		if r.MaxBody == nil {
			r.MaxBody = ptr(s.MaxBody)
		}
		corsDefaults(r.CORS)
		if r.Auth != nil {
			r.Auth.Authorization.ApplyDefaults()
		}
		if r.WAF != nil {
			r.WAF.ApplyDefaults()
		}
		if r.Masking != nil {
			r.Masking.ApplyDefaults()
		}
		if r.SafeErrors != nil {
			r.SafeErrors.ApplyDefaults()
		}
		if r.Version != nil {
			r.Version.ApplyDefaults()
		}
		if r.OpenAPI != nil {
			r.OpenAPI.ApplyDefaults()
		}
		if r.ResponseFiltering != nil {
			r.ResponseFiltering.ApplyDefaults()
		}
	}
}

func corsDefaults(c *CORS) {
	if c == nil {
		return
	}
	setDur(&c.MaxAge, DefaultCORSMaxAge)
	if c.DenyUnknownOrigins == nil {
		c.DenyUnknownOrigins = ptr(true)
	}
}

func setDur(d *Duration, def Duration) {
	if *d == 0 {
		*d = def
	}
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func joinMethods(ms []string) string {
	out := ""
	for i, m := range ms {
		if i > 0 {
			out += ","
		}
		out += m
	}
	return out
}

// authDefaults fills the authenticators, principal headers and brute-force
// lockout.
func authDefaults(c *Config) {
	if c.State.KeysFile == "" {
		c.State.KeysFile = "moat-keys.db"
	}
	if c.State.QuotasFile == "" {
		c.State.QuotasFile = "moat-quotas.db"
	}
	if c.PlanClaim == "" {
		c.PlanClaim = "plan"
	}
	for _, a := range c.Authenticators {
		if a == nil {
			continue
		}
		if k := a.APIKey; k != nil && len(k.Headers) == 0 {
			k.Headers = []string{"Authorization", "X-API-Key"}
		}
		if b := a.Basic; b != nil && b.Realm == "" {
			b.Realm = "moat"
		}
		if j := a.JWT; j != nil {
			setDur(&j.Leeway, Duration(30*time.Second))
			if j.MaxTokenSize == 0 {
				j.MaxTokenSize = 8 << 10
			}
			if j.CacheSize == 0 {
				j.CacheSize = 10000
			}
			for i := range j.Issuers {
				is := &j.Issuers[i]
				if is.SubjectClaim == "" {
					is.SubjectClaim = "sub"
				}
				if is.RolesClaim == "" {
					is.RolesClaim = "roles"
				}
				if is.ScopesClaim == "" {
					is.ScopesClaim = "scope"
				}
				setDur(&is.RefreshInterval, Duration(15*time.Minute))
			}
		}
		if in := a.Introspection; in != nil {
			setDur(&in.CacheTTL, Duration(time.Minute))
			setDur(&in.Timeout, Duration(2*time.Second))
		}
		if cc := a.ClientCert; cc != nil && cc.Subject == "" {
			cc.Subject = "cn"
		}
	}
	h := &c.PrincipalHeaders
	setStr(&h.Subject, "X-Moat-Subject")
	setStr(&h.Authenticator, "X-Moat-Authenticator")
	setStr(&h.Roles, "X-Moat-Roles")
	setStr(&h.Scopes, "X-Moat-Scopes")
	b := &c.BruteForce
	if b.MaxFailures == 0 {
		b.MaxFailures = 10
	}
	setDur(&b.Window, Duration(time.Minute))
	setDur(&b.Cooldown, Duration(5*time.Minute))
}

func setStr(s *string, def string) {
	if *s == "" {
		*s = def
	}
}
