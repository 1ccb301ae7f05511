package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// receiver is an HTTP audit endpoint for the tests: it fails while told to,
// and records every event it accepts (ndjson, json or splunk_hec bodies).
type receiver struct {
	format string
	fail   atomic.Int32 // HTTP status to answer with instead of 200, or 0
	hang   chan struct{}

	mu       sync.Mutex
	lines    [][]byte // accepted events, in arrival order (ndjson: the exact bytes)
	ids      map[string]int
	requests int
	headers  []http.Header
}

func newReceiver(format string) *receiver {
	return &receiver{format: format, ids: map[string]int{}}
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rv.mu.Lock()
	rv.requests++
	rv.headers = append(rv.headers, r.Header.Clone())
	rv.mu.Unlock()
	if rv.hang != nil {
		select {
		case <-rv.hang:
		case <-r.Context().Done():
		}
		return
	}
	if st := rv.fail.Load(); st != 0 {
		http.Error(w, "unavailable", int(st))
		return
	}
	var events [][]byte
	switch rv.format {
	case FormatNDJSON:
		events = bytes.SplitAfter(bytes.TrimSuffix(body, []byte("\n")), []byte("\n"))
	case FormatJSON:
		var arr []json.RawMessage
		if err := json.Unmarshal(body, &arr); err != nil {
			http.Error(w, "bad array", 400)
			return
		}
		for _, e := range arr {
			events = append(events, append([]byte(e), '\n'))
		}
	case FormatSplunkHEC:
		dec := json.NewDecoder(bytes.NewReader(body))
		for dec.More() {
			var env struct{ Event json.RawMessage }
			if err := dec.Decode(&env); err != nil {
				http.Error(w, `{"text":"Invalid data format","code":6}`, 400)
				return
			}
			events = append(events, append([]byte(env.Event), '\n'))
		}
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, e := range events {
		var m map[string]any
		if err := json.Unmarshal(e, &m); err != nil {
			continue
		}
		rv.lines = append(rv.lines, e)
		rv.ids[field(m, "event.id").(string)]++
	}
	if rv.format == FormatSplunkHEC {
		io.WriteString(w, `{"text":"Success","code":0}`)
	}
}

func (rv *receiver) count() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.lines)
}

func (rv *receiver) snapshot() ([][]byte, map[string]int, int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	ids := map[string]int{}
	for k, v := range rv.ids {
		ids[k] = v
	}
	return append([][]byte(nil), rv.lines...), ids, rv.requests
}

