package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRedirectHTTPS(t *testing.T) {
	tests := []struct {
		desc     string
		port     int
		host     string
		target   string
		status   int
		location string
	}{
		{desc: "default port", port: 443, host: "api.example.com:8080", target: "/books?limit=2", status: 308, location: "https://api.example.com/books?limit=2"},
		{desc: "custom port", port: 8443, host: "api.example.com", target: "/a%20b", status: 308, location: "https://api.example.com:8443/a%20b"},
		{desc: "IPv6 host", port: 8443, host: "[::1]:8080", target: "/", status: 308, location: "https://[::1]:8443/"},
		{desc: "IPv6 host, default port", port: 443, host: "[::1]:8080", target: "/x", status: 308, location: "https://[::1]/x"},
		{desc: "host with injection", port: 443, host: "evil.com/x?", target: "/", status: 400},
		{desc: "empty host", port: 443, host: "", target: "/", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			r.Host = tt.host
			rec := httptest.NewRecorder()
			redirectHandler(tt.port).ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if got := rec.Header().Get("Location"); got != tt.location {
				t.Errorf("Location %q, want %q", got, tt.location)
			}
		})
	}
}
