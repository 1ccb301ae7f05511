package waf

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/corazawaf/coraza/v3/types"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

// faultyTx is a real Coraza transaction with one step made to fail, to
// drive the stage's failure paths.
type faultyTx struct {
	types.Transaction
	fail   string // "headers-panic", "body-error", "body-panic", "write-error", "close-panic"
	closed *bool
}

var errInjected = errors.New("injected failure")

func (f *faultyTx) ProcessRequestHeaders() *types.Interruption {
	if f.fail == "headers-panic" {
		panic("injected panic in phase 1")
	}
	return f.Transaction.ProcessRequestHeaders()
}

func (f *faultyTx) WriteRequestBody(b []byte) (*types.Interruption, int, error) {
	if f.fail == "write-error" {
		return nil, 0, errInjected
	}
	return f.Transaction.WriteRequestBody(b)
}

func (f *faultyTx) ProcessRequestBody() (*types.Interruption, error) {
	switch f.fail {
	case "body-error":
		return nil, errInjected
	case "body-panic":
		var m map[string]int
		m["boom"]++ // a real runtime panic, not a panic(string)
	}
	return f.Transaction.ProcessRequestBody()
}

func (f *faultyTx) Close() error {
	*f.closed = true
	err := f.Transaction.Close()
	if f.fail == "close-panic" {
		panic("injected panic while closing")
	}
	return err
}

// TestFailClosed checks that an error or a panic inside the WAF refuses the
// request with 500 waf_error, that the transaction is still closed, and
// that the gateway answers without leaking the cause.
func TestFailClosed(t *testing.T) {
	tests := []struct {
		desc    string
		fail    string
		status  int
		reason  string
		errWrap bool // the Reject's Err is the injected error
	}{
		{desc: "ProcessRequestBody returns an error", fail: "body-error", status: 500, reason: ReasonError, errWrap: true},
		{desc: "WriteRequestBody returns an error", fail: "write-error", status: 500, reason: ReasonError, errWrap: true},
		{desc: "panic in the headers phase", fail: "headers-panic", status: 500, reason: ReasonError},
		{desc: "runtime panic in the body phase", fail: "body-panic", status: 500, reason: ReasonError},
		{desc: "panic while closing does not change a pass", fail: "close-panic", status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := newStage(t, config.WAF{})
			closed := false
			real := s.newTx
			s.newTx = func(id string) types.Transaction {
				return &faultyTx{Transaction: real(id), fail: tt.fail, closed: &closed}
			}
			ex := exchange(req{method: http.MethodPost, target: "/books", body: `{"title":"Dune"}`})
			err := s.ProcessRequest(context.Background(), ex)
			if !closed {
				t.Error("transaction not closed")
			}
			if tt.status == 200 {
				if err != nil {
					t.Fatalf("got %v, want a pass", err)
				}
				return
			}
			var rej *gateway.Reject
			if !errors.As(err, &rej) || rej.Status != tt.status || rej.ReasonID != tt.reason {
				t.Fatalf("got %v, want %d %s", err, tt.status, tt.reason)
			}
			if tt.errWrap && !errors.Is(rej, errInjected) {
				t.Errorf("Reject %v does not wrap the cause", rej)
			}

			// Through the gateway: a problem document, no internals.
			g := newGateway(t, s, okUpstream)
			s.newTx = func(id string) types.Transaction {
				return &faultyTx{Transaction: real(id), fail: tt.fail, closed: new(bool)}
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/books", strings.NewReader(`{"title":"Dune"}`)))
			body := rec.Body.String()
			if rec.Code != tt.status || !strings.Contains(body, `"reason_id":"`+tt.reason+`"`) {
				t.Fatalf("gateway answered %d %s", rec.Code, body)
			}
			if strings.Contains(body, "injected") || strings.Contains(body, "panic") {
				t.Errorf("answer leaks the cause: %s", body)
			}
		})
	}
}

// TestBodyErrorsPassThrough checks that a failure to read the client's body
// keeps the kernel's verdict (400 body_read_failed, 413 body_too_large)
// rather than becoming a WAF error.
func TestBodyErrorsPassThrough(t *testing.T) {
	s := newStage(t, config.WAF{})
	ex := exchange(req{method: http.MethodPost, target: "/books", body: "x"})
	ex.Request.Body = io.NopCloser(io.MultiReader(strings.NewReader(`{"title":`), errReader{}))
	err := s.ProcessRequest(context.Background(), ex)
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.ReasonID != gateway.ReasonBodyReadFailed {
		t.Fatalf("got %v, want %s", err, gateway.ReasonBodyReadFailed)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

// upstreamFunc plays the proxy: it makes the upstream's response, runs the
// route's response stages on it as proxy.Upstream does, and writes it.
type upstreamFunc func(r *http.Request) *http.Response

func (u upstreamFunc) Forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) {
	res := u(r)
	res.Request = r
	if res.Body == nil {
		res.Body = http.NoBody
	}
	defer res.Body.Close()
	for _, st := range ex.Route.Response {
		if err := st.ProcessResponse(r.Context(), ex, res); err != nil {
			var rej *gateway.Reject
			if !errors.As(err, &rej) {
				rej = &gateway.Reject{Status: 500, ReasonID: gateway.ReasonInternalError, Err: err}
			}
			gateway.Render(w, r, ex, rej)
			return
		}
	}
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = io.Copy(w, res.Body)
}

var okUpstream = upstreamFunc(func(*http.Request) *http.Response {
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(`{"ok":true}`))}
})

type fixedIP struct{}

func (fixedIP) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("198.51.100.23")
	return a, a, false
}

// newGateway serves every path and method through the stage (and its
// response stage, if any) and h.
func newGateway(t *testing.T, s *Stage, h gateway.Handler) *gateway.Gateway {
	t.Helper()
	rb := router.NewBuilder[*gateway.Route]()
	route := &gateway.Route{Name: "api", Template: "/{path...}", MaxBody: 1 << 20, Upstream: h,
		Request: []gateway.RequestStage{s}}
	if rs := s.ResponseStage(); rs != nil {
		route.Response = []gateway.ResponseStage{rs}
	}
	methods := []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
	if err := rb.Add("", methods, "/{path...}", route); err != nil {
		t.Fatal(err)
	}
	return gateway.New(gateway.Options{Router: rb.Build(), ClientIP: fixedIP{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
}