// freeAddr returns a loopback address nothing listens on (connection
// refused), for a receiver to start on later.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func serveOn(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	var l net.Listener
	var err error
	eventually(t, 5*time.Second, "listening on "+addr, func() bool {
		l, err = net.Listen("tcp", addr)
		return err == nil
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func httpSinkConfig(name, url, format string, spoolMax config.Size) config.AuditSink {
	var u config.URL
	_ = u.UnmarshalText([]byte(url))
	return config.AuditSink{
		Name: name, Type: "http", HTTP: &config.AuditHTTP{URL: u, Format: format, Timeout: config.Duration(2 * time.Second)},
		BatchSize: 7, MemoryQueue: 8, SpoolMaxSize: spoolMax, FlushInterval: config.Duration(time.Millisecond),
		RetryInitial: config.Duration(time.Millisecond), RetryMax: config.Duration(5 * time.Millisecond),
	}
}

func newAuditor(t *testing.T, cfg config.Audit, o Options) *Auditor {
	t.Helper()
	if o.Log == nil {
		o.Log = quietLog()
	}
	a, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// recordN records n request events with request IDs prefix-0 ... prefix-(n-1).
func recordN(a *Auditor, prefix string, n int) {
	g := goldenExchanges()[0]
	for i := range n {
		g.ex.ID = fmt.Sprintf("%s-%d", prefix, i)
		ev := FromExchange(g.ex, g.end)
		a.Record(&ev)
	}
}

// checkExactlyOnce asserts that the received lines are sequences 1..n, each
// once, in order, that they form an intact hash chain, and that every
// request ID in want arrived.
func checkExactlyOnce(t *testing.T, lines [][]byte, ids map[string]int, n int, want []string) {
	t.Helper()
	for id, c := range ids {
		if c != 1 {
			t.Errorf("event %s arrived %d times", id, c)
		}
	}
	if len(lines) != n {
		t.Fatalf("%d events arrived, want %d", len(lines), n)
	}
	rids := map[string]bool{}
	for i, l := range lines {
		var m map[string]any
		json.Unmarshal(l, &m)
		if seq := field(m, "event.sequence").(float64); seq != float64(i+1) {
			t.Fatalf("event %d has sequence %v: out of order or missing", i+1, seq)
		}
		if rid, ok := field(m, "http.request.id").(string); ok {
			rids[rid] = true
		}
	}
	for _, w := range want {
		if !rids[w] {
			t.Errorf("request %s never arrived", w)
		}
	}
	res, err := verifyBytes(join(lines), VerifyOptions{Keys: [][]byte{testKey}})
	if err != nil || res.Problem != nil {
		t.Fatalf("received chain does not verify: %v %v", err, res.Problem)
	}
}

func ids(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// TestHTTPSinkOutageAcrossRestart: the endpoint refuses connections, the
// gateway restarts, the endpoint answers 503 for a while, then recovers.
// Every event arrives exactly once, in order, as an intact chain; a third
// start redelivers nothing.
func TestHTTPSinkOutageAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := testAuditConfig(dir, httpSinkConfig("siem", "http://"+addr+"/ingest", FormatNDJSON, config.MinAuditSpoolMaxSize*16))

	// First run: connection refused the whole time.
	a := newAuditor(t, cfg, Options{})
	a.Start()
	recordN(a, "first", 50)
	eventually(t, 10*time.Second, "events spooled", func() bool {
		s := a.Stats().Sinks[0]
		return s.Failures > 0 && s.SpoolEvents == 51
	})
	closeAuditor(t, a)
	if s := a.Stats().Sinks[0]; s.Delivered != 0 || s.Dropped != 0 || s.SpoolEvents != 51 {
		t.Fatalf("after the first run: %+v", s)
	}

	// Second run: the endpoint is up but answers 503, then recovers.
	rv := newReceiver(FormatNDJSON)
	rv.fail.Store(http.StatusServiceUnavailable)
	serveOn(t, addr, rv)
	a = newAuditor(t, cfg, Options{})
	a.Start()
	recordN(a, "second", 30)
	eventually(t, 10*time.Second, "failed attempts against 503", func() bool { return a.Stats().Sinks[0].Failures >= 3 })
	rv.fail.Store(0)
	eventually(t, 10*time.Second, "every event delivered", func() bool { return rv.count() >= 82 })
	closeAuditor(t, a)
	lines, got, _ := rv.snapshot()
	checkExactlyOnce(t, lines, got, 82, append(ids("first", 50), ids("second", 30)...))
	if s := a.Stats().Sinks[0]; s.Dropped != 0 || s.SpoolEvents != 0 || s.SpoolBytes != 0 {
		t.Fatalf("after recovery: %+v", s)
	}

	// Third run: nothing is delivered twice.
	a = newAuditor(t, cfg, Options{})
	a.Start()
	eventually(t, 10*time.Second, "the third chain start", func() bool { return rv.count() >= 83 })
	closeAuditor(t, a)
	lines, got, _ = rv.snapshot()
	checkExactlyOnce(t, lines, got, 83, nil)
}

// TestHTTPSinkOutageSpoolCap: with a small spool, what does not fit is
// dropped and counted; everything else arrives exactly once.
func TestHTTPSinkOutageSpoolCap(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	cfg := testAuditConfig(dir, httpSinkConfig("siem", "http://"+addr+"/ingest", FormatNDJSON, config.MinAuditSpoolMaxSize))
	logs := &syncBuffer{}

	a := newAuditor(t, cfg, Options{Log: logTo(logs)})
	a.Start()
	recordN(a, "first", 300)
	eventually(t, 10*time.Second, "the spool filling up", func() bool {
		s := a.Stats().Sinks[0]
		return s.Dropped > 0 && s.SpoolEvents+int64(s.Dropped) == 301
	})
	closeAuditor(t, a)
	dropped := a.Stats().Sinks[0].Dropped
	if !strings.Contains(logs.String(), "audit events dropped: the sink's spool is full") {
		t.Errorf("drops were not logged:\n%s", logs)
	}

	rv := newReceiver(FormatNDJSON)
	serveOn(t, addr, rv)
	a = newAuditor(t, cfg, Options{Log: logTo(logs)})
	a.Start()
	recordN(a, "second", 20)
	eventually(t, 10*time.Second, "delivery after recovery", func() bool {
		s := a.Stats().Sinks[0]
		return s.SpoolEvents == 0 && s.MemoryDepth == 0 && rv.count() > 0 && a.Stats().Sequence == 322 && uint64(rv.count())+dropped+s.Dropped == 322
	})
	closeAuditor(t, a)
	dropped += a.Stats().Sinks[0].Dropped
	_, got, _ := rv.snapshot()
	for id, c := range got {
		if c != 1 {
			t.Errorf("event %s arrived %d times", id, c)
		}
	}
	if total := uint64(len(got)) + dropped; total != 322 || dropped == 0 {
		t.Fatalf("%d arrived + %d dropped = %d, want 322 with some dropped", len(got), dropped, total)
	}
}

// TestHTTPSinkCloseDeadline: an endpoint that never answers cannot hold
// shutdown past its deadline; the events wait in the spool and are
// delivered by the next start.
func TestHTTPSinkCloseDeadline(t *testing.T) {
	dir := t.TempDir()
	hang := newReceiver(FormatNDJSON)
	hang.hang = make(chan struct{})
	defer close(hang.hang)
	slow := httptest.NewServer(hang)
	defer slow.Close()
	sc := httpSinkConfig("siem", slow.URL, FormatNDJSON, config.MinAuditSpoolMaxSize*16)
	sc.HTTP.Timeout = config.Duration(time.Minute)
	a := newAuditor(t, testAuditConfig(dir, sc), Options{})
	a.Start()
	recordN(a, "r", 5)
	eventually(t, 10*time.Second, "a request in flight", func() bool { _, _, n := hang.snapshot(); return n > 0 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("Close took %v past its 300ms deadline", took)
	}
	if s := a.Stats().Sinks[0]; s.SpoolEvents != 6 {
		t.Fatalf("spool holds %d events after an aborted shutdown, want 6: %+v", s.SpoolEvents, s)
	}

	rv := newReceiver(FormatNDJSON)
	good := httptest.NewServer(rv)
	defer good.Close()
	sc.HTTP.URL.UnmarshalText([]byte(good.URL))
	a = newAuditor(t, testAuditConfig(dir, sc), Options{})
	a.Start()
	eventually(t, 10*time.Second, "spooled events delivered", func() bool { return rv.count() == 7 })
	closeAuditor(t, a)
	lines, got, _ := rv.snapshot()
	checkExactlyOnce(t, lines, got, 7, ids("r", 5))
}

// TestHTTPSinkFormats checks each body format and the Authorization header.
func TestHTTPSinkFormats(t *testing.T) {
	tests := []struct {
		desc, format, auth, contentType string
	}{
		{"json array", FormatJSON, "Bearer tok-1", "application/json"},
		{"ndjson", FormatNDJSON, "Bearer tok-1", "application/x-ndjson"},
		{"splunk hec", FormatSplunkHEC, "Splunk tok-1", "application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			rv := newReceiver(tc.format)
			srv := httptest.NewServer(rv)
			defer srv.Close()
			sc := httpSinkConfig("out", srv.URL+"/services/collector/event", tc.format, 0)
			sc.HTTP.Token.UnmarshalText([]byte("tok-1"))
			a := newAuditor(t, testAuditConfig(t.TempDir(), sc), Options{})
			a.Start()
			recordN(a, "r", 10)
			eventually(t, 10*time.Second, "delivery", func() bool { return rv.count() == 11 })
			closeAuditor(t, a)
			lines, got, _ := rv.snapshot()
			checkExactlyOnce(t, lines, got, 11, ids("r", 10))
			rv.mu.Lock()
			defer rv.mu.Unlock()
			for _, h := range rv.headers {
				if h.Get("Authorization") != tc.auth || h.Get("Content-Type") != tc.contentType {
					t.Fatalf("headers %v", h)
				}
			}
		})
	}
}

// TestSplunkHECEnvelope checks the HEC fields around each event.
func TestSplunkHECEnvelope(t *testing.T) {
	var mu sync.Mutex
	var envs []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/services/collector/event" || r.Header.Get("Authorization") != "Splunk 11111111-2222-3333-4444-555555555555" {
			http.Error(w, `{"text":"Invalid token","code":4}`, http.StatusForbidden)
			return
		}
		dec := json.NewDecoder(r.Body)
		mu.Lock()
		defer mu.Unlock()
		for dec.More() {
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				http.Error(w, `{"text":"Invalid data format","code":6}`, 400)
				return
			}
			envs = append(envs, m)
		}
		io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	defer srv.Close()
	sc := httpSinkConfig("splunk", srv.URL+"/services/collector/event", FormatSplunkHEC, 0)
	sc.HTTP.Token.UnmarshalText([]byte("11111111-2222-3333-4444-555555555555"))
	sc.HTTP.Index, sc.HTTP.Source, sc.HTTP.SourceType = "security", "moat-edge", "moat:audit"
	a := newAuditor(t, testAuditConfig(t.TempDir(), sc), Options{})
	a.Start()
	recordN(a, "r", 3)
	eventually(t, 10*time.Second, "delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(envs) == 4 })
	closeAuditor(t, a)
	for i, env := range envs {
		ev, _ := env["event"].(map[string]any)
		if env["host"] != "gw-1" || env["index"] != "security" || env["source"] != "moat-edge" || env["sourcetype"] != "moat:audit" || ev == nil {
			t.Fatalf("envelope %d: %v", i, env)
		}
		if i > 0 {
			// The request events' time is the exchange start, t0.
			if tm, _ := env["time"].(float64); tm != float64(t0.UnixMicro())/1e6 {
				t.Errorf("time %v, want %v", env["time"], float64(t0.UnixMicro())/1e6)
			}
		}
	}
}

// TestHTTPSinkPermanentRefusal: a batch answered with 400 is dropped,
// counted and logged, not retried; delivery goes on.
func TestHTTPSinkPermanentRefusal(t *testing.T) {
	rv := newReceiver(FormatNDJSON)
	rv.fail.Store(http.StatusBadRequest)
	srv := httptest.NewServer(rv)
	defer srv.Close()
	sc := httpSinkConfig("out", srv.URL, FormatNDJSON, 0)
	sc.FlushInterval = config.Duration(time.Hour) // one batch of 7 once it is full
	logs := &syncBuffer{}
	a := newAuditor(t, testAuditConfig(t.TempDir(), sc), Options{Log: logTo(logs)})
	a.Start()
	recordN(a, "r", 6)
	eventually(t, 10*time.Second, "the refusal", func() bool { return a.Stats().Sinks[0].Rejected == 7 })
	rv.fail.Store(0)
	recordN(a, "s", 7)
	eventually(t, 10*time.Second, "later delivery", func() bool { return rv.count() == 7 })
	closeAuditor(t, a)
	s := a.Stats().Sinks[0]
	if s.Rejected != 7 || s.Failures != 0 || s.Delivered != 7 {
		t.Fatalf("stats %+v", s)
	}
	if _, _, n := rv.snapshot(); n != 2 {
		t.Fatalf("%d requests: the refused batch was retried", n)
	}
	if !strings.Contains(logs.String(), "refused a batch for good") {
		t.Errorf("refusal not logged:\n%s", logs)
	}
}

// TestSeveralSinks: every event reaches every sink, and a sink that is down
// holds up none of the others.
func TestSeveralSinks(t *testing.T) {
	out := &syncBuffer{}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	rv := newReceiver(FormatNDJSON)
	srv := httptest.NewServer(rv)
	defer srv.Close()
	down := httpSinkConfig("down", "http://"+freeAddr(t), FormatNDJSON, 0)
	file := fileSinkConfig(path)
	file.File.MaxSize = 1 << 20 // no rotation: the file holds every event
	cfg := testAuditConfig(t.TempDir(), config.AuditSink{Type: "stdout"}, file,
		httpSinkConfig("up", srv.URL, FormatNDJSON, 0), down)
	a := newAuditor(t, cfg, Options{Stdout: out})
	a.Start()
	recordN(a, "r", 20)
	eventually(t, 10*time.Second, "the healthy sinks", func() bool {
		st := a.Stats().Sinks
		return st[0].Delivered == 21 && st[1].Delivered == 21 && st[2].Delivered == 21 && st[3].SpoolEvents == 21
	})
	closeAuditor(t, a)
	fileBytes, _ := os.ReadFile(path)
	lines, _, _ := rv.snapshot()
	if out.String() != string(fileBytes) || string(join(lines)) != string(fileBytes) {
		t.Fatal("the sinks did not get the same bytes")
	}
	if res, err := verifyBytes(fileBytes, VerifyOptions{Keys: [][]byte{testKey}}); err != nil || res.Problem != nil || res.Events != 21 {
		t.Fatalf("verify: %v %v %+v", err, res.Problem, res)
	}
}

// TestBackoff: exponential from retry_initial, capped at retry_max, with
// equal jitter.
func TestBackoff(t *testing.T) {
	p := &pipe{retryMin: 100 * time.Millisecond, retryMax: time.Second}
	tests := []struct {
		attempt int
		base    time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second}}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.attempt), func(t *testing.T) {
			seen := map[time.Duration]bool{}
			for range 200 {
				d := p.backoff(tc.attempt)
				if d < tc.base/2 || d > tc.base {
					t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.attempt, d, tc.base/2, tc.base)
				}
				seen[d] = true
			}
			if len(seen) < 10 {
				t.Fatalf("backoff(%d) took %d values in 200 draws: no jitter", tc.attempt, len(seen))
			}
		})
	}
}

