package server

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/moat-gateway/moat/internal/admin"
	"github.com/moat-gateway/moat/internal/anomaly"
	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/telemetry/metrics"
)

// reloadStats counts reload attempts for the admin API and metrics.
type reloadStats struct {
	mu sync.Mutex
	c  admin.ReloadCounters
}

func (r *reloadStats) add(at time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.LastAt = at
	if err != nil {
		r.c.Failed++
		r.c.LastResult, r.c.LastError = "failure", err.Error()
		return
	}
	r.c.Succeeded++
	r.c.LastResult, r.c.LastError = "success", ""
}

func (r *reloadStats) get() admin.ReloadCounters {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.c
}

// setupObservability creates the metrics registry (always: it costs a few
// hundred nanoseconds per request and is served only on the admin
// listener) and, when the configuration has an admin block, the admin
// server. It runs once, in New.
func (s *Server) setupObservability(cfg *config.Config) error {
	s.started = time.Now()
	s.metrics = metrics.New(metrics.Options{Log: s.log.With("component", "metrics")})
	s.metricsFor(cfg)
	if s.auditor != nil {
		if err := s.metrics.Register(metrics.AuditCollector(s.auditor.Stats)); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
	}
	if err := s.metrics.GaugeFunc("moat_in_flight_requests", "Requests being served now.", func() float64 {
		if g := s.current.Load(); g != nil {
			return float64(g.InFlight())
		}
		return 0
	}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	observers := []func(*gateway.Exchange){s.metrics.Observe}
	if cfg.Admin != nil {
		deps := admin.Deps{
			Version: s.opts.Version,
			Status:  s.adminStatus,
			Config:  s.adminConfig,
			Reload:  s.applyYAML,
			Routes:  s.routePostures,
			Metrics: s.metrics.Handler(),
			Alerts:  s.state.RecentAlerts,
			Blocks:  adminBlocks{s},
			Log:     s.log.With("component", "admin"),
			Audit: func(action string, actor *gateway.Principal, from netip.Addr, msg string, err error) {
				ev := audit.AdminAction(time.Now(), action, actor, from, msg, err)
				s.auditor.Record(&ev)
			},
		}
		if ks, err := keys.Open(cfg, keys.RedisOptions{}); err == nil {
			deps.Keys = ks
			s.adminKeys = ks
		} else {
			s.log.Warn("admin API: API key endpoints unavailable", "error", err)
		}
		if cfg.Anomaly != nil {
			deps.BlockIPv6Prefix = cfg.Anomaly.IPv6Prefix
		}
		if r := cfg.State.Redis; r != nil {
			deps.Ready = append(deps.Ready, admin.ReadyCheck{Name: "redis", Check: s.pingRedis})
		}
		a, err := admin.New(*cfg.Admin, deps)
		if err != nil {
			return err
		}
		s.admin = a
		if err := registerAdminAuthMetrics(s.metrics, a.AuthStats); err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		observers = append(observers, a.RecordEvent)
	}
	s.state.SetObservers(observers...)
	return nil
}

// registerAdminAuthMetrics registers the counters of the admin listener's
// refused authentications and lockouts (admin.login_limit), read from
// stats at scrape time.
func registerAdminAuthMetrics(m *metrics.Registry, stats func() admin.AuthStats) error {
	for _, c := range []struct {
		name, help string
		value      func(admin.AuthStats) uint64
	}{
		{"moat_admin_auth_failures_total", "Admin API requests refused with 401 admin_unauthenticated.",
			func(s admin.AuthStats) uint64 { return s.Failures }},
		{"moat_admin_lockouts_total", "Client addresses locked out of the admin API after repeated failed authentications (admin.login_limit).",
			func(s admin.AuthStats) uint64 { return s.Lockouts }},
		{"moat_admin_locked_out_requests_total", "Admin API requests refused with 429 admin_locked_out because their client address was locked out.",
			func(s admin.AuthStats) uint64 { return s.LockedOut }},
	} {
		if err := m.CounterFunc(c.name, c.help, func() float64 { return float64(c.value(stats())) }); err != nil {
			return err
		}
	}
	return nil
}

// metricsFor tells the registry the route and limit names of cfg, the only
// label values it accepts (anything else counts as "other").
func (s *Server) metricsFor(cfg *config.Config) {
	routes := make([]string, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if r != nil {
			routes = append(routes, r.Name)
		}
	}
	limits := make([]string, 0, len(cfg.RateLimits))
	for name := range cfg.RateLimits {
		limits = append(limits, name)
	}
	sort.Strings(limits)
	s.metrics.SetRoutes(routes)
	s.metrics.SetLimits(limits)
	if js, err := admin.ConfigJSON(cfg); err == nil {
		s.configJSON.Store(&js)
	}
}

func (s *Server) pingRedis(ctx context.Context) error {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	return s.state.Ping(ctx, cfg.State.Redis)
}

func (s *Server) adminStatus() admin.Status {
	s.mu.Lock()
	routes, h := len(s.cfg.Routes), s.hash
	s.mu.Unlock()
	var inflight int64
	if g := s.current.Load(); g != nil {
		inflight = g.InFlight()
	}
	return admin.Status{Version: s.opts.Version, StartedAt: s.started, Uptime: time.Since(s.started).Round(time.Second).String(),
		ConfigHash: hex.EncodeToString(h[:]), ConfigFile: s.path, Routes: routes, InFlight: inflight, Reloads: s.reloads.get()}
}

func (s *Server) adminConfig() ([]byte, string) {
	s.mu.Lock()
	h := s.hash
	s.mu.Unlock()
	js := s.configJSON.Load()
	if js == nil {
		return nil, ""
	}
	return *js, hex.EncodeToString(h[:])
}

// applyYAML validates and applies a configuration sent through the admin
// API, all or nothing, and then writes it as the configuration file
// (atomically: a temporary file renamed over it), so a restart serves it.
func (s *Server) applyYAML(data []byte) error {
	return s.finishReload(s.reloadData(data, true))
}

// writeConfig replaces the configuration file with data atomically.
func (s *Server) writeConfig(data []byte) error {
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, ".moat-config-*")
	if err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	defer os.Remove(f.Name())
	mode := os.FileMode(0o600)
	if st, err := os.Stat(s.path); err == nil {
		mode = st.Mode().Perm()
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	if err := os.Rename(f.Name(), s.path); err != nil {
		return fmt.Errorf("writing the configuration: %w", err)
	}
	return nil
}

// routePostures lists every route with the protections active on it, and
// flags the gaps an operator should look at.
func (s *Server) routePostures() []admin.RoutePosture {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	out := make([]admin.RoutePosture, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		if r == nil {
			continue
		}
		p := admin.RoutePosture{Name: r.Name, Path: r.Path, Methods: r.Methods, Upstream: r.Upstream, Public: r.Public,
			CORS: r.CORS != nil || cfg.CORS != nil, Masking: r.Masking != nil, WAF: "off",
			Validation: []string{"payload_limits"}, Authn: []string{}, Authz: []string{}, Limits: []string{}}
		if r.Host != "" {
			p.Hosts = []string{r.Host}
		}
		if a := r.Auth; a != nil {
			p.Authn = slices.Clone(a.Authenticators)
			z := &a.Authorization
			for _, k := range []struct {
				on   bool
				name string
			}{{z.Roles != nil, "roles"}, {z.Scopes != nil, "scopes"}, {z.Methods != nil, "methods"}, {len(z.Policies) > 0, "policy"},
				{len(z.Owner) > 0, "owner"}, {z.Properties != nil, "properties"}, {z.AllowAnyAuthenticated, "any_authenticated"}} {
				if k.on {
					p.Authz = append(p.Authz, k.name)
				}
			}
		}
		if u := cfg.Upstreams[r.Upstream]; u != nil {
			p.Limits = append(p.Limits, u.RateLimits...)
		}
		p.Limits = append(p.Limits, r.RateLimits...)
		if r.Auth != nil {
			for name := range cfg.Plans {
				p.Limits = append(p.Limits, "plan:"+name)
			}
		}
		if r.WAF.IsOn() {
			p.WAF = "block"
			if r.WAF.Mode == "detect" {
				p.WAF = "detect"
			}
		}
		if r.Public && len(p.Limits) == 0 {
			p.Warnings = append(p.Warnings, "public route without a rate limit")
		}
		if r.Public && p.WAF == "off" {
			p.Warnings = append(p.Warnings, "public route without the WAF")
		}
		if slices.Contains(p.Authz, "any_authenticated") {
			p.Warnings = append(p.Warnings, "any authenticated principal may call it")
		}
		out = append(out, p)
	}
	return out
}

// adminBlocks gives the admin API the temporary blocks of the serving
// configuration's anomaly detection, looked up at every call so a reload
// that turns blocks on or off is followed.
type adminBlocks struct{ s *Server }

func (b adminBlocks) store() (anomaly.Blocker, error) {
	b.s.mu.Lock()
	cfg := b.s.cfg
	b.s.mu.Unlock()
	bl := b.s.state.AnomalyBlocker(cfg)
	if bl == nil {
		return nil, fmt.Errorf("anomaly blocks are off: %w", admin.ErrNotAvailable)
	}
	return bl, nil
}

func (b adminBlocks) Block(ctx context.Context, kind, subject string, until time.Time) error {
	bl, err := b.store()
	if err != nil {
		return err
	}
	return bl.Block(ctx, kind, subject, until)
}

func (b adminBlocks) Blocked(ctx context.Context, kind, subject string) (bool, time.Time, error) {
	bl, err := b.store()
	if err != nil {
		return false, time.Time{}, err
	}
	return bl.Blocked(ctx, kind, subject)
}

func (b adminBlocks) List(ctx context.Context) ([]anomaly.Block, error) {
	bl, err := b.store()
	if err != nil {
		return nil, err
	}
	return bl.List(ctx)
}

func (b adminBlocks) Unblock(ctx context.Context, kind, subject string) error {
	bl, err := b.store()
	if err != nil {
		return err
	}
	return bl.Unblock(ctx, kind, subject)
}

var _ admin.BlockStore = adminBlocks{}

// listenAdmin binds the admin listener; it is served beside the traffic
// listeners and never through them.
func (s *Server) listenAdmin() (net.Listener, error) {
	if s.admin == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", s.admin.Address())
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	s.adminAddr.Store(ln.Addr().String())
	return ln, nil
}

// AdminAddr returns the address the admin listener is bound to, or "".
func (s *Server) AdminAddr() string {
	v, _ := s.adminAddr.Load().(string)
	return v
}
