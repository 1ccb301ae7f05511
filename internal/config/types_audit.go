package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"time"
)

// Audit configures audit events: one per request, configuration reload and
// API key change, hash-chained with an HMAC and delivered to one or more
// sinks with an on-disk spool per sink (see docs/audit.md). A nil *Audit
// means no audit events.
type Audit struct {
	Dir          string      `yaml:"dir" jsonschema:"description=Directory for the chain state and each sink's spool; relative paths are taken from the configuration file's directory. One gateway process uses it at a time. Default moat-audit."`
	Key          Secret      `yaml:"key" jsonschema:"description=HMAC-SHA256 key (at least 32 bytes) that chains the events for moat audit verify; env:NAME reads it from the environment. Without it events carry no event.hash."`
	QueueSize    int         `yaml:"queue_size" jsonschema:"description=Events buffered between the request path and the sinks; when full, events are counted as dropped (and an audit_events_dropped event says how many). Default 16384.,minimum=1"`
	Hostname     string      `yaml:"hostname" jsonschema:"description=observer.hostname of every event. Default: the host name."`
	FlushTimeout Duration    `yaml:"flush_timeout" jsonschema:"description=At shutdown, how long delivery may go on before what is left is kept in the spool for the next start. Default 10s."`
	Sinks        []AuditSink `yaml:"sinks" jsonschema:"description=Where events go; every event goes to every sink.,minItems=1"`
}

// AuditSink is one destination of audit events with its own batching, retry,
// memory queue and spool. Exactly one of file, syslog and http is set, matching
// type; stdout takes none.
type AuditSink struct {
	Name          string       `yaml:"name" jsonschema:"description=Unique name (letters, digits, - and _), used for the spool directory, logs and metrics. Default: the type."`
	Type          string       `yaml:"type" jsonschema:"description=stdout, file, syslog or http.,enum=stdout,enum=file,enum=syslog,enum=http"`
	File          *AuditFile   `yaml:"file,omitempty" jsonschema:"description=Settings of a file sink."`
	Syslog        *AuditSyslog `yaml:"syslog,omitempty" jsonschema:"description=Settings of a syslog sink."`
	HTTP          *AuditHTTP   `yaml:"http,omitempty" jsonschema:"description=Settings of an http sink."`
	BatchSize     int          `yaml:"batch_size" jsonschema:"description=Most events delivered in one write or request. Default 500 for http, 100 for the others.,minimum=1"`
	BatchBytes    Size         `yaml:"batch_bytes" jsonschema:"description=Most bytes of events in one write or request (one larger event still goes alone). Default 1MiB."`
	FlushInterval Duration     `yaml:"flush_interval" jsonschema:"description=How long a partial batch waits for more events. Default 1s for http; other sinks deliver at once."`
	MemoryQueue   int          `yaml:"memory_queue" jsonschema:"description=Events held in memory for the sink before they spill to its spool. Default 10000.,minimum=1"`
	SpoolMaxSize  Size         `yaml:"spool_max_size" jsonschema:"description=Cap of the sink's on-disk spool; events that do not fit are counted as dropped and logged. Default 1GiB, at least 64KiB."`
	Sync          bool         `yaml:"sync" jsonschema:"description=fsync the spool (and a file sink's file) after every write, so an operating-system crash loses nothing written. Default false: a process crash loses nothing written, an OS crash may lose the last seconds."`
	RetryInitial  Duration     `yaml:"retry_initial" jsonschema:"description=First wait after a failed delivery; it doubles per failure up to retry_max, with jitter. Default 500ms."`
	RetryMax      Duration     `yaml:"retry_max" jsonschema:"description=Longest wait between delivery attempts. Default 30s."`
}

