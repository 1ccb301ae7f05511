// Package server runs the gateway: it opens the listeners, serves the current
// compiled pipeline, reloads configuration all-or-nothing, and drains on
// shutdown.
package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/moat-gateway/moat/internal/admin"
	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/pipeline"
	"github.com/moat-gateway/moat/internal/telemetry"
	"github.com/moat-gateway/moat/internal/telemetry/metrics"
	"github.com/moat-gateway/moat/internal/telemetry/tracing"
	"github.com/moat-gateway/moat/internal/tlsx"
)

// Options adjusts Run for embedding (moat demo) and tests.
type Options struct {
	// Log receives process logs; nil means a logger built from the
	// configuration's log section, writing to stderr.
	Log *slog.Logger
	// Patch, if set, edits every configuration after it is loaded and
	// before it is validated into a pipeline (moat demo points the
	// bookstore upstream at its own port this way).
	Patch func(*config.Config)
	// Ready, if set, is called once every listener is accepting, with the
	// bound addresses in listener order.
	Ready func(addrs []net.Addr)
	// Reloaded, if set, is called after every reload attempt with its result.
	Reloaded func(err error)
	// NoSignals disables SIGHUP handling (tests run several servers in one
	// process and reload them with Server.Reload).
	NoSignals bool
	// Version is reported by the admin API.
	Version string
}

// Server serves one configuration file. Create it with Run.
type Server struct {
	path     string
	opts     Options
	log      *slog.Logger
	closeLog func() error      // flushes buffered log lines
	state    *pipeline.State   // rate-limit counters and connections, kept across reloads
	auditor  *audit.Auditor    // nil without an audit block; kept across reloads
	tracing  *tracing.Provider // nil with tracing off; kept across reloads
	lvl      *slog.LevelVar

	started    time.Time
	metrics    *metrics.Registry
	admin      *admin.Server // nil without an admin block
	adminKeys  keys.Store    // the admin API's key store, closed at exit
	adminAddr  atomic.Value  // string: the bound admin address
	configJSON atomic.Pointer[[]byte]
	reloads    reloadStats

	current atomic.Pointer[gateway.Gateway]
	mu      sync.Mutex // serialises reloads
	cfg     *config.Config
	hash    [32]byte
}

// New loads the configuration at path and builds its pipeline without
// opening any socket. Configuration problems are returned as *config.Error.
func New(path string, opts Options) (*Server, error) {
	s := &Server{path: path, opts: opts, lvl: new(slog.LevelVar)}
	cfg, data, err := s.load()
	if err != nil {
		return nil, err
	}
	s.log, s.closeLog = opts.Log, func() error { return nil }
	if s.log == nil {
		s.log, s.closeLog = telemetry.NewLogger(os.Stderr, cfg.Log.Format, s.lvl, cfg.Log.Sync)
	}
	telemetry.SetLevel(s.lvl, cfg.Log.Level)
	s.state = pipeline.NewState(s.log)
	if cfg.Audit != nil {
		a, err := audit.New(*cfg.Audit, audit.Options{Log: s.log.With("component", "audit"), BaseDir: filepath.Dir(path)})
		if err != nil {
			s.state.Close()
			s.closeLog()
			return nil, fmt.Errorf("starting audit: %w", err)
		}
		s.auditor = a
		s.state.SetAuditor(a)
	}
	tp, err := tracing.New(cfg.Tracing, s.log.With("component", "tracing"))
	if err != nil {
		s.closeAudit(cfg)
		s.state.Close()
		s.closeLog()
		return nil, fmt.Errorf("starting tracing: %w", err)
	}
	s.tracing = tp
	s.state.SetTracer(tp.Tracer())
	if err := s.setupObservability(cfg); err != nil {
		s.closeTracing()
		s.closeAudit(cfg)
		s.state.Close()
		s.closeLog()
		return nil, err
	}
	gw, err := pipeline.Build(cfg, s.log, s.state)
	if err != nil {
		s.closeTracing()
		s.closeAdminKeys()
		s.closeAudit(cfg)
		s.state.Close()
		s.closeLog()
		return nil, err
	}
	s.cfg, s.hash = cfg, sha256.Sum256(data)
	s.current.Store(gw)
	return s, nil
}

// Run is New followed by Server.Run.
func Run(ctx context.Context, path string, opts Options) error {
	s, err := New(path, opts)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run opens the listeners and serves until ctx is cancelled, then stops
// accepting and lets in-flight requests finish for server.shutdown_grace.
// SIGHUP (unless Options.NoSignals) and changes to the file reload it.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeLog()
	defer s.state.Close()
	defer func() { s.closeAudit(s.cfg) }() // after the last request has finished
	defer s.closeAdminKeys()
	defer s.closeTracing() // after the last request's spans
	s.auditor.Start()
	s.current.Load().Start()
	go releaseMemory()
	return s.serve(ctx, s.cfg)
}

