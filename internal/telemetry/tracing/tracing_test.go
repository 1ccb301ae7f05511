package tracing

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/proxy"
	"github.com/moat-gateway/moat/internal/router"
)

var quietLog = slog.New(slog.DiscardHandler)

// A trace context a trusted proxy in front of moat would send.
const (
	peerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	peerSpanID  = "00f067aa0ba902b7"
	peerSampled = "00-" + peerTraceID + "-" + peerSpanID + "-01"
	peerDropped = "00-" + peerTraceID + "-" + peerSpanID + "-00"
)

// resolver reports every request as coming from one peer, trusted or not.
type resolver struct{ trusted bool }

func (r resolver) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	peer := netip.MustParseAddr("192.0.2.10")
	if r.trusted {
		return netip.MustParseAddr("198.51.100.7"), peer, true
	}
	return peer, peer, false
}

type stageFunc func(ctx context.Context, ex *gateway.Exchange) error

func (f stageFunc) ProcessRequest(ctx context.Context, ex *gateway.Exchange) error { return f(ctx, ex) }

// namedStage names its own span.
type namedStage struct{}

func (namedStage) StageName() string                                       { return "authn" }
func (namedStage) ProcessRequest(context.Context, *gateway.Exchange) error { return nil }

// upstreamSeen records the trace headers an upstream received.
type upstreamSeen struct {
	mu          sync.Mutex
	traceparent []string
	tracestate  []string
	calls       int
}

func (u *upstreamSeen) get() (tp, ts []string, calls int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.traceparent, u.tracestate, u.calls
}

// harness is a gateway with one route, /items/{id}, proxied by the real
// proxy to an httptest upstream on loopback.
type harness struct {
	gw       *gateway.Gateway
	rec      *tracetest.SpanRecorder
	seen     *upstreamSeen
	mu       sync.Mutex
	finished []*gateway.Exchange
}

type harnessOptions struct {
	trusted     bool
	tracing     bool // a Provider with a span recorder
	ratio       float64
	stages      []gateway.RequestStage
	deadTarget  bool // the upstream's only target refuses connections
	upstreamSts int
	provider    *Provider // trace with this Provider instead of a recorder
}

func newHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	h := &harness{seen: &upstreamSeen{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.seen.mu.Lock()
		h.seen.traceparent = r.Header.Values("Traceparent")
		h.seen.tracestate = r.Header.Values("Tracestate")
		h.seen.calls++
		h.seen.mu.Unlock()
		if o.upstreamSts != 0 {
			w.WriteHeader(o.upstreamSts)
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	target := srv.URL
	if o.deadTarget {
		srv.Close()
	}
	tu, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	ucfg := &config.Upstream{
		Targets: []config.URL{{URL: tu}},
		Timeouts: config.UpstreamTimeout{Connect: config.Duration(2 * time.Second),
			ResponseHeader: config.Duration(5 * time.Second), Overall: config.Duration(10 * time.Second)},
		MaxIdleConns: 4,
		Passive:      config.PassiveHealth{MaxFailures: 5, Ejection: config.Duration(30 * time.Second)},
	}
	up, err := proxy.New("items", ucfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)

	route := &gateway.Route{Name: "get-item", Template: "/items/{id}", MaxBody: 1024, Request: o.stages,
		Upstream: up.ForRoute(proxy.RouteOptions{})}
	rb := router.NewBuilder[*gateway.Route]()
	if err := rb.Add("", []string{"GET", "POST"}, "/items/{id}", route); err != nil {
		t.Fatal(err)
	}
	opts := gateway.Options{Router: rb.Build(), ClientIP: resolver{trusted: o.trusted}, Log: quietLog,
		OnFinish: func(ex *gateway.Exchange) {
			h.mu.Lock()
			h.finished = append(h.finished, ex)
			h.mu.Unlock()
		}}
	if o.provider != nil {
		opts.Tracer = o.provider.Tracer()
	} else if o.tracing {
		h.rec = tracetest.NewSpanRecorder()
		ratio := o.ratio
		p, err := newProvider(&config.Tracing{SampleRatio: &ratio}, sdktrace.WithSpanProcessor(h.rec))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
		opts.Tracer = p.Tracer()
	}
	h.gw = gateway.New(opts)
	return h
}

// newTracedHarness returns a harness traced by p, with a trusted peer.
func newTracedHarness(t *testing.T, p *Provider) *harness {
	return newHarness(t, harnessOptions{trusted: true, provider: p})
}

// do serves one request with the given trace headers and returns the status.
func (h *harness) do(t *testing.T, method, path, traceparent, tracestate string) int {
	t.Helper()
	r := httptest.NewRequest(method, "http://api.example.com"+path, nil)
	r.RemoteAddr = "192.0.2.10:40000"
	if traceparent != "" {
		r.Header.Set("Traceparent", traceparent)
	}
	if tracestate != "" {
		r.Header.Set("Tracestate", tracestate)
	}
	w := httptest.NewRecorder()
	h.gw.ServeHTTP(w, r)
	return w.Code
}

func (h *harness) lastExchange(t *testing.T) *gateway.Exchange {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.finished) == 0 {
		t.Fatal("no exchange finished")
	}
	return h.finished[len(h.finished)-1]
}

// spans returns the ended spans by kind: the server span, the internal
// (stage) spans in order, and the client span (nil when there is none).
func spans(t *testing.T, rec *tracetest.SpanRecorder) (server sdktrace.ReadOnlySpan, stages []sdktrace.ReadOnlySpan, client sdktrace.ReadOnlySpan) {
	t.Helper()
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindServer:
			if server != nil {
				t.Fatal("two server spans")
			}
			server = s
		case trace.SpanKindInternal:
			stages = append(stages, s)
		case trace.SpanKindClient:
			if client != nil {
				t.Fatal("two client spans")
			}
			client = s
		}
	}
	return server, stages, client
}

