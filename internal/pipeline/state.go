package pipeline

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/moat-gateway/moat/internal/anomaly"
	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/ratelimit"
	"github.com/moat-gateway/moat/internal/validate/openapi"
)

// State is what outlives one configuration: rate-limit counters and Redis
// connections. The server creates one State and hands it to every Build, so a
// reload keeps every counter. A State is safe for concurrent use; Close
// releases it when the process stops.
type State struct {
	log *slog.Logger

	mu       sync.Mutex
	inflight *ratelimit.Concurrency
	memory   *ratelimit.Memory
	redis    map[string]*sharedStore    // by connection settings
	keys     map[string]*lazyKeys       // API key caches by store
	quotas   *ratelimit.QuotaFile       // saves the memory store's quotas, once a quota needs it
	quotasAt string                     // its path
	auditor  *audit.Auditor             // records every request; owned by the server
	anomaly  map[string]*anomalyRuntime // detectors by configuration, so a reload keeps their windows

	observers []func(*gateway.Exchange) // called with every finished request (SetObservers)
	shadow    *openapi.ShadowReport     // undocumented endpoints seen in traffic
	tracer    gateway.Tracer            // nil: tracing off
	alerts    *anomaly.AlertRing        // recent anomaly alerts, kept across reloads

	// dial, when set, opens every upstream connection instead of TCP (an
	// in-process upstream for the pipeline benchmarks).
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// upstreamOptions are the proxy options every upstream of a Build gets from
// the State.
func (s *State) upstreamOptions() []proxy.Option {
	if s == nil || s.dial == nil {
		return nil
	}
	return []proxy.Option{proxy.WithDialContext(s.dial)}
}

// RecentAlerts returns up to limit recent anomaly alerts, newest first.
func (s *State) RecentAlerts(limit int) []anomaly.Alert {
	return s.alertRing().Recent(limit)
}

func (s *State) alertRing() *anomaly.AlertRing {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.alerts == nil {
		s.alerts = anomaly.NewAlertRing(0)
	}
	return s.alerts
}

// AnomalyBlocker returns the block store of c's anomaly configuration (the
// one its block stages use), or nil when blocks are off.
func (s *State) AnomalyBlocker(c *config.Config) anomaly.Blocker {
	if c == nil || c.Anomaly == nil || !c.Anomaly.Block.Enabled {
		return nil
	}
	id, _ := json.Marshal(c.Anomaly)
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt := s.anomaly[string(id)]; rt != nil {
		return rt.blocker
	}
	return nil
}

// SetTracer makes every Gateway built from now on trace requests with t.
func (s *State) SetTracer(t gateway.Tracer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tracer = t
}

// Tracer returns the tracer set with SetTracer, or nil.
func (s *State) Tracer() gateway.Tracer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tracer
}

// Shadow returns the process's shadow API report, created on first use, so
// that what it has seen survives reloads.
func (s *State) Shadow() *openapi.ShadowReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shadow == nil {
		s.shadow = openapi.NewShadowReport(10000, nil)
	}
	return s.shadow
}

// anomalyRuntime is the anomaly detection of one anomaly configuration.
type anomalyRuntime struct {
	detector *anomaly.Detector
	alerter  *anomaly.Alerter
	blocker  anomaly.Blocker // nil without blocks
	start    sync.Once
}

