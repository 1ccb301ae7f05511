package anomaly

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// Headers of a signed webhook request.
const (
	HeaderTimestamp = "X-Moat-Timestamp" // unix seconds
	HeaderSignature = "X-Moat-Signature" // sha256=HEX(HMAC-SHA256(secret, timestamp + "." + body))
)

// alertmanagerBatch is the most alerts posted to Alertmanager at once.
const alertmanagerBatch = 64

// Sign returns the X-Moat-Signature value of a webhook body sent at
// timestamp (unix seconds) with secret. Receivers compute the same and
// compare in constant time, and refuse old timestamps.
func Sign(secret []byte, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookAlert is the JSON object a webhook receives per alert.
type WebhookAlert struct {
	Version      string     `json:"version"` // "1"
	Detector     string     `json:"detector"`
	Signal       string     `json:"signal"`
	Severity     string     `json:"severity"`
	SubjectKind  string     `json:"subject_kind"`
	Subject      string     `json:"subject"`
	Count        int        `json:"count"`
	Threshold    int        `json:"threshold"`
	Baseline     *float64   `json:"baseline,omitempty"`
	Window       string     `json:"window"`
	WindowSecs   float64    `json:"window_seconds"`
	At           time.Time  `json:"at"`
	EndsAt       time.Time  `json:"ends_at"`
	BlockedUntil *time.Time `json:"blocked_until,omitempty"`
	Sample       []Sample   `json:"sample"`
}

// amAlert is one alert of Alertmanager's API v2 (POST /api/v2/alerts).
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// sink is one alert destination.
type sink struct {
	name  string
	url   string
	batch int
	build func(as []Alert, now time.Time) ([]byte, http.Header, error)
	queue chan Alert

	delivered atomic.Uint64
	dropped   atomic.Uint64 // queue full, or given up after max_attempts, or refused
}

// AlerterOptions holds what an Alerter needs besides its configuration.
type AlerterOptions struct {
	Client *http.Client // default: a client with the configured timeout
	Log    *slog.Logger
	Now    func() time.Time // signature timestamps; default time.Now
}

// Alerter delivers alerts to the configured webhook and Alertmanager,
// asynchronously: Notify queues (bounded, per destination) and never
// blocks; a goroutine per destination posts with retries and exponential
// backoff with jitter. Alerts that do not fit or that fail max_attempts
// times are counted as dropped and logged. Secrets (webhook secret and
// header values) are never logged. An Alerter is safe for concurrent use.
type Alerter struct {
	sinks    []*sink
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	attempts int
	initial  time.Duration
	maxWait  time.Duration

	mu     sync.RWMutex
	closed bool
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
}

// NewAlerter builds an Alerter from a defaulted, validated alerts block. It
// starts nothing; see Start.
func NewAlerter(c *config.AnomalyAlerts, o AlerterOptions) *Alerter {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: c.Timeout.D(), CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	a := &Alerter{client: o.Client, log: o.Log, now: o.Now, attempts: c.MaxAttempts,
		initial: c.RetryInitial.D(), maxWait: c.RetryMax.D()}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	if w := c.Webhook; w != nil {
		secret := []byte(w.Secret.Value())
		extra := make(http.Header, len(w.Headers))
		for k, v := range w.Headers {
			extra.Set(k, v.Value())
		}
		a.sinks = append(a.sinks, &sink{name: "webhook", url: w.URL.String(), batch: 1, queue: make(chan Alert, c.QueueSize),
			build: func(as []Alert, now time.Time) ([]byte, http.Header, error) {
				body, err := json.Marshal(webhookAlert(as[0]))
				if err != nil {
					return nil, nil, err
				}
				h := extra.Clone()
				if len(secret) > 0 {
					ts := strconv.FormatInt(now.Unix(), 10)
					h.Set(HeaderTimestamp, ts)
					h.Set(HeaderSignature, Sign(secret, ts, body))
				}
				return body, h, nil
			}})
	}
	if m := c.Alertmanager; m != nil {
		gen := m.GeneratorURL
		a.sinks = append(a.sinks, &sink{name: "alertmanager", url: strings.TrimSuffix(m.URL.String(), "/") + "/api/v2/alerts",
			batch: alertmanagerBatch, queue: make(chan Alert, c.QueueSize),
			build: func(as []Alert, _ time.Time) ([]byte, http.Header, error) {
				out := make([]amAlert, len(as))
				for i, x := range as {
					out[i] = alertmanagerAlert(x, gen)
				}
				body, err := json.Marshal(out)
				return body, http.Header{}, err
			}})
	}
	return a
}

// Start starts one delivery goroutine per destination. It is idempotent.
func (a *Alerter) Start() {
	a.start.Do(func() {
		for _, s := range a.sinks {
			a.wg.Add(1)
			go a.run(s)
		}
	})
}

// Notify queues the alert for every destination, dropping it (counted) for
// a destination whose queue is full or after Close. It never blocks.
func (a *Alerter) Notify(x Alert) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, s := range a.sinks {
		if a.closed {
			s.dropped.Add(1)
			continue
		}
		select {
		case s.queue <- x:
		default:
			s.dropped.Add(1)
		}
	}
}

