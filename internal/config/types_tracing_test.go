package config

import (
	"strings"
	"testing"
	"time"
)

func TestTracingDefaults(t *testing.T) {
	tr := &Tracing{OTLPEndpoint: "https://otel.example.com:4318"}
	tr.ApplyDefaults()
	if !tr.IsOn() || *tr.SampleRatio != 1 || tr.ServiceName != "moat" || tr.Timeout.D() != 10*time.Second || tr.MaxQueueSize != 2048 {
		t.Errorf("defaults: %+v", tr)
	}
	if tr.OTLPEndpoint != "https://otel.example.com:4318/v1/traces" {
		t.Errorf("endpoint %q, want /v1/traces added", tr.OTLPEndpoint)
	}
	again := *tr
	again.ApplyDefaults()
	if again.OTLPEndpoint != tr.OTLPEndpoint {
		t.Errorf("ApplyDefaults is not idempotent: %q", again.OTLPEndpoint)
	}
	kept := &Tracing{OTLPEndpoint: "https://otel.example.com/custom/traces", SampleRatio: ptr(0.0)}
	kept.ApplyDefaults()
	if kept.OTLPEndpoint != "https://otel.example.com/custom/traces" || *kept.SampleRatio != 0 {
		t.Errorf("explicit values changed: %q %v", kept.OTLPEndpoint, *kept.SampleRatio)
	}
	var off *Tracing
	off.ApplyDefaults()
	if off.IsOn() || (&Tracing{Enabled: ptr(false)}).IsOn() {
		t.Error("nil or enabled: false tracing is on")
	}
}

func TestTracingValidate(t *testing.T) {
	secret := func(v string) Secret { return Secret{value: v, set: true} }
	tests := []struct {
		desc string
		mod  func(*Tracing)
		path string // "" when valid
		msg  string
	}{
		{desc: "no endpoint: propagation and audit trace IDs only", mod: func(*Tracing) {}},
		{desc: "loopback http", mod: func(c *Tracing) { c.OTLPEndpoint = "http://127.0.0.1:4318/v1/traces" }},
		{desc: "localhost http", mod: func(c *Tracing) { c.OTLPEndpoint = "http://localhost:4318/v1/traces" }},
		{desc: "https with auth header", mod: func(c *Tracing) {
			c.OTLPEndpoint = "https://otel.example.com/v1/traces"
			c.Headers = map[string]Secret{"Authorization": secret("Bearer x")}
		}},
		{desc: "remote plain http", mod: func(c *Tracing) { c.OTLPEndpoint = "http://otel.example.com:4318/v1/traces" }, path: "otlp_endpoint", msg: "plain http"},
		{desc: "remote plain http, insecure", mod: func(c *Tracing) {
			c.OTLPEndpoint, c.Insecure = "http://otel.example.com:4318/v1/traces", true
		}},
		{desc: "grpc scheme", mod: func(c *Tracing) { c.OTLPEndpoint = "grpc://127.0.0.1:4317" }, path: "otlp_endpoint", msg: "http:// or https://"},
		{desc: "no host", mod: func(c *Tracing) { c.OTLPEndpoint = "https:///v1/traces" }, path: "otlp_endpoint", msg: "no host"},
		{desc: "credentials in URL", mod: func(c *Tracing) { c.OTLPEndpoint = "https://u:p@otel.example.com/v1/traces" }, path: "otlp_endpoint", msg: "credentials"},
		{desc: "query", mod: func(c *Tracing) { c.OTLPEndpoint = "https://otel.example.com/v1/traces?x=1" }, path: "otlp_endpoint", msg: "query"},
		{desc: "bad port", mod: func(c *Tracing) { c.OTLPEndpoint = "https://otel.example.com:99999/v1/traces" }, path: "otlp_endpoint", msg: "port"},
		{desc: "not a URL", mod: func(c *Tracing) { c.OTLPEndpoint = "://x" }, path: "otlp_endpoint", msg: "not a URL"},
		{desc: "header without endpoint", mod: func(c *Tracing) { c.Headers = map[string]Secret{"X-Key": secret("k")} }, path: "headers", msg: "needs otlp_endpoint"},
		{desc: "bad header name", mod: func(c *Tracing) {
			c.OTLPEndpoint = "https://otel.example.com/v1/traces"
			c.Headers = map[string]Secret{"X Key": secret("k")}
		}, path: "headers.X Key", msg: "not a valid header name"},
		{desc: "reserved header", mod: func(c *Tracing) {
			c.OTLPEndpoint = "https://otel.example.com/v1/traces"
			c.Headers = map[string]Secret{"content-type": secret("text/plain")}
		}, path: "headers.content-type", msg: "set by the exporter"},
		{desc: "header twice", mod: func(c *Tracing) {
			c.OTLPEndpoint = "https://otel.example.com/v1/traces"
			c.Headers = map[string]Secret{"X-Key": secret("a"), "x-key": secret("b")}
		}, path: "headers.x-key", msg: "same header"},
		{desc: "header value with line break", mod: func(c *Tracing) {
			c.OTLPEndpoint = "https://otel.example.com/v1/traces"
			c.Headers = map[string]Secret{"X-Key": secret("a\r\nInjected: 1")}
		}, path: "headers.X-Key", msg: "line break"},
		{desc: "ratio above 1", mod: func(c *Tracing) { c.SampleRatio = ptr(1.5) }, path: "sample_ratio", msg: "between 0 and 1"},
		{desc: "negative ratio", mod: func(c *Tracing) { c.SampleRatio = ptr(-0.1) }, path: "sample_ratio", msg: "between 0 and 1"},
		{desc: "ratio 0", mod: func(c *Tracing) { c.SampleRatio = ptr(0.0) }},
		{desc: "service name with control character", mod: func(c *Tracing) { c.ServiceName = "moat\n" }, path: "service_name", msg: "printable"},
		{desc: "long service name", mod: func(c *Tracing) { c.ServiceName = strings.Repeat("a", 256) }, path: "service_name", msg: "printable"},
		{desc: "timeout too long", mod: func(c *Tracing) { c.Timeout = Duration(2 * time.Minute) }, path: "timeout", msg: "at most 1m"},
		{desc: "negative timeout", mod: func(c *Tracing) { c.Timeout = Duration(-time.Second) }, path: "timeout", msg: "greater than zero"},
		{desc: "queue too large", mod: func(c *Tracing) { c.MaxQueueSize = MaxTracingMaxQueueSize + 1 }, path: "max_queue_size", msg: "between 1"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := &Tracing{}
			c.ApplyDefaults()
			tt.mod(c)
			ps := c.Validate()
			if tt.path == "" {
				if len(ps) != 0 {
					t.Fatalf("problems %v, want none", ps)
				}
				return
			}
			if len(ps) != 1 || ps[0].Path != tt.path || !strings.Contains(ps[0].Msg, tt.msg) {
				t.Fatalf("problems %v, want one at %s containing %q", ps, tt.path, tt.msg)
			}
		})
	}
}
