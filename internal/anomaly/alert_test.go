package anomaly

import (
	"bytes"
	"crypto/hmac"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// receiver is a loopback HTTP endpoint recording what it is sent.
type receiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	status func(n int) int // status of the nth request (1-based); nil: 200
	calls  atomic.Int64
}

type recorded struct {
	path   string
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, status func(int) int) *receiver {
	r := &receiver{status: status}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		n := int(r.calls.Add(1))
		r.mu.Lock()
		r.reqs = append(r.reqs, recorded{path: req.URL.Path, header: req.Header.Clone(), body: b})
		r.mu.Unlock()
		if r.status != nil {
			w.WriteHeader(r.status(n))
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url(t *testing.T) config.URL {
	u, err := url.Parse(r.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return config.URL{URL: u}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func secret(t *testing.T, v string) config.Secret {
	var s config.Secret
	if err := s.UnmarshalText([]byte(v)); err != nil {
		t.Fatal(err)
	}
	return s
}

func stuff(d *Detector, addr string, n int) {
	for i := range n {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip(addr), Status: 401, ReasonID: "basic_invalid", RouteName: "login"})
	}
}

func TestWebhookReceivesSignedAlert(t *testing.T) {
	rcv := newReceiver(t, nil)
	const key = "0123456789abcdef-webhook-secret"
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	c := testConfig(t, func(c *config.Anomaly) {
		c.Alerts.Webhook = &config.AnomalyWebhook{URL: rcv.url(t), Secret: secret(t, key),
			Headers: map[string]config.Secret{"Authorization": secret(t, "Bearer hook-token-xyz")}}
	})
	sentAt := time.Unix(1_800_000_000, 0)
	al := NewAlerter(&c.Alerts, AlerterOptions{Log: log, Now: func() time.Time { return sentAt }})
	al.Start()
	d := New(c, Options{Notifier: al, Log: log})
	d.Start()
	stuff(d, "203.0.113.9", 30)
	waitFor(t, "the webhook", func() bool { return rcv.calls.Load() >= 1 })
	d.Close()
	al.Close(time.Second)

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.reqs) != 1 {
		t.Fatalf("webhook got %d requests, want 1", len(rcv.reqs))
	}
	r := rcv.reqs[0]
	if r.header.Get("Content-Type") != "application/json" || r.header.Get("Authorization") != "Bearer hook-token-xyz" {
		t.Errorf("headers %v", r.header)
	}
	ts := r.header.Get(HeaderTimestamp)
	if ts != "1800000000" {
		t.Errorf("timestamp %q", ts)
	}
	want := Sign([]byte(key), ts, r.body)
	if got := r.header.Get(HeaderSignature); !hmac.Equal([]byte(got), []byte(want)) || !strings.HasPrefix(got, "sha256=") {
		t.Errorf("signature %q, want %q", got, want)
	}
	if Sign([]byte("another-secret-0123"), ts, r.body) == want {
		t.Error("signature does not depend on the secret")
	}
	var w map[string]any
	if err := json.Unmarshal(r.body, &w); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"version": "1", "detector": "auth_failures", "signal": "auth_failures", "severity": "warning",
		"subject_kind": "ip", "subject": "203.0.113.9", "count": 20.0, "threshold": 20.0, "window": "5m0s", "window_seconds": 300.0,
		"at": "2026-11-21T10:00:19Z", "ends_at": "2026-11-21T10:10:19Z"} {
		if w[k] != v {
			t.Errorf("%s = %v, want %v", k, w[k], v)
		}
	}
	if s, _ := w["sample"].([]any); len(s) != 4 {
		t.Errorf("sample %v", w["sample"])
	}
	if _, ok := w["blocked_until"]; ok {
		t.Error("blocked_until set without a block")
	}
	if st := al.Stats(); st[0].Delivered != 1 || st[0].Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
	for _, s := range []string{key, "hook-token-xyz"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("a secret reached the log: %s", logs.String())
		}
	}
}

