// Package audit records one tamper-evident event per request, configuration
// reload, API key change and administrative action, and delivers it to
// several sinks at once (stdout, rotated files, syslog over TCP or TLS, HTTP
// batch endpoints including Splunk HEC).
//
// The request path only encodes: Record turns an Event into JSON with a
// hand-written appender and hands it to a bounded queue without blocking.
// One goroutine numbers the events (event.sequence), chains them with
// HMAC-SHA256 (event.hash) and gives each sink a copy. Each sink has its own
// memory queue, batching, retries with exponential backoff and jitter, and an
// on-disk spool that keeps what the sink could not take yet, across outages
// and restarts. docs/audit.md describes every field and the delivery
// guarantees.
package audit

import (
	"net/netip"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// Actions (event.action) of the events this package builds.
const (
	ActionHTTPRequest   = "http_request"
	ActionConfigReload  = "config_reload"
	ActionKeyCreate     = "api_key_create"
	ActionKeyRevoke     = "api_key_revoke"
	ActionKeyRotate     = "api_key_rotate"
	ActionKeyUpdate     = "api_key_update"
	ActionChainStart    = "audit_chain_start"
	ActionEventsDropped = "audit_events_dropped"
)

// Decisions (moat.decision) of request events.
const (
	DecisionAllow = "allow" // no stage refused the request
	DecisionDeny  = "deny"  // a stage or the gateway refused it (reason in event.reason)
	DecisionError = "error" // the gateway or the upstream failed (internal_error, upstream_*)
)

// Outcomes (event.outcome), as ECS defines them.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeUnknown = "unknown"
)

// Findings keys with a field of their own: a WAF stage notes its matched rule
// IDs ([]string or []int) and anomaly score (a number) under these keys with
// Exchange.Note; they appear as moat.waf.rule_ids and moat.waf.score. Every
// other finding appears under moat.findings.
const (
	FindingWAFRuleIDs = "waf_rule_ids"
	FindingWAFScore   = "waf_score"
)

// Event is one audit event. FromExchange, ConfigReload, KeyChange and
// AdminAction build the usual ones; zero fields are left out of the JSON.
// Record encodes an Event at once and keeps no reference to it or to what
// it points to, so slices and maps may be shared with the exchange.
type Event struct {
	Time     time.Time     // @timestamp: when the request arrived, or the action happened
	Action   string        // event.action
	Category string        // event.category (one value)
	Types    [2]string     // event.type (one or two values)
	Outcome  string        // event.outcome: success, failure or unknown
	Reason   string        // event.reason: the reason_id of a denial or failure
	Duration time.Duration // event.duration: the whole exchange
	Message  string        // message: a human-readable summary (admin and config events)

	// Request.
	RequestID    string        // http.request.id
	Method       string        // http.request.method
	HTTPVersion  string        // http.version: 1.0, 1.1, 2 or 3
	Status       int           // http.response.status_code
	Scheme       string        // url.scheme
	Host         string        // url.domain (the Host header without port)
	Path         string        // url.path
	RawQuery     string        // only its parameter names are written, as moat.query_keys
	UserAgent    string        // user_agent.original
	TLSVersion   string        // tls.version
	TraceID      string        // trace.id: Exchange.TraceID, else from a valid W3C traceparent header
	ClientIP     netip.Addr    // source.ip
	PeerIP       netip.Addr    // moat.peer_ip, written when it differs from ClientIP
	Decision     string        // moat.decision
	Route        string        // moat.route
	PathTemplate string        // moat.path_template
	Listener     string        // moat.listener
	Detail       string        // moat.detail: internal detail of a denial or failure
	Upstream     string        // moat.upstream.target
	GatewayTime  time.Duration // moat.latency.gateway_us: Duration minus UpstreamTime
	UpstreamTime time.Duration // moat.latency.upstream_us
	Limits       []gateway.LimitState
	Findings     map[string]any

	// Who.
	UserID        string   // user.id: the principal's subject, or the actor of an admin action
	Roles         []string // user.roles
	Scopes        []string // moat.scopes
	Authenticator string   // moat.authenticator
	AuthKind      string   // moat.auth_kind
	KeyID         string   // moat.key_id: API key ID or JWT kid; never the secret
	Plan          string   // moat.plan
	TargetUser    string   // user.target.id: the subject an API key belongs to (key events)

	Config  *ConfigInfo // moat.config (config_reload)
	Chain   *ChainInfo  // moat.chain (audit_chain_start)
	Dropped uint64      // moat.dropped_events (audit_events_dropped)
}