// anomalyFor returns the detection for cfg, created on first use; the same
// settings (a reload that did not change them) get the same detector, so
// its windows and baselines go on. Nothing starts until Start.
func (s *State) anomalyFor(c *config.Config) (*anomalyRuntime, error) {
	id, _ := json.Marshal(c.Anomaly)
	s.mu.Lock()
	rt, ok := s.anomaly[string(id)]
	s.mu.Unlock()
	if ok {
		return rt, nil
	}
	var blocker anomaly.Blocker
	if c.Anomaly.Block.Enabled {
		if c.State.Redis != nil {
			st, err := s.sharedEntry(c.State.Redis)
			if err != nil {
				return nil, err
			}
			blocker = anomaly.NewRedis(st.client, anomaly.RedisOptions{CacheTTL: c.Anomaly.Block.CacheTTL.D()})
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt, ok := s.anomaly[string(id)]; ok { // made meanwhile by another build
		return rt, nil
	}
	if c.Anomaly.Block.Enabled && blocker == nil {
		blocker = anomaly.NewMemory(0, nil)
	}
	log := s.log.With("component", "anomaly")
	al := anomaly.NewAlerter(&c.Anomaly.Alerts, anomaly.AlerterOptions{Log: log})
	rt = &anomalyRuntime{alerter: al, blocker: blocker}
	if s.alerts == nil {
		s.alerts = anomaly.NewAlertRing(0)
	}
	rt.detector = anomaly.New(c.Anomaly, anomaly.Options{Notifier: al, Blocker: blocker, Log: log, Recent: s.alerts})
	if s.anomaly == nil {
		s.anomaly = map[string]*anomalyRuntime{}
	}
	s.anomaly[string(id)] = rt
	return rt, nil
}

// Start starts the detector and its alert delivery, once.
func (rt *anomalyRuntime) Start() {
	rt.start.Do(func() {
		rt.alerter.Start()
		rt.detector.Start()
	})
}

func (rt *anomalyRuntime) close() {
	rt.detector.Close()
	rt.alerter.Close(10 * time.Second)
}

// SetObservers sets functions every Gateway built from now on calls with
// each finished request, after the audit record (metrics, the admin API's
// recent events). They must be cheap and must not keep the exchange.
func (s *State) SetObservers(fns ...func(*gateway.Exchange)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.observers = fns
}

func (s *State) observerList() []func(*gateway.Exchange) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observers
}

// SetAuditor makes every Gateway built from now on record each finished
// request with a. The server owns a: it starts and closes it.
func (s *State) SetAuditor(a *audit.Auditor) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auditor = a
}

// Auditor returns the auditor set with SetAuditor, or nil.
func (s *State) Auditor() *audit.Auditor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auditor
}

type sharedStore struct {
	client redis.UniversalClient
	store  *ratelimit.Guarded
}

// NewState returns an empty State; stores are created when a configuration
// first needs them.
func NewState(log *slog.Logger) *State {
	return &State{log: log, redis: map[string]*sharedStore{}, keys: map[string]*lazyKeys{}}
}

// InFlight returns the process's in-flight counters. Requests that started
// on a previous configuration release into the same counters.
func (s *State) InFlight() *ratelimit.Concurrency {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight == nil {
		s.inflight = ratelimit.NewConcurrency()
	}
	return s.inflight
}

// Memory returns the process's in-memory limiter store.
func (s *State) Memory() *ratelimit.Memory {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.memory == nil {
		s.memory = ratelimit.NewMemory(ratelimit.MemoryOptions{})
	}
	return s.memory
}

// persistQuotas makes the memory store's quotas survive restarts by saving
// them in the bbolt file at path, opened on first use and kept for the
// life of the process; a reload cannot move it.
func (s *State) persistQuotas(path string) error {
	mem := s.Memory()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.anomaly {
		rt.close()
	}
	s.anomaly = nil
	if s.quotas != nil {
		if path != s.quotasAt {
			return fmt.Errorf("state.quotas_file changed from %s to %s: moving it needs a restart", s.quotasAt, path)
		}
		return nil
	}
	f, err := ratelimit.OpenQuotaFile(path, mem, ratelimit.QuotaFileOptions{Log: s.log.With("component", "quotas")})
	if err != nil {
		return err
	}
	s.quotas, s.quotasAt = f, path
	return nil
}

// shared returns the Redis-backed store for cfg, creating the client on first
// use. go-redis connects lazily, so this opens no socket: moat validate and
// a failed reload contact no server.
func (s *State) shared(cfg *config.Redis) (ratelimit.Store, error) {
	st, err := s.sharedEntry(cfg)
	if err != nil {
		return nil, err
	}
	return st.store, nil
}

