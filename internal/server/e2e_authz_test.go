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

// TestAuthorizationAndPayloadLimitsFromConfig checks the wiring from the
// configuration file: an owner rule binds the path's account to the API
// key's subject, an admin method needs its role, a read-only property
// cannot be set, and a deeply nested JSON body is refused by the payload
// limits before authorization reads it.
func TestAuthorizationAndPayloadLimitsFromConfig(t *testing.T) {
	up := newUpstream(t, "a")
	dir := t.TempDir()
	store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(subject string, roles ...string) string {
		_, key, err := keys.Issue(context.Background(), store, keys.Record{Name: subject, Subject: subject, Roles: roles}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	alice, bob := issue("alice", "customer"), issue("bob", "customer", "admin")
	store.Close()

	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q}
authenticators:
  keys: {api_key: {}}
payload_limits:
  json: {max_depth: 8}
upstreams:
  a: {targets: [%q]}
routes:
  - path: /accounts/{account}/profile
    methods: [GET, PUT, DELETE]
    upstream: a
    auth:
      authenticators: [keys]
      roles: {any_of: [customer]}
      methods:
        GET: {}
        PUT: {}
        DELETE: {roles: {any_of: [admin]}}
      owner:
        - {in: path, name: account, claim: sub}
      properties:
        read_only: [/id, /credit_limit]
`, filepath.Join(dir, "keys.db"), up.URL()))

	do := func(method, path, key, body string) (*http.Response, []byte) {
		var req *http.Request
		if body == "" {
			req = newRequest(t, method, g.url()+path, nil, "X-API-Key", key)
		} else {
			req = newRequest(t, method, g.url()+path, strings.NewReader(body), "X-API-Key", key, "Content-Type", "application/json")
		}
		return g.do(t, req)
	}
	tests := []struct {
		desc, method, path, key, body string
		status                        int
		reason                        string
	}{
		{desc: "alice reads her profile", method: "GET", path: "/accounts/alice/profile", key: alice, status: 200},
		{desc: "alice updates her profile", method: "PUT", path: "/accounts/alice/profile", key: alice, body: `{"name":"Alice O'Neil"}`, status: 200},
		{desc: "alice reads bob's profile", method: "GET", path: "/accounts/bob/profile", key: alice, status: 403, reason: "owner_mismatch"},
		{desc: "alice sets a read-only property", method: "PUT", path: "/accounts/alice/profile", key: alice, body: `{"credit_limit":1000000}`, status: 403, reason: "property_denied"},
		{desc: "alice deletes without the admin role", method: "DELETE", path: "/accounts/alice/profile", key: alice, status: 403, reason: "role_required"},
		{desc: "bob, an admin, deletes his own", method: "DELETE", path: "/accounts/bob/profile", key: bob, status: 200},
		{desc: "a nested body is refused before authorization reads it", method: "PUT", path: "/accounts/alice/profile", key: alice,
			body: strings.Repeat("[", 20) + strings.Repeat("]", 20), status: 400, reason: "json_too_deep"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			before := up.hits.Load()
			resp, body := do(tt.method, tt.path, tt.key, tt.body)
			if tt.reason != "" {
				wantProblem(t, resp, body, tt.status, tt.reason)
				assertNoLeak(t, body, "bob", "credit_limit")
				if up.hits.Load() != before {
					t.Error("a refused request reached the upstream")
				}
				return
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, clip(body))
			}
		})
	}
}
