package server_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/keys"
)

// TestRoutesFromOpenAPI: an upstream's OpenAPI document becomes its routes.
// x-moat-auth authenticates and authorizes each operation, x-moat-owner
// binds the path's account to the principal, readOnly properties cannot be
// set, and parameters and bodies are validated in strict mode; paths the
// document does not have are not served.
func TestRoutesFromOpenAPI(t *testing.T) {
	up := newUpstream(t, "a")
	dir := t.TempDir()
	store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, alice, err := keys.Issue(context.Background(), store, keys.Record{Name: "alice", Subject: "alice", Roles: []string{"customer"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	store.Close()
	spec, _ := filepath.Abs("testdata/orders.openapi.yaml")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q}
authenticators:
  keys: {api_key: {}}
upstreams:
  a:
    targets: [%q]
    openapi: {spec: %q}
routes:
  - {path: /other, methods: [GET], upstream: a, public: true}
`, filepath.Join(dir, "keys.db"), up.URL(), spec))

	tests := []struct {
		desc, method, path, body string
		key                      bool
		status                   int
		reason                   string
	}{
		{desc: "public operation", method: "GET", path: "/api/health", status: 200},
		{desc: "own orders", method: "GET", path: "/api/accounts/alice/orders?limit=10", key: true, status: 200},
		{desc: "no credential", method: "GET", path: "/api/accounts/alice/orders", status: 401, reason: "credentials_missing"},
		{desc: "another account", method: "GET", path: "/api/accounts/bob/orders", key: true, status: 403, reason: "owner_mismatch"},
		{desc: "parameter out of bounds", method: "GET", path: "/api/accounts/alice/orders?limit=1000", key: true, status: 400, reason: "invalid_parameter"},
		{desc: "undeclared query parameter (strict)", method: "GET", path: "/api/accounts/alice/orders?debug=1", key: true, status: 400, reason: "undeclared_parameter"},
		{desc: "valid body", method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"tea","quantity":2}`, key: true, status: 200},
		{desc: "body against the schema", method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"","quantity":0}`, key: true, status: 400, reason: "schema_violation"},
		{desc: "undeclared property", method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"tea","is_admin":true}`, key: true, status: 400, reason: "schema_violation"},
		{desc: "read-only property", method: "POST", path: "/api/accounts/alice/orders", body: `{"item":"tea","id":"x1"}`, key: true, status: 403, reason: "property_denied"},
		{desc: "not in the document", method: "GET", path: "/api/accounts/alice/invoices", key: true, status: 404, reason: "route_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var header []string
			if tt.key {
				header = append(header, "X-API-Key", alice)
			}
			var req *http.Request
			if tt.body != "" {
				req = newRequest(t, tt.method, g.url()+tt.path, strings.NewReader(tt.body), append(header, "Content-Type", "application/json")...)
			} else {
				req = newRequest(t, tt.method, g.url()+tt.path, nil, header...)
			}
			resp, body := g.do(t, req)
			if tt.reason != "" {
				wantProblem(t, resp, body, tt.status, tt.reason)
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, clip(body))
			}
		})
	}
}
