package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/keys"
)

// auditKeyEnv names the environment variable the soak configuration reads
// its audit chain key from.
const auditKeyEnv = "MOAT_SOAK_AUDIT_KEY"

// stack is the files and addresses of one soak configuration.
type stack struct {
	dir        string // temporary directory: configuration, keys, audit
	configPath string
	gateway    string // host:port of the traffic listener
	admin      string // host:port of the admin listener (public /metrics)
	apiKey     string // an API key of subject alice, role customer
	auditFile  string
}

// freePort returns a loopback address nothing listens on now.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// writeStack writes the soak configuration into dir: the orders API from
// spec behind API-key authentication, a per-key rate limit far above the
// load (checked on every request, never reached), a body cap and JSON
// payload limits, OpenAPI validation in strict mode, the default security
// headers, a hash-chained audit file sink, and an admin listener with public
// /metrics; everything on 127.0.0.1. It issues one API key.
func writeStack(dir, upstreamURL, spec string) (*stack, error) {
	st := &stack{dir: dir, configPath: filepath.Join(dir, "moat.yaml"), auditFile: filepath.Join(dir, "audit.jsonl")}
	var err error
	if st.gateway, err = freePort(); err != nil {
		return nil, err
	}
	if st.admin, err = freePort(); err != nil {
		return nil, err
	}
	keysFile := filepath.Join(dir, "keys.db")
	store, err := keys.OpenFile(keysFile, keys.FileOptions{})
	if err != nil {
		return nil, err
	}
	_, st.apiKey, err = keys.Issue(context.Background(), store, keys.Record{Name: "soak", Subject: "alice", Roles: []string{"customer"}}, time.Now())
	store.Close()
	if err != nil {
		return nil, err
	}
	doc := fmt.Sprintf(`# moat soak configuration (bench/soak), generated
server:
  watch_config: false
  shutdown_grace: 5s
  max_connections: 1000
listeners:
  - {name: soak, address: %q}
log: {access: false}
admin:
  address: %q
  public_metrics: true
state: {keys_file: %q}
audit:
  dir: %q
  key: env:%s
  sinks:
    - {type: file, file: {path: %q}}
authenticators:
  keys: {api_key: {}}
rate_limits:
  per-key: {rate: 1000000, per: 1s, key: api_key}
payload_limits:
  max_headers: 64
  json: {max_depth: 8, max_object_keys: 32, max_string_length: 1024, max_array_length: 64}
upstreams:
  orders: {targets: [%q]}
routes:
  - name: health
    path: /api/health
    methods: [GET]
    upstream: orders
    public: true
    openapi: {spec: %q, strict: true}
  - name: orders
    path: /api/accounts/{account}/orders
    methods: [GET, POST]
    upstream: orders
    auth: {authenticators: [keys], roles: {any_of: [customer]}}
    rate_limits: [per-key]
    max_body: 4KiB
    openapi: {spec: %q, strict: true}
`, st.gateway, st.admin, keysFile, filepath.Join(dir, "spool"), auditKeyEnv, st.auditFile, upstreamURL, spec, spec)
	if err := os.WriteFile(st.configPath, []byte(doc), 0o600); err != nil {
		return nil, err
	}
	return st, nil
}

// upstreamBody is what the Go upstream answers, about the size of the
// nginx body in bench/run.sh.
const upstreamBody = `{"id":"o-42","item":"tea","quantity":2,"status":"ok","tags":["a","b","c"],"price":12.5,"stock":true}`

// goUpstream serves the orders API's answers on a loopback port: 201 to a
// POST (after reading the body), 200 to anything else.
func goUpstream() (*http.Server, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(upstreamBody)))
			if r.Method == http.MethodPost {
				w.WriteHeader(http.StatusCreated)
			}
			_, _ = io.WriteString(w, upstreamBody)
		}),
	}
	go srv.Serve(ln)
	return srv, "http://" + ln.Addr().String(), nil
}

// request is one of the soak's request kinds and the status it must get.
type request struct {
	method, path, body string
	auth               bool
	want               int
}