func attr(s sdktrace.ReadOnlySpan, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, s sdktrace.ReadOnlySpan, key string, want any) {
	t.Helper()
	v, ok := attr(s, key)
	if !ok {
		t.Errorf("span %q has no attribute %s (has %v)", s.Name(), key, s.Attributes())
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("span %q attribute %s = %v (%T), want %v (%T)", s.Name(), key, got, got, want, want)
	}
}

// parseTraceparent splits a version 00 traceparent.
func parseTraceparent(t *testing.T, tp string) (traceID, spanID, flags string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		t.Fatalf("malformed traceparent %q", tp)
	}
	return parts[1], parts[2], parts[3]
}

// TestTraceContextTrust pins who may choose the trace: a trusted peer's
// trace context is continued, anyone else's is dropped and a new trace
// starts; the upstream always gets the trace of the gateway's spans, with
// the client span as parent.
func TestTraceContextTrust(t *testing.T) {
	tests := []struct {
		desc        string
		trusted     bool
		traceparent string
		tracestate  string
		continued   bool   // the incoming trace is continued
		recorded    bool   // spans are sampled
		wantState   string // tracestate the upstream gets
	}{
		{desc: "trusted peer, sampled", trusted: true, traceparent: peerSampled, tracestate: "vendor=abc", continued: true, recorded: true, wantState: "vendor=abc"},
		{desc: "trusted peer, not sampled", trusted: true, traceparent: peerDropped, continued: true},
		{desc: "trusted peer, malformed", trusted: true, traceparent: "00-" + peerTraceID + "-0000000000000000-01", recorded: true},
		{desc: "trusted peer, no trace context", trusted: true, recorded: true},
		{desc: "untrusted peer, sampled", traceparent: peerSampled, tracestate: "vendor=abc", recorded: true},
		{desc: "untrusted peer, not sampled flag ignored", traceparent: peerDropped, recorded: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h := newHarness(t, harnessOptions{trusted: tt.trusted, tracing: true, ratio: 1})
			if got := h.do(t, "GET", "/items/7", tt.traceparent, tt.tracestate); got != 200 {
				t.Fatalf("status %d, want 200", got)
			}
			tps, tss, _ := h.seen.get()
			if len(tps) != 1 {
				t.Fatalf("upstream got traceparent %q, want exactly one", tps)
			}
			upTrace, upParent, upFlags := parseTraceparent(t, tps[0])
			ex := h.lastExchange(t)
			if ex.TraceID != upTrace {
				t.Errorf("ex.TraceID = %q, upstream trace %q", ex.TraceID, upTrace)
			}
			if got := audit.FromExchange(ex, time.Now()).TraceID; got != upTrace {
				t.Errorf("audit trace.id = %q, want the upstream's %q", got, upTrace)
			}
			if tt.continued != (upTrace == peerTraceID) {
				t.Errorf("upstream trace %s, incoming %s: continued = %v, want %v", upTrace, peerTraceID, upTrace == peerTraceID, tt.continued)
			}
			if wantFlags := map[bool]string{true: "01", false: "00"}[tt.recorded]; upFlags != wantFlags {
				t.Errorf("upstream trace flags %s, want %s", upFlags, wantFlags)
			}
			if tt.wantState == "" && len(tss) > 0 || tt.wantState != "" && (len(tss) != 1 || tss[0] != tt.wantState) {
				t.Errorf("upstream tracestate %q, want %q", tss, tt.wantState)
			}
			if !tt.trusted && ex.Request.Header.Get("Traceparent") != "" {
				t.Errorf("untrusted traceparent left in the request for later stages and audit")
			}
			server, stages, client := spans(t, h.rec)
			if !tt.recorded {
				if n := len(h.rec.Ended()); n != 0 {
					t.Errorf("%d spans recorded for a trace the peer did not sample", n)
				}
				return
			}
			if server == nil || client == nil || len(stages) != 0 {
				t.Fatalf("spans: server %v, %d stages, client %v", server != nil, len(stages), client != nil)
			}
			if got := server.SpanContext().TraceID().String(); got != upTrace {
				t.Errorf("server span trace %s, upstream trace %s", got, upTrace)
			}
			if got := client.SpanContext().SpanID().String(); got != upParent {
				t.Errorf("upstream parent %s, want the client span %s", upParent, got)
			}
			if client.Parent().SpanID() != server.SpanContext().SpanID() {
				t.Errorf("client span's parent is not the server span")
			}
			switch {
			case tt.continued:
				if got := server.Parent().SpanID().String(); got != peerSpanID || !server.Parent().IsRemote() {
					t.Errorf("server span parent %s (remote %v), want the peer's %s", got, server.Parent().IsRemote(), peerSpanID)
				}
			case server.Parent().IsValid():
				t.Errorf("server span has parent %v, want a new trace", server.Parent())
			}
		})
	}
}

