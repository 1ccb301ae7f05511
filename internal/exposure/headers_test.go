package exposure

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

func ptr[T any](v T) *T { return &v }

// defaults are the headers set on a response that had none, over plain text.
var defaults = http.Header{
	"X-Content-Type-Options":  {"nosniff"},
	"X-Frame-Options":         {"DENY"},
	"Content-Security-Policy": {"default-src 'none'; frame-ancestors 'none'"},
	"Referrer-Policy":         {"no-referrer"},
	"Cache-Control":           {"no-store"},
}

// with returns defaults plus or minus the given headers: "Name: value" sets,
// "Name:" deletes.
func with(changes ...string) http.Header {
	h := defaults.Clone()
	for _, c := range changes {
		k, v, _ := strings.Cut(c, ":")
		if v = strings.TrimSpace(v); v == "" {
			h.Del(k)
		} else {
			h.Set(k, v)
		}
	}
	return h
}

// upstream returns a response as the proxy would receive it, with the given
// "Name: value" headers.
func upstream(headers ...string) *http.Response {
	rec := httptest.NewRecorder()
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		rec.Header().Add(k, v)
	}
	rec.WriteHeader(http.StatusOK)
	res := rec.Result()
	res.Request = httptest.NewRequest(http.MethodGet, "https://api.example.com/books", nil)
	return res
}

func TestNewHeaders(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     config.SecurityHeaders
		hsts    *config.HSTS
		wantNil bool
		wantErr []string
	}{
		{desc: "defaults", cfg: config.SecurityHeaders{}},
		{desc: "disabled is no stage", cfg: config.SecurityHeaders{Disabled: true, FrameOptions: "\n"}, wantNil: true},
		{desc: "hsts", hsts: &config.HSTS{Preload: true}},
		{desc: "control character", cfg: config.SecurityHeaders{ContentSecurityPolicy: "default-src 'none'\r\nX-Evil: 1"},
			wantErr: []string{"content_security_policy"}},
		{desc: "remove entry not a name", cfg: config.SecurityHeaders{Remove: []string{"Server", "X Powered"}}, wantErr: []string{"remove[1]"}},
		{desc: "remove everything", cfg: config.SecurityHeaders{Remove: []string{"*"}}, wantErr: []string{"remove[0]"}},
		{desc: "remove with inner star", cfg: config.SecurityHeaders{Remove: []string{"X-*-Debug"}}, wantErr: []string{"remove[0]"}},
		{desc: "negative hsts max-age", hsts: &config.HSTS{MaxAge: -1}, wantErr: []string{"hsts"}},
		{desc: "preload without subdomains", hsts: &config.HSTS{Preload: true, IncludeSubdomains: ptr(false)}, wantErr: []string{"preload"}},
		{desc: "preload with a short max-age", hsts: &config.HSTS{Preload: true, MaxAge: config.Duration(time.Hour)}, wantErr: []string{"preload"}},
		{desc: "disabled hsts is not checked", hsts: &config.HSTS{Disabled: true, MaxAge: -1}},
		{desc: "every problem reported", cfg: config.SecurityHeaders{FrameOptions: "\x00", Remove: []string{"a b"}},
			hsts: &config.HSTS{MaxAge: -1}, wantErr: []string{"frame_options", "remove[0]", "hsts"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h, err := newHeaders(tt.cfg, tt.hsts)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("NewHeaders succeeded, want an error")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (h == nil) != tt.wantNil {
				t.Errorf("NewHeaders returned %v, want nil %v", h, tt.wantNil)
			}
		})
	}
}

