package audit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// TestConfigValidate covers config.Audit's defaults and every problem its
// Validate reports (the configuration package wires them under audit.).
func TestConfigValidate(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, []byte("x"), 0o600)
	url := func(s string) config.URL {
		var u config.URL
		if err := u.UnmarshalText([]byte(s)); err != nil {
			t.Fatal(err)
		}
		return u
	}
	secret := func(s string) config.Secret {
		var v config.Secret
		v.UnmarshalText([]byte(s))
		return v
	}
	tests := []struct {
		desc  string
		audit config.Audit
		want  []string // "path: message fragment"; none for a valid block
	}{
		{"minimal stdout", config.Audit{Sinks: []config.AuditSink{{Type: "stdout"}}}, nil},
		{"every sink", config.Audit{Key: secret(string(testKey)), Sinks: []config.AuditSink{
			{Type: "stdout"},
			{Type: "file", File: &config.AuditFile{Path: "audit.jsonl", KeepFiles: 3, Compress: true}},
			{Type: "syslog", Syslog: &config.AuditSyslog{Address: "logs:6514", TLS: &config.UpstreamTLS{CAFile: caFile}}},
			{Type: "http", HTTP: &config.AuditHTTP{URL: url("https://splunk:8088/services/collector/event"), Format: "splunk_hec", Token: secret("t")}},
		}}, nil},
		{"no sinks", config.Audit{}, []string{"sinks: at least one"}},
		{"short key", config.Audit{Key: secret("short"), Sinks: []config.AuditSink{{Type: "stdout"}}}, []string{"key: must be at least 32 bytes"}},
		{"unknown type", config.Audit{Sinks: []config.AuditSink{{Type: "kafka", Name: "k"}}}, []string{"sinks[0].type: must be stdout"}},
		{"missing block", config.Audit{Sinks: []config.AuditSink{{Type: "file"}}}, []string{"sinks[0].file: required with type file"}},
		{"wrong block", config.Audit{Sinks: []config.AuditSink{{Type: "stdout", HTTP: &config.AuditHTTP{URL: url("http://x")}}}}, []string{"sinks[0].http: only allowed with type http"}},
		{"duplicate names", config.Audit{Sinks: []config.AuditSink{{Type: "stdout"}, {Type: "stdout"}}}, []string{`sinks[1].name: "stdout" is used`}},
		{"bad name", config.Audit{Sinks: []config.AuditSink{{Type: "stdout", Name: "../x"}}}, []string{"sinks[0].name:"}},
		{"small spool", config.Audit{Sinks: []config.AuditSink{{Type: "stdout", SpoolMaxSize: 1024}}}, []string{"sinks[0].spool_max_size: must be at least 64KiB"}},
		{"retry order", config.Audit{Sinks: []config.AuditSink{{Type: "stdout", RetryInitial: config.Duration(time.Minute), RetryMax: config.Duration(time.Second)}}}, []string{"sinks[0].retry_max"}},
		{"file limits", config.Audit{Sinks: []config.AuditSink{{Type: "file", File: &config.AuditFile{MaxSize: 10, KeepFiles: -1}}}},
			[]string{"sinks[0].file.path: required", "sinks[0].file.max_size", "sinks[0].file.keep_files"}},
		{"syslog problems", config.Audit{Sinks: []config.AuditSink{{Type: "syslog", Syslog: &config.AuditSyslog{Address: "nohost", Transport: "udp", Facility: "lpt", AppName: "my app"}}}},
			[]string{"sinks[0].syslog.address", "sinks[0].syslog.transport", "sinks[0].syslog.facility", "sinks[0].syslog.app_name"}},
		{"tls on tcp", config.Audit{Sinks: []config.AuditSink{{Type: "syslog", Syslog: &config.AuditSyslog{Address: "h:514", Transport: "tcp", TLS: &config.UpstreamTLS{}}}}},
			[]string{"sinks[0].syslog.tls: only allowed with transport tls"}},
		{"unreadable ca", config.Audit{Sinks: []config.AuditSink{{Type: "syslog", Syslog: &config.AuditSyslog{Address: "h:514", TLS: &config.UpstreamTLS{CAFile: "/nonexistent/ca.pem", CertFile: "c.pem"}}}}},
			[]string{"sinks[0].syslog.tls.ca_file: cannot read", "sinks[0].syslog.tls.cert_file: cannot read", "sinks[0].syslog.tls: cert_file and key_file go together"}},
		{"http problems", config.Audit{Sinks: []config.AuditSink{{Type: "http", HTTP: &config.AuditHTTP{Format: "xml"}}}},
			[]string{"sinks[0].http.url: required", "sinks[0].http.format"}},
		{"splunk without token", config.Audit{Sinks: []config.AuditSink{{Type: "http", HTTP: &config.AuditHTTP{URL: url("https://s"), Format: "splunk_hec"}}}},
			[]string{"sinks[0].http.token: required with format splunk_hec"}},
		{"splunk fields on json", config.Audit{Sinks: []config.AuditSink{{Type: "http", HTTP: &config.AuditHTTP{URL: url("https://s"), Index: "i"}}}},
			[]string{"sinks[0].http: index, source and sourcetype"}},
		{"tls on http url", config.Audit{Sinks: []config.AuditSink{{Type: "http", HTTP: &config.AuditHTTP{URL: url("http://s"), TLS: &config.UpstreamTLS{}}}}},
			[]string{"sinks[0].http.tls: only allowed with an https url"}},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			a := tc.audit
			a.ApplyDefaults()
			a.ApplyDefaults() // idempotent
			var got []string
			for _, p := range a.Validate() {
				got = append(got, p.Path+": "+p.Msg)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %q", got, tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d is %q, want %q", i, got[i], w)
				}
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	a := config.Audit{Sinks: []config.AuditSink{
		{Type: "http", HTTP: &config.AuditHTTP{Format: "splunk_hec"}},
		{Type: "file", File: &config.AuditFile{}},
		{Type: "syslog", Syslog: &config.AuditSyslog{}},
	}}
	a.ApplyDefaults()
	h, f, y := a.Sinks[0], a.Sinks[1], a.Sinks[2]
	checks := []struct {
		desc      string
		got, want any
	}{
		{"dir", a.Dir, "moat-audit"},
		{"queue", a.QueueSize, 16384},
		{"flush timeout", a.FlushTimeout, config.Duration(10 * time.Second)},
		{"http name", h.Name, "http"},
		{"http batch", h.BatchSize, 500},
		{"http flush interval", h.FlushInterval, config.Duration(time.Second)},
		{"splunk source", h.HTTP.Source, "moat"},
		{"splunk sourcetype", h.HTTP.SourceType, "_json"},
		{"http timeout", h.HTTP.Timeout, config.Duration(10 * time.Second)},
		{"file batch", f.BatchSize, 100},
		{"file flush interval", f.FlushInterval, config.Duration(0)},
		{"file max size", f.File.MaxSize, config.Size(100 << 20)},
		{"file max age", f.File.MaxAge, config.Duration(24 * time.Hour)},
		{"spool", f.SpoolMaxSize, config.Size(1 << 30)},
		{"memory", f.MemoryQueue, 10000},
		{"retry", f.RetryInitial, config.Duration(500 * time.Millisecond)},
		{"retry max", f.RetryMax, config.Duration(30 * time.Second)},
		{"syslog transport", y.Syslog.Transport, "tls"},
		{"syslog facility", y.Syslog.Facility, "audit"},
		{"syslog app", y.Syslog.AppName, "moat"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.desc, c.got, c.want)
		}
	}
}
