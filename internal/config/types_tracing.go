package config

import (
	"fmt"
	"math"
	"net"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// Tracing configures distributed tracing (see docs/tracing.md): W3C Trace
// Context propagation and OpenTelemetry spans per request, per request stage
// and per upstream call, exported over OTLP/HTTP when otlp_endpoint is set.
// A nil *Tracing means tracing off; a tracing block turns it on unless
// enabled is false.
type Tracing struct {
	Enabled      *bool             `yaml:"enabled" jsonschema:"description=Turn tracing on. Default true when the tracing block is present; false turns it off."`
	OTLPEndpoint string            `yaml:"otlp_endpoint" jsonschema:"description=OTLP/HTTP (protobuf) URL spans are exported to\\, such as http://127.0.0.1:4318/v1/traces; a URL without a path gets /v1/traces. Empty: spans are made (trace IDs in audit events and propagated upstream) but exported nowhere."`
	Headers      map[string]Secret `yaml:"headers" jsonschema:"description=HTTP headers sent with every export request\\, for the collector's authentication (Authorization: env:OTLP_TOKEN). Values are secrets: literal or env:NAME."`
	Insecure     bool              `yaml:"insecure" jsonschema:"description=Allow an http:// otlp_endpoint on a non-loopback host: spans and headers then cross the network in clear text. Default false."`
	SampleRatio  *float64          `yaml:"sample_ratio" jsonschema:"description=Fraction of new traces recorded (0 to 1). A request with a trace context from a trusted peer follows that context's sampled flag instead. Default 1.,minimum=0,maximum=1"`
	ServiceName  string            `yaml:"service_name" jsonschema:"description=service.name resource attribute of the spans. Default moat."`
	Timeout      Duration          `yaml:"timeout" jsonschema:"description=Time one export request may take\\, and the longest shutdown waits to flush the spans still queued. Default 10s."`
	MaxQueueSize int               `yaml:"max_queue_size" jsonschema:"description=Spans held for export; when the queue is full new spans are dropped rather than slowing requests down. Default 2048.,minimum=1,maximum=1000000"`
}

// Tracing defaults; docs/tracing.md lists the same values.
const (
	DefaultTracingSampleRatio  = 1.0
	DefaultTracingServiceName  = "moat"
	DefaultTracingTimeout      = Duration(10 * time.Second)
	DefaultTracingMaxQueueSize = 2048
	MaxTracingMaxQueueSize     = 1000000
	// TracingOTLPPath is the path of the OTLP/HTTP traces endpoint, added to
	// an otlp_endpoint given without a path.
	TracingOTLPPath = "/v1/traces"
)

// IsOn reports whether tracing is configured and enabled.
func (t *Tracing) IsOn() bool { return t != nil && (t.Enabled == nil || *t.Enabled) }

// ApplyDefaults fills every unset field of t with its default. It changes
// nothing when t is nil and is idempotent.
func (t *Tracing) ApplyDefaults() {
	if t == nil {
		return
	}
	if t.Enabled == nil {
		t.Enabled = ptr(true)
	}
	if t.SampleRatio == nil {
		t.SampleRatio = ptr(DefaultTracingSampleRatio)
	}
	setStr(&t.ServiceName, DefaultTracingServiceName)
	setDur(&t.Timeout, DefaultTracingTimeout)
	if t.MaxQueueSize == 0 {
		t.MaxQueueSize = DefaultTracingMaxQueueSize
	}
	if t.OTLPEndpoint != "" {
		if u, err := url.Parse(t.OTLPEndpoint); err == nil && (u.Path == "" || u.Path == "/") && u.RawQuery == "" && u.Fragment == "" {
			u.Path = TracingOTLPPath
			t.OTLPEndpoint = u.String()
		}
	}
}

// Validate checks a defaulted tracing configuration and returns every
// problem with a field path relative to the tracing block. It changes
// nothing.
func (t *Tracing) Validate() []Problem {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if t.OTLPEndpoint != "" {
		if msg := checkOTLPEndpoint(t.OTLPEndpoint, t.Insecure); msg != "" {
			add("otlp_endpoint", "%s", msg)
		}
	}
	names := make([]string, 0, len(t.Headers))
	for name := range t.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	seen := map[string]string{}
	for _, name := range names {
		path := "headers." + name
		canon := strings.ToLower(name)
		switch {
		case !httpsyntax.IsToken(name):
			add(path, "%q is not a valid header name", name)
		case reservedOTLPHeaders[canon]:
			add(path, "%s is set by the exporter and cannot be configured", name)
		case seen[canon] != "":
			add(path, "the same header as %s", seen[canon])
		}
		seen[canon] = name
		if v := t.Headers[name].Value(); strings.ContainsAny(v, "\r\n\x00") {
			add(path, "value holds a line break or NUL")
		}
	}
	if len(t.Headers) > 0 && t.OTLPEndpoint == "" {
		add("headers", "needs otlp_endpoint")
	}
	if r := t.SampleRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		add("sample_ratio", "must be between 0 and 1")
	}
	if t.ServiceName == "" || len(t.ServiceName) > 255 || strings.ContainsFunc(t.ServiceName, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		add("service_name", "must be 1 to 255 printable characters")
	}
	if t.Timeout <= 0 || t.Timeout.D() > time.Minute {
		add("timeout", "must be greater than zero and at most 1m")
	}
	if t.MaxQueueSize < 1 || t.MaxQueueSize > MaxTracingMaxQueueSize {
		add("max_queue_size", "must be between 1 and %d", MaxTracingMaxQueueSize)
	}
	return ps
}

// reservedOTLPHeaders are headers the OTLP exporter or net/http sets itself.
var reservedOTLPHeaders = map[string]bool{
	"content-type": true, "content-length": true, "content-encoding": true, "host": true,
	"transfer-encoding": true, "connection": true, "te": true, "upgrade": true,
}

// checkOTLPEndpoint returns why raw is not a usable OTLP/HTTP URL, or "".
func checkOTLPEndpoint(raw string, insecure bool) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must be an http:// or https:// URL", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", raw)
	case u.User != nil:
		return "must not hold credentials: put them in headers"
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Sprintf("%q must not have a query or fragment", raw)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil || strings.HasPrefix(p, "0") {
			return fmt.Sprintf("%q has an invalid port", raw)
		}
	}
	if u.Scheme == "http" && !insecure && !loopbackHost(u.Hostname()) {
		return fmt.Sprintf("%q is plain http to a non-loopback host: use https (or insecure: true to send spans and headers in clear text)", raw)
	}
	return ""
}
