// Package admin serves the admin listener: a JSON API to inspect the gateway,
// apply configuration and manage API keys, the Prometheus metrics, and the
// liveness and readiness endpoints (see docs/admin.md). It is its own
// http.Server on its own socket; nothing in it is reachable through a traffic
// listener.
//
// Every request is checked in this order: the Host header (DNS rebinding),
// the Origin of state-changing requests (CSRF), the login limit (a client
// address locked out after repeated failed authentications gets 429), then
// the caller's identity (a bearer token whose SHA-256 is configured, or a
// verified client certificate) and its role. The health endpoints skip the
// login limit and the identity check only.
package admin

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/anomaly"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/tlsx"
)

// Reason IDs of the admin listener's refusals, in the reason_id of its
// problem documents and the detail of its audit events.
const (
	ReasonHostNotAllowed       = "admin_host_not_allowed"       // 403: Host is not in allowed_hosts
	ReasonOriginNotAllowed     = "admin_origin_not_allowed"     // 403: a state-changing request from a foreign Origin or cross-site fetch
	ReasonUnauthenticated      = "admin_unauthenticated"        // 401: no token, or a token or certificate that is not configured
	ReasonLockedOut            = "admin_locked_out"             // 429: the client address is locked out after repeated failed authentications (admin.login_limit)
	ReasonForbidden            = "admin_forbidden"              // 403: a read identity on a write endpoint
	ReasonNotFound             = "admin_not_found"              // 404: no such endpoint or key
	ReasonMethodNotAllowed     = "admin_method_not_allowed"     // 405
	ReasonBadRequest           = "admin_bad_request"            // 400: malformed JSON body or query parameter
	ReasonBodyTooLarge         = "admin_body_too_large"         // 413
	ReasonUnsupportedMediaType = "admin_unsupported_media_type" // 415: PUT /api/v1/config without a YAML content type, or a JSON body without application/json
	ReasonPreconditionRequired = "admin_precondition_required"  // 428: PUT /api/v1/config without If-Match
	ReasonPreconditionFailed   = "admin_precondition_failed"    // 412: If-Match does not name the serving configuration
	ReasonConfigInvalid        = "admin_config_invalid"         // 422: the configuration has problems (listed in the body)
	ReasonReloadFailed         = "admin_reload_failed"          // 409: the configuration is valid but could not be applied
	ReasonKeyConflict          = "admin_key_conflict"           // 409: rotating a revoked or expired key
	ReasonNotAvailable         = "admin_not_available"          // 501: the gateway did not wire this endpoint (no API key store, no reload)
	ReasonNotReady             = "admin_not_ready"              // 503: a readiness check failed
	ReasonInternalError        = "admin_internal_error"         // 500: a dependency failed (key store, reload)
)

// Status is what GET /api/v1/status reports. Deps.Status fills it; the
// server sets Version (from Deps.Version when empty) and Uptime.
type Status struct {
	Version    string         `json:"version"`
	StartedAt  time.Time      `json:"started_at"`
	Uptime     string         `json:"uptime"`
	ConfigHash string         `json:"config_hash"` // hex SHA-256 of the configuration file serving
	ConfigFile string         `json:"config_file,omitempty"`
	Routes     int            `json:"routes"`
	InFlight   int64          `json:"in_flight"`
	Reloads    ReloadCounters `json:"reloads"`
}