// ConfigInfo describes a configuration reload.
type ConfigInfo struct {
	File   string // moat.config.file
	SHA256 string // moat.config.sha256: hex digest of the file loaded
}

// ChainInfo describes where a hash chain starts (audit_chain_start events).
type ChainInfo struct {
	Reason           string // moat.chain.reason: new, restart or state_lost
	PreviousHash     string // moat.chain.previous_hash: hex MAC of the last event before the restart
	PreviousSequence uint64 // moat.chain.previous_sequence
	KeyID            string // moat.chain.key_id: identifies the HMAC key (not the key)
}

// Limits on what one event holds, so that a hostile request cannot make
// events arbitrarily large. Clipped strings end with "...".
const (
	maxPath      = 2048
	maxHost      = 256
	maxUserAgent = 512
	maxDetail    = 1024
	maxString    = 1024 // any other string, including findings
	maxList      = 64   // roles, scopes, query keys, rule IDs, finding lists
	maxMapKeys   = 32   // findings objects
	maxDepth     = 3    // nesting of findings values
)

// FromExchange builds the audit event of a finished exchange; end is when the
// response was written (time.Now() in production; tests pass a fixed time).
// It must run on the goroutine that owns ex, after ex.Status is set, and the
// event must be recorded before ex is released: it shares ex's slices.
func FromExchange(ex *gateway.Exchange, end time.Time) Event {
	ev := Event{
		Time:         ex.Start,
		Action:       ActionHTTPRequest,
		Category:     "web",
		Reason:       ex.ReasonID,
		RequestID:    ex.ID,
		Status:       ex.Status,
		ClientIP:     ex.ClientIP,
		Detail:       ex.Detail,
		Upstream:     ex.Target,
		UpstreamTime: ex.UpstreamLatency,
		Limits:       ex.Limits,
		Findings:     ex.Findings,
	}
	if !ex.Start.IsZero() && end.After(ex.Start) {
		ev.Duration = end.Sub(ex.Start)
	}
	ev.GatewayTime = max(ev.Duration-ev.UpstreamTime, 0)
	if ex.PeerIP.IsValid() && ex.PeerIP != ex.ClientIP {
		ev.PeerIP = ex.PeerIP
	}
	ev.Decision = decision(ex.ReasonID)
	ev.Types = [2]string{"access", typeOf(ev.Decision)}
	ev.Outcome = outcome(ex.Status)
	if r := ex.Request; r != nil {
		ev.Method = r.Method
		ev.HTTPVersion = httpVersion(r.ProtoMajor, r.ProtoMinor)
		ev.Host = hostOnly(r.Host)
		if r.URL != nil {
			ev.Path = r.URL.Path
			ev.RawQuery = r.URL.RawQuery
		}
		ev.UserAgent = r.Header.Get("User-Agent")
		ev.TraceID = TraceID(r.Header.Get("Traceparent"))
	}
	if ex.TraceID != "" {
		// Tracing is on: the trace of the exchange's own span, which the
		// upstream was given.
		ev.TraceID = ex.TraceID
	}
	ev.Scheme = "http"
	if ex.TLS != nil {
		ev.Scheme = "https"
		ev.TLSVersion = tlsVersion(ex.TLS.Version)
	}
	if ex.Route != nil {
		ev.Route = ex.Route.Name
		ev.PathTemplate = ex.Route.Template
	}
	if ex.Listener != nil {
		ev.Listener = ex.Listener.Name
	}
	if p := ex.Principal; p != nil {
		ev.UserID = p.Subject
		ev.Roles = p.Roles
		ev.Scopes = p.Scopes
		ev.Authenticator = p.Authenticator
		ev.AuthKind = p.Kind
		ev.KeyID = p.KeyID
		ev.Plan = p.Plan
	}
	return ev
}

// ConfigReload builds the event of a configuration reload: err is nil when
// the new configuration is in service, or why it was refused (the old one
// then stays). sha256 is the hex digest of the file read.
func ConfigReload(at time.Time, file, sha256 string, err error) Event {
	ev := Event{Time: at, Action: ActionConfigReload, Category: "configuration", Types: [2]string{"change"},
		Outcome: OutcomeSuccess, Message: "configuration reloaded", Config: &ConfigInfo{File: file, SHA256: sha256}}
	if err != nil {
		ev.Outcome = OutcomeFailure
		ev.Message = "configuration reload refused"
		ev.Detail = err.Error()
	}
	return ev
}

