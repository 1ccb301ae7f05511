package cors

import (
	"context"
	"errors"
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

// baseConfig is a typical credentialed policy for a browser app.
func baseConfig() *config.CORS {
	return &config.CORS{
		AllowOrigins:     []string{"https://app.example.com", "https://*.example.org"},
		AllowHeaders:     []string{"Authorization", "X-Request-ID"},
		ExposeHeaders:    []string{"X-Request-ID", "RateLimit-Remaining"},
		AllowCredentials: true,
	}
}

var routeMethods = []string{"GET", "POST"}

func mustNew(t *testing.T, cfg *config.CORS) *CORS {
	t.Helper()
	c, err := New(cfg, routeMethods)
	if err != nil {
		t.Fatal(err)
	}
	if c == nil {
		t.Fatal("New returned no stage")
	}
	return c
}

func TestNew(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     *config.CORS
		methods []string
		wantNil bool
		wantErr []string // substrings of the error
	}{
		{desc: "nil config is no stage", cfg: nil, wantNil: true},
		{desc: "disabled is no stage", cfg: &config.CORS{Disabled: true, AllowOrigins: []string{"null"}}, wantNil: true},
		{desc: "valid", cfg: baseConfig()},
		{desc: "any origin without credentials", cfg: &config.CORS{AllowOrigins: []string{"*"}}},
		{desc: "any origin with credentials", cfg: &config.CORS{AllowOrigins: []string{"*"}, AllowCredentials: true},
			wantErr: []string{"allow_credentials"}},
		{desc: "null origin", cfg: &config.CORS{AllowOrigins: []string{"null"}}, wantErr: []string{"allow_origins[0]", "null"}},
		{desc: "no origins", cfg: &config.CORS{}, wantErr: []string{"allow_origins"}},
		{desc: "path", cfg: &config.CORS{AllowOrigins: []string{"https://app.example.com/x"}}, wantErr: []string{"path"}},
		{desc: "misplaced wildcard", cfg: &config.CORS{AllowOrigins: []string{"https://app.*.example.com"}}, wantErr: []string{"leftmost"}},
		{desc: "invalid scheme", cfg: &config.CORS{AllowOrigins: []string{"ftp://app.example.com"}}, wantErr: []string{"scheme"}},
		{desc: "no methods", cfg: &config.CORS{AllowOrigins: []string{"*"}}, methods: []string{}, wantErr: []string{"allow_methods"}},
		{desc: "bad method", cfg: &config.CORS{AllowOrigins: []string{"*"}, AllowMethods: []string{"GET POST"}}, wantErr: []string{"allow_methods[0]"}},
		{desc: "bad header", cfg: &config.CORS{AllowOrigins: []string{"*"}, AllowHeaders: []string{"X-A\r\nX-B"}}, wantErr: []string{"allow_headers[0]"}},
		{desc: "bad expose header", cfg: &config.CORS{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"a b"}}, wantErr: []string{"expose_headers[0]"}},
		{desc: "negative max age", cfg: &config.CORS{AllowOrigins: []string{"*"}, MaxAge: -1}, wantErr: []string{"max_age"}},
		{desc: "every problem reported", cfg: &config.CORS{AllowOrigins: []string{"https://ok.example", "null", "https://x/y"}, AllowHeaders: []string{"a b"}},
			wantErr: []string{"allow_origins[1]", "allow_origins[2]", "allow_headers[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			methods := routeMethods
			if tt.methods != nil {
				methods = tt.methods
			}
			c, err := New(tt.cfg, methods)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("New succeeded, want an error")
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
			if (c == nil) != tt.wantNil {
				t.Errorf("New returned %v, want nil %v", c, tt.wantNil)
			}
		})
	}
}

// request builds a client request with the given headers ("Name: value").
func request(method string, headers ...string) *http.Request {
	r := httptest.NewRequest(method, "https://api.example.com/books", nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		r.Header.Add(k, v)
	}
	return r
}

func preflight(origin, method string, headers ...string) *http.Request {
	hs := []string{"Origin: " + origin, "Access-Control-Request-Method: " + method}
	return request(http.MethodOptions, append(hs, headers...)...)
}

