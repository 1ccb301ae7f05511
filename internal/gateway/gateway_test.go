package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/moat-gateway/moat/internal/router"
)

func TestCheckRequestTarget(t *testing.T) {
	tests := []struct {
		desc   string
		method string
		target string
		reason string // "" when accepted
	}{
		{desc: "plain", method: "GET", target: "/books/1"},
		{desc: "root", method: "GET", target: "/"},
		{desc: "trailing slash", method: "GET", target: "/books/"},
		{desc: "encoded space", method: "GET", target: "/books/a%20b"},
		{desc: "dot in name", method: "GET", target: "/files/report.v1.json"},
		{desc: "dot segment", method: "GET", target: "/a/../admin", reason: ReasonInvalidPath},
		{desc: "single dot", method: "GET", target: "/a/./b", reason: ReasonInvalidPath},
		{desc: "trailing dot-dot", method: "GET", target: "/a/..", reason: ReasonInvalidPath},
		{desc: "encoded dot-dot", method: "GET", target: "/a/%2e%2e/admin", reason: ReasonInvalidPath},
		{desc: "empty segment", method: "GET", target: "/a//b", reason: ReasonInvalidPath},
		{desc: "encoded slash", method: "GET", target: "/a%2Fb", reason: ReasonInvalidPath},
		{desc: "encoded backslash", method: "GET", target: "/a%5cb", reason: ReasonInvalidPath},
		{desc: "encoded NUL", method: "GET", target: "/a%00b", reason: ReasonInvalidPath},
		{desc: "TRACE", method: "TRACE", target: "/", reason: ReasonMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://example.com"+tt.target, nil)
			rej := checkRequestTarget(r)
			got := ""
			if rej != nil {
				got = rej.ReasonID
			}
			if got != tt.reason {
				t.Errorf("checkRequestTarget(%s %s) = %q, want %q", tt.method, tt.target, got, tt.reason)
			}
		})
	}
}

func TestProblemBody(t *testing.T) {
	b := problemBody(http.StatusForbidden, "cors_origin_denied", `abc"123`)
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	want := map[string]any{"type": "about:blank", "title": "Forbidden", "status": float64(403), "reason_id": "cors_origin_denied", "request_id": `abc"123`}
	if len(p) != len(want) {
		t.Errorf("fields %v, want exactly %v", p, want)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
}

type stubResolver struct{}

func (stubResolver) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("192.0.2.1")
	return a, a, false
}

type stageFunc func(ctx context.Context, ex *Exchange) error

func (f stageFunc) ProcessRequest(ctx context.Context, ex *Exchange) error { return f(ctx, ex) }

type handlerFunc func(w http.ResponseWriter, r *http.Request, ex *Exchange)

func (f handlerFunc) Forward(w http.ResponseWriter, r *http.Request, ex *Exchange) { f(w, r, ex) }

// newTestGateway serves one route, /items/{id}, through stage and handler.
func newTestGateway(t *testing.T, stage RequestStage, h Handler) *Gateway {
	t.Helper()
	rb := router.NewBuilder[*Route]()
	route := &Route{Name: "items", Template: "/items/{id}", MaxBody: 8, Upstream: h}
	if stage != nil {
		route.Request = []RequestStage{stage}
	}
	if err := rb.Add("", []string{"GET", "POST"}, "/items/{id}", route); err != nil {
		t.Fatal(err)
	}
	return New(Options{Router: rb.Build(), ClientIP: stubResolver{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), AccessLog: true})
}

// TestStageVerdicts checks that every kind of stage result is answered by the
// gateway, and that unknown errors and panics fail closed without leaking.
func TestStageVerdicts(t *testing.T) {
	secret := "db password is hunter2"
	tests := []struct {
		desc   string
		stage  stageFunc
		status int
		reason string
	}{
		{desc: "pass", stage: func(context.Context, *Exchange) error { return nil }, status: 200},
		{desc: "reject", stage: func(context.Context, *Exchange) error {
			return &Reject{Status: 403, ReasonID: "policy_denied", Detail: secret}
		}, status: 403, reason: "policy_denied"},
		{desc: "wrapped reject", stage: func(context.Context, *Exchange) error {
			return errors.Join(errors.New("x"), &Reject{Status: 401, ReasonID: "jwt_expired"})
		}, status: 401, reason: "jwt_expired"},
		{desc: "answer", stage: func(context.Context, *Exchange) error {
			return &Answer{Status: 204, Header: http.Header{"X-Test": {"1"}}}
		}, status: 204},
		{desc: "unknown error fails closed", stage: func(context.Context, *Exchange) error { return errors.New(secret) }, status: 500, reason: ReasonInternalError},
		{desc: "panic fails closed", stage: func(context.Context, *Exchange) error { panic(secret) }, status: 500, reason: ReasonInternalError},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := newTestGateway(t, tt.stage, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
				if ex.Param("id") != "7" {
					t.Errorf("param id = %q", ex.Param("id"))
				}
				w.WriteHeader(200)
			}))
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, httptest.NewRequest("GET", "/items/7", nil))
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			body := rec.Body.String()
			if strings.Contains(body, "hunter2") {
				t.Errorf("internal detail leaked to the client: %s", body)
			}
			if tt.reason != "" {
				if ct := rec.Header().Get("Content-Type"); ct != ProblemContentType {
					t.Errorf("Content-Type %q", ct)
				}
				if !strings.Contains(body, `"reason_id":"`+tt.reason+`"`) {
					t.Errorf("body %s lacks reason %s", body, tt.reason)
				}
			}
		})
	}
}

