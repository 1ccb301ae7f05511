package server_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAdminLoginLimit runs a gateway whose admin listener locks a client
// address out after three wrong tokens: the fourth request from it is
// refused with 429 even with the right token, another address is served,
// the lockout is audited and counted in the metrics that docs/metrics.md
// lists.
func TestAdminLoginLimit(t *testing.T) {
	const key = "0123456789abcdef0123456789abcdef-test-key"
	t.Setenv("MOAT_TEST_AUDIT_KEY", key)
	const token = "lockout-test-admin-token-0123456789abcdef"
	sum := sha256.Sum256([]byte(token))
	dir := t.TempDir()
	file := filepath.Join(dir, "audit.jsonl")
	up := newUpstream(t, "a")
	g := startGateway(t, fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
audit:
  dir: %q
  key: env:MOAT_TEST_AUDIT_KEY
  sinks:
    - {type: file, file: {path: %q}}
admin:
  address: 127.0.0.1:0
  tokens: [{name: ops, sha256: %s, role: read}]
  login_limit: {failures: 3, per: 1m, cooldown: 10m}
upstreams:
  a: {targets: [%q]}
routes:
  - {name: open, path: /open, methods: [GET], upstream: a, public: true}
`, filepath.Join(dir, "spool"), file, hex.EncodeToString(sum[:]), up.URL()))
	base := "http://" + g.srv.AdminAddr()
	// The attacker is 127.0.0.2; the operator keeps 127.0.0.1.
	attacker := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext,
	}}
	defer attacker.CloseIdleConnections()
	status := func(c *http.Client, tok string) (*http.Response, []byte) {
		t.Helper()
		return send(t, c, newRequest(t, "GET", base+"/api/v1/status", nil, "Authorization", "Bearer "+tok))
	}

	for i := range 3 {
		if resp, _ := status(attacker, fmt.Sprintf("guess-%d", i)); resp.StatusCode != 401 {
			t.Fatalf("guess %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp, body := status(attacker, token)
	var p struct {
		ReasonID string `json:"reason_id"`
		Detail   *string
	}
	if err := json.Unmarshal(body, &p); err != nil || resp.StatusCode != 429 || p.ReasonID != "admin_locked_out" || p.Detail != nil ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("the right token after 3 wrong ones: %d %s %s, want 429 admin_locked_out without detail", resp.StatusCode, resp.Header.Get("Content-Type"), clip(body))
	}
	if resp.Header.Get("Retry-After") != "600" {
		t.Errorf("Retry-After %q, want 600", resp.Header.Get("Retry-After"))
	}
	if resp, body := status(g.client, token); resp.StatusCode != 200 {
		t.Errorf("the operator at 127.0.0.1: %d %s", resp.StatusCode, clip(body))
	}
	resp, body = send(t, g.client, newRequest(t, "GET", base+"/metrics", nil, "Authorization", "Bearer "+token))
	metricsDoc, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"moat_admin_auth_failures_total 3", "moat_admin_lockouts_total 1", "moat_admin_locked_out_requests_total 1"} {
		if !strings.Contains(string(body), "\n"+want+"\n") {
			t.Errorf("metrics %d lack %q:\n%s", resp.StatusCode, want, grepLines(string(body), "moat_admin_"))
		}
		if name, _, _ := strings.Cut(want, " "); !strings.Contains(string(metricsDoc), "`"+name+"`") {
			t.Errorf("docs/metrics.md does not document %s", name)
		}
	}
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Event   struct{ Action, Outcome string }
			Source  struct{ IP string }
			Message string
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line is not JSON: %v: %s", err, sc.Text())
		}
		if !strings.HasPrefix(ev.Event.Action, "admin_") {
			continue
		}
		counts[ev.Event.Action]++
		if ev.Source.IP != "127.0.0.2" || ev.Event.Outcome != "failure" {
			t.Errorf("admin event %s from %s, outcome %s: want 127.0.0.2 and failure", ev.Event.Action, ev.Source.IP, ev.Event.Outcome)
		}
		if strings.Contains(sc.Text(), token) || strings.Contains(sc.Text(), "guess-") {
			t.Errorf("a token reached the audit log: %s", sc.Text())
		}
	}
	if counts["admin_auth_failure"] != 3 || counts["admin_lockout"] != 1 || counts["admin_locked_out"] != 1 {
		t.Errorf("audited %v, want 3 admin_auth_failure, 1 admin_lockout, 1 admin_locked_out", counts)
	}
}