// TestStdoutSink writes to the writer Options gives.
func TestStdoutSink(t *testing.T) {
	out := &syncBuffer{}
	a := newAuditor(t, testAuditConfig(t.TempDir(), config.AuditSink{Type: "stdout"}), Options{Stdout: out})
	a.Start()
	recordN(a, "r", 4)
	closeAuditor(t, a)
	lines := decodeLines(t, []byte(out.String()))
	if len(lines) != 5 || field(lines[4], "http.request.id") != "r-3" {
		t.Fatalf("stdout got %d events:\n%s", len(lines), out)
	}
}

// TestQueueFull: Record never blocks; what the queue cannot take is
// counted, logged once, and reported in the chain by an
// audit_events_dropped event.
func TestQueueFull(t *testing.T) {
	out := &syncBuffer{}
	logs := &syncBuffer{}
	cfg := testAuditConfig(t.TempDir(), config.AuditSink{Type: "stdout"})
	cfg.QueueSize = 2
	a := newAuditor(t, cfg, Options{Stdout: out, Log: logTo(logs)})
	recordN(a, "r", 5) // not started: the queue holds 2
	if s := a.Stats(); s.Recorded != 2 || s.Dropped != 3 || s.QueueDepth != 2 {
		t.Fatalf("stats %+v", s)
	}
	a.Start()
	closeAuditor(t, a)
	recordN(a, "late", 1)
	if s := a.Stats(); s.Dropped != 4 {
		t.Fatalf("a Record after Close was not counted: %+v", s)
	}
	lines := decodeLines(t, []byte(out.String()))
	var actions []string
	for _, l := range lines {
		actions = append(actions, field(l, "event.action").(string))
	}
	if strings.Join(actions, ",") != "audit_chain_start,audit_events_dropped,http_request,http_request" {
		t.Fatalf("actions %v", actions)
	}
	if field(lines[1], "moat.dropped_events") != 3.0 {
		t.Errorf("dropped event says %v", field(lines[1], "moat.dropped_events"))
	}
	if c := strings.Count(logs.String(), "audit queue full"); c != 1 {
		t.Errorf("queue-full logged %d times, want once (rate-limited)", c)
	}
}

