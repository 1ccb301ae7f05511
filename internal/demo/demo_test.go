package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDemo runs moat demo as a user would and tries the curl commands it
// prints: an allowed request, a 404 and a CORS denial.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var out strings.Builder
	go func() {
		done <- Run(ctx, Options{
			Listen: "127.0.0.1:0",
			Out:    &out,
			Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func(gw, _ string) { ready <- gw },
		})
	}()
	var gw string
	select {
	case gw = <-ready:
	case err := <-done:
		t.Fatalf("demo stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("demo did not start")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("demo returned %v", err)
		}
	}()

	tests := []struct {
		desc    string
		method  string
		path    string
		header  map[string]string
		status  int
		reason  string
		hasBody string
	}{
		{desc: "allowed", method: "GET", path: "/books", status: 200, hasBody: "Security Engineering"},
		{desc: "one book", method: "GET", path: "/books/2", status: 200, hasBody: "Ross Anderson"},
		{desc: "unknown path", method: "GET", path: "/admin", status: 404, reason: "route_not_found"},
		{desc: "undeclared method", method: "DELETE", path: "/books/1", status: 405, reason: "method_not_allowed"},
		{desc: "CORS denial", method: "OPTIONS", path: "/books", status: 403, reason: "cors_origin_denied",
			header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}},
		{desc: "CORS preflight allowed", method: "OPTIONS", path: "/books", status: 204,
			header: map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, gw+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if resp.Header.Get("Server") != "" || resp.Header.Get("X-Powered-By") != "" {
				t.Error("the bookstore's Server/X-Powered-By headers were not removed")
			}
			if tt.reason != "" {
				var p struct {
					ReasonID string `json:"reason_id"`
				}
				if err := json.Unmarshal(body, &p); err != nil || p.ReasonID != tt.reason {
					t.Errorf("body %s: want reason_id %q", body, tt.reason)
				}
			}
			if tt.hasBody != "" && !strings.Contains(string(body), tt.hasBody) {
				t.Errorf("body lacks %q: %s", tt.hasBody, body)
			}
		})
	}
	if !strings.Contains(out.String(), "curl -i "+gw+"/books") {
		t.Errorf("the intro does not show the curl commands:\n%s", out.String())
	}
}