// releaseMemory returns to the operating system the memory a configuration
// load left behind: parsing and building a large configuration allocates
// far more than the gateway keeps (10,000 routes: about 200 MB for 15 MB
// kept), and the runtime would otherwise give it back only slowly, so RSS
// would stay at the load's peak for minutes. It runs off the request path,
// once per load; the forced collection it implies costs milliseconds.
func releaseMemory() { debug.FreeOSMemory() }

// closeTracing exports the spans still queued, for at most a few seconds.
func (s *Server) closeTracing() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.tracing.Shutdown(ctx); err != nil {
		s.log.Warn("exporting the last spans failed", "error", err)
	}
}

func (s *Server) closeAdminKeys() {
	if s.adminKeys != nil {
		s.adminKeys.Close()
	}
}

// closeAudit delivers what the auditor holds, for at most audit.flush_timeout;
// what is left stays in the spool for the next start.
func (s *Server) closeAudit(cfg *config.Config) {
	if s.auditor == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Audit.FlushTimeout.D())
	defer cancel()
	if err := s.auditor.Close(ctx); err != nil {
		s.log.Error("audit delivery did not finish at shutdown; the rest is in the spool", "error", err)
	}
}

func (s *Server) load() (*config.Config, []byte, error) {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading configuration: %w", err)
	}
	cfg, err := config.Parse(s.path, data)
	if err != nil {
		return nil, data, err
	}
	if s.opts.Patch != nil {
		s.opts.Patch(cfg)
	}
	return cfg, data, nil
}

// ServeHTTP hands the request to the current pipeline.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.current.Load().ServeHTTP(w, r)
}

func (s *Server) serve(ctx context.Context, cfg *config.Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var (
		servers []*http.Server
		lns     []net.Listener
		addrs   []net.Addr
		closers []func()
	)
	cleanup := func() {
		for _, ln := range lns {
			ln.Close()
		}
		for _, c := range closers {
			c()
		}
	}
	for i := range cfg.Listeners {
		lc := &cfg.Listeners[i]
		srv, err := s.httpServer(cfg, lc)
		if err != nil {
			cleanup()
			return err
		}
		if lc.TLS != nil {
			m, err := tlsx.NewServerConfig(lc.TLS, s.log.With("listener", lc.Name))
			if err != nil {
				cleanup()
				return fmt.Errorf("listener %s: %w", lc.Name, err)
			}
			m.Start(ctx)
			closers = append(closers, func() { m.Close() })
			srv.TLSConfig = m.TLSConfig()
		}
		ln, err := net.Listen("tcp", lc.Address)
		if err != nil {
			cleanup()
			return fmt.Errorf("listener %s: %w", lc.Name, err)
		}
		ln = LimitListener(ln, cfg.Server.MaxConnections, s.log.With("listener", lc.Name))
		lns = append(lns, ln)
		servers = append(servers, srv)
		addrs = append(addrs, ln.Addr())
	}

	adminLn, err := s.listenAdmin()
	if err != nil {
		cleanup()
		return err
	}
	errc := make(chan error, len(servers)+1)
	if adminLn != nil {
		s.log.Info("admin listening", "address", adminLn.Addr().String())
		go func() {
			if err := s.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("admin listener: %w", err)
			}
		}()
	}
	for i, srv := range servers {
		ln, lc := lns[i], &cfg.Listeners[i]
		s.log.Info("listening", "listener", lc.Name, "address", ln.Addr().String(), "tls", lc.TLS != nil,
			"mtls", lc.TLS != nil && lc.TLS.ClientAuth != nil, "redirect_https", lc.RedirectHTTPS != nil)
		go func() {
			var err error
			if srv.TLSConfig != nil {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("listener %s: %w", lc.Name, err)
			}
		}()
	}
	// Reload triggers are in place before Ready, so that a SIGHUP or a
	// change to the file right after it is not lost.
	hup := make(chan os.Signal, 1)
	if !s.opts.NoSignals {
		signal.Notify(hup, syscall.SIGHUP)
	}
	fw := s.watchDir()
	if s.opts.Ready != nil {
		s.opts.Ready(addrs)
	}
	go s.watch(ctx, hup, fw)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		s.log.Error("listener failed", "error", runErr)
	}

	grace := cfg.Server.ShutdownGrace.D()
	s.mu.Lock()
	grace = s.cfg.Server.ShutdownGrace.D()
	s.mu.Unlock()
	s.log.Info("shutting down", "grace", grace.String(), "in_flight", s.current.Load().InFlight())
	sctx, scancel := context.WithTimeout(context.Background(), grace)
	defer scancel()
	var wg sync.WaitGroup
	if adminLn != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.admin.Shutdown(sctx)
		}()
	}
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(sctx); err != nil {
				s.log.Warn("grace period over; closing remaining connections", "error", err)
				srv.Close()
			}
		}()
	}
	wg.Wait()
	s.current.Load().Close(0)
	for _, c := range closers {
		c()
	}
	s.log.Info("stopped")
	return runErr
}