// TestSpansPerStage checks the span tree of an exchange that passes two
// stages and is proxied: stage spans are children of the server span, in
// order, named after the stage; the server span carries the route.
func TestSpansPerStage(t *testing.T) {
	var stageCtxSpan trace.SpanContext
	probe := stageFunc(func(ctx context.Context, ex *gateway.Exchange) error {
		stageCtxSpan = trace.SpanContextFromContext(ctx)
		return nil
	})
	h := newHarness(t, harnessOptions{tracing: true, ratio: 1, stages: []gateway.RequestStage{namedStage{}, probe}})
	if got := h.do(t, "POST", "/items/7", "", ""); got != 200 {
		t.Fatalf("status %d", got)
	}
	server, stages, client := spans(t, h.rec)
	if server == nil || client == nil || len(stages) != 2 {
		t.Fatalf("spans: server %v, %d stages, client %v", server != nil, len(stages), client != nil)
	}
	if server.Name() != "get-item" {
		t.Errorf("server span name %q, want the route name", server.Name())
	}
	wantAttr(t, server, "http.request.method", "POST")
	wantAttr(t, server, "http.route", "/items/{id}")
	wantAttr(t, server, "moat.route", "get-item")
	wantAttr(t, server, "http.response.status_code", int64(200))
	wantAttr(t, server, "client.address", "192.0.2.10")
	wantAttr(t, server, "moat.request_id", h.lastExchange(t).ID)
	if _, ok := attr(server, "moat.reason_id"); ok {
		t.Errorf("reason_id on an allowed exchange")
	}
	if server.Status().Code != codes.Unset {
		t.Errorf("server span status %v", server.Status())
	}
	wantNames := []string{"authn", "tracing.stageFunc"}
	for i, s := range stages {
		if s.Name() != wantNames[i] {
			t.Errorf("stage %d span %q, want %q", i, s.Name(), wantNames[i])
		}
		wantAttr(t, s, "moat.stage.index", int64(i))
		if s.Parent().SpanID() != server.SpanContext().SpanID() {
			t.Errorf("stage %d span's parent is not the server span", i)
		}
		if !s.StartTime().Before(s.EndTime()) && !s.StartTime().Equal(s.EndTime()) {
			t.Errorf("stage %d span ends before it starts", i)
		}
	}
	if stages[0].EndTime().After(stages[1].StartTime()) {
		t.Errorf("stage spans overlap: stages run one after another")
	}
	if stageCtxSpan.SpanID() != stages[1].SpanContext().SpanID() {
		t.Errorf("a stage's context does not carry its own span")
	}
	wantAttr(t, client, "http.response.status_code", int64(200))
	wantAttr(t, client, "server.address", "127.0.0.1")
	if client.StartTime().Before(stages[1].EndTime()) {
		t.Errorf("upstream call starts before the last stage ended")
	}
	if server.EndTime().Before(client.EndTime()) {
		t.Errorf("server span ends before the upstream call")
	}
}