// TestNilAuditor: a gateway without an audit block holds a nil *Auditor
// and calls it anyway.
func TestNilAuditor(t *testing.T) {
	var a *Auditor
	ev := goldenEvents()[1]
	a.Start()
	a.Record(&ev)
	a.RecordExchange(goldenExchanges()[0].ex)
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Recorded != 0 || s.Sinks != nil {
		t.Fatalf("stats %+v", s)
	}
}

// TestRecordExchange records a finished exchange and leaves the caller's
// configuration untouched.
func TestRecordExchange(t *testing.T) {
	out := &syncBuffer{}
	cfg := testAuditConfig(t.TempDir(), config.AuditSink{Type: "stdout"})
	a := newAuditor(t, cfg, Options{Stdout: out})
	if cfg.Sinks[0].Name != "" || cfg.QueueSize != 0 {
		t.Fatalf("New changed the caller's configuration: %+v", cfg)
	}
	a.Start()
	g := goldenExchanges()[1] // denied by authentication
	before := time.Now()
	a.RecordExchange(g.ex)
	closeAuditor(t, a)
	evs := decodeLines(t, []byte(out.String()))
	if len(evs) != 2 || field(evs[1], "event.reason") != "jwt_expired" {
		t.Fatalf("events %v", evs)
	}
	// The duration runs from the exchange's start to when it was recorded.
	if d := field(evs[1], "event.duration").(float64); d < float64(before.Sub(g.ex.Start)) {
		t.Errorf("duration %v shorter than the time since the start", d)
	}
}