func (s *Server) httpServer(cfg *config.Config, lc *config.Listener) (*http.Server, error) {
	sc := &cfg.Server
	maxHeader := int(sc.MaxHeaderBytes)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: sc.ReadHeaderTimeout.D(),
		ReadTimeout:       sc.ReadTimeout.D(),
		WriteTimeout:      sc.WriteTimeout.D(),
		IdleTimeout:       sc.IdleTimeout.D(),
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	li := &gateway.Listener{Name: lc.Name}
	if lc.TLS != nil && !lc.TLS.HSTS.Disabled {
		li.HSTS, _ = exposure.HSTSValue(lc.TLS.HSTS) // checked by pipeline.Build
	}
	srv.BaseContext = func(net.Listener) context.Context { return gateway.WithListener(context.Background(), li) }
	if r := lc.RedirectHTTPS; r != nil {
		srv.Handler = redirectHandler(r.Port)
	}
	srv.Handler = headerLimit(srv.Handler, maxHeader)
	if lc.H2C {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}
	return srv, nil
}

// headerLimit answers 431, as net/http does, to requests whose request line
// and headers are larger than limit bytes, counted as an HTTP/1.1 client writes
// them. net/http cannot enforce server.max_header_bytes by itself: on HTTP/1
// it reads up to MaxHeaderBytes plus 4 KiB of buffer slack, and on HTTP/2 it
// advertises MaxHeaderBytes plus 320 bytes in HPACK units (32 bytes per
// field). With MaxHeaderBytes set to the configured value it is the backstop
// that bounds memory, and this is the exact check, the same for both.
func headerLimit(h http.Handler, limit int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerSize(r) > limit {
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			http.Error(w, "431 Request Header Fields Too Large", http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// headerSize returns the size of r's request line and header section as an
// HTTP/1.1 client would write them.
func headerSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + 2 // request line
	n += len("Host: \r\n") + len(r.Host)                              // net/http moves Host out of Header
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n + 2 // the empty line
}

// redirectHandler answers every request with a permanent redirect to the
// same host and path over HTTPS.
func redirectHandler(port int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" || !validHostChars(host) {
			http.Error(w, "invalid Host", http.StatusBadRequest)
			return
		}
		target := "https://" + host
		if strings.Contains(host, ":") {
			target = "https://[" + host + "]" // IPv6 literal
		}
		if port != 443 {
			target = "https://" + net.JoinHostPort(host, strconv.Itoa(port))
		}
		w.Header().Set("Location", target+r.URL.RequestURI())
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

func validHostChars(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// Reload loads the configuration file again and, if it is valid and builds,
// swaps the new pipeline in atomically. On any problem the old pipeline keeps
// serving and the error is returned and logged with every problem.
func (s *Server) Reload() error { return s.finishReload(s.reload()) }

// finishReload logs, counts and reports a reload attempt and returns its
// result; an unchanged configuration is no attempt and reports success.
func (s *Server) finishReload(err error) error {
	if errors.Is(err, errUnchanged) {
		if s.opts.Reloaded != nil {
			s.opts.Reloaded(nil)
		}
		return nil
	}
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			probs := make([]string, len(ce.Problems))
			for i, p := range ce.Problems {
				probs[i] = p.String()
			}
			s.log.Error("reload failed; the previous configuration keeps serving", "problems", probs)
		} else {
			s.log.Error("reload failed; the previous configuration keeps serving", "error", err)
		}
	}
	s.reloads.add(time.Now(), err)
	s.metrics.ObserveReload(err)
	go releaseMemory()
	if s.opts.Reloaded != nil {
		s.opts.Reloaded(err)
	}
	return err
}

// errUnchanged is the result of a reload of an unchanged file: nothing to do.
var errUnchanged = errors.New("configuration unchanged")

func (s *Server) reload() error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		err = fmt.Errorf("reading configuration: %w", err)
		ev := audit.ConfigReload(time.Now(), s.path, "", err)
		s.auditor.Record(&ev)
		return err
	}
	return s.reloadData(data, false)
}

