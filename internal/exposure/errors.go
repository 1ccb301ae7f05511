package exposure

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/exposure/mask"
	"github.com/moat-gateway/moat/internal/gateway"
)

// ReasonUpstreamError is the reason of an upstream error response whose body
// the safe-errors stage replaced; the status is the upstream's own.
const ReasonUpstreamError = "upstream_error"

// Findings the safe-errors stage records for logs and audit.
const (
	// FindingUpstreamErrorBody holds the first max_audit_bytes of a replaced
	// body, masked, when keep_in_audit is set.
	FindingUpstreamErrorBody = "upstream_error_body"
	// FindingUpstreamErrorTruncated is true when the body was longer than
	// what FindingUpstreamErrorBody holds.
	FindingUpstreamErrorTruncated = "upstream_error_body_truncated"
	// FindingUpstreamErrorSignature names the stack-trace or database-error
	// signature that made the stage replace a 4xx body.
	FindingUpstreamErrorSignature = "upstream_error_signature"
)

// max4xxInspect bounds how much of a 4xx body is searched for stack traces.
const max4xxInspect = 64 << 10

// SafeErrors is the response stage that replaces the bodies of upstream
// error responses with the gateway's problem document (reason
// upstream_error, the upstream's status), so that stack traces, SQL errors
// and file paths never reach the client. It is built by NewSafeErrors,
// immutable afterwards, and safe for concurrent use.
//
// It must run first among a route's response stages: what it discards need
// not be inspected or masked.
type SafeErrors struct {
	status  [200]bool // index: status-400
	has4xx  bool      // some 4xx status is configured: always replaced
	traces  bool      // replace other 4xx bodies that hold a stack trace
	keep    bool
	maxKeep int
	masker  *mask.Masker // masks the audit copy
}

// NewSafeErrors builds the stage for cfg, with defaults applied to a copy (a
// nil cfg means every default: on, statuses 500-599, nothing kept). It
// returns (nil, nil) when cfg turns safe errors off, and an error naming every
// problem of an invalid block.
func NewSafeErrors(cfg *config.SafeErrors) (*SafeErrors, error) {
	var c config.SafeErrors
	if cfg != nil {
		c = *cfg
		c.Statuses = slices.Clone(cfg.Statuses)
	}
	c.ApplyDefaults()
	if !c.IsOn() {
		return nil, nil
	}
	if probs := c.Validate("safe_errors"); len(probs) > 0 {
		msgs := make([]string, len(probs))
		for i, p := range probs {
			msgs[i] = p.Path + ": " + p.Msg
		}
		return nil, fmt.Errorf("building safe errors: %s", strings.Join(msgs, "; "))
	}
	s := &SafeErrors{traces: c.Include4xxWithStackTraces, keep: c.KeepInAudit, maxKeep: int(c.MaxAuditBytes)}
	for _, r := range c.Statuses {
		lo, hi, _ := config.ParseStatusRange(r) // validated above
		for st := lo; st <= hi; st++ {
			s.status[st-400] = true
			s.has4xx = s.has4xx || st < 500
		}
	}
	if s.keep {
		// Every detector, replaced in full, never blocking: the audit copy
		// is always recorded, with nothing sensitive left in it.
		m, err := mask.New(config.Masking{
			Style:   config.MaskingStyleFull,
			Actions: map[string]string{config.MaskingGroupAll: config.MaskingActionMask},
			MaxBody: c.MaxAuditBytes,
		})
		if err != nil {
			return nil, fmt.Errorf("building safe errors: %w", err)
		}
		s.masker = m
	}
	return s, nil
}