func TestIsPreflight(t *testing.T) {
	tests := []struct {
		desc string
		r    *http.Request
		want bool
	}{
		{desc: "preflight", r: preflight("https://app.example.com", "PUT"), want: true},
		{desc: "OPTIONS without request method", r: request(http.MethodOptions, "Origin: https://app.example.com")},
		{desc: "OPTIONS without origin", r: request(http.MethodOptions, "Access-Control-Request-Method: PUT")},
		{desc: "GET with both", r: request(http.MethodGet, "Origin: https://a.example", "Access-Control-Request-Method: PUT")},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			if got := IsPreflight(tt.r); got != tt.want {
				t.Errorf("IsPreflight = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestProcessRequest(t *testing.T) {
	denyOff := baseConfig()
	denyOff.DenyUnknownOrigins = ptr(false)
	anyOrigin := &config.CORS{AllowOrigins: []string{"*"}, AllowHeaders: []string{"*"}, MaxAge: config.Duration(time.Hour)}
	explicitMethods := baseConfig()
	explicitMethods.AllowMethods = []string{"put", "DELETE"}

	tests := []struct {
		desc       string
		cfg        *config.CORS
		r          *http.Request
		wantReason string      // a Reject with this reason and 403
		wantAnswer http.Header // a 204 Answer with exactly these headers
	}{
		{desc: "no origin", cfg: baseConfig(), r: request(http.MethodGet)},
		{desc: "allowed origin", cfg: baseConfig(), r: request(http.MethodPost, "Origin: https://app.example.com")},
		{desc: "allowed wildcard origin", cfg: baseConfig(), r: request(http.MethodGet, "Origin: https://a.b.example.org")},
		{desc: "unknown origin denied", cfg: baseConfig(), r: request(http.MethodGet, "Origin: https://evil.example"),
			wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "malformed origin denied", cfg: baseConfig(), r: request(http.MethodGet, "Origin: app.example.com"),
			wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "two origins denied", cfg: baseConfig(), r: request(http.MethodGet, "Origin: https://app.example.com", "Origin: https://app.example.com"),
			wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "null origin denied", cfg: baseConfig(), r: request(http.MethodGet, "Origin: null"),
			wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "unknown origin passes when deny is off", cfg: denyOff, r: request(http.MethodGet, "Origin: https://evil.example")},
		{desc: "any origin", cfg: anyOrigin, r: request(http.MethodGet, "Origin: null")},

		{
			desc: "preflight allowed",
			cfg:  baseConfig(),
			r:    preflight("https://app.example.com", "POST", "Access-Control-Request-Headers: authorization,content-type,x-request-id"),
			wantAnswer: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"GET, POST, HEAD"},
				"Access-Control-Allow-Headers":     {"authorization, content-type, x-request-id"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			},
		},
		{
			desc: "preflight without requested headers",
			cfg:  baseConfig(),
			r:    preflight("https://x.example.org", "GET"),
			wantAnswer: http.Header{
				"Access-Control-Allow-Origin":      {"https://x.example.org"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"GET, POST, HEAD"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			},
		},
		{
			desc: "preflight headers compared case-insensitively, over several lines",
			cfg:  baseConfig(),
			r:    preflight("https://app.example.com", "POST", "Access-Control-Request-Headers: Authorization", "Access-Control-Request-Headers: , X-REQUEST-ID"),
			wantAnswer: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"GET, POST, HEAD"},
				"Access-Control-Allow-Headers":     {"Authorization, X-REQUEST-ID"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			},
		},
		{
			desc: "preflight, any origin and any header",
			cfg:  anyOrigin,
			r:    preflight("https://who.example", "GET", "Access-Control-Request-Headers: x-anything"),
			wantAnswer: http.Header{
				"Access-Control-Allow-Origin":  {"*"},
				"Access-Control-Allow-Methods": {"GET, POST, HEAD"},
				"Access-Control-Allow-Headers": {"x-anything"},
				"Access-Control-Max-Age":       {"3600"},
				"Vary":                         {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			},
		},
		{
			desc: "preflight, explicit methods replace the route's",
			cfg:  explicitMethods,
			r:    preflight("https://app.example.com", "PUT"),
			wantAnswer: http.Header{
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Allow-Methods":     {"PUT, DELETE"},
				"Access-Control-Max-Age":           {"600"},
				"Vary":                             {"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"},
			},
		},
		{desc: "preflight, explicit methods: simple methods must be listed too", cfg: explicitMethods,
			r: preflight("https://app.example.com", "GET"), wantReason: gateway.ReasonCORSPreflightDenied},
		{desc: "preflight, origin denied", cfg: baseConfig(),
			r: preflight("https://evil.example", "GET"), wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "preflight, origin denied even when deny is off", cfg: denyOff,
			r: preflight("https://evil.example", "GET"), wantReason: gateway.ReasonCORSOriginDenied},
		{desc: "preflight, method denied", cfg: baseConfig(),
			r: preflight("https://app.example.com", "DELETE"), wantReason: gateway.ReasonCORSPreflightDenied},
		{desc: "preflight, method is case-sensitive", cfg: baseConfig(),
			r: preflight("https://app.example.com", "post"), wantReason: gateway.ReasonCORSPreflightDenied},
		{desc: "preflight, header denied", cfg: baseConfig(),
			r: preflight("https://app.example.com", "GET", "Access-Control-Request-Headers: authorization, x-secret"), wantReason: gateway.ReasonCORSPreflightDenied},
		{desc: "preflight, malformed header name denied", cfg: anyOrigin,
			r: preflight("https://app.example.com", "GET", "Access-Control-Request-Headers: x a"), wantReason: gateway.ReasonCORSPreflightDenied},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := mustNew(t, tt.cfg)
			err := c.ProcessRequest(context.Background(), &gateway.Exchange{Request: tt.r})
			var rej *gateway.Reject
			var ans *gateway.Answer
			switch {
			case tt.wantReason != "":
				if !errors.As(err, &rej) {
					t.Fatalf("ProcessRequest = %v, want a Reject", err)
				}
				if rej.Status != http.StatusForbidden || rej.ReasonID != tt.wantReason {
					t.Errorf("Reject = %d %s, want 403 %s", rej.Status, rej.ReasonID, tt.wantReason)
				}
			case tt.wantAnswer != nil:
				if !errors.As(err, &ans) {
					t.Fatalf("ProcessRequest = %v, want an Answer", err)
				}
				if ans.Status != http.StatusNoContent {
					t.Errorf("Answer status = %d, want 204", ans.Status)
				}
				if !reflect.DeepEqual(ans.Header, tt.wantAnswer) {
					t.Errorf("Answer headers:\n got %v\nwant %v", ans.Header, tt.wantAnswer)
				}
			default:
				if err != nil {
					t.Fatalf("ProcessRequest = %v, want nil", err)
				}
			}
		})
	}
}

func TestProcessRequestWithoutRequest(t *testing.T) {
	c := mustNew(t, baseConfig())
	err := c.ProcessRequest(context.Background(), &gateway.Exchange{})
	var rej *gateway.Reject
	if err == nil || errors.As(err, &rej) {
		t.Errorf("ProcessRequest = %v, want an internal error", err)
	}
}

// upstream returns an upstream-like response to r with the given headers.
func upstream(r *http.Request, headers ...string) *http.Response {
	rec := httptest.NewRecorder()
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		rec.Header().Add(k, v)
	}
	rec.WriteHeader(http.StatusOK)
	res := rec.Result()
	res.Request = r
	return res
}

