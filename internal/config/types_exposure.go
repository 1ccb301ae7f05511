package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/moat-gateway/moat/internal/httpsyntax"
)

// SafeErrors replaces the bodies of upstream error responses with the
// gateway's problem document, so stack traces, SQL errors and file paths do
// not reach clients (docs/safe-errors.md). It is on by default; a route's
// block replaces the top-level one as a whole.
type SafeErrors struct {
	Enabled                   *bool    `yaml:"enabled" jsonschema:"description=Replace upstream error bodies. Default true."`
	Statuses                  []string `yaml:"statuses" jsonschema:"description=Upstream statuses whose bodies are replaced: codes (502) or inclusive ranges (500-599)\\, between 400 and 599. Default [500-599]."`
	KeepInAudit               bool     `yaml:"keep_in_audit" jsonschema:"description=Record the first max_audit_bytes of each replaced body\\, with secrets and personal data masked\\, in the audit event (finding upstream_error_body). Audit sinks then hold upstream error text. Default false: the body is discarded."`
	MaxAuditBytes             Size     `yaml:"max_audit_bytes" jsonschema:"description=With keep_in_audit: how much of a replaced body is recorded. Default 4KiB; at most 64KiB."`
	Include4xxWithStackTraces bool     `yaml:"include_4xx_with_stack_traces" jsonschema:"description=Also replace 4xx bodies (up to 64KiB inspected) that contain a stack trace or database error signature. Default false: 4xx bodies pass unchanged."`
}

// UpstreamHeaders removes more upstream response headers on one route, on
// top of the gateway-wide security_headers.remove list (whose default holds
// Server, X-Powered-By, X-AspNet-Version, X-AspNetMvc-Version, X-Runtime,
// X-Generator, X-Backend-Server and X-Debug-*).
type UpstreamHeaders struct {
	Remove []string `yaml:"remove" jsonschema:"description=Response headers removed from this route's upstream responses\\, besides security_headers.remove. A name ending in * removes every header with that prefix (X-Internal-*)."`
}

// Version declares the API version a route serves (docs/versioning.md).
type Version struct {
	Value        string `yaml:"value" jsonschema:"description=The version this route serves: 2\\, 2.1 or 2024-06-01. A leading v is ignored when comparing (v2 equals 2)."`
	From         string `yaml:"from" jsonschema:"description=Where the client names the version: path (default; the route's path already holds it\\, nothing is checked)\\, header (the header named by header) or media_type (Accept: application/json; version=2\\, or application/vnd.example.v2+json).,enum=path,enum=header,enum=media_type"`
	Header       string `yaml:"header" jsonschema:"description=With from header: the request header holding the version. Default API-Version."`
	Default      bool   `yaml:"default" jsonschema:"description=With from header or media_type: requests that name no version are served by this route. Default false: they are refused with 400 version_required."`
	Deprecated   bool   `yaml:"deprecated" jsonschema:"description=The version is deprecated: responses carry Deprecation (RFC 9745)\\, Sunset (with sunset) and Link rel=deprecation (with link)\\, and its use is counted per principal."`
	DeprecatedAt string `yaml:"deprecated_at" jsonschema:"description=When the version was (or will be) deprecated\\, RFC 3339 (2026-01-01T00:00:00Z); required with deprecated: the Deprecation header carries this date.,format=date-time"`
	Sunset       string `yaml:"sunset" jsonschema:"description=When the version is retired\\, RFC 3339. Responses carry a Sunset header (RFC 8594) before it; from then on requests are refused with 410 api_version_retired.,format=date-time"`
	Link         string `yaml:"link" jsonschema:"description=Absolute http(s) URL of the deprecation or migration notice\\, sent as Link: <url>; rel=deprecation (and rel=sunset with sunset)."`
}

// Version sources.
const (
	VersionFromPath      = "path"
	VersionFromHeader    = "header"
	VersionFromMediaType = "media_type"
)

// Defaults of the exposure blocks. They live beside the types so the blocks
// can be wired in without touching the shared defaults.
const (
	DefaultSafeErrorsMaxAuditBytes = Size(4 << 10)
	MaxSafeErrorsMaxAuditBytes     = Size(64 << 10)
	DefaultVersionHeader           = "API-Version"
)

// DefaultSafeErrorStatuses are the upstream statuses whose bodies are
// replaced by default.
var DefaultSafeErrorStatuses = []string{"500-599"}

// IsOn reports whether s replaces bodies: a nil block counts as on, since
// safe errors are on unless turned off.
func (s *SafeErrors) IsOn() bool { return s == nil || s.Enabled == nil || *s.Enabled }

// ApplyDefaults fills unset fields: enabled, statuses 500-599, max_audit_bytes
// 4KiB. It changes nothing when s is nil.
func (s *SafeErrors) ApplyDefaults() {
	if s == nil {
		return
	}
	if s.Enabled == nil {
		s.Enabled = ptr(true)
	}
	if s.Statuses == nil {
		s.Statuses = append([]string(nil), DefaultSafeErrorStatuses...)
	}
	if s.MaxAuditBytes == 0 {
		s.MaxAuditBytes = DefaultSafeErrorsMaxAuditBytes
	}
}

