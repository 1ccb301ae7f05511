// Package tracing implements distributed tracing for the gateway with
// OpenTelemetry: W3C Trace Context accepted from trusted peers and
// propagated upstream, a server span per exchange, a child span per request
// stage and a client span per upstream call, exported over OTLP/HTTP
// (protobuf) by a batching processor. See docs/tracing.md.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// instrumentationName names the tracer of the spans moat makes.
const instrumentationName = "github.com/moat-gateway/moat"

// Span names of the spans that do not take a route's or a stage's name.
const (
	SpanUnrouted = "unrouted" // server span of an exchange no route matched
	SpanUpstream = "upstream" // client span of the upstream call
)

// Attribute keys set on moat's spans beyond the OpenTelemetry semantic
// conventions.
const (
	AttrReasonID   = attribute.Key("moat.reason_id")
	AttrRequestID  = attribute.Key("moat.request_id")
	AttrRoute      = attribute.Key("moat.route")
	AttrStageIndex = attribute.Key("moat.stage.index")
	AttrDecision   = attribute.Key("moat.decision") // deny or answer, on a stage span that stopped the exchange
	AttrTarget     = attribute.Key("moat.upstream.target")
)

// maxStatusDescription bounds the error text put in a span's status.
const maxStatusDescription = 256

// Provider is moat's tracer: it owns an OpenTelemetry TracerProvider and
// implements gateway.Tracer. It is safe for concurrent use, including by
// several Gateways at once (a reload keeps the Provider). The zero value is
// not usable; a nil *Provider means tracing off.
type Provider struct {
	tp      *sdktrace.TracerProvider
	tracer  trace.Tracer
	prop    propagation.TraceContext
	timeout time.Duration // bounds Shutdown when its context has no deadline
	names   sync.Map      // reflect.Type of a request stage -> span name
}

// New builds the tracing Provider of cfg, a defaulted and validated
// configuration; it returns nil and no error when tracing is off (cfg nil or
// enabled false). With an otlp_endpoint, spans are exported to it by a
// batching processor that drops spans rather than slow requests down when
// its queue is full; export errors are logged to log. New connects to
// nothing: the first export does. The caller must call Shutdown.
func New(cfg *config.Tracing, log *slog.Logger) (*Provider, error) {
	if !cfg.IsOn() {
		return nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	var opts []sdktrace.TracerProviderOption
	if cfg.OTLPEndpoint != "" {
		exp, err := newExporter(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp,
			sdktrace.WithMaxQueueSize(cfg.MaxQueueSize),
			sdktrace.WithMaxExportBatchSize(min(cfg.MaxQueueSize, sdktrace.DefaultMaxExportBatchSize)),
			sdktrace.WithExportTimeout(cfg.Timeout.D())))
		// The SDK reports export failures to a process-wide handler; the
		// last Provider built logs them.
		elog := log.With("component", "tracing")
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
			elog.Warn("exporting spans failed", "error", err)
		}))
	}
	return newProvider(cfg, opts...)
}

// newProvider builds a Provider with the sampler and resource of cfg and the
// given extra options (span processors); tests pass a span recorder.
func newProvider(cfg *config.Tracing, opts ...sdktrace.TracerProviderOption) (*Provider, error) {
	ratio := config.DefaultTracingSampleRatio
	if cfg.SampleRatio != nil {
		ratio = *cfg.SampleRatio
	}
	service := cfg.ServiceName
	if service == "" {
		service = config.DefaultTracingServiceName
	}
	timeout := cfg.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultTracingTimeout.D()
	}
	opts = append([]sdktrace.TracerProviderOption{
		// A trusted peer's sampling decision is followed; new traces are
		// sampled by trace ID, so every gateway of a fleet agrees.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	}, opts...)
	tp := sdktrace.NewTracerProvider(opts...)
	return &Provider{tp: tp, tracer: tp.Tracer(instrumentationName), timeout: timeout}, nil
}

// newExporter returns the OTLP/HTTP exporter of cfg. Retries of a failed
// export are bounded, so that an unreachable collector costs queued spans,
// never blocked requests.
func newExporter(cfg *config.Tracing) (sdktrace.SpanExporter, error) {
	opts := []otlptracehttp.Option{
		otlptracehttp.WithEndpointURL(cfg.OTLPEndpoint),
		otlptracehttp.WithTimeout(cfg.Timeout.D()),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: true, InitialInterval: time.Second,
			MaxInterval: 5 * time.Second, MaxElapsedTime: 30 * time.Second}),
	}
	if len(cfg.Headers) > 0 {
		h := make(map[string]string, len(cfg.Headers))
		for k, v := range cfg.Headers {
			h[k] = v.Value()
		}
		opts = append(opts, otlptracehttp.WithHeaders(h))
	}
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the otlp exporter: %w", err)
	}
	return exp, nil
}