func TestBodyCap(t *testing.T) {
	tests := []struct {
		desc    string
		body    string
		chunked bool
		status  int
	}{
		{desc: "under the cap", body: "12345678", status: 200},
		{desc: "content-length over the cap", body: "123456789", status: 413},
		{desc: "chunked over the cap", body: "123456789", chunked: true, status: 413},
		{desc: "chunked under the cap", body: "1234", chunked: true, status: 200},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			g := newTestGateway(t, nil, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
				b, err := io.ReadAll(r.Body)
				if IsBodyTooLarge(err) {
					if !ex.BodyOverflowed() {
						t.Error("overflow not recorded on the exchange")
					}
					if len(b) > 8 {
						t.Errorf("read %d bytes past the cap", len(b))
					}
					Render(w, r, ex, &Reject{Status: 413, ReasonID: ReasonBodyTooLarge})
					return
				}
				if string(b) != tt.body {
					t.Errorf("body %q, want %q", b, tt.body)
				}
				w.WriteHeader(200)
			}))
			req := httptest.NewRequest("POST", "/items/7", strings.NewReader(tt.body))
			if tt.chunked {
				req.ContentLength = -1
			}
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	g := newTestGateway(t, nil, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {}))
	tests := []struct {
		desc    string
		trusted bool
		in      string
		keep    bool
	}{
		{desc: "untrusted peer", in: "client-chosen", keep: false},
		{desc: "trusted peer", trusted: true, in: "abc-123.def:9", keep: true},
		{desc: "trusted but malformed", trusted: true, in: "bad id\r\n", keep: false},
		{desc: "trusted but too long", trusted: true, in: strings.Repeat("a", 129), keep: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("X-Request-Id", tt.in)
			got := g.requestID(r, tt.trusted)
			if (got == tt.in) != tt.keep {
				t.Errorf("requestID = %q, keep %v", got, tt.keep)
			}
			if !tt.keep && len(got) != 32 {
				t.Errorf("generated ID %q is not 128 bits of hex", got)
			}
		})
	}
}

// FuzzCheckRequestTarget: whatever the path, the check never panics, and an
// accepted path has no dot or empty segments.
func FuzzCheckRequestTarget(f *testing.F) {
	for _, s := range []string{"/a/b", "/a/../b", "/a%2fb", "//", "/.", "/a/./", "/%2e%2e/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		r, err := http.NewRequest("GET", "http://h"+target, nil)
		if err != nil || r.URL.Host != "h" {
			return
		}
		if checkRequestTarget(r) != nil {
			return
		}
		p := r.URL.Path
		for _, seg := range strings.Split(p, "/")[1:] {
			if seg == "." || seg == ".." {
				t.Fatalf("accepted dot segment in %q", p)
			}
		}
		if strings.Contains(p, "//") {
			t.Fatalf("accepted empty segment in %q", p)
		}
	})
}

// TestPreflightForUnservedMethod pins that a preflight asking for a method
// the path does not serve is a CORS refusal (403), not a 405 of OPTIONS.
func TestPreflightForUnservedMethod(t *testing.T) {
	g := newTestGateway(t, nil, handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {
		t.Error("a preflight reached the upstream")
	}))
	r := httptest.NewRequest("OPTIONS", "/items/7", nil)
	r.Header.Set("Origin", "https://app.example.com")
	r.Header.Set("Access-Control-Request-Method", "DELETE")
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, r)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), ReasonCORSPreflightDenied) {
		t.Errorf("got %d %s, want 403 %s", rec.Code, rec.Body, ReasonCORSPreflightDenied)
	}
}

// TestInformationalResponsesDropped pins that an upstream's 1xx (103 Early
// Hints) never reaches the client with headers the response stages did not
// see, while 101 (protocol upgrades) still passes.
func TestInformationalResponsesDropped(t *testing.T) {
	tests := []struct {
		desc  string
		code  int
		wrote bool
	}{
		{desc: "early hints", code: http.StatusEarlyHints},
		{desc: "continue", code: http.StatusContinue},
		{desc: "switching protocols", code: http.StatusSwitchingProtocols, wrote: true},
		{desc: "final", code: http.StatusOK, wrote: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &responseWriter{ResponseWriter: rec}
			w.WriteHeader(tt.code)
			if w.wroteHeader != tt.wrote || (rec.Code == tt.code) != tt.wrote {
				t.Errorf("WriteHeader(%d): wrote %v (recorder %d), want %v", tt.code, w.wroteHeader, rec.Code, tt.wrote)
			}
		})
	}
}

// TestExchangeCarriesClientCertificate pins that the verified client
// certificate of a mutual-TLS connection, and only a verified one, reaches
// later stages.
func TestExchangeCarriesClientCertificate(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "client-a"}}
	tests := []struct {
		desc  string
		state *tls.ConnectionState
		want  string // CN, "" for none
	}{
		{desc: "plain text", state: nil},
		{desc: "TLS without a client certificate", state: &tls.ConnectionState{}},
		{desc: "presented but not verified", state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}},
		{desc: "verified", state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}, VerifiedChains: [][]*x509.Certificate{{leaf}}}, want: "client-a"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var got *Exchange
			g := newTestGateway(t, stageFunc(func(_ context.Context, ex *Exchange) error { got = ex; return nil }),
				handlerFunc(func(w http.ResponseWriter, r *http.Request, ex *Exchange) {}))
			r := httptest.NewRequest("GET", "/items/1", nil)
			r.TLS = tt.state
			g.ServeHTTP(httptest.NewRecorder(), r)
			cn := ""
			if got.ClientCert != nil {
				cn = got.ClientCert.Subject.CommonName
			}
			if cn != tt.want {
				t.Errorf("ClientCert CN %q, want %q", cn, tt.want)
			}
			if (got.TLS != nil) != (tt.state != nil) {
				t.Errorf("TLS state %v, want present %v", got.TLS, tt.state != nil)
			}
		})
	}
}