// mix is the traffic: for every 10 requests, 5 list orders (auth, query
// validated), 4 create one (auth, JSON body validated against the schema and
// the payload limits), 1 checks health (public).
var mix = []request{
	{method: "GET", path: "/api/accounts/alice/orders?limit=10", auth: true, want: 200},
	{method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"tea","quantity":2}`, auth: true, want: 201},
	{method: "GET", path: "/api/accounts/alice/orders?limit=10", auth: true, want: 200},
	{method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"coffee","quantity":1}`, auth: true, want: 201},
	{method: "GET", path: "/api/health", want: 200},
	{method: "GET", path: "/api/accounts/alice/orders?limit=5", auth: true, want: 200},
	{method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"tea"}`, auth: true, want: 201},
	{method: "GET", path: "/api/accounts/alice/orders?limit=100", auth: true, want: 200},
	{method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"milk","quantity":3}`, auth: true, want: 201},
	{method: "GET", path: "/api/accounts/alice/orders", auth: true, want: 200},
}

// client sends the mix to a gateway.
type client struct {
	base, key string
	hc        *http.Client
}

func newClient(gateway, key string, conns int) *client {
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		IdleConnTimeout:     90 * time.Second,
	}
	return &client{base: "http://" + gateway, key: key, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// do sends request i of the mix and returns nil if it got its status and a
// complete body, or an error naming what went wrong.
func (c *client) do(ctx context.Context, i uint64) error {
	rq := mix[i%uint64(len(mix))]
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, c.base+rq.path, body)
	if err != nil {
		return err
	}
	if rq.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if rq.auth {
		req.Header.Set("X-API-Key", c.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != rq.want {
		return fmt.Errorf("%s %s: status %d, want %d", rq.method, rq.path, resp.StatusCode, rq.want)
	}
	if err != nil {
		return fmt.Errorf("%s %s: reading body: %w", rq.method, rq.path, err)
	}
	return nil
}

func (c *client) close() { c.hc.Transport.(*http.Transport).CloseIdleConnections() }

// capacity drives the gateway closed-loop with conns concurrent clients for
// d and returns the completed requests per second (errors not counted) and
// the number of errors.
func capacity(ctx context.Context, c *client, conns int, d time.Duration) (float64, int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var ok, bad, seq atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := c.do(ctx, uint64(seq.Add(1)))
				switch {
				case err == nil:
					ok.Add(1)
				case ctx.Err() == nil:
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / time.Since(start).Seconds(), bad.Load()
}

// interval holds what one reporting interval of the open-loop run saw.
type interval struct {
	mu        sync.Mutex
	latencies []time.Duration // from the intended send time, successes only
	sent      int64
	errors    int64
	dropped   int64 // not sent: every worker busy and the queue full
	firstErr  string
	rssKB     int64
	goroutine int64
}

func (iv *interval) record(lat time.Duration, err error) {
	iv.mu.Lock()
	defer iv.mu.Unlock()
	iv.sent++
	if err != nil {
		iv.errors++
		if iv.firstErr == "" {
			iv.firstErr = err.Error()
		}
		return
	}
	iv.latencies = append(iv.latencies, lat)
}

// loadParams configures openLoop.
type loadParams struct {
	rate     float64       // requests per second
	duration time.Duration // total
	interval time.Duration // reporting interval
	workers  int           // most requests in flight
	// sample is called at the end of every interval, from one goroutine,
	// to fill in the target's RSS and goroutine count.
	sample func(iv *interval)
}

// openLoop sends requests at a fixed rate whatever the answers' latency
// (an open-loop generator, like wrk2): request n is due at start + n/rate,
// is handed to an idle worker, and its latency is counted from when it was
// due, so a server that stalls is charged for the requests it delayed
// (no coordinated omission). At most workers requests are in flight and as
// up to a second's worth more may queue; a due request that finds the queue
// full is dropped and counted. It returns one interval per p.interval.
func openLoop(ctx context.Context, c *client, p loadParams) []*interval {
	n := int((p.duration + p.interval - 1) / p.interval)
	ivs := make([]*interval, n)
	for i := range ivs {
		ivs[i] = &interval{}
	}
	type job struct {
		seq uint64
		due time.Time
	}
	// Up to one second of requests may queue behind busy workers (their
	// latency shows the wait); past that a due request is dropped.
	jobs := make(chan job, min(max(int(p.rate), p.workers), 100_000))
	var wg sync.WaitGroup
	start := time.Now()
	at := func(t time.Time) *interval {
		i := int(t.Sub(start) / p.interval)
		return ivs[min(max(i, 0), n-1)]
	}
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				err := c.do(ctx, j.seq)
				at(j.due).record(time.Since(j.due), err)
			}
		}()
	}
	// The sampler closes each interval when its time is up.
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for i := range ivs {
			select {
			case <-time.After(time.Until(start.Add(time.Duration(i+1) * p.interval))):
			case <-ctx.Done():
				return
			}
			if p.sample != nil {
				p.sample(ivs[i])
			}
		}
	}()
	period := time.Duration(float64(time.Second) / p.rate)
	total := uint64(p.duration / period)
	tick := time.NewTicker(time.Millisecond)
	var seq uint64