// ProcessResponse returns a *gateway.Reject with the upstream's status and
// reason upstream_error when res is an upstream response with a configured
// status, or (with include_4xx_with_stack_traces) a 4xx whose first 64KiB
// hold a stack-trace or database-error signature. The proxy then renders
// the problem document instead of the response: the upstream's body and
// headers are dropped, except a valid Retry-After on 429 and 503. With
// keep_in_audit the first max_audit_bytes of the body are recorded, masked,
// in the finding upstream_error_body; otherwise the body is never read. The
// upstream body is closed before ProcessResponse returns a Reject.
//
// Responses the gateway generated itself (their Body is nil) are left
// alone, and so are statuses outside 400-599. Other 4xx bodies are passed on
// unchanged; a 4xx body that was inspected is handed on in full.
func (s *SafeErrors) ProcessResponse(_ context.Context, ex *gateway.Exchange, res *http.Response) error {
	if res == nil || res.Body == nil || res.StatusCode < 400 || res.StatusCode > 599 {
		return nil
	}
	switch {
	case s.status[res.StatusCode-400]:
		return s.replace(ex, res, nil, "")
	case s.traces && res.StatusCode < 500:
		return s.inspect(ex, res)
	}
	return nil
}

// inspect reads up to max4xxInspect bytes of a 4xx body and replaces the
// response when they hold a stack trace; otherwise it puts them back in
// front of the rest of the body.
func (s *SafeErrors) inspect(ex *gateway.Exchange, res *http.Response) error {
	if res.Body == http.NoBody || isHead(res) {
		return nil
	}
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return nil // compressed: cannot be searched; documented limit
	}
	head, err := io.ReadAll(io.LimitReader(res.Body, max4xxInspect))
	if err != nil {
		res.Body.Close()
		return &gateway.Reject{Status: http.StatusBadGateway, ReasonID: gateway.ReasonUpstreamBadResponse,
			Detail: "reading an upstream 4xx body to look for stack traces", Err: err}
	}
	if sig := StackTraceSignature(head); sig != "" {
		ex.Note(FindingUpstreamErrorSignature, sig)
		return s.replace(ex, res, head, sig)
	}
	res.Body = &prefixedBody{r: io.MultiReader(bytes.NewReader(head), res.Body), c: res.Body}
	return nil
}

// replace discards res (after recording the audit copy) and returns the
// Reject the proxy renders. head holds bytes of the body already read.
func (s *SafeErrors) replace(ex *gateway.Exchange, res *http.Response, head []byte, sig string) error {
	defer res.Body.Close()
	if s.keep && res.Body != http.NoBody && !isHead(res) {
		s.record(ex, res, head)
	}
	rej := &gateway.Reject{Status: res.StatusCode, ReasonID: ReasonUpstreamError,
		Detail: "upstream answered " + strconv.Itoa(res.StatusCode) + "; body replaced"}
	if sig != "" {
		rej.Detail += " (" + sig + " in a 4xx body)"
	}
	if res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusServiceUnavailable {
		if ra := res.Header.Get("Retry-After"); validRetryAfter(ra) {
			rej.Header = http.Header{"Retry-After": {ra}}
		}
	}
	return rej
}

// record stores the first maxKeep bytes of the body, masked, as a finding.
// A compressed body is not decoded: only its encoding is noted.
func (s *SafeErrors) record(ex *gateway.Exchange, res *http.Response, head []byte) {
	if ce := res.Header.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		ex.Note(FindingUpstreamErrorBody, "[body not kept: content-encoding "+sanitizeToken(ce)+"]")
		return
	}
	// Read what is missing, plus one byte to learn whether there is more.
	// A read error keeps what arrived, marked truncated.
	readErr := false
	if need := s.maxKeep + 1 - len(head); need > 0 {
		rest, err := io.ReadAll(io.LimitReader(res.Body, int64(need)))
		head = append(head, rest...)
		readErr = err != nil
	}
	truncated := readErr || len(head) > s.maxKeep
	if len(head) > s.maxKeep {
		head = head[:s.maxKeep]
	}
	out, _ := s.masker.MaskText(head) // never blocks: every action is mask
	ex.Note(FindingUpstreamErrorBody, strings.ToValidUTF8(string(out), "\uFFFD"))
	if truncated {
		ex.Note(FindingUpstreamErrorTruncated, true)
	}
}