// TestDeniedAndFailedExchanges checks how stage verdicts, 404s and upstream
// failures show in the spans.
func TestDeniedAndFailedExchanges(t *testing.T) {
	deny := stageFunc(func(context.Context, *gateway.Exchange) error {
		return &gateway.Reject{Status: 403, ReasonID: "policy_denied", Detail: "secret detail"}
	})
	broken := stageFunc(func(context.Context, *gateway.Exchange) error { return errors.New("store unreachable") })
	tests := []struct {
		desc        string
		opts        harnessOptions
		path        string
		status      int
		serverName  string
		reason      string
		serverError bool
		stageCheck  func(t *testing.T, s sdktrace.ReadOnlySpan)
		clientError bool // there is a client span, with error status
	}{
		{desc: "stage denies", opts: harnessOptions{stages: []gateway.RequestStage{deny}}, path: "/items/1", status: 403,
			serverName: "get-item", reason: "policy_denied", stageCheck: func(t *testing.T, s sdktrace.ReadOnlySpan) {
				wantAttr(t, s, "moat.decision", "deny")
				wantAttr(t, s, "moat.reason_id", "policy_denied")
				wantAttr(t, s, "http.response.status_code", int64(403))
				for _, kv := range s.Attributes() {
					if strings.Contains(kv.Value.Emit(), "secret") {
						t.Errorf("a reject's detail was exported: %v", kv)
					}
				}
			}},
		{desc: "stage fails", opts: harnessOptions{stages: []gateway.RequestStage{broken}}, path: "/items/1", status: 500,
			serverName: "get-item", reason: gateway.ReasonInternalError, serverError: true, stageCheck: func(t *testing.T, s sdktrace.ReadOnlySpan) {
				if s.Status().Code != codes.Error || s.Status().Description != "store unreachable" {
					t.Errorf("stage span status %v, want the error", s.Status())
				}
			}},
		{desc: "no route", path: "/nothing", status: 404, serverName: SpanUnrouted, reason: gateway.ReasonRouteNotFound},
		{desc: "upstream unreachable", opts: harnessOptions{deadTarget: true}, path: "/items/1", status: 502,
			serverName: "get-item", reason: gateway.ReasonUpstreamUnreachable, serverError: true, clientError: true},
		{desc: "upstream answers 503", opts: harnessOptions{upstreamSts: 503}, path: "/items/1", status: 503,
			serverName: "get-item", serverError: true, clientError: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tt.opts.tracing, tt.opts.ratio = true, 1
			h := newHarness(t, tt.opts)
			if got := h.do(t, "GET", tt.path, "", ""); got != tt.status {
				t.Fatalf("status %d, want %d", got, tt.status)
			}
			server, stages, client := spans(t, h.rec)
			if server == nil {
				t.Fatal("no server span")
			}
			if server.Name() != tt.serverName {
				t.Errorf("server span %q, want %q", server.Name(), tt.serverName)
			}
			wantAttr(t, server, "http.response.status_code", int64(tt.status))
			if tt.reason != "" {
				wantAttr(t, server, "moat.reason_id", tt.reason)
			}
			if got := server.Status().Code == codes.Error; got != tt.serverError {
				t.Errorf("server span error = %v, want %v (%v)", got, tt.serverError, server.Status())
			}
			if tt.stageCheck != nil {
				if len(stages) != 1 {
					t.Fatalf("%d stage spans, want 1", len(stages))
				}
				tt.stageCheck(t, stages[0])
			}
			if (client != nil) != (tt.clientError || tt.opts.upstreamSts != 0) {
				t.Fatalf("client span present = %v", client != nil)
			}
			if client != nil && (client.Status().Code == codes.Error) != tt.clientError {
				t.Errorf("client span status %v, want error %v", client.Status(), tt.clientError)
			}
		})
	}
}

