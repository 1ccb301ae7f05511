package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TestCredentialStuffingIsBlocked: a client sending bad API keys crosses the
// auth_failures threshold; an alert reaches the webhook receiver, and the
// client's address is then refused with 403 temporarily_blocked, even with a
// route that needs no credential.
func TestCredentialStuffingIsBlocked(t *testing.T) {
	up := newUpstream(t, "a")
	var mu sync.Mutex
	var alerts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &a); err == nil {
			mu.Lock()
			alerts = append(alerts, a)
			mu.Unlock()
		}
	}))
	defer hook.Close()
	dir := t.TempDir()
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q}
authenticators:
  keys: {api_key: {}}
brute_force: {disabled: true}
anomaly:
  detectors:
    auth_failures: {window: 1m, threshold: 5}
  alerts:
    webhook: {url: %q}
  block: {enabled: true, duration: 1m}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /private, methods: [GET], upstream: a, auth: {authenticators: [keys], allow_any_authenticated: true}}
  - {path: /open, methods: [GET], upstream: a, public: true}
`, dir+"/keys.db", hook.URL, up.URL()))

	if resp, _ := g.get(t, "/open"); resp.StatusCode != 200 {
		t.Fatalf("before the attack: %d", resp.StatusCode)
	}
	for i := range 5 {
		resp, body := g.get(t, "/private", "X-API-Key", fmt.Sprintf("moat_guess%04d", i))
		wantProblem(t, resp, body, 401, "invalid_credentials")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := g.get(t, "/open")
		if resp.StatusCode == 403 {
			wantProblem(t, resp, body, 403, "temporarily_blocked")
			if resp.Header.Get("Retry-After") == "" {
				t.Error("a block without Retry-After")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the client was not blocked after 5 failures: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		mu.Lock()
		n := len(alerts)
		var got map[string]any
		if n > 0 {
			got = alerts[0]
		}
		mu.Unlock()
		if n > 0 {
			if b, _ := json.Marshal(got); !json.Valid(b) || fmt.Sprint(got["detector"]) != "auth_failures" {
				t.Errorf("alert %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no alert reached the webhook")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