// AuditFile writes events as JSON lines to a file, rotated by size and age.
type AuditFile struct {
	Path      string   `yaml:"path" jsonschema:"description=File written (JSON lines, mode 0600); rotated files are named after it with the rotation time: audit.jsonl -> audit-2026-11-21T10-00-00.000.jsonl."`
	MaxSize   Size     `yaml:"max_size" jsonschema:"description=Rotate when the file would grow past this size. Default 100MiB."`
	MaxAge    Duration `yaml:"max_age" jsonschema:"description=Rotate when the file is older than this (checked when events are written). Default 24h."`
	KeepFiles int      `yaml:"keep_files" jsonschema:"description=Rotated files kept; older ones are deleted. Default 0: keep all.,minimum=0"`
	KeepFor   Duration `yaml:"keep_for" jsonschema:"description=Rotated files older than this are deleted. Default 0s: keep forever."`
	Compress  bool     `yaml:"compress" jsonschema:"description=gzip rotated files (name.jsonl.gz); moat audit verify reads them."`
}

// AuditSyslog sends events as RFC 5424 messages over TCP or TLS with
// octet-counting framing (RFC 6587).
type AuditSyslog struct {
	Address      string       `yaml:"address" jsonschema:"description=host:port of the syslog receiver."`
	Transport    string       `yaml:"transport" jsonschema:"description=tls (default) or tcp.,enum=tls,enum=tcp"`
	TLS          *UpstreamTLS `yaml:"tls,omitempty" jsonschema:"description=CA bundle, server name and client certificate for transport tls."`
	Facility     string       `yaml:"facility" jsonschema:"description=Syslog facility name. Default audit (13).,enum=kern,enum=user,enum=mail,enum=daemon,enum=auth,enum=syslog,enum=lpr,enum=news,enum=uucp,enum=cron,enum=authpriv,enum=ftp,enum=ntp,enum=audit,enum=alert,enum=clock,enum=local0,enum=local1,enum=local2,enum=local3,enum=local4,enum=local5,enum=local6,enum=local7"`
	AppName      string       `yaml:"app_name" jsonschema:"description=APP-NAME of each message. Default moat."`
	DialTimeout  Duration     `yaml:"dial_timeout" jsonschema:"description=Time to connect (and finish the TLS handshake). Default 5s."`
	WriteTimeout Duration     `yaml:"write_timeout" jsonschema:"description=Time to write one batch. Default 10s."`
}

// AuditHTTP posts batches of events to an HTTP endpoint.
type AuditHTTP struct {
	URL        URL          `yaml:"url" jsonschema:"description=Endpoint receiving POSTs, such as https://splunk:8088/services/collector/event."`
	Format     string       `yaml:"format" jsonschema:"description=json (a JSON array of events, default), ndjson (one event per line) or splunk_hec (Splunk HTTP Event Collector envelopes).,enum=json,enum=ndjson,enum=splunk_hec"`
	Token      Secret       `yaml:"token" jsonschema:"description=Sent as Authorization: Bearer TOKEN, or Splunk TOKEN with splunk_hec (required there); env:NAME reads it from the environment."`
	Timeout    Duration     `yaml:"timeout" jsonschema:"description=Time one request may take. Default 10s."`
	TLS        *UpstreamTLS `yaml:"tls,omitempty" jsonschema:"description=CA bundle, server name and client certificate for https endpoints."`
	Index      string       `yaml:"index" jsonschema:"description=splunk_hec: the index field of each event. Default: the token's default index."`
	Source     string       `yaml:"source" jsonschema:"description=splunk_hec: the source field. Default moat."`
	SourceType string       `yaml:"sourcetype" jsonschema:"description=splunk_hec: the sourcetype field. Default _json."`
}

// Audit defaults; docs/audit.md lists the same values.
const (
	DefaultAuditDir            = "moat-audit"
	DefaultAuditQueueSize      = 16384
	DefaultAuditFlushTimeout   = Duration(10 * time.Second)
	DefaultAuditBatchHTTP      = 500
	DefaultAuditBatch          = 100
	DefaultAuditBatchBytes     = Size(1 << 20)
	DefaultAuditFlushHTTP      = Duration(time.Second)
	DefaultAuditMemoryQueue    = 10000
	DefaultAuditSpoolMaxSize   = Size(1 << 30)
	DefaultAuditRetryInitial   = Duration(500 * time.Millisecond)
	DefaultAuditRetryMax       = Duration(30 * time.Second)
	DefaultAuditFileMaxSize    = Size(100 << 20)
	DefaultAuditFileMaxAge     = Duration(24 * time.Hour)
	DefaultAuditDialTimeout    = Duration(5 * time.Second)
	DefaultAuditWriteTimeout   = Duration(10 * time.Second)
	DefaultAuditHTTPTimeout    = Duration(10 * time.Second)
	MinAuditSpoolMaxSize       = Size(64 << 10)
	MinAuditKeyBytes           = 32
	DefaultAuditSyslogFacility = "audit"
)