func TestAlertmanagerReceivesAlerts(t *testing.T) {
	rcv := newReceiver(t, nil)
	c := testConfig(t, func(c *config.Anomaly) {
		c.Alerts.Alertmanager = &config.AnomalyAlertmanager{URL: rcv.url(t), GeneratorURL: "https://grafana.example/d/moat"}
	})
	al := NewAlerter(&c.Alerts, AlerterOptions{})
	d := New(c, Options{Notifier: al, Blocker: NewMemory(0, nil)})
	stuff(d, "203.0.113.9", 30)
	stuff(d, "203.0.113.10", 30)
	al.Start()
	d.Start()
	waitFor(t, "Alertmanager", func() bool { return al.Stats()[0].Delivered == 2 })
	d.Close()
	al.Close(time.Second)

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var got []amAlert
	for _, r := range rcv.reqs {
		if r.path != "/api/v2/alerts" {
			t.Errorf("posted to %s", r.path)
		}
		var batch []amAlert
		if err := json.Unmarshal(r.body, &batch); err != nil {
			t.Fatalf("body %s: %v", r.body, err)
		}
		got = append(got, batch...)
	}
	if len(got) != 2 {
		t.Fatalf("got %d alerts, want 2", len(got))
	}
	a := got[0]
	if a.Labels["alertname"] != "moat_auth_failures" || a.Labels["severity"] != "warning" || a.Labels["subject_kind"] != "ip" ||
		!strings.HasPrefix(a.Labels["subject"], "203.0.113.") || a.GeneratorURL != "https://grafana.example/d/moat" {
		t.Errorf("alert %+v", a)
	}
	if !a.StartsAt.Equal(t0.Add(19*time.Second)) || !a.EndsAt.After(a.StartsAt) {
		t.Errorf("startsAt %v endsAt %v", a.StartsAt, a.EndsAt)
	}
	if a.Annotations["count"] != "20" || a.Annotations["threshold"] != "20" || a.Annotations["summary"] == "" {
		t.Errorf("annotations %v", a.Annotations)
	}
	// Blocks are not enabled in the configuration: no block was written.
	if _, ok := a.Annotations["blocked_until"]; ok {
		t.Error("blocked without block.enabled")
	}
}

func TestDeliveryRetries(t *testing.T) {
	tests := []struct {
		desc          string
		status        func(int) int
		wantCalls     int64
		wantDelivered uint64
		wantDropped   uint64
	}{
		{"two 503s then 200", func(n int) int { return map[bool]int{true: 503, false: 200}[n <= 2] }, 3, 1, 0},
		{"a 400 is not retried", func(int) int { return 400 }, 1, 0, 1},
		{"429 is retried up to max_attempts", func(int) int { return 429 }, 4, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			rcv := newReceiver(t, tt.status)
			c := testConfig(t, func(c *config.Anomaly) {
				c.Alerts.Webhook = &config.AnomalyWebhook{URL: rcv.url(t)}
				c.Alerts.MaxAttempts = 4
				c.Alerts.RetryInitial = config.Duration(time.Millisecond)
				c.Alerts.RetryMax = config.Duration(4 * time.Millisecond)
			})
			al := NewAlerter(&c.Alerts, AlerterOptions{Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			al.Start()
			al.Notify(Alert{Detector: DetectorWAFBurst, At: t0})
			waitFor(t, "the outcome", func() bool { s := al.Stats()[0]; return s.Delivered+s.Dropped == 1 })
			al.Close(time.Second)
			s := al.Stats()[0]
			if rcv.calls.Load() != tt.wantCalls || s.Delivered != tt.wantDelivered || s.Dropped != tt.wantDropped {
				t.Errorf("calls %d delivered %d dropped %d; want %d %d %d", rcv.calls.Load(), s.Delivered, s.Dropped, tt.wantCalls, tt.wantDelivered, tt.wantDropped)
			}
		})
	}
}

func TestNotifyNeverBlocks(t *testing.T) {
	c := testConfig(t, func(c *config.Anomaly) {
		c.Alerts.Webhook = &config.AnomalyWebhook{URL: config.URL{URL: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}}}
		c.Alerts.QueueSize = 2
	})
	al := NewAlerter(&c.Alerts, AlerterOptions{}) // not started: nothing drains the queue
	for range 5 {
		al.Notify(Alert{At: t0})
	}
	if s := al.Stats()[0]; s.Dropped != 3 {
		t.Errorf("dropped %d, want 3", s.Dropped)
	}
	al.Close(time.Second)
	if s := al.Stats()[0]; s.Dropped != 5 {
		t.Errorf("after close, dropped %d, want 5", s.Dropped)
	}
	al.Notify(Alert{At: t0}) // after Close: dropped, no panic
}
