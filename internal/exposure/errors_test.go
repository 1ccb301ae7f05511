package exposure

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

const javaTrace = "java.lang.NullPointerException: null\n\tat com.acme.orders.OrderService.load(OrderService.java:42)\n\tat com.acme.orders.OrderController.get(OrderController.java:17)\n"

// trackedBody is an upstream body that records whether it was closed and
// how much was read from it.
type trackedBody struct {
	r      io.Reader
	read   int
	closed bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read += n
	return n, err
}
func (b *trackedBody) Close() error { b.closed = true; return nil }

func upstreamResponse(status int, body string, hdr ...string) (*http.Response, *trackedBody) {
	tb := &trackedBody{r: strings.NewReader(body)}
	h := http.Header{}
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ": ")
		h.Add(k, v)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://gw.test/orders/1", nil)
	return &http.Response{StatusCode: status, Header: h, Body: tb, Request: req}, tb
}

func mustSafeErrors(t testing.TB, cfg *config.SafeErrors) *SafeErrors {
	t.Helper()
	s, err := NewSafeErrors(cfg)
	if err != nil {
		t.Fatalf("NewSafeErrors: %v", err)
	}
	if s == nil {
		t.Fatal("NewSafeErrors returned no stage")
	}
	return s
}

func TestNewSafeErrors(t *testing.T) {
	off := false
	tests := []struct {
		desc    string
		cfg     *config.SafeErrors
		nilOK   bool
		wantErr []string
	}{
		{desc: "nil config is on with defaults"},
		{desc: "empty block is on", cfg: &config.SafeErrors{}},
		{desc: "disabled", cfg: &config.SafeErrors{Enabled: &off}, nilOK: true},
		{desc: "codes and ranges", cfg: &config.SafeErrors{Statuses: []string{"502", "500-504", "418"}}},
		{desc: "not an error status", cfg: &config.SafeErrors{Statuses: []string{"302"}}, wantErr: []string{"statuses[0]", "not an error status"}},
		{desc: "reversed range", cfg: &config.SafeErrors{Statuses: []string{"599-500"}}, wantErr: []string{"ends before it starts"}},
		{desc: "garbage", cfg: &config.SafeErrors{Statuses: []string{"5xx", "500-"}}, wantErr: []string{"statuses[0]", "statuses[1]"}},
		{desc: "audit bytes too large", cfg: &config.SafeErrors{KeepInAudit: true, MaxAuditBytes: 1 << 20}, wantErr: []string{"max_audit_bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s, err := NewSafeErrors(tt.cfg)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (s == nil) != tt.nilOK {
				t.Fatalf("stage = %v, want nil: %v", s, tt.nilOK)
			}
		})
	}
}