// SyslogFacilities maps the facility names of RFC 5424 section 6.2.1 to their
// codes.
var SyslogFacilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13, "alert": 14, "clock": 15,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ApplyDefaults fills every unset audit field with its default. Sink names
// default to their type. It is idempotent.
func (a *Audit) ApplyDefaults() {
	if a.Dir == "" {
		a.Dir = DefaultAuditDir
	}
	if a.QueueSize == 0 {
		a.QueueSize = DefaultAuditQueueSize
	}
	setDur(&a.FlushTimeout, DefaultAuditFlushTimeout)
	for i := range a.Sinks {
		s := &a.Sinks[i]
		if s.Name == "" {
			s.Name = s.Type
		}
		if s.BatchSize == 0 {
			s.BatchSize = DefaultAuditBatch
			if s.Type == "http" {
				s.BatchSize = DefaultAuditBatchHTTP
			}
		}
		if s.BatchBytes == 0 {
			s.BatchBytes = DefaultAuditBatchBytes
		}
		if s.FlushInterval == 0 && s.Type == "http" {
			s.FlushInterval = DefaultAuditFlushHTTP
		}
		if s.MemoryQueue == 0 {
			s.MemoryQueue = DefaultAuditMemoryQueue
		}
		if s.SpoolMaxSize == 0 {
			s.SpoolMaxSize = DefaultAuditSpoolMaxSize
		}
		setDur(&s.RetryInitial, DefaultAuditRetryInitial)
		setDur(&s.RetryMax, DefaultAuditRetryMax)
		if f := s.File; f != nil {
			if f.MaxSize == 0 {
				f.MaxSize = DefaultAuditFileMaxSize
			}
			setDur(&f.MaxAge, DefaultAuditFileMaxAge)
		}
		if y := s.Syslog; y != nil {
			setStr(&y.Transport, "tls")
			setStr(&y.Facility, DefaultAuditSyslogFacility)
			setStr(&y.AppName, "moat")
			setDur(&y.DialTimeout, DefaultAuditDialTimeout)
			setDur(&y.WriteTimeout, DefaultAuditWriteTimeout)
		}
		if h := s.HTTP; h != nil {
			setStr(&h.Format, "json")
			setDur(&h.Timeout, DefaultAuditHTTPTimeout)
			if h.Format == "splunk_hec" {
				setStr(&h.Source, "moat")
				setStr(&h.SourceType, "_json")
			}
		}
	}
}

