package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/keys"
	"github.com/moat-gateway/moat/internal/telemetry"
	"github.com/moat-gateway/moat/internal/telemetry/tracing"
)

// The pipeline benchmarks run whole requests through a Gateway built from a
// configuration file, as moat serve builds it, without the network: the
// client side calls ServeHTTP directly and the upstream is an in-process
// HTTP/1.1 responder reached over net.Pipe (State.dial). What they report
// is moat's own CPU and allocations per request: routing, every stage, the
// reverse proxy and its HTTP/1.1 client, the access log (encoded to
// io.Discard) and the audit record (to a real file). bench/run.sh measures
// the same modes over loopback TCP against nginx.
//
//	go test -run '^$' -bench BenchmarkPipeline -benchmem ./internal/pipeline/

// benchBody is the upstream's answer, the ~90-byte JSON of bench/run.sh.
const benchBody = `{"id":42,"name":"moat","tags":["api","security","gateway"],"ok":true,"latency_ms":1.25}`

// pipeUpstream is an HTTP/1.1 server on the far end of net.Pipe
// connections: it reads each request's head and Content-Length body and
// answers benchBody. It allocates nothing per request, so the benchmark's
// allocations are the gateway's.
type pipeUpstream struct {
	resp []byte
	wg   sync.WaitGroup
}

func newPipeUpstream() *pipeUpstream {
	return &pipeUpstream{resp: []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(benchBody)) + "\r\n\r\n" + benchBody)}
}

func (u *pipeUpstream) dial(context.Context, string, string) (net.Conn, error) {
	client, server := net.Pipe()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer server.Close()
		u.serve(server)
	}()
	return client, nil
}

func (u *pipeUpstream) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 8<<10)
	for {
		n := 0
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
			if len(line) > 16 && strings.EqualFold(string(line[:15]), "content-length:") {
				n, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
			}
		}
		if _, err := br.Discard(n); err != nil {
			return
		}
		if _, err := c.Write(u.resp); err != nil {
			return
		}
	}
}

// nullWriter is a ResponseWriter that keeps nothing: the client side of the
// benchmark costs nothing.
type nullWriter struct{ h http.Header }

func (w *nullWriter) Header() http.Header         { return w.h }
func (w *nullWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *nullWriter) WriteHeader(int)             {}

// rewindBody is a request body that can be rewound without allocating.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

const benchSpec = `openapi: 3.0.3
info: {title: bench, version: "1"}
paths:
  /bench:
    get:
      responses: {"200": {description: ok}}
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [order_id, items]
              properties:
                order_id: {type: string, maxLength: 64}
                customer: {type: string, maxLength: 128}
                note: {type: string, maxLength: 512}
                items:
                  type: array
                  maxItems: 32
                  items:
                    type: object
                    additionalProperties: false
                    properties:
                      sku: {type: string, maxLength: 32}
                      qty: {type: integer, minimum: 1, maximum: 1000}
                      price: {type: number}
      responses: {"200": {description: ok}}
`

// benchPOST is a benign ~1KiB JSON order, valid against benchSpec.
func benchPOST() []byte {
	var b strings.Builder
	b.WriteString(`{"order_id":"ord-2026-11-21-000042","customer":"Ada Lovelace","note":"Leave the parcel at the front desk, please.","items":[`)
	for i := 0; b.Len() < 960; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"sku":"SKU-%05d","qty":%d,"price":%d.99}`, 1000+i, 1+i%7, 3+i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

type benchMode struct {
	name   string
	method string
	doc    string // configuration; DIR is replaced by the temporary directory
	key    bool   // send an API key
	body   []byte
}

func benchModes() []benchMode {
	const head = `
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
upstreams: {api: {targets: ['http://upstream.invalid:80']}}
`
	const plainRoute = "routes: [{name: bench, path: /bench, methods: [GET], upstream: api, public: true}]\n"
	const auditFile = `
audit:
  dir: DIR/spool
  key: env:MOAT_BENCH_AUDIT_KEY
  sinks: [{type: file, file: {path: DIR/audit.jsonl}}]
`
	const full = head + `
state: {keys_file: DIR/keys.db}
audit:
  dir: DIR/spool
  key: env:MOAT_BENCH_AUDIT_KEY
  sinks: [{type: file, file: {path: DIR/audit.jsonl}}]
authenticators: {keys: {api_key: {}}}
rate_limits: {per-key: {rate: 1000000000, per: 1s, key: api_key}}
routes:
  - name: bench
    path: /bench
    methods: [GET, POST]
    upstream: api
    auth: {authenticators: [keys], allow_any_authenticated: true}
    rate_limits: [per-key]
    openapi: {spec: DIR/bench.yaml, strict: true}
