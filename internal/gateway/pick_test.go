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

// TestPick checks that a dispatching route hands requests, preflights
// included, to the route its Pick returns, which becomes the exchange's
// route, with the path parameters of the match.
func TestPick(t *testing.T) {
	var got struct {
		route, id string
	}
	member := func(name string, cors bool) *Route {
		return &Route{Name: name, Template: "/items/{id}", MaxBody: 8, CORS: cors, Request: []RequestStage{stageFunc(func(_ context.Context, ex *Exchange) error {
			got.route, got.id = ex.Route.Name, ex.Param("id")
			if isPreflight(ex.Request) {
				return &Answer{Status: http.StatusNoContent}
			}
			return nil
		})}, Upstream: handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) { w.WriteHeader(http.StatusOK) })}
	}
	v1, v2 := member("v1", true), member("v2", false)
	pick := &Route{Name: "v1|v2", Template: "/items/{id}", Pick: func(r *http.Request) *Route {
		if r.Header.Get("API-Version") == "1" {
			return v1
		}
		return v2
	}}
	rb := router.NewBuilder[*Route]()
	if err := rb.Add("", []string{"GET"}, "/items/{id}", pick); err != nil {
		t.Fatal(err)
	}
	g := New(Options{Router: rb.Build(), ClientIP: stubResolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, tt := range []struct {
		desc      string
		method    string
		version   string
		preflight bool
		status    int
		route     string
	}{
		{desc: "picks v1", method: "GET", version: "1", status: 200, route: "v1"},
		{desc: "picks v2", method: "GET", status: 200, route: "v2"},
		{desc: "preflight to a member with CORS", method: "OPTIONS", version: "1", preflight: true, status: 204, route: "v1"},
		{desc: "preflight to a member without CORS", method: "OPTIONS", preflight: true, status: 405},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			got.route, got.id = "", ""
			r := httptest.NewRequest(tt.method, "/items/7", nil)
			if tt.version != "" {
				r.Header.Set("API-Version", tt.version)
			}
			if tt.preflight {
				r.Header.Set("Origin", "https://app.example.com")
				r.Header.Set("Access-Control-Request-Method", "GET")
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if got.route != tt.route || (tt.route != "" && got.id != "7") {
				t.Errorf("served by %q with id %q, want %q and 7", got.route, got.id, tt.route)
			}
		})
	}
}