loop:
	for seq < total {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			for ; seq < total; seq++ {
				due := start.Add(time.Duration(seq) * period)
				if due.After(now) {
					break
				}
				select {
				case jobs <- job{seq: seq, due: due}:
				default:
					iv := at(due)
					iv.mu.Lock()
					iv.dropped++
					iv.mu.Unlock()
				}
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	<-sampled
	return ivs
}

// percentile returns the q-quantile (0..1) of sorted, by nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// rssKB reads VmRSS of process pid (0: this process) from /proc.
func rssKB(pid int) (int64, error) {
	p := "/proc/self/status"
	if pid > 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in " + p)
}

// goroutines reads go_goroutines from the admin listener's /metrics.
func goroutines(hc *http.Client, admin string) (int64, error) {
	resp, err := hc.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("/metrics: status %d", resp.StatusCode)
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte("go_goroutines ")); ok {
			v, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64)
			return int64(v), err
		}
	}
	return 0, errors.New("/metrics has no go_goroutines")
}

// summary is the outcome of a soak.
type summary struct {
	capacity, rate        float64
	capErrors             int64
	intervals             []*interval
	sent, errors, dropped int64
	rssStart, rssEnd      int64 // moat's VmRSS, KiB, before and after the soak, both quiescent
	grStart, grEnd        int64 // moat's goroutines, likewise
	p50, p99, max         time.Duration
	firstErr              string
}