func TestHSTSValue(t *testing.T) {
	tests := []struct {
		desc string
		cfg  config.HSTS
		want string
	}{
		{desc: "defaults", cfg: config.HSTS{}, want: "max-age=31536000; includeSubDomains"},
		{desc: "without subdomains", cfg: config.HSTS{IncludeSubdomains: ptr(false)}, want: "max-age=31536000"},
		{desc: "explicit subdomains", cfg: config.HSTS{IncludeSubdomains: ptr(true)}, want: "max-age=31536000; includeSubDomains"},
		{desc: "max-age in seconds", cfg: config.HSTS{MaxAge: config.Duration(90 * time.Minute)}, want: "max-age=5400; includeSubDomains"},
		{desc: "preload", cfg: config.HSTS{Preload: true, MaxAge: config.Duration(2 * 365 * 24 * time.Hour)},
			want: "max-age=63072000; includeSubDomains; preload"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := HSTSValue(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("HSTSValue = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProcessResponse(t *testing.T) {
	onTLS := &gateway.Exchange{TLS: &tls.ConnectionState{}}
	plain := &gateway.Exchange{}
	tests := []struct {
		desc     string
		cfg      config.SecurityHeaders
		hsts     *config.HSTS
		ex       *gateway.Exchange
		upstream []string
		want     http.Header
	}{
		{desc: "defaults on a bare response", ex: plain, want: defaults},
		{
			desc:     "upstream values replaced, except Cache-Control",
			ex:       plain,
			upstream: []string{"X-Frame-Options: ALLOWALL", "Content-Security-Policy: default-src *", "Referrer-Policy: unsafe-url", "X-Content-Type-Options: sniff", "Cache-Control: max-age=60"},
			want:     with("Cache-Control: max-age=60"),
		},
		{
			desc: "configured values",
			cfg: config.SecurityHeaders{FrameOptions: "SAMEORIGIN", ContentSecurityPolicy: "default-src 'self'",
				ReferrerPolicy: "strict-origin", CacheControl: "private, no-cache", ContentTypeOptions: "nosniff"},
			ex: plain,
			want: with("X-Frame-Options: SAMEORIGIN", "Content-Security-Policy: default-src 'self'",
				"Referrer-Policy: strict-origin", "Cache-Control: private, no-cache"),
		},
		{
			desc:     "off omits a header and leaves the upstream's",
			cfg:      config.SecurityHeaders{FrameOptions: "off", ContentSecurityPolicy: "OFF", CacheControl: "off"},
			ex:       plain,
			upstream: []string{"Content-Security-Policy: default-src 'self'"},
			want:     with("X-Frame-Options:", "Content-Security-Policy: default-src 'self'", "Cache-Control:"),
		},
		{
			desc: "default remove list",
			ex:   plain,
			upstream: []string{"Server: nginx/1.25", "X-Powered-By: PHP/8", "X-AspNet-Version: 4", "X-AspNetMvc-Version: 5", "X-Runtime: 0.1", "X-Generator: Drupal",
				"X-Debug-Token: abc", "X-Debug-Token-Link: /_profiler/abc", "X-Backend-Server: app-3.internal", "Via: 1.1 cdn", "Content-Type: text/plain"},
			want: with("Via: 1.1 cdn", "Content-Type: text/plain"),
		},
		{
			desc:     "configured remove list replaces the default, prefixes case-insensitive",
			cfg:      config.SecurityHeaders{Remove: []string{"x-debug-*", "Via"}},
			ex:       plain,
			upstream: []string{"Server: nginx", "X-Debug-Token: abc", "X-Debug-Link: /_profiler", "X-Debugger: keep", "Via: 1.1 cache"},
			want:     with("Server: nginx", "X-Debugger: keep"),
		},
		{
			desc:     "HSTS on TLS",
			hsts:     &config.HSTS{},
			ex:       onTLS,
			upstream: []string{"Strict-Transport-Security: max-age=1"},
			want:     with("Strict-Transport-Security: max-age=31536000; includeSubDomains"),
		},
		{
			desc:     "no HSTS over plain text, upstream's removed",
			hsts:     &config.HSTS{},
			ex:       plain,
			upstream: []string{"Strict-Transport-Security: max-age=99999999; includeSubDomains; preload"},
			want:     defaults,
		},
		{desc: "no HSTS on a plain-text listener", hsts: nil, ex: onTLS, want: defaults},
		{desc: "no HSTS when disabled", hsts: &config.HSTS{Disabled: true}, ex: onTLS, want: defaults},
		{desc: "no exchange: no HSTS", hsts: &config.HSTS{}, ex: nil, want: defaults},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			h, err := newHeaders(tt.cfg, tt.hsts)
			if err != nil {
				t.Fatal(err)
			}
			res := upstream(tt.upstream...)
			if err := h.ProcessResponse(context.Background(), tt.ex, res); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Header, tt.want) {
				t.Errorf("headers:\n got %v\nwant %v", res.Header, tt.want)
			}
		})
	}
}

// TestProcessResponseOnLocalResponses checks that responses the gateway
// writes itself, with no upstream (a problem+json rejection, a preflight
// answer), get the headers too, built the way gateway.Render builds them.
func TestProcessResponseOnLocalResponses(t *testing.T) {
	h, err := newHeaders(config.SecurityHeaders{}, &config.HSTS{})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "https://api.example.com/books", nil)
	r.TLS = &tls.ConnectionState{}
	ex := &gateway.Exchange{Request: r, TLS: r.TLS}
	tests := []struct {
		desc   string
		status int
		header http.Header
		want   http.Header
	}{
		{
			desc:   "rejection",
			status: http.StatusForbidden,
			header: http.Header{"Content-Type": {gateway.ProblemContentType}, "Content-Length": {"97"}},
			want: with("Content-Type: "+gateway.ProblemContentType, "Content-Length: 97",
				"Strict-Transport-Security: max-age=31536000; includeSubDomains"),
		},
		{
			desc:   "preflight answer",
			status: http.StatusNoContent,
			header: http.Header{"Access-Control-Allow-Origin": {"https://app.example.com"}},
			want: with("Access-Control-Allow-Origin: https://app.example.com",
				"Strict-Transport-Security: max-age=31536000; includeSubDomains"),
		},
		{
			desc:   "no header map",
			status: http.StatusNotFound,
			want:   with("Strict-Transport-Security: max-age=31536000; includeSubDomains"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			res := &http.Response{StatusCode: tt.status, Header: tt.header, Request: r, ProtoMajor: 1, ProtoMinor: 1}
			if err := h.ProcessResponse(context.Background(), ex, res); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Header, tt.want) {
				t.Errorf("headers:\n got %v\nwant %v", res.Header, tt.want)
			}
		})
	}
}

