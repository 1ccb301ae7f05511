package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moat-gateway/moat/internal/audit"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

var t0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// fixedNow makes every exchange last d from t0.
func newTestRegistry(d time.Duration) *Registry {
	r := New(Options{NoRuntime: true, Now: func() time.Time { return t0.Add(d) }, Reasons: []string{"custom_reason"}})
	r.SetRoutes([]string{"books", "orders"})
	r.SetLimits([]string{"per-ip", "per-key"})
	return r
}

func ex(route, reason string, status int, upstream time.Duration) *gateway.Exchange {
	e := &gateway.Exchange{Start: t0, ReasonID: reason, Status: status, UpstreamLatency: upstream}
	if route != "" {
		e.Route = &gateway.Route{Name: route}
	}
	return e
}

// scrape serves the registry's handler and parses the text exposition.
func scrape(t *testing.T, r *Registry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "text/plain")
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("metrics status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parsing exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of family name with exactly labels
// (a histogram's sample count), or -1.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		ok := true
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestObserveRequests(t *testing.T) {
	r := newTestRegistry(30 * time.Millisecond)
	r.Observe(ex("books", "", 200, 20*time.Millisecond))
	r.Observe(ex("books", "", 204, 25*time.Millisecond))
	r.Observe(ex("books", "jwt_expired", 401, 0))
	r.Observe(ex("orders", "rate_limited", 429, 0))
	r.Observe(ex("removed-route", "", 200, time.Millisecond))
	r.Observe(ex("", "route_not_found", 404, 0))
	r.Observe(ex("books", "made_up_reason", 403, 0))
	r.Observe(ex("books", "custom_reason", 403, 0))
	r.Observe(ex("books", "", 0, 0))   // client left before a status
	r.Observe(ex("books", "", 999, 0)) // nonsense status
	fams := scrape(t, r)
	tests := []struct {
		desc   string
		name   string
		labels map[string]string
		want   float64
	}{
		{"2xx allowed", "moat_requests_total", map[string]string{"route": "books", "status": "2xx", "reason": "none"}, 2},
		{"auth denial", "moat_requests_total", map[string]string{"route": "books", "status": "4xx", "reason": "jwt_expired"}, 1},
		{"rate limited", "moat_requests_total", map[string]string{"route": "orders", "status": "4xx", "reason": "rate_limited"}, 1},
		{"unknown route", "moat_requests_total", map[string]string{"route": "other", "status": "2xx", "reason": "none"}, 1},
		{"no route", "moat_requests_total", map[string]string{"route": "unmatched", "status": "4xx", "reason": "route_not_found"}, 1},
		{"unknown reason", "moat_requests_total", map[string]string{"route": "books", "status": "4xx", "reason": "other"}, 1},
		{"extra reason", "moat_requests_total", map[string]string{"route": "books", "status": "4xx", "reason": "custom_reason"}, 1},
		{"no status", "moat_requests_total", map[string]string{"route": "books", "status": "other", "reason": "none"}, 2},
		{"auth failures", "moat_auth_failures_total", map[string]string{"reason": "jwt_expired"}, 1},
		{"durations", "moat_request_duration_seconds", map[string]string{"route": "books"}, 7},
		{"overhead", "moat_gateway_overhead_seconds", map[string]string{"route": "books"}, 7},
		{"upstream only when sent", "moat_upstream_duration_seconds", map[string]string{"route": "books"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := value(fams, tt.name, tt.labels); got != tt.want {
				t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
			}
		})
	}
	// No series is created for a reason nobody hit: the label set grows
	// with traffic only.
	if n := len(fams["moat_requests_total"].Metric); n != 8 {
		t.Errorf("moat_requests_total has %d series, want 8", n)
	}
	// Authentication reasons have their series from the start, at 0, so
	// that alerts on their rate work from the first failure.
	auth := 0
	for _, k := range knownReasons {
		if k == kindAuth {
			auth++
		}
	}
	if f := fams["moat_auth_failures_total"]; len(f.Metric) != auth {
		t.Errorf("moat_auth_failures_total has %d series, want one per authentication reason (%d)", len(f.Metric), auth)
	}
	if got := value(fams, "moat_auth_failures_total", map[string]string{"reason": "rate_limited"}); got != -1 {
		t.Errorf("rate_limited counted as an authentication failure")
	}
	if got := value(fams, "moat_auth_failures_total", map[string]string{"reason": "credentials_missing"}); got != 0 {
		t.Errorf("credentials_missing = %v, want a series at 0", got)
	}
}

func TestOverheadIsTotalMinusUpstream(t *testing.T) {
	r := newTestRegistry(30 * time.Millisecond)
	r.Observe(ex("books", "", 200, 29*time.Millisecond+600*time.Microsecond))
	fams := scrape(t, r)
	h := fams["moat_gateway_overhead_seconds"].Metric[0].Histogram
	if got := h.GetSampleSum(); got < 0.0003999 || got > 0.0004001 {
		t.Errorf("overhead sum %v, want 0.0004 (30ms - 29.6ms)", got)
	}
	u := fams["moat_upstream_duration_seconds"].Metric[0].Histogram
	if got := u.GetSampleSum(); got < 0.0295999 || got > 0.0296001 {
		t.Errorf("upstream sum %v, want 0.0296", got)
	}
	// An upstream time over the total (clock steps) never makes a negative overhead.
	r2 := newTestRegistry(time.Millisecond)
	r2.Observe(ex("books", "", 200, 5*time.Millisecond))
	if got := scrape(t, r2)["moat_gateway_overhead_seconds"].Metric[0].Histogram.GetSampleSum(); got != 0 {
		t.Errorf("overhead sum %v, want 0", got)
	}
}

func TestObserveLimitsAndWAF(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	e := ex("books", "rate_limited", 429, 0)
	e.Limits = []gateway.LimitState{{Name: "per-ip", Allowed: true}, {Name: "per-key", Allowed: false}, {Name: "gone", Allowed: true}}
	r.Observe(e)
	w := ex("books", "waf_blocked", 403, 0)
	w.Note("waf_rule_ids", []int{942100, 949110})
	r.Observe(w)
	r.Observe(w)
	detect := ex("books", "", 200, 0) // detect mode: findings, no block
	detect.Note("waf_rule_ids", []int{941100})
	r.Observe(detect)
	bad := ex("books", "waf_blocked", 403, 0)
	bad.Note("waf_rule_ids", "not a slice")
	r.Observe(bad)
	fams := scrape(t, r)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"moat_ratelimit_decisions_total", map[string]string{"limit": "per-ip", "allowed": "true"}, 1},
		{"moat_ratelimit_decisions_total", map[string]string{"limit": "per-key", "allowed": "false"}, 1},
		{"moat_ratelimit_decisions_total", map[string]string{"limit": "other", "allowed": "true"}, 1},
		{"moat_waf_blocks_total", map[string]string{"rule": "942100"}, 2},
		{"moat_waf_blocks_total", map[string]string{"rule": "949110"}, 2},
		{"moat_waf_blocks_total", map[string]string{"rule": "941100"}, -1},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestWAFRuleCardinalityCapped(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	ids := make([]int, MaxWAFRules+10)
	for i := range ids {
		ids[i] = 900000 + i
	}
	ids = append(ids, -5, 0)
	w := ex("books", "waf_blocked", 403, 0)
	w.Note("waf_rule_ids", ids)
	r.Observe(w)
	fams := scrape(t, r)
	if n := len(fams["moat_waf_blocks_total"].Metric); n != MaxWAFRules+1 {
		t.Errorf("%d rule series, want %d plus other", n, MaxWAFRules)
	}
	if got := value(fams, "moat_waf_blocks_total", map[string]string{"rule": "other"}); got != 12 {
		t.Errorf("other = %v, want 12", got)
	}
}

func TestSetRoutesOnReload(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	r.Observe(ex("new", "", 200, 0))
	r.SetRoutes([]string{"books", "new"})
	r.Observe(ex("new", "", 200, 0))
	r.Observe(ex("orders", "", 200, 0)) // removed by the reload
	fams := scrape(t, r)
	if got := value(fams, "moat_requests_total", map[string]string{"route": "new", "status": "2xx", "reason": "none"}); got != 1 {
		t.Errorf("new route after reload = %v, want 1", got)
	}
	if got := value(fams, "moat_requests_total", map[string]string{"route": "other", "status": "2xx", "reason": "none"}); got != 2 {
		t.Errorf("other = %v, want 2", got)
	}
}

func TestReloads(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	r.ObserveReload(nil)
	r.ObserveReload(errors.New("bad"))
	r.ObserveReload(errors.New("bad"))
	fams := scrape(t, r)
	if s, f := value(fams, "moat_reloads_total", map[string]string{"result": "success"}), value(fams, "moat_reloads_total", map[string]string{"result": "failure"}); s != 1 || f != 2 {
		t.Errorf("reloads success %v failure %v, want 1 and 2", s, f)
	}
}

func TestCollectors(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	stats := audit.Stats{QueueDepth: 3, QueueCapacity: 16384, Recorded: 100, Dropped: 2, Sinks: []audit.SinkStats{
		{Name: "siem", Type: "http", SpoolBytes: 4096, SpoolEvents: 7, Delivered: 90, Failures: 4, Dropped: 1},
		{Name: "file", Type: "file", Delivered: 100},
	}}
	if err := r.Register(AuditCollector(func() audit.Stats { return stats })); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(GuardCollector("redis", func() ratelimit.GuardStats {
		return ratelimit.GuardStats{RemoteErrors: 5, BreakerOpen: 2, FailClosed: 1, FailOpen: 0, LocalFallbacks: 3}
	})); err != nil {
		t.Fatal(err)
	}
	if err := r.GaugeFunc("moat_in_flight_requests", "Requests being served.", func() float64 { return 4 }); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, r)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"moat_audit_queue_depth", nil, 3},
		{"moat_audit_events_dropped_total", nil, 2},
		{"moat_audit_sink_spool_bytes", map[string]string{"sink": "siem", "type": "http"}, 4096},
		{"moat_audit_sink_dropped_total", map[string]string{"sink": "siem", "type": "http"}, 1},
		{"moat_audit_sink_delivered_total", map[string]string{"sink": "file", "type": "file"}, 100},
		{"moat_ratelimit_remote_errors_total", map[string]string{"store": "redis"}, 5},
		{"moat_ratelimit_fallbacks_total", map[string]string{"store": "redis", "policy": "local"}, 3},
		{"moat_ratelimit_fallbacks_total", map[string]string{"store": "redis", "policy": "fail_closed"}, 1},
		{"moat_in_flight_requests", nil, 4},
	} {
		if got := value(fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestObserveAllocatesNothingOnceWarm(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	e := ex("books", "rate_limited", 429, 500*time.Microsecond)
	e.Limits = []gateway.LimitState{{Name: "per-ip", Allowed: false}}
	r.Observe(e)
	if n := testing.AllocsPerRun(1000, func() { r.Observe(e) }); n != 0 {
		t.Errorf("Observe allocates %v times per call, want 0", n)
	}
}

// TestKnownReasonsCoverDocs keeps knownReasons in step with docs/reasons.md:
// a documented reason missing here would be counted as "other".
func TestKnownReasonsCoverDocs(t *testing.T) {
	b, err := os.ReadFile("../../../docs/reasons.md")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\| [0-9]{3}")
	var missing []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		if strings.HasPrefix(m[1], "admin_") {
			continue // the admin listener's own reasons never reach request metrics
		}
		if _, ok := knownReasons[m[1]]; !ok {
			missing = append(missing, m[1])
		}
	}
	if len(missing) > 0 {
		t.Errorf("reasons in docs/reasons.md unknown to metrics (add them to knownReasons): %v", missing)
	}
}

// TestMetricsDocumented checks that docs/metrics.md names every metric moat
// exposes.
func TestMetricsDocumented(t *testing.T) {
	b, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRegistry(time.Millisecond)
	r.Register(AuditCollector(func() audit.Stats { return audit.Stats{Sinks: []audit.SinkStats{{Name: "s", Type: "file"}}} }))
	r.Register(GuardCollector("redis", func() ratelimit.GuardStats { return ratelimit.GuardStats{} }))
	e := ex("books", "waf_blocked", 403, time.Millisecond)
	e.Note("waf_rule_ids", []int{942100})
	e.Limits = []gateway.LimitState{{Name: "per-ip"}}
	r.Observe(e)
	r.Observe(ex("books", "jwt_expired", 401, 0))
	dep := ex("books", "", 200, 0)
	dep.Note("deprecated_version", "1")
	r.Observe(dep)
	r.ObserveReload(nil)
	var names []string
	for n := range scrape(t, r) {
		names = append(names, n)
		if !strings.Contains(string(b), "`"+n+"`") {
			t.Errorf("docs/metrics.md does not document %s", n)
		}
	}
	sort.Strings(names)
	if len(names) < 20 {
		t.Errorf("only %d metrics exposed: %v", len(names), names)
	}
}

func TestHandlerNegotiatesOpenMetrics(t *testing.T) {
	r := newTestRegistry(time.Millisecond)
	r.Observe(ex("books", "", 200, 0))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	r.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/openmetrics-text") ||
		!strings.HasSuffix(rec.Body.String(), "# EOF\n") {
		t.Errorf("OpenMetrics: status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
}

func BenchmarkObserve(b *testing.B) {
	r := New(Options{NoRuntime: true})
	names := make([]string, 50)
	for i := range names {
		names[i] = "route-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
	}
	r.SetRoutes(names)
	r.SetLimits([]string{"per-ip", "per-key"})
	allowed := &gateway.Exchange{Start: time.Now(), Status: 200, UpstreamLatency: time.Millisecond, Route: &gateway.Route{Name: names[7]},
		Limits: []gateway.LimitState{{Name: "per-ip", Allowed: true}, {Name: "per-key", Allowed: true}}}
	denied := &gateway.Exchange{Start: time.Now(), Status: 401, ReasonID: "jwt_expired", Route: &gateway.Route{Name: names[9]}}
	b.Run("allowed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Observe(allowed)
		}
	})
	b.Run("denied", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r.Observe(denied)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				r.Observe(allowed)
			}
		})
	})
}