func TestProcessResponse(t *testing.T) {
	anyOrigin := &config.CORS{AllowOrigins: []string{"*"}, ExposeHeaders: []string{"X-Total"}}
	tests := []struct {
		desc     string
		cfg      *config.CORS
		r        *http.Request
		upstream []string
		want     http.Header
	}{
		{
			desc:     "allowed origin",
			cfg:      baseConfig(),
			r:        request(http.MethodGet, "Origin: https://app.example.com"),
			upstream: []string{"Content-Type: application/json"},
			want: http.Header{
				"Content-Type":                     {"application/json"},
				"Access-Control-Allow-Origin":      {"https://app.example.com"},
				"Access-Control-Allow-Credentials": {"true"},
				"Access-Control-Expose-Headers":    {"X-Request-ID, RateLimit-Remaining"},
				"Vary":                             {"Origin"},
			},
		},
		{
			desc: "any origin answers *",
			cfg:  anyOrigin,
			r:    request(http.MethodGet, "Origin: https://who.example"),
			want: http.Header{
				"Access-Control-Allow-Origin":   {"*"},
				"Access-Control-Expose-Headers": {"X-Total"},
				"Vary":                          {"Origin"},
			},
		},
		{
			desc: "no origin: only Vary",
			cfg:  baseConfig(),
			r:    request(http.MethodGet),
			want: http.Header{"Vary": {"Origin"}},
		},
		{
			desc:     "unknown origin: upstream CORS headers stripped, Vary added",
			cfg:      &config.CORS{AllowOrigins: []string{"https://app.example.com"}, DenyUnknownOrigins: ptr(false)},
			r:        request(http.MethodGet, "Origin: https://evil.example"),
			upstream: []string{"Access-Control-Allow-Origin: *", "access-control-allow-credentials: true", "Access-Control-Foo: x"},
			want:     http.Header{"Vary": {"Origin"}},
		},
		{
			desc:     "upstream CORS headers replaced",
			cfg:      &config.CORS{AllowOrigins: []string{"https://app.example.com"}},
			r:        request(http.MethodGet, "Origin: https://app.example.com"),
			upstream: []string{"Access-Control-Allow-Origin: *", "Access-Control-Expose-Headers: X-Secret", "Access-Control-Allow-Methods: *"},
			want: http.Header{
				"Access-Control-Allow-Origin": {"https://app.example.com"},
				"Vary":                        {"Origin"},
			},
		},
		{
			desc:     "Vary appended to the upstream's",
			cfg:      baseConfig(),
			r:        request(http.MethodGet),
			upstream: []string{"Vary: Accept-Encoding"},
			want:     http.Header{"Vary": {"Accept-Encoding, Origin"}},
		},
		{
			desc:     "Vary not duplicated",
			cfg:      baseConfig(),
			r:        request(http.MethodGet),
			upstream: []string{"Vary: Accept-Encoding", "Vary: origin"},
			want:     http.Header{"Vary": {"Accept-Encoding", "origin"}},
		},
		{
			desc:     "Vary * left alone",
			cfg:      baseConfig(),
			r:        request(http.MethodGet),
			upstream: []string{"Vary: *"},
			want:     http.Header{"Vary": {"*"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := mustNew(t, tt.cfg)
			res := upstream(tt.r, tt.upstream...)
			if err := c.ProcessResponse(context.Background(), &gateway.Exchange{Request: tt.r}, res); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(res.Header, tt.want) {
				t.Errorf("headers:\n got %v\nwant %v", res.Header, tt.want)
			}
		})
	}
}

// TestProcessResponseOnLocalResponses runs ProcessResponse the way the gateway
// does on the responses it generates: res.Request is the client request and
// the headers come from the Answer or Reject.
func TestProcessResponseOnLocalResponses(t *testing.T) {
	tests := []struct {
		desc string
		r    *http.Request
	}{
		{desc: "allowed preflight", r: preflight("https://app.example.com", "POST", "Access-Control-Request-Headers: authorization")},
		{desc: "preflight with denied origin", r: preflight("https://evil.example", "POST")},
		{desc: "preflight with denied method", r: preflight("https://app.example.com", "PATCH")},
		{desc: "request with denied origin", r: request(http.MethodGet, "Origin: https://evil.example")},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			c := mustNew(t, baseConfig())
			ex := &gateway.Exchange{Request: tt.r}
			err := c.ProcessRequest(context.Background(), ex)
			var rej *gateway.Reject
			var ans *gateway.Answer
			var res *http.Response
			switch {
			case errors.As(err, &ans):
				res = &http.Response{StatusCode: ans.Status, Header: ans.Header.Clone(), Request: tt.r}
			case errors.As(err, &rej):
				h := http.Header{"Content-Type": {gateway.ProblemContentType}}
				res = &http.Response{StatusCode: rej.Status, Header: h, Request: tt.r}
			default:
				t.Fatalf("ProcessRequest = %v, want an Answer or a Reject", err)
			}
			// The gateway passes an Exchange; res.Request must do without one too.
			for _, e := range []*gateway.Exchange{ex, nil} {
				if err := c.ProcessResponse(context.Background(), e, res); err != nil {
					t.Fatal(err)
				}
			}
			if ans != nil {
				if !reflect.DeepEqual(res.Header, ans.Header) {
					t.Errorf("preflight answer changed:\n got %v\nwant %v", res.Header, ans.Header)
				}
				return
			}
			if v := res.Header.Get("Access-Control-Allow-Origin"); v != "" {
				t.Errorf("denied request got Access-Control-Allow-Origin %q", v)
			}
			if len(res.Header.Values("Vary")) != 1 || !strings.Contains(res.Header.Get("Vary"), "Origin") {
				t.Errorf("Vary = %q, want one line with Origin", res.Header.Values("Vary"))
			}
		})
	}
}

func TestProcessResponseDoesNotShareVary(t *testing.T) {
	c := mustNew(t, baseConfig())
	shared := []string{"Accept-Encoding"}
	res := &http.Response{Header: http.Header{"Vary": shared}, Request: request(http.MethodGet)}
	if err := c.ProcessResponse(context.Background(), nil, res); err != nil {
		t.Fatal(err)
	}
	if shared[0] != "Accept-Encoding" {
		t.Errorf("the original Vary slice was modified: %q", shared)
	}
}

func BenchmarkProcessResponse(b *testing.B) {
	c, err := New(baseConfig(), routeMethods)
	if err != nil {
		b.Fatal(err)
	}
	r := request(http.MethodGet, "Origin: https://app.example.com")
	ex := &gateway.Exchange{Request: r}
	b.ReportAllocs()
	for b.Loop() {
		res := &http.Response{Header: http.Header{"Content-Type": {"application/json"}}, Request: r}
		if err := c.ProcessResponse(context.Background(), ex, res); err != nil {
			b.Fatal(err)
		}
	}
}