func TestProcessResponseNilResponse(t *testing.T) {
	h, err := newHeaders(config.SecurityHeaders{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.ProcessResponse(context.Background(), nil, nil); err == nil {
		t.Error("ProcessResponse(nil) succeeded, want an error")
	}
}

// TestProcessResponseAllocations pins the per-response cost: one slice per
// header set, nothing else.
func TestProcessResponseAllocations(t *testing.T) {
	h, err := newHeaders(config.SecurityHeaders{Remove: []string{"Server", "X-Debug-*"}}, &config.HSTS{})
	if err != nil {
		t.Fatal(err)
	}
	ex := &gateway.Exchange{TLS: &tls.ConnectionState{}}
	hdr := make(http.Header, 16)
	res := &http.Response{Header: hdr}
	allocs := testing.AllocsPerRun(100, func() {
		hdr["Server"] = nil
		hdr["X-Debug-Token"] = nil
		delete(hdr, "Cache-Control")
		if err := h.ProcessResponse(context.Background(), ex, res); err != nil {
			t.Fatal(err)
		}
	})
	// X-Content-Type-Options, X-Frame-Options, Content-Security-Policy,
	// Referrer-Policy, Cache-Control, Strict-Transport-Security.
	if allocs > 6 {
		t.Errorf("ProcessResponse allocates %v times, want at most 6", allocs)
	}
}

func BenchmarkProcessResponse(b *testing.B) {
	h, err := newHeaders(config.SecurityHeaders{}, &config.HSTS{})
	if err != nil {
		b.Fatal(err)
	}
	ex := &gateway.Exchange{TLS: &tls.ConnectionState{}}
	b.ReportAllocs()
	for b.Loop() {
		res := &http.Response{Header: http.Header{"Server": {"nginx"}, "Content-Type": {"application/json"}}}
		if err := h.ProcessResponse(context.Background(), ex, res); err != nil {
			b.Fatal(err)
		}
	}
}

// listenerHeaders runs a Headers stage as the server wires it: HSTS comes
// from the listener the exchange arrived on.
type listenerHeaders struct {
	h *Headers
	l *gateway.Listener
}

func (o *listenerHeaders) ProcessResponse(ctx context.Context, ex *gateway.Exchange, res *http.Response) error {
	if ex != nil {
		ex.Listener = o.l
	}
	return o.h.ProcessResponse(ctx, ex, res)
}

// newHeaders builds the stage and the listener's HSTS value the way the
// pipeline and the server do, reporting both builds' errors together.
func newHeaders(cfg config.SecurityHeaders, hsts *config.HSTS) (*listenerHeaders, error) {
	h, err := NewHeaders(cfg)
	l := &gateway.Listener{Name: "test"}
	if hsts != nil && !hsts.Disabled {
		v, herr := HSTSValue(*hsts)
		if herr != nil {
			err = errors.Join(err, fmt.Errorf("hsts: %w", herr))
		}
		l.HSTS = v
	}
	if err != nil || h == nil {
		return nil, err
	}
	return &listenerHeaders{h: h, l: l}, nil
}