func TestDirectoryLocked(t *testing.T) {
	dir := t.TempDir()
	cfg := testAuditConfig(dir, config.AuditSink{Type: "stdout"})
	a := newAuditor(t, cfg, Options{Stdout: io.Discard})
	if _, err := New(cfg, Options{Log: quietLog(), Stdout: io.Discard}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second Auditor on the same directory: %v", err)
	}
	closeAuditor(t, a)
	b := newAuditor(t, cfg, Options{Stdout: io.Discard})
	closeAuditor(t, b)
}

func TestNewRejectsBadConfig(t *testing.T) {
	cfg := testAuditConfig(t.TempDir(), config.AuditSink{Type: "file"})
	if _, err := New(cfg, Options{Log: quietLog()}); err == nil || !strings.Contains(err.Error(), "audit.sinks[0].file: required with type file") {
		t.Fatalf("err = %v", err)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func fileSinkConfig(path string) config.AuditSink {
	return config.AuditSink{Name: "file", Type: "file", File: &config.AuditFile{Path: path, MaxSize: 8 << 10, MaxAge: config.Duration(time.Hour)}}
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, _ := os.ReadDir(dir)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// TestFileRotationAndRetention drives rotation by age and by size with an
// injected clock, then retention by count and by age, with compression.
func TestFileRotationAndRetention(t *testing.T) {
	logDir := t.TempDir()
	path := filepath.Join(logDir, "audit.jsonl")
	clock := &fakeClock{t: t0}
	sc := fileSinkConfig(path)
	sc.File.KeepFiles = 2
	sc.File.KeepFor = config.Duration(7 * 24 * time.Hour)
	sc.File.Compress = true
	a := newAuditor(t, testAuditConfig(t.TempDir(), sc), Options{Now: clock.now})
	a.Start()
	delivered := func(n uint64) {
		t.Helper()
		eventually(t, 10*time.Second, fmt.Sprintf("%d events written", n), func() bool { return a.Stats().Sinks[0].Delivered == n })
	}
	recordN(a, "a", 2)
	delivered(3)

	// Age: an hour later the next write rotates first.
	clock.add(time.Hour)
	rotatedAt := clock.now()
	recordN(a, "b", 1)
	delivered(4)
	first := "audit-" + rotatedAt.UTC().Format(rotatedLayout) + ".jsonl.gz"
	eventually(t, 10*time.Second, "the rotated file compressed", func() bool {
		_, err := os.Stat(filepath.Join(logDir, first))
		return err == nil
	})

	// Size: 8 KiB fill up after about ten events.
	for i := 0; i < 4; i++ {
		clock.add(time.Minute)
		recordN(a, fmt.Sprintf("c%d", i), 12)
		delivered(uint64(4 + 12*(i+1)))
	}
	closeAuditor(t, a)
	rotated, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rotated) != 3 { // keep_files 2, plus the current file
		t.Fatalf("files %v, want 2 rotated and the current one (dir: %v)", rotated, listDir(t, logDir))
	}
	for _, f := range rotated {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
		if !strings.HasSuffix(f, ".gz") && f != path {
			t.Errorf("%s is not compressed", f)
		}
	}
	for _, f := range rotated[:2] {
		if strings.Contains(f, first) {
			t.Errorf("the oldest rotated file %s outlived keep_files", f)
		}
	}
	res, err := VerifyFiles(rotated, VerifyOptions{Keys: [][]byte{testKey}, Partial: true})
	if err != nil || res.Problem != nil || res.Last != 52 {
		t.Fatalf("verify after retention: %v %v %+v", err, res.Problem, res)
	}

	// Age retention: eight days on, the next write (the chain start of a
	// restart) rotates the current file and deletes both older ones.
	clock.add(8 * 24 * time.Hour)
	a = newAuditor(t, testAuditConfig(t.TempDir(), sc), Options{Now: clock.now})
	a.Start()
	closeAuditor(t, a)
	after, _ := RotatedFiles(path)
	want := []string{filepath.Join(logDir, "audit-"+clock.now().UTC().Format(rotatedLayout)+".jsonl.gz"), path}
	if strings.Join(after, ",") != strings.Join(want, ",") {
		t.Fatalf("after keep_for: %v, want %v", after, want)
	}
}

// TestFileChainAcrossRotationAndRestart: a chain spread over rotated files
// and two gateway runs verifies as one; tampering with a rotated file is
// found.
func TestFileChainAcrossRotationAndRestart(t *testing.T) {
	logDir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(logDir, "audit.jsonl")
	clock := &fakeClock{t: t0}
	sc := fileSinkConfig(path)
	sc.BatchSize = 1 // one write per event: rotations fall at the same events every run
	cfg := testAuditConfig(stateDir, sc)
	for run := 0; run < 2; run++ {
		a := newAuditor(t, cfg, Options{Now: clock.now})
		a.Start()
		for i := 0; i < 3; i++ {
			clock.add(time.Second)
			recordN(a, fmt.Sprintf("run%d-%d", run, i), 10)
		}
		closeAuditor(t, a)
	}
	files, err := RotatedFiles(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("want several rotations, got %v", files)
	}
	res, err := VerifyFiles(files, VerifyOptions{Keys: [][]byte{testKey}})
	if err != nil || res.Problem != nil {
		t.Fatalf("intact chain: %v %v", err, res.Problem)
	}
	if res.Events != 62 || res.ChainStarts != 2 || res.Files != len(files) {
		t.Fatalf("result %+v", res)
	}

	// Delete the last line of a rotated file: found at the start of the
	// next file.
	for i, f := range files[:len(files)-1] {
		b, _ := os.ReadFile(f)
		lines := bytes.SplitAfter(b, []byte("\n"))
		if len(lines) < 4 {
			continue
		}
		os.WriteFile(f, bytes.Join(lines[:len(lines)-2], nil), 0o600)
		res, err = VerifyFiles(files, VerifyOptions{Keys: [][]byte{testKey}})
		if err != nil || res.Problem == nil || res.Problem.Kind != ProblemDeleted || res.Problem.File != files[i+1] || res.Problem.Line != 1 {
			t.Fatalf("deletion across the rotation boundary: %v %v", err, res.Problem)
		}
		return
	}
	t.Fatalf("no rotated file with several lines: %v", files)
}

// TestStateLost: a damaged chain state starts a new chain, logged, and the
// verifier reports the break.
func TestStateLost(t *testing.T) {
	logDir, stateDir := t.TempDir(), t.TempDir()
	path := filepath.Join(logDir, "audit.jsonl")
	cfg := testAuditConfig(stateDir, fileSinkConfig(path))
	a := newAuditor(t, cfg, Options{})
	a.Start()
	recordN(a, "r", 3)
	closeAuditor(t, a)
	os.WriteFile(filepath.Join(stateDir, "chain.state"), []byte("garbage"), 0o600)
	logs := &syncBuffer{}
	a = newAuditor(t, cfg, Options{Log: logTo(logs)})
	a.Start()
	closeAuditor(t, a)
	if !strings.Contains(logs.String(), "chain state is damaged") {
		t.Errorf("not logged: %s", logs)
	}
	b, _ := os.ReadFile(path)
	evs := decodeLines(t, b)
	if last := evs[len(evs)-1]; field(last, "moat.chain.reason") != "state_lost" || field(last, "event.sequence") != 1.0 {
		t.Fatalf("last event %v", last)
	}
	res, _ := VerifyFiles([]string{path}, VerifyOptions{Keys: [][]byte{testKey}})
	if res.Problem == nil || res.Problem.Kind != ProblemChainBreak || res.Problem.Line != 5 {
		t.Fatalf("problem %v", res.Problem)
	}
}

// TestFileSinkCutsTornLine: a line half-written by a crash is cut at start.
func TestFileSinkCutsTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	os.WriteFile(path, []byte("{\"@timestamp\":\"2026-11-21T10:00:00.000000Z\"}\n{\"@timestamp\":\"2026-11-2"), 0o600)
	clock := &fakeClock{t: time.Date(2026, 11, 21, 10, 30, 0, 0, time.UTC)}
	s := newFileSink(path, 1<<20, time.Hour, 0, 0, false, false, clock.now, quietLog())
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	s.send(context.Background(), [][]byte{[]byte("{}\n")})
	s.close()
	b, _ := os.ReadFile(path)
	if string(b) != "{\"@timestamp\":\"2026-11-21T10:00:00.000000Z\"}\n{}\n" {
		t.Fatalf("file %q", b)
	}
	if !s.opened.Equal(time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("age counted from %v, want the first event", s.opened)
	}
}

// syslogFrame is one parsed RFC 5424 message.
type syslogFrame struct {
	pri                                   int
	ts, host, app, procID, msgID, sd, msg string
}

// syslogServer accepts connections on l and parses octet-counted RFC 5424
// frames strictly; a malformed frame fails the test.
func syslogServer(t *testing.T, l net.Listener) (<-chan syslogFrame, *atomic.Int32, func()) {
	frames := make(chan syslogFrame, 1000)
	var conns atomic.Int32
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					f, err := readFrame(r)
					if err == io.EOF || (err != nil && (strings.Contains(err.Error(), "use of closed") || strings.Contains(err.Error(), "tls:"))) {
						return // closed, or a refused handshake
					}
					if err != nil {
						t.Errorf("bad syslog frame: %v", err)
						return
					}
					frames <- f
				}
			}()
		}
	}()
	dropConns := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range open {
			c.Close()
		}
		open = nil
	}
	return frames, &conns, dropConns
}