func summarise(s *summary) {
	var all []time.Duration
	for _, iv := range s.intervals {
		slices.Sort(iv.latencies)
		all = append(all, iv.latencies...)
		s.sent += iv.sent
		s.errors += iv.errors
		s.dropped += iv.dropped
		if s.firstErr == "" {
			s.firstErr = iv.firstErr
		}
	}
	slices.Sort(all)
	s.p50, s.p99 = percentile(all, 0.5), percentile(all, 0.99)
	if len(all) > 0 {
		s.max = all[len(all)-1]
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// markdown writes the report table.
func (s *summary) markdown(w io.Writer, interval time.Duration) {
	fmt.Fprintf(w, "capacity (closed loop): %.0f req/s (%d errors); soak rate: %.0f req/s\n\n", s.capacity, s.capErrors, s.rate)
	fmt.Fprintf(w, "| interval (%s) | sent | errors | dropped | p50 ms | p99 ms | max ms | RSS MiB | goroutines |\n", interval)
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for i, iv := range s.intervals {
		var mx time.Duration
		if len(iv.latencies) > 0 {
			mx = iv.latencies[len(iv.latencies)-1]
		}
		fmt.Fprintf(w, "| %d | %d | %d | %d | %s | %s | %s | %.1f | %d |\n", i+1, iv.sent, iv.errors, iv.dropped,
			ms(percentile(iv.latencies, 0.5)), ms(percentile(iv.latencies, 0.99)), ms(mx), float64(iv.rssKB)/1024, iv.goroutine)
	}
	fmt.Fprintf(w, "| all | %d | %d | %d | %s | %s | %s | | |\n\n", s.sent, s.errors, s.dropped, ms(s.p50), ms(s.p99), ms(s.max))
	fmt.Fprintf(w, "moat quiescent (no client or upstream connection) before and after the soak: RSS %.1f -> %.1f MiB, goroutines %d -> %d\n",
		float64(s.rssStart)/1024, float64(s.rssEnd)/1024, s.grStart, s.grEnd)
	if s.firstErr != "" {
		fmt.Fprintf(w, "\nfirst error: %s\n", s.firstErr)
	}
}

// soakParams configures run.
type soakParams struct {
	duration, interval  time.Duration
	warmup, probe       time.Duration // before measuring capacity; capacity probe
	load                float64       // fraction of capacity, e.g. 0.7
	rate                float64       // fixed rate; 0 = load x measured capacity
	probeConns, workers int
	pid                 int // moat's process (0: this one) for RSS
	// quiesce closes the upstream's idle connections (moat's pool to it
	// empties) and lets new ones in again; with the client's idle
	// connections closed too, moat holds no connection and its goroutine
	// count is its baseline.
	quiesce func()
}

// settle closes the client's idle connections, calls quiesce, and waits
// (at most 15s) until moat's goroutine count has stopped falling for four
// samples in a row (about a second: on a loaded machine connections close
// slowly); it returns that count and moat's RSS.
func settle(ctx context.Context, c *client, mhc *http.Client, st *stack, p soakParams) (gr, rss int64, err error) {
	c.close()
	if p.quiesce != nil {
		p.quiesce()
	}
	deadline := time.Now().Add(15 * time.Second)
	prev, stable := int64(-1), 0
	for {
		if gr, err = goroutines(mhc, st.admin); err != nil {
			return 0, 0, err
		}
		if prev >= 0 && gr >= prev {
			stable++
		} else {
			stable = 0
		}
		if stable >= 3 || time.Now().After(deadline) {
			break
		}
		prev = gr
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
	mhc.CloseIdleConnections()
	rss, err = rssKB(p.pid)
	return gr, rss, err
}

// run measures capacity (unless a rate is given), then soaks the stack at
// the chosen rate and samples moat's RSS and goroutines at the start (after
// the warm-up) and at the end of every interval.
func run(ctx context.Context, st *stack, p soakParams) (*summary, error) {
	s := &summary{}
	c := newClient(st.gateway, st.apiKey, max(p.probeConns, p.workers))
	defer c.close()
	mhc := &http.Client{Timeout: 5 * time.Second}
	if err := c.do(ctx, 0); err != nil {
		return nil, fmt.Errorf("first request: %w", err)
	}
	capacity(ctx, c, p.probeConns, p.warmup)
	s.rate = p.rate
	if s.rate == 0 {
		s.capacity, s.capErrors = capacity(ctx, c, p.probeConns, p.probe)
		s.rate = math.Max(1, p.load*s.capacity)
	}
	var err error
	if s.grStart, s.rssStart, err = settle(ctx, c, mhc, st, p); err != nil {
		return nil, err
	}
	var sampleErr error
	s.intervals = openLoop(ctx, c, loadParams{rate: s.rate, duration: p.duration, interval: p.interval, workers: p.workers,
		sample: func(iv *interval) {
			var err error
			if iv.rssKB, err = rssKB(p.pid); err != nil && sampleErr == nil {
				sampleErr = err
			}
			if iv.goroutine, err = goroutines(mhc, st.admin); err != nil && sampleErr == nil {
				sampleErr = err
			}
		}})
	if sampleErr != nil {
		return nil, sampleErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.grEnd, s.rssEnd, err = settle(ctx, c, mhc, st, p); err != nil {
		return nil, err
	}
	summarise(s)
	return s, nil
}