// Tracer returns p as a gateway.Tracer, or a nil interface when p is nil
// (tracing off): assign this, never p itself, to gateway.Options.Tracer.
func (p *Provider) Tracer() gateway.Tracer {
	if p == nil {
		return nil
	}
	return p
}

// Shutdown ends the Provider: spans still queued are exported, until ctx is
// done or, when ctx has no deadline, for at most the configured timeout.
// Spans started afterwards are dropped. It is safe on a nil Provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down tracing: %w", err)
	}
	return nil
}

// Start begins the server span of ex. The trace context of the request
// (traceparent, tracestate) is its parent when the TCP peer is a trusted
// proxy; from any other peer it is removed from the request, and the
// exchange starts a new trace. It sets ex.TraceID to the span's trace ID.
func (p *Provider) Start(ctx context.Context, ex *gateway.Exchange) context.Context {
	r := ex.Request
	if ex.PeerTrusted {
		ctx = p.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	} else {
		r.Header.Del("Traceparent")
		r.Header.Del("Tracestate")
	}
	method, original := httpMethod(r.Method)
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, attribute.String("http.request.method", method), AttrRequestID.String(ex.ID))
	if original != "" {
		attrs = append(attrs, attribute.String("http.request.method_original", original))
	}
	if ex.ClientIP.IsValid() {
		attrs = append(attrs, attribute.String("client.address", ex.ClientIP.String()))
	}
	if ex.PeerIP.IsValid() && ex.PeerIP != ex.ClientIP {
		attrs = append(attrs, attribute.String("network.peer.address", ex.PeerIP.String()))
	}
	start := ex.Start
	if start.IsZero() {
		start = time.Now()
	}
	ctx, span := p.tracer.Start(ctx, SpanUnrouted, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	ex.TraceID = span.SpanContext().TraceID().String()
	return ctx
}

// StartStage begins the span of a request stage, named after the stage's
// type (see StageName).
func (p *Provider) StartStage(ctx context.Context, ex *gateway.Exchange, i int, st gateway.RequestStage) (context.Context, gateway.Span) {
	ctx, span := p.tracer.Start(ctx, p.stageName(st), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(AttrStageIndex.Int(i)))
	return ctx, stageSpan{span}
}