func readFrame(r *bufio.Reader) (syslogFrame, error) {
	var f syslogFrame
	lenStr, err := r.ReadString(' ')
	if err != nil {
		return f, err
	}
	var n int
	if _, err := fmt.Sscanf(lenStr, "%d ", &n); err != nil || n <= 0 || lenStr[0] == '0' {
		return f, fmt.Errorf("bad length %q", lenStr)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return f, err
	}
	if _, err := fmt.Sscanf(string(msg), "<%d>1 ", &f.pri); err != nil {
		return f, fmt.Errorf("bad PRI/VERSION in %q", msg)
	}
	parts := strings.SplitN(string(msg[strings.IndexByte(string(msg), ' ')+1:]), " ", 7)
	if len(parts) != 7 {
		return f, fmt.Errorf("too few header fields in %q", msg)
	}
	f.ts, f.host, f.app, f.procID, f.msgID, f.sd, f.msg = parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6]
	if !strings.HasPrefix(f.msg, "\ufeff") {
		return f, fmt.Errorf("MSG without BOM: %q", f.msg)
	}
	f.msg = strings.TrimPrefix(f.msg, "\ufeff")
	return f, nil
}

func syslogSinkConfig(addr, transport string, tlsCfg *config.UpstreamTLS) config.AuditSink {
	return config.AuditSink{Name: "syslog", Type: "syslog", Syslog: &config.AuditSyslog{Address: addr, Transport: transport, TLS: tlsCfg},
		RetryInitial: config.Duration(time.Millisecond), RetryMax: config.Duration(10 * time.Millisecond)}
}