`
	return []benchMode{
		{name: "plain", method: "GET", doc: head + plainRoute},
		{name: "plain-no-access-log", method: "GET", doc: head + "log: {access: false}\n" + plainRoute},
		// The cost of auditing (issue 7): plain plus a file sink.
		{name: "plain-audit", method: "GET", doc: head + auditFile + plainRoute},
		// The cost of tracing: plain plus every request sampled, its spans
		// exported over OTLP/HTTP to a local receiver that discards them.
		{name: "plain-tracing", method: "GET", doc: head + "tracing: {otlp_endpoint: 'OTLP', sample_ratio: 1}\n" + plainRoute},
		{name: "full", method: "GET", doc: full, key: true},
		// Scale: the same request among 10 and among 10,000 routes (issue
		// 10's target: at most 10% more CPU per request).
		{name: "routes-10", method: "GET", doc: head + "log: {access: false}\n" + manyRoutes(10)},
		{name: "routes-10000", method: "GET", doc: head + "log: {access: false}\n" + manyRoutes(10000)},
		{name: "full-waf-post-1KiB", method: "POST", key: true, body: benchPOST(),
			doc: full + "    waf: {mode: block, paranoia_level: 1}\n"},
	}
}

// manyRoutes returns a routes block of n public routes, /bench in the
// middle of them.
func manyRoutes(n int) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for i := range n {
		if i == n/2 {
			b.WriteString("  - {name: bench, path: /bench, methods: [GET], upstream: api, public: true}\n")
		}
		fmt.Fprintf(&b, "  - {name: r%d, path: '/r%d/items/{id}', methods: [GET], upstream: api, public: true}\n", i, i)
	}
	return b.String()
}

// BenchmarkPipeline reports CPU and allocations per request through a whole
// Gateway for the modes of bench/run.sh: plain proxying with and without
// the access log, the full stack without the WAF (API key, a rate limit,
// strict OpenAPI validation, security headers, audit to a file) and with
// the WAF on a 1KiB JSON POST.
func BenchmarkPipeline(b *testing.B) {
	for _, m := range benchModes() {
		b.Run(m.name, func(b *testing.B) { benchPipeline(b, m) })
	}
}

func benchPipeline(b *testing.B, m benchMode) {
	dir := b.TempDir()
	b.Setenv("MOAT_BENCH_AUDIT_KEY", "0123456789abcdef0123456789abcdef-bench")
	if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(benchSpec), 0o600); err != nil {
		b.Fatal(err)
	}
	var apiKey string
	if m.key {
		store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, apiKey, err = keys.Issue(context.Background(), store, keys.Record{Name: "bench", Subject: "bench"}, time.Now()); err != nil {
			b.Fatal(err)
		}
		store.Close()
	}
	doc := strings.ReplaceAll(m.doc, "DIR", dir)
	if strings.Contains(doc, "'OTLP'") {
		otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-protobuf")
		}))
		defer otlp.Close()
		doc = strings.ReplaceAll(doc, "'OTLP'", otlp.URL+"/v1/traces")
	}
	cfg, err := config.Parse(filepath.Join(dir, "moat.yaml"), []byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	log, closeLog := telemetry.NewLogger(io.Discard, "json", new(slog.LevelVar), false) // as moat serve's, buffered
	defer closeLog()
	state := NewState(log)
	defer state.Close()
	up := newPipeUpstream()
	state.dial = up.dial
	if cfg.Audit != nil {
		a, err := audit.New(*cfg.Audit, audit.Options{Log: log, BaseDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		defer a.Close(context.Background())
		state.SetAuditor(a)
	}
	if cfg.Tracing.IsOn() {
		tp, err := tracing.New(cfg.Tracing, log)
		if err != nil {
			b.Fatal(err)
		}
		defer tp.Shutdown(context.Background())
		state.SetTracer(tp.Tracer())
	}
	gw, err := Build(cfg, log, state)
	if err != nil {
		b.Fatal(err)
	}
	gw.Start()
	defer gw.Close(time.Second)

	tmpl, err := http.NewRequest(m.method, "http://bench.example/bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	tmpl.RemoteAddr = "127.0.0.1:40000"
	tmpl.Header.Set("User-Agent", "wrk")
	tmpl.Header.Set("Accept", "application/json")
	if apiKey != "" {
		tmpl.Header.Set("X-API-Key", apiKey)
	}
	var body rewindBody
	if m.body != nil {
		tmpl.Header.Set("Content-Type", "application/json")
		tmpl.ContentLength = int64(len(m.body))
	}
	w := &nullWriter{}
	serve := func() {
		r := *tmpl // what net/http allocates per request: the Request and its Header
		r.Header = tmpl.Header.Clone()
		if m.body != nil {
			body.Reset(m.body)
			r.Body = &body
		} else {
			r.Body = http.NoBody
		}
		clear(w.h)
		if w.h == nil {
			w.h = http.Header{}
		}
		gw.ServeHTTP(w, &r)
	}
	// One checked request first: the mode must succeed, or it measures a
	// refusal.
	rec := &statusWriter{h: http.Header{}}
	r := *tmpl
	r.Header = tmpl.Header.Clone()
	if m.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(m.body))
	}
	gw.ServeHTTP(rec, &r)
	if rec.status != http.StatusOK {
		b.Fatalf("%s: status %d, want 200; body %s", m.name, rec.status, rec.body.String())
	}
	if m.body != nil {
		b.SetBytes(int64(len(m.body)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for b.Loop() {
		serve()
	}
	// CPU time of the whole process (every goroutine, the GC, the in-process
	// upstream's few instructions) per request: unlike ns/op, it does not
	// grow when other programs take the CPU and requests wait for it.
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// statusWriter keeps the status and body of one response.
type statusWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (w *statusWriter) Header() http.Header { return w.h }
func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}
func (w *statusWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