// reloadData validates data as the configuration and, when it builds,
// swaps it in; persist also writes it as the configuration file first
// (the admin API). Every attempt on a changed configuration is audited.
func (s *Server) reloadData(data []byte, persist bool) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := sha256.Sum256(data)
	if h == s.hash {
		s.log.Debug("configuration unchanged; nothing to reload")
		return errUnchanged
	}
	defer func() { // every reload attempt, applied or refused, is audited
		ev := audit.ConfigReload(time.Now(), s.path, hex.EncodeToString(h[:]), err)
		s.auditor.Record(&ev)
	}()
	cfg, err := config.Parse(s.path, data)
	if err != nil {
		return err
	}
	if s.opts.Patch != nil {
		s.opts.Patch(cfg)
	}
	if a, b := restartKey(s.cfg), restartKey(cfg); a != b {
		return errors.New("listeners, server timeouts, header or connection limits, log format, log sync, audit, admin or tracing changed: these need a restart; nothing was applied")
	}
	gw, err := pipeline.Build(cfg, s.log, s.state)
	if err != nil {
		return err
	}
	if persist {
		if err := s.writeConfig(data); err != nil {
			gw.Close(0)
			return err
		}
	}
	gw.Start()
	old := s.current.Swap(gw)
	s.cfg, s.hash = cfg, h
	s.metricsFor(cfg)
	telemetry.SetLevel(s.lvl, cfg.Log.Level)
	grace := cfg.Server.ShutdownGrace.D()
	go old.Close(grace)
	s.log.Info("configuration reloaded", "routes", len(cfg.Routes), "upstreams", len(cfg.Upstreams))
	return nil
}

// restartKey summarises the settings that are bound to open sockets and
// cannot change on reload.
func restartKey(c *config.Config) string {
	b, _ := json.Marshal(struct {
		L           []config.Listener
		RH, R, W, I config.Duration
		MH          config.Size
		MC          int
		F           string
		S           bool
		A           *config.Audit
		AK          [32]byte
		Adm         *config.Admin
		Tr          *config.Tracing
	}{c.Listeners, c.Server.ReadHeaderTimeout, c.Server.ReadTimeout, c.Server.WriteTimeout, c.Server.IdleTimeout, c.Server.MaxHeaderBytes, c.Server.MaxConnections, c.Log.Format, c.Log.Sync,
		c.Audit, secretsHash(c), c.Admin, c.Tracing})
	return string(b)
}

// secretsHash stands for the secrets of the restart-only blocks (audit key,
// tracing export headers) in restartKey: secrets marshal as REDACTED, so a
// changed one would otherwise go unnoticed.
func secretsHash(c *config.Config) [32]byte {
	h := sha256.New()
	if c.Audit != nil {
		h.Write([]byte(c.Audit.Key.Value()))
	}
	if c.Tracing != nil {
		names := make([]string, 0, len(c.Tracing.Headers))
		for k := range c.Tracing.Headers {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(h, "\x00%s\x00%s", k, c.Tracing.Headers[k].Value())
		}
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// watchDir starts watching the directory of the configuration file
// (editors and Kubernetes replace files by rename). It returns nil, logging
// why if server.watch_config is on, when the file cannot be watched.
func (s *Server) watchDir() *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		if s.watchConfig() {
			s.log.Warn("cannot watch the configuration file; reload with SIGHUP", "error", err)
		}
		return nil
	}
	return w
}

// watch reloads on hup and, while server.watch_config is on in the serving
// configuration, when fw (which may be nil) reports a change to the file.
// The directory is watched whatever the setting, so that a reload can turn
// it on or off. watch stops the signals and closes fw when ctx ends.
func (s *Server) watch(ctx context.Context, hup chan os.Signal, fw *fsnotify.Watcher) {
	defer signal.Stop(hup)
	var (
		events <-chan fsnotify.Event
		errs   <-chan error
	)
	if fw != nil {
		defer fw.Close()
		events, errs = fw.Events, fw.Errors
	}
	// A change between New reading the file and the watch being set.
	if s.watchConfig() && s.changedOnDisk() {
		s.Reload()
	}
	var debounce <-chan time.Time
	base := filepath.Base(s.path)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			s.log.Info("SIGHUP: reloading configuration")
			s.Reload()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if (filepath.Base(ev.Name) == base || filepath.Base(ev.Name) == "..data") && s.watchConfig() {
				debounce = time.After(150 * time.Millisecond)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// fsnotify stops delivering events until its errors are read.
			// Events may have been lost (queue overflow): look anyway; an
			// unchanged file reloads nothing.
			if s.watchConfig() {
				s.log.Warn("configuration file watcher error", "error", err)
				debounce = time.After(150 * time.Millisecond)
			}
		case <-debounce:
			debounce = nil
			if s.watchConfig() {
				s.Reload()
			}
		}
	}
}

// changedOnDisk reports whether the file differs from the configuration
// serving; a file that cannot be read counts as unchanged.
func (s *Server) changedOnDisk() bool {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return false
	}
	h := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	return h != s.hash
}

// watchConfig reports whether the serving configuration asks for reloads
// when the file changes.
func (s *Server) watchConfig() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.cfg.Server.WatchConfig
}