// TestTracingOffPropagation pins what the proxy does with trace headers when
// tracing is off: a trusted peer's pass through unchanged, an untrusted
// client's are removed, and the exchange has no trace ID of its own.
func TestTracingOffPropagation(t *testing.T) {
	tests := []struct {
		desc    string
		trusted bool
		want    string
	}{
		{desc: "trusted peer", trusted: true, want: peerSampled},
		{desc: "untrusted peer", trusted: false, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h := newHarness(t, harnessOptions{trusted: tt.trusted})
			if got := h.do(t, "GET", "/items/7", peerSampled, "vendor=abc"); got != 200 {
				t.Fatalf("status %d", got)
			}
			tps, tss, calls := h.seen.get()
			if calls != 1 {
				t.Fatalf("upstream called %d times", calls)
			}
			got := strings.Join(tps, ",")
			if got != tt.want {
				t.Errorf("upstream traceparent %q, want %q", got, tt.want)
			}
			if (len(tss) > 0) != tt.trusted {
				t.Errorf("upstream tracestate %q with trusted = %v", tss, tt.trusted)
			}
			if ex := h.lastExchange(t); ex.TraceID != "" {
				t.Errorf("ex.TraceID = %q with tracing off", ex.TraceID)
			}
		})
	}
}

// TestSampleRatio checks that new traces follow sample_ratio while the
// trace context is still propagated for unsampled ones.
func TestSampleRatio(t *testing.T) {
	h := newHarness(t, harnessOptions{tracing: true, ratio: 0})
	for range 20 {
		if got := h.do(t, "GET", "/items/7", "", ""); got != 200 {
			t.Fatalf("status %d", got)
		}
	}
	if n := len(h.rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded with sample_ratio 0", n)
	}
	tps, _, _ := h.seen.get()
	if len(tps) != 1 {
		t.Fatalf("upstream traceparent %q, want one even when not sampled", tps)
	}
	if _, _, flags := parseTraceparent(t, tps[0]); flags != "00" {
		t.Errorf("flags %s, want 00 (not sampled)", flags)
	}
	// A trusted peer's sampled trace is recorded whatever the ratio.
	h = newHarness(t, harnessOptions{tracing: true, ratio: 0, trusted: true})
	h.do(t, "GET", "/items/7", peerSampled, "")
	if n := len(h.rec.Ended()); n != 2 {
		t.Errorf("%d spans recorded for a sampled parent, want 2 (server and client)", n)
	}
}

func TestNewDisabled(t *testing.T) {
	off := false
	for _, cfg := range []*config.Tracing{nil, {Enabled: &off, OTLPEndpoint: "http://127.0.0.1:4318/v1/traces"}} {
		p, err := New(cfg, quietLog)
		if err != nil || p != nil {
			t.Fatalf("New(%+v) = %v, %v; want nil, nil", cfg, p, err)
		}
		if tr := p.Tracer(); tr != nil {
			t.Errorf("nil Provider's Tracer() = %#v, want a nil interface", tr)
		}
		if err := p.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown of nil Provider: %v", err)
		}
	}
}

