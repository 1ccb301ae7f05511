package gateway

import (
	"context"
	"net/http"
)

// Tracer records the spans of exchanges (distributed tracing). The gateway
// calls it only when Options.Tracer is set; with no Tracer the kernel does no
// tracing work at all. The gateway declares the interface so that it does not
// depend on a tracing library; internal/telemetry/tracing implements it with
// OpenTelemetry.
//
// A Tracer is safe for concurrent use. For one exchange the calls come from
// the goroutine serving it, in this order: Start once; StartStage and End of
// the returned Span for each request stage that runs; StartUpstream, Inject
// and End when the exchange is forwarded (by the proxy); Finish once, after
// ex.Status is set and before Options.OnFinish.
type Tracer interface {
	// Start begins the server span of ex and returns ctx carrying it. It
	// honours an incoming trace context (traceparent, tracestate) only when
	// ex.PeerTrusted, and removes it from ex.Request.Header otherwise. It
	// sets ex.TraceID.
	Start(ctx context.Context, ex *Exchange) context.Context
	// StartStage begins the span of st, the i-th request stage of ex.Route,
	// as a child of the span in ctx; the stage runs with the returned
	// context, and the Span is ended with the stage's result.
	StartStage(ctx context.Context, ex *Exchange, i int, st RequestStage) (context.Context, Span)
	// StartUpstream begins the client span of the upstream call of ex (to
	// ex.Target) as a child of the span in ctx.
	StartUpstream(ctx context.Context, ex *Exchange) (context.Context, Span)
	// Inject writes the trace context of the span in ctx into h
	// (traceparent, and tracestate when there is one), replacing what h had.
	Inject(ctx context.Context, h http.Header)
	// Finish ends the server span in ctx with ex's final status and reason.
	Finish(ctx context.Context, ex *Exchange)
}

// Span is a span begun by a Tracer. End ends it once with the outcome of
// the work it covers: status is the HTTP status of an upstream call (0 for a
// stage or when none arrived) and err the error returned, or nil.
type Span interface {
	End(status int, err error)
}