// ReloadCounters count configuration reload attempts since start.
type ReloadCounters struct {
	Succeeded  uint64    `json:"succeeded"`
	Failed     uint64    `json:"failed"`
	LastAt     time.Time `json:"last_at,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	LastResult string    `json:"last_result,omitempty"` // success or failure
}

// RoutePosture is one route and the protections active on it, as GET
// /api/v1/routes reports it. The lead fills it from the configuration.
type RoutePosture struct {
	Name       string   `json:"name"`
	Hosts      []string `json:"hosts,omitempty"`
	Path       string   `json:"path"`
	Methods    []string `json:"methods,omitempty"`
	Upstream   string   `json:"upstream,omitempty"`
	Public     bool     `json:"public"`     // no authentication required
	Authn      []string `json:"authn"`      // authenticator names tried
	Authz      []string `json:"authz"`      // kinds of rule: roles, scopes, policy, owner, properties
	Limits     []string `json:"limits"`     // rate-limit, quota and concurrency names
	Validation []string `json:"validation"` // openapi, payload_limits
	WAF        string   `json:"waf"`        // off, block or detect
	Masking    bool     `json:"masking"`    // response masking is on
	CORS       bool     `json:"cors"`
	Warnings   []string `json:"warnings,omitempty"` // posture gaps the lead flags, such as a public route without limits
}

// ReadyCheck is one readiness check of /readyz, such as a Redis PING. Check
// gets a context bounded by admin.readiness_timeout and returns nil when the
// dependency is usable.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// AuditFunc records an admin action: action names it (config_apply,
// key_create, key_revoke, key_rotate, block_add, block_remove,
// admin_auth_failure, admin_forbidden, admin_lockout, admin_locked_out),
// actor is the authenticated administrator or nil, from the client address,
// msg says what was done without secrets, err is nil when the action
// succeeded. Wire it to audit.AdminAction and (*audit.Auditor).Record.
type AuditFunc func(action string, actor *gateway.Principal, from netip.Addr, msg string, err error)

// Deps is what the admin server reads from and acts on. Every function must
// be safe for concurrent use. Nil fields turn their endpoints off as noted.
type Deps struct {
	Version string
	// Status reports the gateway's state; nil answers 501 on /api/v1/status.
	Status func() Status
	// Config returns the serving configuration as redacted JSON (see
	// ConfigJSON) and its ETag: the hex SHA-256 of the configuration file.
	// nil answers 501 on /api/v1/config. It also tells /readyz whether a
	// configuration is loaded (a nil body is "not loaded").
	Config func() (json []byte, etag string)
	// Reload validates and applies a configuration, all or nothing, and
	// persists it as the configuration file; problems come back as
	// *config.Error. nil answers 501 on PUT /api/v1/config.
	Reload func(yaml []byte) error
	// Routes lists the routes and their protections; nil answers 501.
	Routes func() []RoutePosture
	// Keys is the API key store; nil answers 501 on the key endpoints.
	Keys keys.Store
	// Alerts returns up to limit recent anomaly alerts, newest first (all
	// kept when limit <= 0), such as (*anomaly.Detector).RecentAlerts or
	// (*anomaly.AlertRing).Recent; nil answers 501 on /api/v1/alerts.
	Alerts func(limit int) []anomaly.Alert
	// Blocks is the anomaly block store the block stage reads; nil answers
	// 501 on the /api/v1/blocks endpoints. A store whose methods return an
	// error wrapping ErrNotAvailable (the serving configuration has no
	// blocks) answers 501 too.
	Blocks BlockStore
	// BlockIPv6Prefix is anomaly.ipv6_prefix: the length of the IPv6
	// prefixes blocks are written for (default 64).
	BlockIPv6Prefix int
	// Metrics serves /metrics; nil answers 404 there.
	Metrics http.Handler
	// Ready are the readiness checks of /readyz besides "configuration loaded".
	Ready []ReadyCheck
	// Audit records admin actions; nil records nothing.
	Audit AuditFunc
	// Log receives the server's logs; nil discards them.
	Log *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Server is the admin listener. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg     config.Admin
	deps    Deps
	log     *slog.Logger
	now     func() time.Time
	started time.Time

	hosts   map[string]bool
	tokens  []token
	clients map[string]string // certificate identity -> role
	events  *Ring
	limit   *loginLimiter // nil when admin.login_limit is disabled

	authFailures atomic.Uint64 // 401 answers, for AuthStats

	tlsMgr  *tlsx.Manager
	httpSrv *http.Server
	applyMu sync.Mutex // serialises PUT /api/v1/config: If-Match check and reload
	routes  []endpoint
}

// New builds the admin server from a defaulted, validated admin block. It
// loads the TLS files when tls is set and returns an error for a
// configuration Validate refuses. It opens no socket.
func New(cfg config.Admin, deps Deps) (*Server, error) {
	cfg.ApplyDefaults()
	if ps := cfg.Validate(); len(ps) > 0 {
		for i := range ps {
			ps[i].Path = "admin." + ps[i].Path
		}
		return nil, &config.Error{Problems: ps}
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log, now: deps.Now, hosts: map[string]bool{}, clients: map[string]string{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.started = s.now()
	for _, h := range cfg.AllowedHosts {
		s.hosts[normalizeHost(h)] = true
	}
	for _, t := range cfg.Tokens {
		tk, err := newToken(t)
		if err != nil {
			return nil, err
		}
		s.tokens = append(s.tokens, tk)
	}
	for _, c := range cfg.Clients {
		s.clients[c.Identity] = c.Role
	}
	s.events = NewRing(cfg.EventsBuffer)
	lim, err := newLoginLimiter(cfg.LoginLimit)
	if err != nil {
		return nil, err
	}
	s.limit = lim
	if cfg.TLS != nil {
		m, err := tlsx.NewServerConfig(cfg.TLS, s.log)
		if err != nil {
			return nil, fmt.Errorf("admin listener: %w", err)
		}
		s.tlsMgr = m
	}
	s.routes = append(s.endpoints(), s.uiEndpoints()...)
	s.httpSrv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.tlsMgr != nil {
		s.httpSrv.TLSConfig = s.tlsMgr.TLSConfig()
	}
	return s, nil
}

// Address returns the configured listen address.
func (s *Server) Address() string { return s.cfg.Address }

// Events returns the ring of recent denials RecordEvent feeds.
func (s *Server) Events() *Ring { return s.events }

// RecordEvent keeps ex in the recent-events buffer if it was denied; call it
// from the gateway's finish hook. It is cheap for allowed requests and keeps
// no reference to ex.
func (s *Server) RecordEvent(ex *gateway.Exchange) { s.events.Record(ex) }

// Serve accepts connections on ln until Shutdown; it serves TLS when the
// admin block has tls. It returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.tlsMgr != nil {
		return s.httpSrv.Serve(tls.NewListener(ln, s.httpSrv.TLSConfig))
	}
	return s.httpSrv.Serve(ln)
}

// ListenAndServe listens on the configured address and serves until ctx is
// done, then shuts down, giving requests in flight 5 seconds. It returns nil
// after a shutdown caused by ctx, or the listen or serve error.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Address)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	s.log.Info("admin listener", "address", ln.Addr().String(), "tls", s.tlsMgr != nil)
	if s.tlsMgr != nil {
		s.tlsMgr.Start(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Shutdown stops accepting, waits for requests in flight until ctx ends, and
// closes the certificate watcher.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.httpSrv.Shutdown(ctx)
	if s.tlsMgr != nil {
		s.tlsMgr.Close()
	}
	return err
}

// endpoint is one route of the admin API.
type endpoint struct {
	method  string
	path    string // exact, or with one {id} segment
	role    string // "" for unauthenticated, else the least role needed
	handler func(w http.ResponseWriter, r *http.Request, c *call)
}

// call is one authenticated request.
type call struct {
	actor  *gateway.Principal // nil on unauthenticated endpoints
	from   netip.Addr
	id     string            // the {id} path segment
	params map[string]string // every {name} path segment, unescaped
}

func (s *Server) endpoints() []endpoint {
	read, write := config.AdminRoleRead, config.AdminRoleWrite
	metricsRole := read
	if s.cfg.PublicMetrics {
		metricsRole = ""
	}
	return []endpoint{
		{"GET", "/healthz", "", s.healthz},
		{"GET", "/readyz", "", s.readyz},
		{"GET", "/metrics", metricsRole, s.metrics},
		{"GET", "/api/v1/openapi.json", read, s.openapi},
		{"GET", "/api/v1/status", read, s.status},
		{"GET", "/api/v1/config", read, s.getConfig},
		{"PUT", "/api/v1/config", write, s.putConfig},
		{"GET", "/api/v1/routes", read, s.listRoutes},
		{"GET", "/api/v1/keys", read, s.listKeys},
		{"POST", "/api/v1/keys", write, s.createKey},
		{"GET", "/api/v1/keys/{id}", read, s.getKey},
		{"POST", "/api/v1/keys/{id}/revoke", write, s.revokeKey},
		{"POST", "/api/v1/keys/{id}/rotate", write, s.rotateKey},
		{"GET", "/api/v1/events", read, s.listEvents},
		{"GET", "/api/v1/alerts", read, s.listAlerts},
		{"GET", "/api/v1/blocks", read, s.listBlocks},
		{"POST", "/api/v1/blocks", write, s.addBlock},
		{"DELETE", "/api/v1/blocks/{kind}/{subject}", write, s.removeBlock},
	}
}

// match finds the endpoints for the escaped path; params holds the
// unescaped {name} segments of the last match (the endpoints of one path
// share their pattern).
func (s *Server) match(escapedPath string) (eps []*endpoint, params map[string]string) {
	for i := range s.routes {
		e := &s.routes[i]
		if v, ok := matchPath(e.path, escapedPath); ok {
			eps, params = append(eps, e), v
		}
	}
	return eps, params
}

// matchPath matches an escaped path against a pattern whose {name}
// segments match one non-empty segment each; the segment is unescaped, so
// a parameter may hold an escaped slash (%2F). Nothing else is unescaped
// before comparing, so an escaped literal segment does not match.
func matchPath(pattern, escapedPath string) (map[string]string, bool) {
	if !strings.Contains(pattern, "{") {
		return nil, pattern == escapedPath
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(escapedPath, "/")
	if len(ps) != len(xs) {
		return nil, false
	}
	var params map[string]string
	for i, p := range ps {
		name, isParam := strings.CutPrefix(p, "{")
		if !isParam {
			if p != xs[i] {
				return nil, false
			}
			continue
		}
		v, err := url.PathUnescape(xs[i])
		if err != nil || v == "" {
			return nil, false
		}
		if params == nil {
			params = map[string]string{}
		}
		params[strings.TrimSuffix(name, "}")] = v
	}
	return params, true
}

// ServeHTTP checks the Host, the Origin, the login limit, the caller's
// identity and role, in that order, then runs the endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	from := remoteAddr(r)
	if !s.hostAllowed(r.Host) {
		s.problem(w, http.StatusForbidden, ReasonHostNotAllowed, "Host "+quoteTrim(r.Host)+" is not in admin.allowed_hosts", nil)
		return
	}
	if !safeMethod(r.Method) && !s.originAllowed(r) {
		s.problem(w, http.StatusForbidden, ReasonOriginNotAllowed, "cross-origin state-changing requests are refused", nil)
		return
	}
	eps, params := s.match(r.URL.EscapedPath())
	if len(eps) == 0 {
		s.problem(w, http.StatusNotFound, ReasonNotFound, "no such endpoint", nil)
		return
	}
	var ep *endpoint
	allow := make([]string, 0, len(eps))
	for _, e := range eps {
		allow = append(allow, e.method)
		if e.method == r.Method || (r.Method == http.MethodHead && e.method == http.MethodGet) {
			ep = e
		}
	}
	if ep == nil {
		h.Set("Allow", strings.Join(allow, ", "))
		s.problem(w, http.StatusMethodNotAllowed, ReasonMethodNotAllowed, "", nil)
		return
	}
	c := &call{from: from, id: params["id"], params: params}
	if ep.role != "" {
		if s.refuseLockedOut(w, r, from) {
			return
		}
		actor, err := s.authenticate(r)
		if err != nil {
			s.audit("admin_auth_failure", nil, from, r.Method+" "+r.URL.Path, err)
			s.authFailed(from, err)
			h.Set("WWW-Authenticate", `Bearer realm="moat-admin"`)
			s.problem(w, http.StatusUnauthorized, ReasonUnauthenticated, "", nil)
			return
		}
		if !roleAllows(actor.Roles[0], ep.role) {
			s.audit("admin_forbidden", actor, from, r.Method+" "+r.URL.Path, errors.New("role "+actor.Roles[0]+" may not "+r.Method+" "+ep.path))
			s.problem(w, http.StatusForbidden, ReasonForbidden, "this endpoint needs the "+ep.role+" role", nil)
			return
		}
		c.actor = actor
	}
	ep.handler(w, r, c)
}

// audit calls Deps.Audit if set.
func (s *Server) audit(action string, actor *gateway.Principal, from netip.Addr, msg string, err error) {
	if s.deps.Audit != nil {
		s.deps.Audit(action, actor, from, msg, err)
	}
}

// problem writes an RFC 9457 problem document. detail is for operators (the
// admin API's callers are); extra adds members.
func (s *Server) problem(w http.ResponseWriter, status int, reason, detail string, extra map[string]any) {
	body := map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "reason_id": reason}
	if detail != "" {
		body["detail"] = detail
	}
	for k, v := range extra {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", gateway.ProblemContentType)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// writeJSON answers v as JSON with status.
func (s *Server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("admin: encoding response", "path", r.URL.Path, "error", err)
		s.problem(w, http.StatusInternalServerError, ReasonInternalError, "", nil)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(append(b, '\n'))
	}
}

func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// quoteTrim quotes s, cut to 100 bytes, for a problem detail.
func quoteTrim(s string) string {
	if len(s) > 100 {
		s = s[:100]
	}
	return fmt.Sprintf("%q", s)
}
