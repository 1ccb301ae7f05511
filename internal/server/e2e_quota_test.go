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

// TestPlansAndQuotas issues two API keys on different plans. The free key
// meets its plan's daily quota (429 quota_exceeded, Retry-After until
// midnight, RateLimit headers); the pro key its larger one; a key naming a
// plan that is not configured is refused. Then the gateway restarts and the
// free key's quota is still spent: quotas persist in state.quotas_file.
func TestPlansAndQuotas(t *testing.T) {
	up := newUpstream(t, "a")
	dir := t.TempDir()
	store, err := keys.OpenFile(filepath.Join(dir, "keys.db"), keys.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(name, plan string) string {
		_, key, err := keys.Issue(context.Background(), store, keys.Record{Name: name, Subject: name, Plan: plan}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	free, pro, gold := issue("free-user", "free"), issue("pro-user", "pro"), issue("gold-user", "gold")
	store.Close()

	doc := fmt.Sprintf(`
server: {watch_config: false}
listeners: [{address: 127.0.0.1:0}]
state: {keys_file: %q, quotas_file: %q}
authenticators:
  keys: {api_key: {}}
rate_limits:
  free-daily: {quota: 2, period: day, time_zone: Europe/Berlin, key: principal}
  pro-daily: {quota: 4, period: day, key: principal}
plans:
  free: {rate_limits: [free-daily]}
  pro: {rate_limits: [pro-daily]}
upstreams:
  a: {targets: [%q]}
routes:
  - {path: /x, methods: [GET], upstream: a, auth: {authenticators: [keys], allow_any_authenticated: true}}
`, filepath.Join(dir, "keys.db"), filepath.Join(dir, "quotas.db"), up.URL())

	g := startGateway(t, doc)
	use := func(g *gw, key string, n int) (ok int, last *http.Response, lastBody []byte) {
		for range n {
			resp, body := g.get(t, "/x", "X-API-Key", key)
			if resp.StatusCode == 200 {
				ok++
			}
			last, lastBody = resp, body
		}
		return ok, last, lastBody
	}
	if ok, _, _ := use(g, free, 2); ok != 2 {
		t.Fatalf("free key: %d of 2 admitted", ok)
	}
	_, resp, body := use(g, free, 1)
	wantProblem(t, resp, body, 429, "quota_exceeded")
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q, want the seconds until midnight in Berlin", ra)
	}
	if got := resp.Header.Get("RateLimit-Policy"); !strings.HasPrefix(got, `"free-daily";q=2;w=`) {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if ok, _, _ := use(g, pro, 5); ok != 4 {
		t.Fatalf("pro key: %d of 5 admitted, want its quota of 4", ok)
	}
	_, resp, body = use(g, gold, 1)
	wantProblem(t, resp, body, 403, "plan_unknown")

	hits := up.hits.Load()
	if err := g.stop(t); err != nil {
		t.Fatal(err)
	}
	g2 := startGateway(t, doc) // a new process would see the same: the state starts empty
	_, resp, body = use(g2, free, 1)
	wantProblem(t, resp, body, 429, "quota_exceeded")
	if ok, resp, _ := use(g2, pro, 1); ok != 0 {
		t.Fatalf("the pro key's spent quota was forgotten across the restart: RateLimit %q", resp.Header.Get("RateLimit"))
	}
	if up.hits.Load() != hits {
		t.Error("a refused request reached the upstream")
	}
}