// sharedEntry returns the Redis client and guarded store for cfg, creating
// them on first use.
func (s *State) sharedEntry(cfg *config.Redis) (*sharedStore, error) {
	id, _ := json.Marshal(struct {
		A          []string
		M, U, P, C string
		D, PS      int
		T, ST      bool
		B          config.Duration
	}{cfg.Addresses, cfg.MasterName, cfg.Username, cfg.Password.Value(), cfg.CAFile, cfg.DB, cfg.PoolSize, cfg.TLS, *cfg.ServerTime, cfg.Budget})
	key := string(id)
	local := s.Memory()
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.redis[key]; ok {
		return st, nil
	}
	opts := &redis.UniversalOptions{
		Addrs:      cfg.Addresses,
		MasterName: cfg.MasterName,
		Username:   cfg.Username,
		Password:   cfg.Password.Value(),
		DB:         cfg.DB,
		// The request budget bounds each call; these bound the connection.
		DialTimeout:  cfg.Budget.D() * 4,
		ReadTimeout:  cfg.Budget.D() * 2,
		WriteTimeout: cfg.Budget.D() * 2,
		// go-redis defaults to 10 connections per CPU: with one CPU and
		// 50 concurrent requests, most waited for a connection past the
		// budget and tripped the breaker (bench/RESULTS.md).
		PoolSize:    cfg.PoolSize,
		PoolTimeout: cfg.Budget.D(),
		MaxRetries:  -1, // a retry would break the budget; the guard's policy decides
		// Calls the guard stopped waiting for end at the budget too,
		// instead of holding a pooled connection until ReadTimeout.
		ContextTimeoutEnabled: true,
	}
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("reading redis ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("redis ca_file %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLSConfig = tc
	}
	client := redis.NewUniversalClient(opts)
	remote := ratelimit.NewRedis(client, ratelimit.RedisOptions{ServerTime: *cfg.ServerTime})
	st := &sharedStore{client: client, store: ratelimit.NewGuarded(remote, local, ratelimit.GuardOptions{
		Budget:      cfg.Budget.D(),
		Log:         s.log.With("component", "ratelimit"),
		Synchronous: true, // the client honours the budget's deadline (ContextTimeoutEnabled)
	})}
	s.redis[key] = st
	return st, nil
}

// Ping checks that the Redis of cfg answers, for readiness probes.
func (s *State) Ping(ctx context.Context, cfg *config.Redis) error {
	if cfg == nil {
		return nil
	}
	st, err := s.sharedEntry(cfg)
	if err != nil {
		return err
	}
	return st.client.Ping(ctx).Err()
}

// Close stops the memory store's janitor and closes Redis connections.
func (s *State) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rt := range s.anomaly {
		rt.close()
	}
	s.anomaly = nil
	if s.quotas != nil {
		if err := s.quotas.Close(); err != nil {
			s.log.Error("saving quotas at shutdown failed", "error", err)
		}
		s.quotas = nil
	}
	if s.memory != nil {
		s.memory.Close()
	}
	for _, st := range s.redis {
		st.client.Close()
	}
	s.redis = map[string]*sharedStore{}
	for _, k := range s.keys {
		k.close()
	}
	s.keys = map[string]*lazyKeys{}
}

// lazyKeys opens an API key cache on its first lookup and keeps it. A failed
// open fails that lookup closed and is retried at most once a second.
type lazyKeys struct {
	open func() (*keys.Cache, error)

	mu       sync.Mutex
	cache    *keys.Cache
	failedAt time.Time
	err      error
}

func (l *lazyKeys) get() (*keys.Cache, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cache != nil {
		return l.cache, nil
	}
	if l.err != nil && time.Since(l.failedAt) < time.Second {
		return nil, l.err
	}
	c, err := l.open()
	if err != nil {
		l.err, l.failedAt = fmt.Errorf("opening the api key store: %w", err), time.Now()
		return nil, l.err
	}
	l.cache, l.err = c, nil
	return c, nil
}

// Lookup implements keys.Lookup.
func (l *lazyKeys) Lookup(ctx context.Context, id string) (*keys.Entry, error) {
	c, err := l.get()
	if err != nil {
		return nil, err
	}
	return c.Lookup(ctx, id)
}

// Used implements keys.Lookup.
func (l *lazyKeys) Used(e *keys.Entry, at time.Time) {
	l.mu.Lock()
	c := l.cache
	l.mu.Unlock()
	if c != nil {
		c.Used(e, at)
	}
}

func (l *lazyKeys) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cache != nil {
		l.cache.Close()
	}
}