var auditSinkName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks a defaulted audit configuration and returns every problem
// as a field path relative to the audit block (such as sinks[1].http.url) and
// a message. It reads the TLS files named, and changes nothing.
func (a *Audit) Validate() []Problem {
	var ps []Problem
	add := func(path, format string, args ...any) {
		ps = append(ps, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if a.Key.IsSet() && len(a.Key.Value()) < MinAuditKeyBytes {
		add("key", "must be at least %d bytes", MinAuditKeyBytes)
	}
	if a.QueueSize < 1 {
		add("queue_size", "must be at least 1")
	}
	if len(a.Sinks) == 0 {
		add("sinks", "at least one sink is required")
	}
	names := map[string]bool{}
	for i := range a.Sinks {
		s := &a.Sinks[i]
		path := fmt.Sprintf("sinks[%d]", i)
		if !auditSinkName.MatchString(s.Name) {
			add(path+".name", "%q must be 1 to 64 letters, digits, - or _", s.Name)
		} else if names[s.Name] {
			add(path+".name", "%q is used by another sink", s.Name)
		}
		names[s.Name] = true
		blocks := []struct {
			name string
			set  bool
		}{{"file", s.File != nil}, {"syslog", s.Syslog != nil}, {"http", s.HTTP != nil}}
		switch s.Type {
		case "stdout", "file", "syslog", "http":
			for _, b := range blocks {
				switch {
				case b.name == s.Type && !b.set:
					add(path+"."+b.name, "required with type %s", s.Type)
				case b.name != s.Type && b.set:
					add(path+"."+b.name, "only allowed with type %s", b.name)
				}
			}
		default:
			add(path+".type", "must be stdout, file, syslog or http")
		}
		if s.BatchSize < 1 {
			add(path+".batch_size", "must be at least 1")
		}
		if s.BatchBytes < 1024 {
			add(path+".batch_bytes", "must be at least 1KiB")
		}
		if s.MemoryQueue < 1 {
			add(path+".memory_queue", "must be at least 1")
		}
		if s.SpoolMaxSize < MinAuditSpoolMaxSize {
			add(path+".spool_max_size", "must be at least 64KiB")
		}
		if s.RetryInitial <= 0 || s.RetryMax < s.RetryInitial {
			add(path+".retry_max", "must be at least retry_initial, which must be greater than zero")
		}
		if f := s.File; f != nil {
			if f.Path == "" {
				add(path+".file.path", "required")
			}
			if f.MaxSize < 4096 {
				add(path+".file.max_size", "must be at least 4KiB")
			}
			if f.MaxAge < Duration(time.Second) {
				add(path+".file.max_age", "must be at least 1s")
			}
			if f.KeepFiles < 0 {
				add(path+".file.keep_files", "must not be negative")
			}
		}
		if y := s.Syslog; y != nil {
			if _, port, err := net.SplitHostPort(y.Address); err != nil || port == "" {
				add(path+".syslog.address", "%q is not host:port", y.Address)
			}
			switch y.Transport {
			case "tls":
				validateAuditTLS(y.TLS, path+".syslog.tls", add)
			case "tcp":
				if y.TLS != nil {
					add(path+".syslog.tls", "only allowed with transport tls")
				}
			default:
				add(path+".syslog.transport", "must be tls or tcp")
			}
			if _, ok := SyslogFacilities[y.Facility]; !ok {
				add(path+".syslog.facility", "unknown facility %q", y.Facility)
			}
			if !printASCII(y.AppName, 48) {
				add(path+".syslog.app_name", "must be 1 to 48 printable ASCII characters without spaces")
			}
			if y.DialTimeout <= 0 || y.WriteTimeout <= 0 {
				add(path+".syslog", "dial_timeout and write_timeout must be greater than zero")
			}
		}
		if h := s.HTTP; h != nil {
			if h.URL.URL == nil {
				add(path+".http.url", "required")
			} else if h.TLS != nil && h.URL.Scheme != "https" {
				add(path+".http.tls", "only allowed with an https url")
			}
			validateAuditTLS(h.TLS, path+".http.tls", add)
			switch h.Format {
			case "json", "ndjson":
				if h.Index != "" || h.Source != "" || h.SourceType != "" {
					add(path+".http", "index, source and sourcetype are only allowed with format splunk_hec")
				}
			case "splunk_hec":
				if !h.Token.IsSet() || h.Token.Value() == "" {
					add(path+".http.token", "required with format splunk_hec")
				}
			default:
				add(path+".http.format", "must be json, ndjson or splunk_hec")
			}
			if h.Timeout <= 0 {
				add(path+".http.timeout", "must be greater than zero")
			}
		}
	}
	return ps
}

// validateAudit records the problems of a defaulted audit block in p, with
// the positions of their fields. validate calls it when audit is set.
func validateAudit(a *Audit, p *problems) {
	for _, pr := range a.Validate() {
		p.add("audit."+pr.Path, "%s", pr.Msg)
	}
}

func validateAuditTLS(t *UpstreamTLS, path string, add func(string, string, ...any)) {
	if t == nil {
		return
	}
	for _, f := range []struct{ name, file string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.file == "" {
			continue
		}
		if err := readable(f.file); err != nil {
			add(path+"."+f.name, "cannot read %s: %v", f.file, errText(err))
		}
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add(path, "cert_file and key_file go together")
	}
}

func readable(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	return f.Close()
}

// printASCII reports whether s is 1 to max printable ASCII characters other
// than space (the PRINTUSASCII of RFC 5424).
func printASCII(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}
