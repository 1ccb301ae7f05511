package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/moat-gateway/moat/internal/router"
)

// BenchmarkServeHTTP measures one exchange through a route with two request
// stages and a handler that writes a small response: the kernel's own cost,
// with tracing off.
func BenchmarkServeHTTP(b *testing.B) {
	rb := router.NewBuilder[*Route]()
	pass := stageFunc(func(context.Context, *Exchange) error { return nil })
	route := &Route{Name: "items", Template: "/items/{id}", MaxBody: 1024,
		Request: []RequestStage{pass, pass},
		Upstream: handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
			w.WriteHeader(http.StatusNoContent)
		})}
	if err := rb.Add("", []string{"GET"}, "/items/{id}", route); err != nil {
		b.Fatal(err)
	}
	g := New(Options{Router: rb.Build(), ClientIP: stubResolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	r := httptest.NewRequest("GET", "http://example.com/items/7", nil)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		g.ServeHTTP(w, r)
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the gateway rather than httptest.ResponseRecorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}
