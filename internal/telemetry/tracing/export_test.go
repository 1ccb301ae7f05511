package tracing

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/moat-gateway/moat/internal/config"
)

// receiver is an OTLP/HTTP traces endpoint on loopback that decodes what it
// is sent.
type receiver struct {
	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
	headers  []http.Header
	paths    []string
	errs     []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	req := &collectortrace.ExportTraceServiceRequest{}
	if err == nil {
		err = proto.Unmarshal(b, req)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		rc.errs = append(rc.errs, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	rc.requests = append(rc.requests, req)
	rc.headers = append(rc.headers, r.Header.Clone())
	rc.paths = append(rc.paths, r.Method+" "+r.URL.Path)
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Write(out)
}

// spans returns every span received with its resource's service.name.
func (rc *receiver) spans() (spans []*tracepb.Span, services []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, req := range rc.requests {
		for _, rs := range req.ResourceSpans {
			service := ""
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.Key == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					spans = append(spans, s)
					services = append(services, service)
				}
			}
		}
	}
	return spans, services
}

// TestOTLPExport runs exchanges through a Provider built by New with an
// otlp_endpoint on loopback and checks that Shutdown flushes the spans to
// it as OTLP/HTTP protobuf, with the configured headers and service name.
func TestOTLPExport(t *testing.T) {
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()

	var token config.Secret
	if err := token.UnmarshalText([]byte("Bearer test-token")); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Tracing{OTLPEndpoint: srv.URL, ServiceName: "edge-gw", Headers: map[string]config.Secret{"Authorization": token}}
	cfg.ApplyDefaults()
	if ps := cfg.Validate(); len(ps) > 0 {
		t.Fatalf("config problems: %v", ps)
	}
	if cfg.OTLPEndpoint != srv.URL+"/v1/traces" {
		t.Fatalf("endpoint %q: the OTLP path was not added", cfg.OTLPEndpoint)
	}
	p, err := New(cfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}

	h := newTracedHarness(t, p)
	if got := h.do(t, "GET", "/items/7", peerSampled, ""); got != 200 {
		t.Fatalf("status %d", got)
	}
	ex := h.lastExchange(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	rc.mu.Lock()
	errs, paths, headers := rc.errs, rc.paths, rc.headers
	rc.mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("receiver could not decode: %v", errs)
	}
	if len(paths) == 0 {
		t.Fatal("nothing exported")
	}
	for i, path := range paths {
		if path != "POST /v1/traces" {
			t.Errorf("export %d to %q", i, path)
		}
		if got := headers[i].Get("Authorization"); got != "Bearer test-token" {
			t.Errorf("export %d Authorization %q", i, got)
		}
		if got := headers[i].Get("Content-Type"); got != "application/x-protobuf" {
			t.Errorf("export %d Content-Type %q", i, got)
		}
	}
	spans, services := rc.spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2 (server and client)", len(spans))
	}
	kinds := map[tracepb.Span_SpanKind]*tracepb.Span{}
	for i, s := range spans {
		if services[i] != "edge-gw" {
			t.Errorf("span %q service.name %q", s.Name, services[i])
		}
		if got := hex.EncodeToString(s.TraceId); got != peerTraceID || got != ex.TraceID {
			t.Errorf("span %q trace %s, want the peer's %s (ex.TraceID %s)", s.Name, got, peerTraceID, ex.TraceID)
		}
		kinds[s.Kind] = s
	}
	server, client := kinds[tracepb.Span_SPAN_KIND_SERVER], kinds[tracepb.Span_SPAN_KIND_CLIENT]
	if server == nil || client == nil {
		t.Fatalf("span kinds %v", kinds)
	}
	if server.Name != "get-item" || hex.EncodeToString(server.ParentSpanId) != peerSpanID {
		t.Errorf("server span %q parent %x", server.Name, server.ParentSpanId)
	}
	if string(client.ParentSpanId) != string(server.SpanId) {
		t.Errorf("client span's parent is not the server span")
	}

	// After Shutdown, spans are dropped rather than exported or blocking.
	before := len(paths)
	h.do(t, "GET", "/items/7", "", "")
	if err := p.Shutdown(context.Background()); err != nil {
		t.Logf("second Shutdown: %v", err)
	}
	rc.mu.Lock()
	after := len(rc.paths)
	rc.mu.Unlock()
	if after != before {
		t.Errorf("exported after Shutdown")
	}
}

// TestShutdownDeadline checks that Shutdown gives up at its deadline when
// the collector does not answer, instead of hanging the server's stop.
func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := &config.Tracing{OTLPEndpoint: srv.URL, Timeout: config.Duration(30 * time.Second)}
	cfg.ApplyDefaults()
	p, err := New(cfg, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	h := newTracedHarness(t, p)
	h.do(t, "GET", "/items/7", "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p.Shutdown(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Shutdown took %v with a 300ms deadline", took)
	}
	if err == nil {
		t.Errorf("Shutdown reported success though the spans were not delivered")
	}
}