// Validate checks a defaulted block and returns every problem with its field
// path below path (such as routes[1].safe_errors). A nil or disabled block
// has no problems. Validate changes nothing.
func (s *SafeErrors) Validate(path string) []Problem {
	if s == nil || !s.IsOn() {
		return nil
	}
	var out []Problem
	for i, st := range s.Statuses {
		if _, _, err := ParseStatusRange(st); err != nil {
			out = append(out, Problem{Path: join(path, fmt.Sprintf("statuses[%d]", i)), Msg: err.Error()})
		}
	}
	if s.MaxAuditBytes < 1 || s.MaxAuditBytes > MaxSafeErrorsMaxAuditBytes {
		out = append(out, Problem{Path: join(path, "max_audit_bytes"), Msg: "must be between 1 byte and 64KiB"})
	}
	return out
}

// ParseStatusRange parses a status code ("502") or an inclusive range
// ("500-599") of error statuses, 400 to 599.
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = parseErrorStatus(a); err != nil {
		return 0, 0, fmt.Errorf("%q: %w", s, err)
	}
	hi = lo
	if isRange {
		if hi, err = parseErrorStatus(b); err != nil {
			return 0, 0, fmt.Errorf("%q: %w", s, err)
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("%q: range ends before it starts", s)
		}
	}
	return lo, hi, nil
}

func parseErrorStatus(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || len(s) != 3 {
		return 0, fmt.Errorf("want a status code or range such as 502 or 500-599")
	}
	if n < 400 || n > 599 {
		return 0, fmt.Errorf("status %d is not an error status (400-599)", n)
	}
	return n, nil
}

// Validate returns every problem of h with its field path below path (such
// as routes[1].upstream_headers). A nil block has no problems.
func (h *UpstreamHeaders) Validate(path string) []Problem {
	if h == nil {
		return nil
	}
	var out []Problem
	if len(h.Remove) == 0 {
		out = append(out, Problem{Path: join(path, "remove"), Msg: "name at least one header"})
	}
	for i, name := range h.Remove {
		if err := ValidateHeaderPattern(name); err != nil {
			out = append(out, Problem{Path: join(path, fmt.Sprintf("remove[%d]", i)), Msg: err.Error()})
		}
	}
	return out
}

// ValidateHeaderPattern checks a header removal entry: a header name, or a
// name prefix followed by a single trailing * (X-Debug-*). A lone * is
// refused: it would remove every header.
func ValidateHeaderPattern(name string) error {
	prefix, _ := strings.CutSuffix(strings.TrimSpace(name), "*")
	if !httpsyntax.IsToken(prefix) || strings.Contains(prefix, "*") {
		return fmt.Errorf("%q is not a header name (a trailing * matches a prefix, as in X-Debug-*)", name)
	}
	return nil
}

// ApplyDefaults fills unset fields: from path, header API-Version (for from
// header). It changes nothing when v is nil.
func (v *Version) ApplyDefaults() {
	if v == nil {
		return
	}
	if v.From == "" {
		v.From = VersionFromPath
	}
	if v.From == VersionFromHeader && v.Header == "" {
		v.Header = DefaultVersionHeader
	}
}

// Validate checks a defaulted block and returns every problem with its field
// path below path (such as routes[4].version). A nil block has no problems.
func (v *Version) Validate(path string) []Problem {
	if v == nil {
		return nil
	}
	var out []Problem
	add := func(field, format string, args ...any) {
		out = append(out, Problem{Path: join(path, field), Msg: fmt.Sprintf(format, args...)})
	}
	if err := ValidateVersionValue(v.Value); err != nil {
		add("value", "%v", err)
	}
	switch v.From {
	case VersionFromPath:
		if v.Default {
			add("default", "applies to from header or media_type only")
		}
	case VersionFromHeader:
		if !httpsyntax.IsToken(v.Header) {
			add("header", "%q is not a header name", v.Header)
		}
	case VersionFromMediaType:
	default:
		add("from", "must be path, header or media_type, not %q", v.From)
	}
	if v.Header != "" && v.From != VersionFromHeader {
		add("header", "applies to from header only")
	}
	var dep, sun time.Time
	var err error
	if v.DeprecatedAt != "" {
		if dep, err = time.Parse(time.RFC3339, v.DeprecatedAt); err != nil {
			add("deprecated_at", "want an RFC 3339 time such as 2026-01-01T00:00:00Z")
		} else if !v.Deprecated {
			add("deprecated_at", "requires deprecated: true")
		}
	} else if v.Deprecated {
		add("deprecated_at", "required with deprecated: the Deprecation header (RFC 9745) carries the date")
	}
	if v.Sunset != "" {
		if sun, err = time.Parse(time.RFC3339, v.Sunset); err != nil {
			add("sunset", "want an RFC 3339 time such as 2027-01-01T00:00:00Z")
		} else if !dep.IsZero() && sun.Before(dep) {
			add("sunset", "is before deprecated_at")
		}
	}
	if v.Link != "" {
		u, err := url.Parse(v.Link)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.ContainsAny(v.Link, "<>\" \t") {
			add("link", "want an absolute http or https URL without spaces, quotes or angle brackets")
		}
	}
	return out
}

// ValidateVersionValue checks a version label: 1 to 64 characters from
// letters, digits, '.', '-' and '_'.
func ValidateVersionValue(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("want 1 to 64 characters such as 2, 2.1 or 2024-06-01")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c|0x20 >= 'a' && c|0x20 <= 'z' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%q: only letters, digits, '.', '-' and '_' are allowed", s)
		}
	}
	return nil
}
