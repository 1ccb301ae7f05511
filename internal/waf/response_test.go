package waf

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

// sqlErrorPage is an upstream answer that leaks a database error: CRS rule
// 951230 (MySQL error message, critical) scores 5, over the default
// outbound threshold of 4.
const sqlErrorPage = `{"error":"You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near ''' at line 1"}`

// recordingUpstream answers with a fixed response and keeps the exchange,
// so the test can read its findings.
func recordingUpstream(status int, header http.Header, body []byte, ex **gateway.Exchange) gateway.Handler {
	return upstreamFunc(func(r *http.Request) *http.Response {
		*ex = gateway.FromContext(r.Context())
		return &http.Response{StatusCode: status, Header: header.Clone(), Body: io.NopCloser(bytes.NewReader(body)), ProtoMajor: 1, ProtoMinor: 1}
	})
}

func openTransactions(s *Stage) int {
	n := 0
	s.open.Range(func(any, any) bool { n++; return true })
	return n
}

// TestResponseInspection checks response_body: leaks in inspected bodies
// are blocked, everything else reaches the client byte for byte, and every
// transaction is closed when the exchange ends.
func TestResponseInspection(t *testing.T) {
	jsonType := http.Header{"Content-Type": {"application/json"}}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write([]byte(sqlErrorPage))
	_ = zw.Close()
	padded := append(bytes.Repeat([]byte(" "), 600), sqlErrorPage...) // the leak sits past a 512-byte limit

	tests := []struct {
		desc     string
		cfg      config.WAF
		header   http.Header
		body     []byte
		status   int
		blocked  bool
		outbound bool   // waf_outbound_score noted and at least 4
		note     string // finding expected to be present
	}{
		{desc: "clean JSON passes unchanged", header: jsonType, body: []byte(`{"id":"bk_1","title":"Dune","price":"10.49"}`), status: 200},
		{desc: "SQL error leak is blocked", header: jsonType, body: []byte(sqlErrorPage), status: 403, blocked: true, outbound: true},
		{desc: "SQL error leak in HTML is blocked", header: http.Header{"Content-Type": {"text/html; charset=utf-8"}}, body: []byte("<html><body>" + sqlErrorPage + "</body></html>"), status: 403, blocked: true, outbound: true},
		{desc: "detect mode notes the leak and passes it", cfg: config.WAF{Mode: "detect"}, header: jsonType, body: []byte(sqlErrorPage), status: 200, outbound: true, note: NoteWouldBlock},
		{desc: "compressed bodies are not inspected", header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, body: gz.Bytes(), status: 200, note: NoteUninspected},
		{desc: "other content types are not inspected", header: http.Header{"Content-Type": {"application/octet-stream"}}, body: []byte(sqlErrorPage), status: 200},
		{desc: "only response_body_limit bytes are inspected", cfg: config.WAF{ResponseBodyLimit: 512}, header: jsonType, body: padded, status: 200},
		{desc: "a higher outbound threshold lets one leak through", cfg: config.WAF{OutboundAnomalyThreshold: 8}, header: jsonType, body: []byte(sqlErrorPage), status: 200, outbound: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			cfg := tt.cfg
			cfg.ResponseBody = true
			s := newStage(t, cfg)
			var ex *gateway.Exchange
			g := newGateway(t, s, recordingUpstream(200, tt.header, tt.body, &ex))
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/books/bk_1", nil))

			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; findings %v", rec.Code, tt.status, ex.Findings)
			}
			if tt.blocked {
				if ex.ReasonID != ReasonBlocked || !strings.Contains(rec.Body.String(), ReasonBlocked) {
					t.Errorf("reason %q, body %s; want %s", ex.ReasonID, rec.Body, ReasonBlocked)
				}
			} else if !bytes.Equal(rec.Body.Bytes(), tt.body) {
				t.Errorf("client got %d bytes, upstream sent %d: the body changed", rec.Body.Len(), len(tt.body))
			}
			score, noted := ex.Findings[NoteOutboundScore].(int)
			if tt.outbound != (noted && score >= 4) {
				t.Errorf("outbound score %v (noted %v), want noted and >= 4: %v", score, noted, tt.outbound)
			}
			if tt.outbound && !hasRule(ex, 951230) {
				t.Errorf("rules %v lack 951230 (%v)", ruleIDs(ex), ex.Findings)
			}
			if tt.note != "" && ex.Findings[tt.note] == nil {
				t.Errorf("findings %v lack %s", ex.Findings, tt.note)
			}
			if n := openTransactions(s); n != 0 {
				t.Errorf("%d transactions still open after the exchange", n)
			}
		})
	}
}

// TestResponseStageAfterBlock checks that a request the WAF refused leaves
// nothing for the response stage, and that a stage without response_body
// has no response stage at all.
func TestResponseStageAfterBlock(t *testing.T) {
	s := newStage(t, config.WAF{ResponseBody: true})
	var ex *gateway.Exchange
	g := newGateway(t, s, recordingUpstream(200, http.Header{"Content-Type": {"application/json"}}, []byte(sqlErrorPage), &ex))
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/books?q=1'%20OR%20'1'='1", nil))
	if rec.Code != http.StatusForbidden || ex != nil {
		t.Fatalf("status %d, upstream reached: %v; want 403 before the upstream", rec.Code, ex != nil)
	}
	if n := openTransactions(s); n != 0 {
		t.Errorf("%d transactions still open", n)
	}
	if rs := newStage(t, config.WAF{}).ResponseStage(); rs != nil {
		t.Errorf("ResponseStage() = %v without response_body, want nil", rs)
	}
}

// TestResponseBodyReadFailure checks that an upstream body that fails while
// the WAF reads it is answered 502, not passed on half inspected.
func TestResponseBodyReadFailure(t *testing.T) {
	s := newStage(t, config.WAF{ResponseBody: true})
	g := newGateway(t, s, upstreamFunc(func(*http.Request) *http.Response {
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(io.MultiReader(strings.NewReader(`{"id":`), errReader{}))}
	}))
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/books/1", nil))
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), gateway.ReasonUpstreamBadResponse) {
		t.Fatalf("got %d %s, want 502 %s", rec.Code, rec.Body, gateway.ReasonUpstreamBadResponse)
	}
}

// TestConcurrentExchanges runs clean and malicious requests through one
// stage from several goroutines (go test -race checks the shared state:
// the engine, the hand-over map) and checks every verdict.
func TestConcurrentExchanges(t *testing.T) {
	s := newStage(t, config.WAF{ResponseBody: true})
	g := newGateway(t, s, okUpstream)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 6 {
				target, want := "/books?q=dune&page="+itoa(i), http.StatusOK
				if (w+i)%2 == 1 {
					target, want = "/books?q=1'%20OR%20'1'='1", http.StatusForbidden
				}
				rec := httptest.NewRecorder()
				g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
				if rec.Code != want {
					t.Errorf("%s: status %d, want %d", target, rec.Code, want)
				}
			}
		})
	}
	wg.Wait()
	if n := openTransactions(s); n != 0 {
		t.Errorf("%d transactions still open", n)
	}
}