// StartUpstream begins the client span of the upstream call of ex.
func (p *Provider) StartUpstream(ctx context.Context, ex *gateway.Exchange) (context.Context, gateway.Span) {
	attrs := make([]attribute.KeyValue, 0, 4)
	if ex.Request != nil {
		method, _ := httpMethod(ex.Request.Method)
		attrs = append(attrs, attribute.String("http.request.method", method))
	}
	if ex.Target != "" {
		attrs = append(attrs, AttrTarget.String(ex.Target))
		if host, port := targetHostPort(ex.Target); host != "" {
			attrs = append(attrs, attribute.String("server.address", host))
			if port != "" {
				attrs = append(attrs, attribute.String("server.port", port))
			}
		}
	}
	ctx, span := p.tracer.Start(ctx, SpanUpstream, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, clientSpan{span}
}

// Inject replaces the trace context in h with that of the span in ctx.
func (p *Provider) Inject(ctx context.Context, h http.Header) {
	h.Del("Traceparent")
	h.Del("Tracestate")
	p.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// Finish names the server span after the matched route and ends it with the
// exchange's status and reason. Statuses of 500 and above mark it an error.
func (p *Provider) Finish(ctx context.Context, ex *gateway.Exchange) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if rt := ex.Route; rt != nil {
		span.SetName(rt.Name)
		span.SetAttributes(AttrRoute.String(rt.Name), attribute.String("http.route", rt.Template))
	}
	span.SetAttributes(attribute.Int("http.response.status_code", ex.Status))
	if ex.ReasonID != "" {
		span.SetAttributes(AttrReasonID.String(ex.ReasonID))
	}
	if ex.Status >= 500 {
		desc := ex.ReasonID
		if desc == "" {
			desc = http.StatusText(ex.Status)
		}
		span.SetStatus(codes.Error, desc)
	}
	span.End()
}

// stageSpan is the span of one request stage.
type stageSpan struct{ span trace.Span }

// End records how the stage ended: a *gateway.Reject as decision deny with
// its reason, an *gateway.Answer as decision answer, and any other error as
// the span's error status.
func (s stageSpan) End(_ int, err error) {
	if err != nil && s.span.IsRecording() {
		var rej *gateway.Reject
		var ans *gateway.Answer
		switch {
		case errors.As(err, &rej):
			s.span.SetAttributes(AttrDecision.String("deny"), AttrReasonID.String(rej.ReasonID),
				attribute.Int("http.response.status_code", rej.Status))
		case errors.As(err, &ans):
			s.span.SetAttributes(AttrDecision.String("answer"), attribute.Int("http.response.status_code", ans.Status))
		default:
			s.span.SetStatus(codes.Error, clip(err.Error(), maxStatusDescription))
		}
	}
	s.span.End()
}

// clientSpan is the span of an upstream call.
type clientSpan struct{ span trace.Span }

// End records the upstream's status, and err as the span's error status.
func (s clientSpan) End(status int, err error) {
	if s.span.IsRecording() {
		if status != 0 {
			s.span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if err != nil {
			s.span.SetStatus(codes.Error, clip(err.Error(), maxStatusDescription))
		}
	}
	s.span.End()
}

// stageNamer is implemented by request stages that name their own span.
type stageNamer interface{ StageName() string }

// stageName returns the span name of st: its StageName, or its type's name
// ("cors.CORS"), computed once per type.
func (p *Provider) stageName(st gateway.RequestStage) string {
	if n, ok := st.(stageNamer); ok {
		return n.StageName()
	}
	t := reflect.TypeOf(st)
	if v, ok := p.names.Load(t); ok {
		return v.(string)
	}
	name := StageName(st)
	p.names.Store(t, name)
	return name
}

// StageName returns the span name of a request stage that does not name
// itself: its package-qualified type name without pointer marks, such as
// "cors.CORS" or "waf.WAF".
func StageName(st gateway.RequestStage) string {
	if st == nil {
		return "stage"
	}
	return strings.TrimLeft(reflect.TypeOf(st).String(), "*")
}

// httpMethod returns the method as the semantic conventions record it: a
// standard method as is, anything else as _OTHER with the original.
func httpMethod(m string) (method, original string) {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m, ""
	}
	return "_OTHER", clip(m, 32)
}

// targetHostPort splits an upstream target (scheme://host[:port][/base])
// into host and port.
func targetHostPort(target string) (host, port string) {
	rest := target
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	if strings.HasPrefix(rest, "[") {
		if i := strings.IndexByte(rest, ']'); i >= 0 {
			host, rest = rest[1:i], rest[i+1:]
			return host, strings.TrimPrefix(rest, ":")
		}
		return "", ""
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		return rest[:i], rest[i+1:]
	}
	return rest, ""
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

var _ gateway.Tracer = (*Provider)(nil)
