package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// recordingTracer logs the calls the gateway makes, in order.
type recordingTracer struct{ calls []string }

type tracerKey struct{}

type recordedSpan struct {
	t    *recordingTracer
	name string
}

func (s recordedSpan) End(status int, err error) {
	s.t.calls = append(s.t.calls, fmt.Sprintf("end %s err=%v", s.name, err != nil))
}

func (t *recordingTracer) Start(ctx context.Context, ex *Exchange) context.Context {
	t.calls = append(t.calls, "start")
	ex.TraceID = "0af7651916cd43dd8448eb211c80319c"
	return context.WithValue(ctx, tracerKey{}, "server")
}

func (t *recordingTracer) StartStage(ctx context.Context, ex *Exchange, i int, st RequestStage) (context.Context, Span) {
	if ctx.Value(tracerKey{}) != "server" {
		t.calls = append(t.calls, "stage without the server context")
	}
	t.calls = append(t.calls, fmt.Sprintf("stage %d", i))
	return context.WithValue(ctx, tracerKey{}, fmt.Sprint("stage", i)), recordedSpan{t, fmt.Sprint("stage", i)}
}

func (t *recordingTracer) StartUpstream(ctx context.Context, ex *Exchange) (context.Context, Span) {
	t.calls = append(t.calls, "upstream")
	return ctx, recordedSpan{t, "upstream"}
}

func (t *recordingTracer) Inject(context.Context, http.Header) {}

func (t *recordingTracer) Finish(ctx context.Context, ex *Exchange) {
	t.calls = append(t.calls, fmt.Sprintf("finish %d %s", ex.Status, ex.ReasonID))
}

// TestTracerHooks checks when the gateway calls its Tracer: Start before
// anything else, one span per stage run with the stage seeing the stage's
// context, Finish once with the final status before OnFinish, also after a
// panic; and that the proxy can reach the Tracer through the Exchange.
func TestTracerHooks(t *testing.T) {
	tests := []struct {
		desc  string
		stage stageFunc
		want  []string
	}{
		{desc: "pass", stage: func(ctx context.Context, ex *Exchange) error {
			if ctx.Value(tracerKey{}) != "stage0" {
				return fmt.Errorf("stage runs without its span's context")
			}
			return nil
		}, want: []string{"start", "stage 0", "end stage0 err=false", "upstream", "end upstream err=false", "finish 200 ", "on finish"}},
		{desc: "deny", stage: func(context.Context, *Exchange) error { return &Reject{Status: 403, ReasonID: "policy_denied"} },
			want: []string{"start", "stage 0", "end stage0 err=true", "finish 403 policy_denied", "on finish"}},
		{desc: "panic", stage: func(context.Context, *Exchange) error { panic("boom") },
			want: []string{"start", "stage 0", "end stage0 err=true", "finish 500 internal_error", "on finish"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tr := &recordingTracer{}
			g := newTestGateway(t, tt.stage, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
				if ex.Tracer() != Tracer(tr) {
					t.Errorf("ex.Tracer() does not return the gateway's tracer")
				}
				_, span := ex.Tracer().StartUpstream(r.Context(), ex)
				w.WriteHeader(200)
				span.End(200, nil)
			}))
			g.tracer = tr
			g.onFinish = func(ex *Exchange) {
				if ex.TraceID == "" {
					t.Errorf("OnFinish sees no trace ID")
				}
				tr.calls = append(tr.calls, "on finish")
			}
			g.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/items/7", nil))
			if got, want := strings.Join(tr.calls, "\n"), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("calls:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestNoTracer checks that an Exchange of a Gateway without a Tracer, or of
// no Gateway, reports none.
func TestNoTracer(t *testing.T) {
	g := New(Options{ClientIP: stubResolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if tr := (&Exchange{gw: g}).Tracer(); tr != nil {
		t.Errorf("Tracer() = %v", tr)
	}
	if tr := (&Exchange{}).Tracer(); tr != nil {
		t.Errorf("Tracer() = %v", tr)
	}
}