// stackSignatures are byte sequences that show a body leaks internals: stack
// traces of common runtimes, and database driver errors. Each is specific
// enough not to occur in ordinary API error messages. Signatures holding a
// newline or tab are also searched in their JSON-escaped form, built once.
var stackSignatures = compileSignatures([]signature{
	{"java_stack_trace", []byte("\n\tat ")},
	{"java_stack_trace", []byte("Exception in thread \"")},
	{"node_stack_trace", []byte("\n    at ")},
	{"dotnet_stack_trace", []byte("\n   at ")},
	{"python_traceback", []byte("Traceback (most recent call last):")},
	{"go_panic", []byte("goroutine 1 [running]:")},
	{"go_panic", []byte(" [running]:\n")},
	{"php_stack_trace", []byte("Stack trace:\n#0 ")},
	{"php_error", []byte("<b>Fatal error</b>:")},
	{"php_error", []byte("PHP Fatal error:")},
	{"ruby_backtrace", []byte(":in `")},
	{"sql_error", []byte("SQLSTATE[")},
	{"sql_error", []byte("You have an error in your SQL syntax")},
	{"sql_error", []byte("PG::")},
	{"sql_error", []byte("psycopg2.")},
	{"sql_error", []byte("java.sql.SQLException")},
	{"sql_error", []byte("Microsoft OLE DB Provider for SQL Server")},
	{"sql_error", []byte("Unclosed quotation mark after the character string")},
	{"sql_error", []byte("SQLite3::")},
	{"sql_error", []byte("sqlite3.OperationalError")},
})

type signature struct {
	name string
	sig  []byte
}

func compileSignatures(list []signature) []signature {
	esc := strings.NewReplacer("\n", `\n`, "\t", `\t`)
	out := list
	for _, s := range list {
		if bytes.ContainsAny(s.sig, "\n\t") {
			out = append(out, signature{s.name, []byte(esc.Replace(string(s.sig)))})
		}
	}
	return out
}

// StackTraceSignature returns the name of the first stack-trace or
// database-error signature found in b (java_stack_trace, python_traceback,
// go_panic, sql_error...), or "" when there is none. JSON-escaped traces
// ("\n\tat " written as \n\tat) are found too.
func StackTraceSignature(b []byte) string {
	for _, s := range stackSignatures {
		if bytes.Contains(b, s.sig) {
			return s.name
		}
	}
	if hasOracleError(b) {
		return "sql_error"
	}
	return ""
}

// hasOracleError reports whether b holds an Oracle error code: ORA- and five
// digits (ORA-00933, ORA-12154).
func hasOracleError(b []byte) bool {
	for {
		i := bytes.Index(b, []byte("ORA-"))
		if i < 0 {
			return false
		}
		b = b[i+4:]
		if len(b) >= 5 && strings.Trim(string(b[:5]), "0123456789") == "" {
			return true
		}
	}
}

// validRetryAfter accepts delay-seconds (up to 10 digits) or an HTTP-date.
func validRetryAfter(v string) bool {
	if v == "" {
		return false
	}
	if len(v) <= 10 && strings.Trim(v, "0123456789") == "" {
		return true
	}
	_, err := http.ParseTime(v)
	return err == nil
}

// sanitizeToken keeps a header value fit for a log line: printable ASCII
// only, at most 32 bytes.
func sanitizeToken(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < 32; i++ {
		if c := s[i]; c > ' ' && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHead(res *http.Response) bool {
	return res.Request != nil && res.Request.Method == http.MethodHead
}

// prefixedBody re-exposes a body whose first bytes were already read.
type prefixedBody struct {
	r io.Reader
	c io.Closer
}

func (p *prefixedBody) Read(b []byte) (int, error) { return p.r.Read(b) }
func (p *prefixedBody) Close() error               { return p.c.Close() }

var _ gateway.ResponseStage = (*SafeErrors)(nil)
