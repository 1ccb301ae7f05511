package server_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/audit"
)

// TestAuditThroughTheGateway runs a gateway with a file audit sink: every
// request (allowed, denied by authentication, unrouted) and a refused reload
// become events with the request's ID, and after shutdown the file's hash
// chain verifies with the key.
func TestAuditThroughTheGateway(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef-test-key"
	t.Setenv("MOAT_TEST_AUDIT_KEY", key)
	up := newUpstream(t, "a")
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.jsonl")
	doc := fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
audit:
  dir: %q
  key: env:MOAT_TEST_AUDIT_KEY
  sinks:
    - {type: file, file: {path: %q}}
authenticators:
  keys: {api_key: {}}
state: {keys_file: %q}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /open, methods: [GET], upstream: a, public: true}
  - {path: /private, methods: [GET], upstream: a, auth: {authenticators: [keys], allow_any_authenticated: true}}
`, filepath.Join(dir, "spool"), file, filepath.Join(dir, "keys.db"), up.URL())
	g := startGateway(t, doc)
	wantIDs := map[string]string{} // request ID -> expected event.reason ("" for allowed)
	for _, tt := range []struct{ path, reason string }{{"/open", ""}, {"/private", "credentials_missing"}, {"/nowhere", "route_not_found"}} {
		resp, _ := g.get(t, tt.path, "X-Secret-Probe", "hunter2")
		wantIDs[resp.Header.Get("X-Request-ID")] = tt.reason
	}
	g.rewrite(t, "listeners: [this is not valid")
	if err := g.srv.Reload(); err == nil {
		t.Fatal("a broken configuration reloaded")
	}
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var reloads int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Event struct{ Action, Reason, Outcome string }
			HTTP  struct{ Request struct{ ID string } }
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
		}
		switch ev.Event.Action {
		case "http_request":
			reason, ok := wantIDs[ev.HTTP.Request.ID]
			if !ok {
				t.Errorf("event for an unknown request: %s", sc.Text())
				continue
			}
			if ev.Event.Reason != reason {
				t.Errorf("request %s: event.reason %q, want %q", ev.HTTP.Request.ID, ev.Event.Reason, reason)
			}
			delete(wantIDs, ev.HTTP.Request.ID)
		case "config_reload":
			reloads++
			if ev.Event.Outcome != "failure" {
				t.Errorf("refused reload recorded as %q", ev.Event.Outcome)
			}
		}
		if strings.Contains(sc.Text(), "hunter2") {
			t.Errorf("a header value reached the audit log: %s", sc.Text())
		}
	}
	if len(wantIDs) != 0 {
		t.Errorf("requests without an event: %v", wantIDs)
	}
	if reloads != 1 {
		t.Errorf("%d config_reload events, want 1", reloads)
	}
	res, err := audit.VerifyFiles([]string{file}, audit.VerifyOptions{Keys: [][]byte{[]byte(key)}})
	if err != nil || res.Problem != nil {
		t.Fatalf("the audit chain does not verify: %v %+v", err, res.Problem)
	}
}