func collectFrames(t *testing.T, frames <-chan syslogFrame, n int) []syslogFrame {
	t.Helper()
	var out []syslogFrame
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case f := <-frames:
			out = append(out, f)
		case <-timeout:
			t.Fatalf("got %d syslog frames, want %d", len(out), n)
		}
	}
	return out
}

func checkFrames(t *testing.T, fs []syslogFrame, firstSeq int) {
	t.Helper()
	for i, f := range fs {
		var m map[string]any
		if err := json.Unmarshal([]byte(f.msg), &m); err != nil {
			t.Fatalf("frame %d MSG is not JSON: %v", i, err)
		}
		if seq := field(m, "event.sequence"); seq != float64(firstSeq+i) {
			t.Fatalf("frame %d has sequence %v, want %d", i, seq, firstSeq+i)
		}
		wantPri := 13*8 + 6
		if field(m, "event.outcome") == "failure" {
			wantPri = 13*8 + 4
		}
		if f.pri != wantPri || f.ts != field(m, "@timestamp") || f.host != "gw-1" || f.app != "moat" ||
			f.procID != fmt.Sprint(os.Getpid()) || f.msgID != field(m, "event.action") || f.sd != "-" {
			t.Fatalf("frame %d header %+v does not match its event", i, f)
		}
	}
}

func TestSyslogTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames, conns, dropConns := syslogServer(t, l)
	a := newAuditor(t, testAuditConfig(t.TempDir(), syslogSinkConfig(l.Addr().String(), "tcp", nil)), Options{})
	a.Start()
	recordN(a, "r", 5)
	g := goldenExchanges()[1] // a denial: outcome failure, severity warning
	ev := FromExchange(g.ex, g.end)
	a.Record(&ev)
	checkFrames(t, collectFrames(t, frames, 7), 1)

	// The receiver closes the connection: the sink notices and reconnects.
	dropConns()
	recordN(a, "s", 3)
	checkFrames(t, collectFrames(t, frames, 3), 8)
	closeAuditor(t, a)
	if conns.Load() != 2 {
		t.Errorf("%d connections, want 2", conns.Load())
	}
}

func TestSyslogTLS(t *testing.T) {
	ca, caFile, cert := testTLS(t)
	l, err := tlsListen(cert)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	frames, _, _ := syslogServer(t, l)
	a := newAuditor(t, testAuditConfig(t.TempDir(), syslogSinkConfig(l.Addr().String(), "tls", &config.UpstreamTLS{CAFile: caFile, ServerName: "localhost"})), Options{})
	a.Start()
	recordN(a, "r", 4)
	checkFrames(t, collectFrames(t, frames, 5), 1)
	closeAuditor(t, a)

	// A server the sink's CA did not sign gets nothing.
	_ = ca
	_, otherCAFile, _ := testTLS(t)
	a = newAuditor(t, testAuditConfig(t.TempDir(), syslogSinkConfig(l.Addr().String(), "tls", &config.UpstreamTLS{CAFile: otherCAFile, ServerName: "localhost"})), Options{})
	a.Start()
	eventually(t, 10*time.Second, "failed handshakes", func() bool { return a.Stats().Sinks[0].Failures >= 2 })
	closeAuditor(t, a)
	select {
	case f := <-frames:
		t.Fatalf("an untrusted server received %v", f)
	default:
	}
	if s := a.Stats().Sinks[0]; s.SpoolEvents != 1 || s.Delivered != 0 {
		t.Fatalf("stats %+v", s)
	}
}