func TestStageName(t *testing.T) {
	tests := []struct {
		desc string
		st   gateway.RequestStage
		want string
	}{
		{desc: "func type", st: stageFunc(nil), want: "tracing.stageFunc"},
		{desc: "value type", st: namedStage{}, want: "tracing.namedStage"},
		{desc: "pointer type", st: &namedStage{}, want: "tracing.namedStage"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := StageName(tt.st); got != tt.want {
				t.Errorf("StageName = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTargetHostPort(t *testing.T) {
	tests := []struct{ desc, in, host, port string }{
		{"host and port", "http://10.0.0.5:8080", "10.0.0.5", "8080"},
		{"base path", "https://api.internal/v1", "api.internal", ""},
		{"ipv6", "http://[2001:db8::1]:9000/x", "2001:db8::1", "9000"},
		{"broken ipv6", "http://[2001:db8::1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h, p := targetHostPort(tt.in)
			if h != tt.host || p != tt.port {
				t.Errorf("targetHostPort(%q) = %q, %q; want %q, %q", tt.in, h, p, tt.host, tt.port)
			}
		})
	}
}

// FuzzTrustedTraceContext: whatever a trusted peer sends as trace context,
// the exchange gets a valid trace ID and the upstream a well-formed
// traceparent of that trace.
func FuzzTrustedTraceContext(f *testing.F) {
	f.Add(peerSampled, "vendor=abc")
	f.Add(peerDropped, "")
	f.Add("ff-"+peerTraceID+"-"+peerSpanID+"-01", "a=1,b=2")
	f.Add("01-"+peerTraceID+"-"+peerSpanID+"-01-extra", strings.Repeat("k=v,", 40))
	f.Add("00-00000000000000000000000000000000-"+peerSpanID+"-01", "=")
	p, err := newProvider(&config.Tracing{SampleRatio: ptr(1.0)}, sdktrace.WithSpanProcessor(tracetest.NewSpanRecorder()))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tp, ts string) {
		r := httptest.NewRequest("GET", "http://api.example.com/", nil)
		r.Header["Traceparent"] = []string{tp}
		r.Header["Tracestate"] = []string{ts}
		ex := &gateway.Exchange{Request: r, PeerTrusted: true, Start: time.Now()}
		ctx := p.Start(context.Background(), ex)
		if len(ex.TraceID) != 32 || ex.TraceID == strings.Repeat("0", 32) {
			t.Fatalf("trace ID %q", ex.TraceID)
		}
		out := http.Header{"Traceparent": {"stale"}, "Tracestate": {"stale"}}
		p.Inject(ctx, out)
		got := out.Values("Traceparent")
		if len(got) != 1 || audit.TraceID(got[0]) != ex.TraceID {
			t.Fatalf("injected %q for trace %s", got, ex.TraceID)
		}
		if v := out.Get("Tracestate"); v == "stale" || strings.ContainsAny(v, "\r\n") {
			t.Fatalf("tracestate %q", v)
		}
		p.Finish(ctx, ex)
	})
}

func ptr[T any](v T) *T { return &v }

// BenchmarkServeHTTPTraced measures an exchange through two stages and a
// local handler with tracing on and every trace sampled, spans going to a
// processor that drops them: the tracing cost per request (compare with
// gateway's BenchmarkServeHTTP).
func BenchmarkServeHTTPTraced(b *testing.B) {
	for _, ratio := range []float64{1, 0} {
		b.Run(fmt.Sprintf("ratio=%v", ratio), func(b *testing.B) {
			p, err := newProvider(&config.Tracing{SampleRatio: &ratio}, sdktrace.WithSpanProcessor(discardProcessor{}))
			if err != nil {
				b.Fatal(err)
			}
			pass := stageFunc(func(context.Context, *gateway.Exchange) error { return nil })
			route := &gateway.Route{Name: "items", Template: "/items/{id}", MaxBody: 1024,
				Request: []gateway.RequestStage{pass, pass},
				Upstream: handler(func(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) {
					w.WriteHeader(http.StatusNoContent)
				})}
			rb := router.NewBuilder[*gateway.Route]()
			if err := rb.Add("", []string{"GET"}, "/items/{id}", route); err != nil {
				b.Fatal(err)
			}
			g := gateway.New(gateway.Options{Router: rb.Build(), ClientIP: resolver{}, Log: quietLog, Tracer: p.Tracer()})
			r := httptest.NewRequest("GET", "http://example.com/items/7", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				g.ServeHTTP(w, r)
			}
		})
	}
}

type handler func(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange)

func (f handler) Forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) { f(w, r, ex) }

// discardProcessor drops every span.
type discardProcessor struct{}

func (discardProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (discardProcessor) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (discardProcessor) Shutdown(context.Context) error                  { return nil }
func (discardProcessor) ForceFlush(context.Context) error                { return nil }