// Close stops accepting alerts, lets the queued ones be delivered for up to
// timeout, then abandons the rest (counted as dropped).
func (a *Alerter) Close(timeout time.Duration) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	for _, s := range a.sinks {
		close(s.queue)
	}
	a.mu.Unlock()
	t := time.AfterFunc(timeout, a.cancel)
	a.start.Do(func() {}) // never started: nothing delivers
	a.wg.Wait()
	t.Stop()
	a.cancel()
	for _, s := range a.sinks {
		for range s.queue {
			s.dropped.Add(1)
		}
	}
}

// SinkStats are one destination's counters.
type SinkStats struct {
	Name      string
	Delivered uint64
	Dropped   uint64
}

// Stats returns each destination's counters.
func (a *Alerter) Stats() []SinkStats {
	out := make([]SinkStats, len(a.sinks))
	for i, s := range a.sinks {
		out[i] = SinkStats{Name: s.name, Delivered: s.delivered.Load(), Dropped: s.dropped.Load()}
	}
	return out
}

func (a *Alerter) run(s *sink) {
	defer a.wg.Done()
	for x := range s.queue {
		if a.ctx.Err() != nil {
			s.dropped.Add(1) // shutting down past the timeout
			continue
		}
		batch := []Alert{x}
	fill:
		for len(batch) < s.batch {
			select {
			case y, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, y)
			default:
				break fill
			}
		}
		a.deliver(s, batch)
	}
}

// errPermanent marks an answer not worth retrying (a 4xx other than 408
// and 429).
var errPermanent = errors.New("refused")

func (a *Alerter) deliver(s *sink, batch []Alert) {
	var err error
	wait := a.initial
	for attempt := 1; attempt <= a.attempts; attempt++ {
		if err = a.post(s, batch); err == nil {
			s.delivered.Add(uint64(len(batch)))
			return
		}
		if errors.Is(err, errPermanent) || attempt == a.attempts || a.ctx.Err() != nil {
			break
		}
		// Full jitter in [wait/2, wait).
		d := wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		select {
		case <-time.After(d):
		case <-a.ctx.Done():
		}
		wait = min(2*wait, a.maxWait)
	}
	s.dropped.Add(uint64(len(batch)))
	a.log.Error("anomaly alert delivery failed; alerts dropped", "sink", s.name, "alerts", len(batch), "error", err)
}

func (a *Alerter) post(s *sink, batch []Alert) error {
	body, h, err := s.build(batch, a.now())
	if err != nil {
		return fmt.Errorf("encoding alerts: %w: %w", err, errPermanent)
	}
	req, err := http.NewRequestWithContext(a.ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w: %w", err, errPermanent)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "moat-anomaly/1")
	res, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("posting alerts: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	switch {
	case res.StatusCode >= 200 && res.StatusCode < 300:
		return nil
	case res.StatusCode >= 400 && res.StatusCode < 500 && res.StatusCode != 408 && res.StatusCode != 429:
		return fmt.Errorf("posting alerts: status %d: %w", res.StatusCode, errPermanent)
	default:
		return fmt.Errorf("posting alerts: status %d", res.StatusCode)
	}
}

func webhookAlert(x Alert) WebhookAlert {
	w := WebhookAlert{Version: "1", Detector: x.Detector, Signal: x.Signal, Severity: x.Severity,
		SubjectKind: x.SubjectKind, Subject: x.Subject, Count: x.Count, Threshold: x.Threshold,
		Window: x.Window.String(), WindowSecs: x.Window.Seconds(), At: x.At.UTC(), EndsAt: x.EndsAt.UTC(), Sample: x.Sample}
	if x.Detector == DetectorVolumeSpike {
		b := x.Baseline
		w.Baseline = &b
	}
	if !x.BlockedUntil.IsZero() {
		u := x.BlockedUntil.UTC()
		w.BlockedUntil = &u
	}
	if w.Sample == nil {
		w.Sample = []Sample{}
	}
	return w
}

func alertmanagerAlert(x Alert, generatorURL string) amAlert {
	labels := map[string]string{
		"alertname":    "moat_" + x.Detector,
		"severity":     x.Severity,
		"detector":     x.Detector,
		"signal":       x.Signal,
		"subject_kind": x.SubjectKind,
		"subject":      x.Subject,
	}
	desc := fmt.Sprintf("%s %s: %d %s in %s (threshold %d)", x.SubjectKind, x.Subject, x.Count, x.Signal, x.Window, x.Threshold)
	ann := map[string]string{
		"summary":     "moat " + x.Detector + " anomaly from " + x.SubjectKind + " " + x.Subject,
		"description": desc,
		"count":       strconv.Itoa(x.Count),
		"threshold":   strconv.Itoa(x.Threshold),
		"window":      x.Window.String(),
	}
	if x.Detector == DetectorVolumeSpike {
		ann["baseline"] = strconv.FormatFloat(x.Baseline, 'f', 1, 64)
	}
	if !x.BlockedUntil.IsZero() {
		ann["blocked_until"] = x.BlockedUntil.UTC().Format(time.RFC3339)
	}
	if len(x.Sample) > 0 {
		parts := make([]string, len(x.Sample))
		for i, s := range x.Sample {
			parts[i] = fmt.Sprintf("%d %s %s", s.Status, s.Route, s.ReasonID)
		}
		ann["sample"] = strings.Join(parts, "; ")
	}
	return amAlert{Labels: labels, Annotations: ann, StartsAt: x.At.UTC(), EndsAt: x.EndsAt.UTC(), GeneratorURL: generatorURL}
}

var _ Notifier = (*Alerter)(nil)