func TestSafeErrorsProcessResponse(t *testing.T) {
	tests := []struct {
		desc       string
		cfg        *config.SafeErrors
		status     int
		body       string
		hdr        []string
		local      bool // a gateway-generated response: no Body
		wantReject bool
		wantHeader http.Header // of the Reject
		wantBody   string      // what the client reads when not rejected
		wantFind   map[string]any
	}{
		{desc: "500 with a stack trace is replaced", status: 500, body: javaTrace, wantReject: true},
		{desc: "503 with a valid Retry-After keeps it", status: 503, body: "down", hdr: []string{"Retry-After: 120", "Server: nginx"},
			wantReject: true, wantHeader: http.Header{"Retry-After": {"120"}}},
		{desc: "503 with an HTTP-date Retry-After keeps it", status: 503, hdr: []string{"Retry-After: Wed, 21 Oct 2026 07:28:00 GMT"},
			wantReject: true, wantHeader: http.Header{"Retry-After": {"Wed, 21 Oct 2026 07:28:00 GMT"}}},
		{desc: "invalid Retry-After is dropped", status: 503, hdr: []string{"Retry-After: soon /var/app"}, wantReject: true},
		{desc: "Retry-After on a 500 is dropped", status: 500, hdr: []string{"Retry-After: 5"}, wantReject: true},
		{desc: "599 is in the default range", status: 599, wantReject: true},
		{desc: "200 passes", status: 200, body: javaTrace, wantBody: javaTrace},
		{desc: "404 passes unchanged by default", status: 404, body: javaTrace, wantBody: javaTrace},
		{desc: "configured statuses only", cfg: &config.SafeErrors{Statuses: []string{"502"}}, status: 500, body: "x", wantBody: "x"},
		{desc: "a configured 4xx is replaced", cfg: &config.SafeErrors{Statuses: []string{"400-499"}}, status: 422, body: "plain", wantReject: true},
		{desc: "gateway-generated responses are left alone", status: 502, local: true},
		{desc: "4xx with a trace, opted in", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 400, body: "bad input\n" + javaTrace,
			wantReject: true, wantFind: map[string]any{FindingUpstreamErrorSignature: "java_stack_trace"}},
		{desc: "4xx with a JSON-escaped python traceback", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 409,
			body: `{"error":"Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 12"}`, wantReject: true,
			wantFind: map[string]any{FindingUpstreamErrorSignature: "python_traceback"}},
		{desc: "4xx with an SQL error", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 400,
			body: `{"error":"SQLSTATE[42000]: Syntax error"}`, wantReject: true, wantFind: map[string]any{FindingUpstreamErrorSignature: "sql_error"}},
		{desc: "clean 4xx is handed on in full", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 400,
			body: `{"error":"name is required"}`, wantBody: `{"error":"name is required"}`},
		{desc: "clean 4xx longer than the inspected part is handed on in full", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 400,
			body: strings.Repeat("a", max4xxInspect+10) + javaTrace, wantBody: strings.Repeat("a", max4xxInspect+10) + javaTrace},
		{desc: "compressed 4xx is not inspected", cfg: &config.SafeErrors{Include4xxWithStackTraces: true}, status: 400, body: javaTrace,
			hdr: []string{"Content-Encoding: gzip"}, wantBody: javaTrace},
		{desc: "keep_in_audit masks secrets", cfg: &config.SafeErrors{KeepInAudit: true}, status: 500,
			body: "db login failed for admin@example.com with key AKIAIOSFODNN7EXAMPLE\n" + javaTrace, wantReject: true,
			wantFind: map[string]any{FindingUpstreamErrorBody: "db login failed for [REDACTED:email] with key [REDACTED:aws_access_key]\n" + javaTrace}},
		{desc: "keep_in_audit truncates", cfg: &config.SafeErrors{KeepInAudit: true, MaxAuditBytes: 8}, status: 500, body: "0123456789abcdef",
			wantReject: true, wantFind: map[string]any{FindingUpstreamErrorBody: "01234567", FindingUpstreamErrorTruncated: true}},
		{desc: "keep_in_audit at exactly the limit is not truncated", cfg: &config.SafeErrors{KeepInAudit: true, MaxAuditBytes: 8}, status: 500, body: "01234567",
			wantReject: true, wantFind: map[string]any{FindingUpstreamErrorBody: "01234567"}},
		{desc: "keep_in_audit with a 4xx trace past the limit", cfg: &config.SafeErrors{KeepInAudit: true, MaxAuditBytes: 10, Include4xxWithStackTraces: true},
			status: 400, body: javaTrace, wantReject: true,
			wantFind: map[string]any{FindingUpstreamErrorBody: javaTrace[:10], FindingUpstreamErrorTruncated: true, FindingUpstreamErrorSignature: "java_stack_trace"}},
		{desc: "keep_in_audit does not decode compressed bodies", cfg: &config.SafeErrors{KeepInAudit: true}, status: 500, body: "\x1f\x8b\x08",
			hdr: []string{"Content-Encoding: gzip"}, wantReject: true, wantFind: map[string]any{FindingUpstreamErrorBody: "[body not kept: content-encoding gzip]"}},
		{desc: "invalid UTF-8 is made valid in the audit copy", cfg: &config.SafeErrors{KeepInAudit: true}, status: 500, body: "bad \xff byte",
			wantReject: true, wantFind: map[string]any{FindingUpstreamErrorBody: "bad \uFFFD byte"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := mustSafeErrors(t, tt.cfg)
			res, tb := upstreamResponse(tt.status, tt.body, tt.hdr...)
			if tt.local {
				res.Body = nil
			}
			ex := &gateway.Exchange{ID: "r1"}
			err := s.ProcessResponse(context.Background(), ex, res)
			var rej *gateway.Reject
			if tt.wantReject {
				if !errors.As(err, &rej) {
					t.Fatalf("err = %v, want a Reject", err)
				}
				if rej.Status != tt.status || rej.ReasonID != ReasonUpstreamError {
					t.Errorf("reject = %d %s, want %d %s", rej.Status, rej.ReasonID, tt.status, ReasonUpstreamError)
				}
				if strings.Contains(rej.Detail, "NullPointer") || strings.Contains(rej.Detail, "example.com") {
					t.Errorf("detail leaks the body: %q", rej.Detail)
				}
				if len(rej.Header) != len(tt.wantHeader) || rej.Header.Get("Retry-After") != tt.wantHeader.Get("Retry-After") {
					t.Errorf("reject header = %v, want %v", rej.Header, tt.wantHeader)
				}
				if !tb.closed {
					t.Error("upstream body not closed")
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v, want nil", err)
				}
				if !tt.local {
					got, _ := io.ReadAll(res.Body)
					if string(got) != tt.wantBody {
						t.Errorf("body = %.80q..., want %.80q...", got, tt.wantBody)
					}
					if res.Body.Close(); !tb.closed {
						t.Error("closing the handed-on body does not close the upstream's")
					}
				}
			}
			if len(ex.Findings) != len(tt.wantFind) {
				t.Errorf("findings = %v, want %v", ex.Findings, tt.wantFind)
			}
			for k, v := range tt.wantFind {
				if ex.Findings[k] != v {
					t.Errorf("finding %s = %#v, want %#v", k, ex.Findings[k], v)
				}
			}
		})
	}
}