// KeyChange builds the event of an API key change seen by the gateway:
// action is one of ActionKeyCreate, ActionKeyRevoke, ActionKeyRotate and
// ActionKeyUpdate; keyID the key's ID (never the key), subject its owner,
// and actor who made the change when known ("" otherwise).
func KeyChange(at time.Time, action, keyID, subject, actor string) Event {
	t := "change"
	switch action {
	case ActionKeyCreate:
		t = "creation"
	case ActionKeyRevoke:
		t = "deletion"
	}
	return Event{Time: at, Action: action, Category: "iam", Types: [2]string{t}, Outcome: OutcomeSuccess,
		KeyID: keyID, TargetUser: subject, UserID: actor}
}

// AdminAction builds the event of an administrative action: action names it
// (snake_case, such as key_revoke or config_apply), actor is the
// authenticated administrator (nil when unknown), from the client address,
// err nil when it succeeded; message says what was done, without secrets.
func AdminAction(at time.Time, action string, actor *gateway.Principal, from netip.Addr, message string, err error) Event {
	ev := Event{Time: at, Action: action, Category: "configuration", Types: [2]string{"admin"}, Outcome: OutcomeSuccess,
		Message: message, ClientIP: from}
	if actor != nil {
		ev.UserID, ev.Roles, ev.Authenticator, ev.AuthKind, ev.KeyID = actor.Subject, actor.Roles, actor.Authenticator, actor.Kind, actor.KeyID
	}
	if err != nil {
		ev.Outcome = OutcomeFailure
		ev.Detail = err.Error()
	}
	return ev
}

// decision classifies an exchange by its reason: none is an allow; the
// kernel's own failures and the upstream's are errors; every other reason
// is a refusal.
func decision(reason string) string {
	switch reason {
	case "":
		return DecisionAllow
	case gateway.ReasonInternalError, gateway.ReasonUpstreamUnreachable, gateway.ReasonUpstreamTimeout,
		gateway.ReasonUpstreamUnavailable, gateway.ReasonUpstreamCircuitOpen, gateway.ReasonUpstreamBadResponse:
		return DecisionError
	}
	return DecisionDeny
}

func typeOf(decision string) string {
	switch decision {
	case DecisionAllow:
		return "allowed"
	case DecisionDeny:
		return "denied"
	}
	return "error"
}

// outcome follows ECS for HTTP: a response below 400 is a success, 4xx and
// 5xx failures; 499 (the client left first) or no status is unknown.
func outcome(status int) string {
	switch {
	case status == 0 || status == 499:
		return OutcomeUnknown
	case status < 400:
		return OutcomeSuccess
	}
	return OutcomeFailure
}

func httpVersion(major, minor int) string {
	switch {
	case major == 1 && minor == 1:
		return "1.1"
	case major == 2:
		return "2"
	case major == 1 && minor == 0:
		return "1.0"
	case major == 3:
		return "3"
	}
	return ""
}

func tlsVersion(v uint16) string {
	switch v {
	case 0x0304:
		return "1.3"
	case 0x0303:
		return "1.2"
	case 0x0302:
		return "1.1"
	case 0x0301:
		return "1.0"
	}
	return ""
}

// hostOnly strips the port from a Host header value: example.com:8443 ->
// example.com, [::1]:8080 -> ::1.
func hostOnly(h string) string {
	if len(h) > 0 && h[0] == '[' {
		if i := indexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	colon := -1
	for i := 0; i < len(h); i++ {
		if h[i] == ':' {
			if colon >= 0 {
				return h // a bare IPv6 address
			}
			colon = i
		}
	}
	if colon >= 0 {
		return h[:colon]
	}
	return h
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// TraceID returns the trace-id of a W3C Trace Context traceparent header
// value (version-traceid-parentid-flags, lowercase hex), or "" when the value
// is not well formed or the trace-id is all zeros. Versions above 00 are
// read by their first four fields, as the specification asks; version ff is
// invalid. The value is the client's claim and is not verified.
func TraceID(tp string) string {
	if len(tp) < 55 || (len(tp) > 55 && tp[55] != '-') || (tp[:2] == "00" && len(tp) != 55) || tp[:2] == "ff" {
		return ""
	}
	if !lowerHex(tp[0:2]) || tp[2] != '-' || !lowerHex(tp[3:35]) || tp[35] != '-' || !lowerHex(tp[36:52]) || tp[52] != '-' || !lowerHex(tp[53:55]) {
		return ""
	}
	if allZero(tp[3:35]) || allZero(tp[36:52]) {
		return ""
	}
	return tp[3:35]
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
