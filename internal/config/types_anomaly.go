package config

import (
	"fmt"
	"net/http"
	"time"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Anomaly configures anomaly detection (see docs/anomaly.md): detectors that
// watch every finished exchange per principal and per client address over
// sliding windows, alerts sent to a webhook and/or Alertmanager, and
// optional temporary blocks that every instance honours through the shared
// store. A nil *Anomaly means no detection.
type Anomaly struct {
	Enabled     *bool            `yaml:"enabled" jsonschema:"description=Turn detection on. Default true when the anomaly block is present."`
	MaxSubjects int              `yaml:"max_subjects" jsonschema:"description=Most principals plus client addresses tracked at once; past it the least recently seen of a small sample is evicted (counted). Default 50000.,minimum=64"`
	IdleTTL     Duration         `yaml:"idle_ttl" jsonschema:"description=A subject not seen for this long is forgotten by the periodic sweep. Default 2h; at least the longest detector window and the volume_spike baseline."`
	IPv6Prefix  int              `yaml:"ipv6_prefix" jsonschema:"description=IPv6 clients are counted (and blocked) per prefix of this length, so one host cannot escape by rotating addresses in its /64. Default 64.,minimum=1,maximum=128"`
	Detectors   AnomalyDetectors `yaml:"detectors" jsonschema:"description=The detectors and their thresholds."`
	Alerts      AnomalyAlerts    `yaml:"alerts" jsonschema:"description=Where alerts go."`
	Block       AnomalyBlock     `yaml:"block" jsonschema:"description=Temporary blocks of the subject an alert names."`
}

// AnomalyDetectors holds the four detectors.
type AnomalyDetectors struct {
	AuthFailures AnomalyDetector `yaml:"auth_failures" jsonschema:"description=Authentication failures (401 other than credentials_missing, and auth_locked_out) per client address and per principal: credential stuffing and brute force."`
	Enumeration  AnomalyDetector `yaml:"enumeration" jsonschema:"description=Distinct object identifiers touched, or owner_mismatch and 404 answers collected, per principal (per client address when unauthenticated): ID enumeration and BOLA probing."`
	VolumeSpike  AnomalyDetector `yaml:"volume_spike" jsonschema:"description=Requests in the window against the subject's own baseline (EWMA): sudden volume spikes."`
	WAFBurst     AnomalyDetector `yaml:"waf_burst" jsonschema:"description=WAF hits (waf_blocked, or would-block in detect mode) per client address and per principal."`
}

// AnomalyDetector is one detector's settings. Fields that a detector does
// not use must stay unset.
type AnomalyDetector struct {
	Enabled   *bool    `yaml:"enabled" jsonschema:"description=Run this detector. Default true."`
	Window    Duration `yaml:"window" jsonschema:"description=Sliding window the events are counted in (10 buckets of window/10). Default 5m (volume_spike 1m)."`
	Threshold int      `yaml:"threshold" jsonschema:"description=Events in the window that fire the detector: auth failures, owner_mismatch or 404 answers (enumeration), WAF hits. Not used by volume_spike. Defaults: auth_failures 20, enumeration 50, waf_burst 10.,minimum=0"`
	Cooldown  Duration `yaml:"cooldown" jsonschema:"description=After an alert, the same detector stays quiet for the same subject this long. Default 10m."`
	Severity  string   `yaml:"severity" jsonschema:"description=severity label of the alert. Default warning (enumeration and waf_burst critical).,enum=info,enum=warning,enum=critical"`
	Block     *bool    `yaml:"block" jsonschema:"description=Temporarily block the subject when this detector fires (when block.enabled). Default true, false for volume_spike."`

	// enumeration only
	DistinctObjects int `yaml:"distinct_objects" jsonschema:"description=enumeration: distinct object identifiers (owner findings and path parameter values) in the window that fire the detector. Default 200; 0 turns this half off.,minimum=0"`

	// volume_spike only
	Baseline    Duration `yaml:"baseline" jsonschema:"description=volume_spike: horizon of the baseline, an exponentially weighted moving average of requests per window. Default 1h."`
	Factor      float64  `yaml:"factor" jsonschema:"description=volume_spike: fire when requests in the window exceed factor times the baseline. Default 10."`
	MinRequests int      `yaml:"min_requests" jsonschema:"description=volume_spike: and at least this many requests in the window. Default 300.,minimum=0"`
	Warmup      Duration `yaml:"warmup" jsonschema:"description=volume_spike: a subject must have been tracked this long before it can fire, so new clients are not judged against an empty baseline. Default 10m."`
}

// AnomalyAlerts says where alerts are delivered; either, both or neither
// (alerts are then only logged).
type AnomalyAlerts struct {
	Webhook      *AnomalyWebhook      `yaml:"webhook,omitempty" jsonschema:"description=POST each alert as a JSON object."`
	Alertmanager *AnomalyAlertmanager `yaml:"alertmanager,omitempty" jsonschema:"description=POST alerts to Prometheus Alertmanager's /api/v2/alerts."`
	QueueSize    int                  `yaml:"queue_size" jsonschema:"description=Alerts buffered per destination; when full, alerts are counted as dropped. Default 1024.,minimum=1"`
	MaxAttempts  int                  `yaml:"max_attempts" jsonschema:"description=Delivery attempts per alert before it is dropped (counted and logged). Default 5.,minimum=1"`
	RetryInitial Duration             `yaml:"retry_initial" jsonschema:"description=First wait after a failed delivery; it doubles per failure up to retry_max. Default 500ms."`
	RetryMax     Duration             `yaml:"retry_max" jsonschema:"description=Longest wait between attempts. Default 30s."`
	Timeout      Duration             `yaml:"timeout" jsonschema:"description=Time one delivery request may take. Default 10s."`
}

// AnomalyWebhook is a generic JSON webhook.
type AnomalyWebhook struct {
	URL     URL               `yaml:"url" jsonschema:"description=Endpoint receiving a POST per alert (application/json)."`
	Secret  Secret            `yaml:"secret" jsonschema:"description=When set, each request carries X-Moat-Timestamp and X-Moat-Signature: sha256=HEX(HMAC-SHA256(secret, timestamp + '.' + body)); env:NAME reads it from the environment. At least 16 bytes."`
	Headers map[string]Secret `yaml:"headers" jsonschema:"description=Extra request headers (such as Authorization); values are secrets and may be env:NAME."`
}

// AnomalyAlertmanager is a Prometheus Alertmanager.
type AnomalyAlertmanager struct {
	URL          URL    `yaml:"url" jsonschema:"description=Base URL of Alertmanager (http://alertmanager:9093); alerts go to URL/api/v2/alerts."`
	GeneratorURL string `yaml:"generator_url" jsonschema:"description=generatorURL of every alert, such as a dashboard link. Default empty."`
}

// AnomalyBlock configures temporary blocks.
type AnomalyBlock struct {
	Enabled      bool     `yaml:"enabled" jsonschema:"description=Block the subject of an alert whose detector has block true. Default false: alerts only."`
	Duration     Duration `yaml:"duration" jsonschema:"description=How long a block lasts. Default 15m."`
	Status       int      `yaml:"status" jsonschema:"description=Status of a refused request: 403 or 429. Default 403.,enum=403,enum=429"`
	CacheTTL     Duration `yaml:"cache_ttl" jsonschema:"description=How long an instance trusts its last answer from the shared store, so requests do not each query Redis; also the longest a new block takes to reach other instances. Default 1s."`
	OnStoreError string   `yaml:"on_store_error" jsonschema:"description=When the block store cannot answer: fail_closed (503 block_store_unavailable) or fail_open (admit, logged). Default fail_closed.,enum=fail_closed,enum=fail_open"`
}

// Anomaly defaults; docs/anomaly.md lists the same values.
const (
	DefaultAnomalyMaxSubjects      = 50000
	DefaultAnomalyIdleTTL          = Duration(2 * time.Hour)
	DefaultAnomalyIPv6Prefix       = 64
	DefaultAnomalyWindow           = Duration(5 * time.Minute)
	DefaultAnomalyVolumeWindow     = Duration(time.Minute)
	DefaultAnomalyCooldown         = Duration(10 * time.Minute)
	DefaultAnomalyAuthThreshold    = 20
	DefaultAnomalyEnumThreshold    = 50
	DefaultAnomalyEnumDistinct     = 200
	DefaultAnomalyWAFThreshold     = 10
	DefaultAnomalyBaseline         = Duration(time.Hour)
	DefaultAnomalyFactor           = 10.0
	DefaultAnomalyMinRequests      = 300
	DefaultAnomalyWarmup           = Duration(10 * time.Minute)
	DefaultAnomalyQueueSize        = 1024
	DefaultAnomalyMaxAttempts      = 5
	DefaultAnomalyRetryInitial     = Duration(500 * time.Millisecond)
	DefaultAnomalyRetryMax         = Duration(30 * time.Second)
	DefaultAnomalyTimeout          = Duration(10 * time.Second)
	DefaultAnomalyBlockDuration    = Duration(15 * time.Minute)
	DefaultAnomalyBlockCacheTTL    = Duration(time.Second)
	MinAnomalyWebhookSecretBytes   = 16
	MaxAnomalyWindow               = Duration(24 * time.Hour)
	MinAnomalyMaxSubjects          = 64
	DefaultAnomalyBlockStatus      = http.StatusForbidden
	DefaultAnomalyOnStoreError     = "fail_closed"
	DefaultAnomalySeverity         = "warning"
	DefaultAnomalySeverityCritical = "critical"
)

// IsEnabled reports whether detection runs.
func (a *Anomaly) IsEnabled() bool { return a != nil && (a.Enabled == nil || *a.Enabled) }

// IsEnabled reports whether the detector runs.
func (d *AnomalyDetector) IsEnabled() bool { return d.Enabled == nil || *d.Enabled }

// Blocks reports whether the detector's alerts block their subject (when
// blocks are enabled at all).
func (d *AnomalyDetector) Blocks() bool { return d.Block != nil && *d.Block }

// ApplyDefaults fills every unset anomaly field with its default. It is
// idempotent.
func (a *Anomaly) ApplyDefaults() {
	if a.Enabled == nil {
		a.Enabled = ptr(true)
	}
	if a.MaxSubjects == 0 {
		a.MaxSubjects = DefaultAnomalyMaxSubjects
	}
	setDur(&a.IdleTTL, DefaultAnomalyIdleTTL)
	if a.IPv6Prefix == 0 {
		a.IPv6Prefix = DefaultAnomalyIPv6Prefix
	}
	d := &a.Detectors
	common := func(x *AnomalyDetector, window Duration, severity string, block bool) {
		if x.Enabled == nil {
			x.Enabled = ptr(true)
		}
		setDur(&x.Window, window)
		setDur(&x.Cooldown, DefaultAnomalyCooldown)
		setStr(&x.Severity, severity)
		if x.Block == nil {
			x.Block = ptr(block)
		}
	}
	common(&d.AuthFailures, DefaultAnomalyWindow, DefaultAnomalySeverity, true)
	common(&d.Enumeration, DefaultAnomalyWindow, DefaultAnomalySeverityCritical, true)
	common(&d.VolumeSpike, DefaultAnomalyVolumeWindow, DefaultAnomalySeverity, false)
	common(&d.WAFBurst, DefaultAnomalyWindow, DefaultAnomalySeverityCritical, true)
	if d.AuthFailures.Threshold == 0 {
		d.AuthFailures.Threshold = DefaultAnomalyAuthThreshold
	}
	if d.Enumeration.Threshold == 0 {
		d.Enumeration.Threshold = DefaultAnomalyEnumThreshold
	}
	if d.Enumeration.DistinctObjects == 0 {
		d.Enumeration.DistinctObjects = DefaultAnomalyEnumDistinct
	}
	if d.WAFBurst.Threshold == 0 {
		d.WAFBurst.Threshold = DefaultAnomalyWAFThreshold
	}
	v := &d.VolumeSpike
	setDur(&v.Baseline, DefaultAnomalyBaseline)
	if v.Factor == 0 {
		v.Factor = DefaultAnomalyFactor
	}
	if v.MinRequests == 0 {
		v.MinRequests = DefaultAnomalyMinRequests
	}
	setDur(&v.Warmup, DefaultAnomalyWarmup)
	al := &a.Alerts
	if al.QueueSize == 0 {
		al.QueueSize = DefaultAnomalyQueueSize
	}
	if al.MaxAttempts == 0 {
		al.MaxAttempts = DefaultAnomalyMaxAttempts
	}
	setDur(&al.RetryInitial, DefaultAnomalyRetryInitial)
	setDur(&al.RetryMax, DefaultAnomalyRetryMax)
	setDur(&al.Timeout, DefaultAnomalyTimeout)
	b := &a.Block
	setDur(&b.Duration, DefaultAnomalyBlockDuration)
	setDur(&b.CacheTTL, DefaultAnomalyBlockCacheTTL)
	if b.Status == 0 {
		b.Status = DefaultAnomalyBlockStatus
	}
	setStr(&b.OnStoreError, DefaultAnomalyOnStoreError)
}

// Validate checks a defaulted anomaly configuration and returns every
// problem as a field path relative to the anomaly block (such as
// detectors.volume_spike.factor) and a message. It changes nothing.
func (a *Anomaly) Validate() []Problem {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if a.MaxSubjects < MinAnomalyMaxSubjects {
		add("max_subjects", "must be at least %d", MinAnomalyMaxSubjects)
	}
	if a.IPv6Prefix < 1 || a.IPv6Prefix > 128 {
		add("ipv6_prefix", "must be between 1 and 128")
	}
	longest := a.Detectors.VolumeSpike.Baseline
	dets := []struct {
		name string
		d    *AnomalyDetector
	}{
		{"auth_failures", &a.Detectors.AuthFailures},
		{"enumeration", &a.Detectors.Enumeration},
		{"volume_spike", &a.Detectors.VolumeSpike},
		{"waf_burst", &a.Detectors.WAFBurst},
	}
	for _, x := range dets {
		p, d := "detectors."+x.name, x.d
		if d.Window < Duration(10*time.Second) || d.Window > MaxAnomalyWindow {
			add(p+".window", "must be between 10s and 24h")
		}
		longest = max(longest, d.Window)
		if d.Cooldown < 0 {
			add(p+".cooldown", "must not be negative")
		}
		switch d.Severity {
		case "info", "warning", "critical":
		default:
			add(p+".severity", "must be info, warning or critical")
		}
		if d.Threshold < 0 || d.DistinctObjects < 0 || d.MinRequests < 0 || d.Factor < 0 {
			add(p, "thresholds must not be negative")
		}
		vol := x.name == "volume_spike"
		if vol {
			if d.Threshold != 0 {
				add(p+".threshold", "not used by volume_spike; set factor and min_requests")
			}
			if d.Factor < 1 {
				add(p+".factor", "must be at least 1")
			}
			if d.MinRequests < 1 {
				add(p+".min_requests", "must be at least 1")
			}
			if d.Baseline < 2*d.Window {
				add(p+".baseline", "must be at least twice the window")
			}
			if d.Warmup < d.Window {
				add(p+".warmup", "must be at least the window")
			}
		} else {
			if d.Threshold < 1 {
				add(p+".threshold", "must be at least 1")
			}
			if d.Baseline != 0 || d.Factor != 0 || d.MinRequests != 0 || d.Warmup != 0 {
				add(p, "baseline, factor, min_requests and warmup are only used by volume_spike")
			}
		}
		if x.name != "enumeration" && d.DistinctObjects != 0 {
			add(p+".distinct_objects", "only used by enumeration")
		}
	}
	if a.IdleTTL < longest {
		add("idle_ttl", "must be at least %s, the longest window or baseline", longest.D())
	}
	al := &a.Alerts
	if w := al.Webhook; w != nil {
		if w.URL.URL == nil {
			add("alerts.webhook.url", "required")
		}
		if w.Secret.IsSet() && len(w.Secret.Value()) < MinAnomalyWebhookSecretBytes {
			add("alerts.webhook.secret", "must be at least %d bytes", MinAnomalyWebhookSecretBytes)
		}
		for name := range w.Headers {
			switch http.CanonicalHeaderKey(name) {
			case "Content-Type", "Content-Length", "Host", "X-Moat-Signature", "X-Moat-Timestamp":
				add("alerts.webhook.headers."+name, "is set by moat")
			}
			if !httpsyntax.IsToken(name) {
				add("alerts.webhook.headers."+name, "is not a valid header name")
			}
		}
	}
	if m := al.Alertmanager; m != nil && m.URL.URL == nil {
		add("alerts.alertmanager.url", "required")
	}
	if al.QueueSize < 1 {
		add("alerts.queue_size", "must be at least 1")
	}
	if al.MaxAttempts < 1 {
		add("alerts.max_attempts", "must be at least 1")
	}
	if al.RetryInitial <= 0 || al.RetryMax < al.RetryInitial {
		add("alerts.retry_max", "must be at least retry_initial, which must be greater than zero")
	}
	if al.Timeout <= 0 {
		add("alerts.timeout", "must be greater than zero")
	}
	b := &a.Block
	if b.Duration < Duration(time.Second) {
		add("block.duration", "must be at least 1s")
	}
	if b.CacheTTL < 0 || b.CacheTTL > Duration(time.Minute) {
		add("block.cache_ttl", "must be between 0s and 1m")
	}
	if b.Status != http.StatusForbidden && b.Status != http.StatusTooManyRequests {
		add("block.status", "must be 403 or 429")
	}
	if b.OnStoreError != "fail_closed" && b.OnStoreError != "fail_open" {
		add("block.on_store_error", "must be fail_closed or fail_open")
	}
	return ps
}