// TestSafeErrorsDiscardsUnread pins that without keep_in_audit the body of
// a replaced response is never read, only closed.
func TestSafeErrorsDiscardsUnread(t *testing.T) {
	s := mustSafeErrors(t, nil)
	res, tb := upstreamResponse(500, javaTrace)
	if err := s.ProcessResponse(context.Background(), &gateway.Exchange{}, res); err == nil {
		t.Fatal("not replaced")
	}
	if tb.read != 0 || !tb.closed {
		t.Errorf("read %d bytes, closed %v; want 0, true", tb.read, tb.closed)
	}
}

func TestStackTraceSignature(t *testing.T) {
	tests := []struct{ desc, body, want string }{
		{"java", javaTrace, "java_stack_trace"},
		{"java, JSON-escaped", `{"trace":"NullPointerException\n\tat com.a.B.c(B.java:1)"}`, "java_stack_trace"},
		{"go, JSON-escaped", `{"panic":"goroutine 7 [running]:\nmain.main()"}`, "go_panic"},
		{"java uncaught", `Exception in thread "main" java.lang.Error`, "java_stack_trace"},
		{"node", "TypeError: x is undefined\n    at Object.<anonymous> (/app/index.js:3:9)", "node_stack_trace"},
		{".NET", "System.Exception: boom\n   at Acme.Api.Run() in C:\\src\\Api.cs:line 9", "dotnet_stack_trace"},
		{"python", "Traceback (most recent call last):\n  File \"x.py\"", "python_traceback"},
		{"go", "panic: runtime error\n\ngoroutine 1 [running]:\nmain.main()", "go_panic"},
		{"go other goroutine", "goroutine 37 [running]:\nnet/http.(*conn).serve", "go_panic"},
		{"php", "PHP Fatal error:  Uncaught Error", "php_error"},
		{"php trace", "Stack trace:\n#0 /var/www/index.php(3)", "php_stack_trace"},
		{"ruby", "app/models/user.rb:12:in `find'", "ruby_backtrace"},
		{"mysql", "You have an error in your SQL syntax; check the manual", "sql_error"},
		{"oracle", "ORA-00933: SQL command not properly ended", "sql_error"},
		{"oracle five digits only", "see ORA-12154", "sql_error"},
		{"not oracle", "FLORA-123 and ORA-12", ""},
		{"postgres", "PG::UndefinedTable: ERROR", "sql_error"},
		{"sql server", "Unclosed quotation mark after the character string 'x'.", "sql_error"},
		{"ordinary error", `{"error":"order 12 not found","at":"2026-01-01"}`, ""},
		{"word at in prose", "failed at step 2\nat least one field", ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := StackTraceSignature([]byte(tt.body)); got != tt.want {
				t.Errorf("StackTraceSignature = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzStackTraceSignature(f *testing.F) {
	for _, s := range []string{javaTrace, "ORA-0093", `{"e":"\n\tat x"}`, "Traceback (most recent call last):", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := StackTraceSignature(b)
		// A signature found in b is still found with text around it.
		if got != "" && StackTraceSignature(append(append([]byte("x "), b...), " y"...)) == "" {
			t.Fatalf("signature %q lost when surrounded", got)
		}
	})
}

func BenchmarkSafeErrors(b *testing.B) {
	cases := []struct {
		desc   string
		cfg    *config.SafeErrors
		status int
		body   string
	}{
		{"200 pass", nil, 200, `{"id":1}`},
		{"500 replaced", nil, 500, javaTrace},
		{"500 replaced keep_in_audit 4KiB", &config.SafeErrors{KeepInAudit: true}, 500, strings.Repeat(javaTrace, 40)},
		{"400 inspected clean 2KiB", &config.SafeErrors{Include4xxWithStackTraces: true}, 400, strings.Repeat(`{"error":"name is required"}`, 70)},
	}
	for _, c := range cases {
		b.Run(c.desc, func(b *testing.B) {
			s := mustSafeErrors(b, c.cfg)
			ctx := context.Background()
			res, _ := upstreamResponse(c.status, "")
			sr := strings.NewReader(c.body)
			tb := &trackedBody{r: sr}
			ex := &gateway.Exchange{}
			b.ReportAllocs()
			for b.Loop() {
				sr.Reset(c.body)
				res.Body = tb
				ex.Findings = nil
				_ = s.ProcessResponse(ctx, ex, res)
			}
		})
	}
}
