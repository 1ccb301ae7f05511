package versioning

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
)

var (
	depAt  = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sunset = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
)

func clock(t time.Time) func() time.Time { return func() time.Time { return t } }

func mustNew(t testing.TB, cfg config.Version, now time.Time) *Stage {
	t.Helper()
	s, err := New(&cfg, clock(now))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		desc    string
		cfg     config.Version
		wantErr []string
	}{
		{desc: "path version", cfg: config.Version{Value: "1"}},
		{desc: "header version with defaults", cfg: config.Version{Value: "v2", From: "header"}},
		{desc: "deprecated with dates and link", cfg: config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z",
			Sunset: "2027-01-01T00:00:00Z", Link: "https://docs.example.com/migrate"}},
		{desc: "empty value", cfg: config.Version{}, wantErr: []string{"version.value"}},
		{desc: "value with a space", cfg: config.Version{Value: "2 beta"}, wantErr: []string{"version.value"}},
		{desc: "unknown source", cfg: config.Version{Value: "1", From: "query"}, wantErr: []string{"version.from"}},
		{desc: "bad header name", cfg: config.Version{Value: "1", From: "header", Header: "API Version"}, wantErr: []string{"version.header"}},
		{desc: "header with media_type", cfg: config.Version{Value: "1", From: "media_type", Header: "X-V"}, wantErr: []string{"version.header"}},
		{desc: "default with path", cfg: config.Version{Value: "1", Default: true}, wantErr: []string{"version.default"}},
		{desc: "deprecated without date", cfg: config.Version{Value: "1", Deprecated: true}, wantErr: []string{"version.deprecated_at", "RFC 9745"}},
		{desc: "date without deprecated", cfg: config.Version{Value: "1", DeprecatedAt: "2026-06-01T00:00:00Z"}, wantErr: []string{"requires deprecated"}},
		{desc: "bad dates", cfg: config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01", Sunset: "tomorrow"},
			wantErr: []string{"version.deprecated_at", "version.sunset"}},
		{desc: "sunset before deprecation", cfg: config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2027-06-01T00:00:00Z", Sunset: "2027-01-01T00:00:00Z"},
			wantErr: []string{"before deprecated_at"}},
		{desc: "link not absolute", cfg: config.Version{Value: "1", Link: "/docs"}, wantErr: []string{"version.link"}},
		{desc: "link breaking out of <>", cfg: config.Version{Value: "1", Link: "https://a.test/>; rel=\"x\""}, wantErr: []string{"version.link"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, err := New(&tt.cfg, nil)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if s, err := New(nil, nil); s != nil || err != nil {
		t.Errorf("New(nil) = %v, %v; want no stage", s, err)
	}
}

func TestProcessRequest(t *testing.T) {
	header := config.Version{Value: "2", From: "header"}
	headerDefault := config.Version{Value: "2", From: "header", Header: "Accept-Version", Default: true}
	media := config.Version{Value: "2", From: "media_type"}
	retiring := config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z", Sunset: "2027-01-01T00:00:00Z"}
	tests := []struct {
		desc   string
		cfg    config.Version
		now    time.Time
		hdr    []string
		status int // 0: admitted
		reason string
	}{
		{desc: "header match", cfg: header, hdr: []string{"API-Version: 2"}},
		{desc: "header match with v and case", cfg: header, hdr: []string{"Api-Version:  V2 "}},
		{desc: "header mismatch", cfg: header, hdr: []string{"API-Version: 3"}, status: 406, reason: ReasonVersionNotSupported},
		{desc: "header missing", cfg: header, status: 400, reason: ReasonVersionRequired},
		{desc: "header repeated", cfg: header, hdr: []string{"API-Version: 2", "API-Version: 3"}, status: 406, reason: ReasonVersionNotSupported},
		{desc: "custom header, default serves no version", cfg: headerDefault},
		{desc: "custom header mismatch", cfg: headerDefault, hdr: []string{"Accept-Version: 1"}, status: 406, reason: ReasonVersionNotSupported},
		{desc: "media type parameter", cfg: media, hdr: []string{"Accept: application/json; version=2"}},
		{desc: "vendor media type", cfg: media, hdr: []string{"Accept: application/vnd.example.v2+json"}},
		{desc: "one of several ranges", cfg: media, hdr: []string{"Accept: application/vnd.example.v1+json, application/vnd.example.v2+json;q=0.5"}},
		{desc: "q=0 refuses the version", cfg: media, hdr: []string{"Accept: application/vnd.example.v2+json;q=0, application/vnd.example.v1+json"},
			status: 406, reason: ReasonVersionNotSupported},
		{desc: "media type mismatch", cfg: media, hdr: []string{"Accept: application/json; version=3"}, status: 406, reason: ReasonVersionNotSupported},
		{desc: "media type without version", cfg: media, hdr: []string{"Accept: application/json"}, status: 400, reason: ReasonVersionRequired},
		{desc: "unparseable range skipped", cfg: media, hdr: []string{"Accept: ;;;, application/json;version=2"}},
		{desc: "before deprecation", cfg: retiring, now: depAt.Add(-time.Hour)},
		{desc: "deprecated, before sunset", cfg: retiring, now: sunset.Add(-time.Second)},
		{desc: "at sunset", cfg: retiring, now: sunset, status: 410, reason: ReasonVersionRetired},
		{desc: "after sunset", cfg: retiring, now: sunset.Add(24 * time.Hour), status: 410, reason: ReasonVersionRetired},
		{desc: "sunset wins over a version mismatch", cfg: config.Version{Value: "2", From: "header", Sunset: "2027-01-01T00:00:00Z"},
			now: sunset, hdr: []string{"API-Version: 9"}, status: 410, reason: ReasonVersionRetired},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = depAt
			}
			s := mustNew(t, tt.cfg, now)
			r := httptest.NewRequest(http.MethodGet, "http://gw.test/books", nil)
			for _, kv := range tt.hdr {
				k, v, _ := strings.Cut(kv, ":")
				r.Header.Add(k, strings.TrimPrefix(v, " "))
			}
			err := s.ProcessRequest(context.Background(), &gateway.Exchange{Request: r})
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("err = %v, want admitted", err)
				}
				return
			}
			var rej *gateway.Reject
			if !errors.As(err, &rej) || rej.Status != tt.status || rej.ReasonID != tt.reason {
				t.Fatalf("err = %v, want %d %s", err, tt.status, tt.reason)
			}
		})
	}
}

func TestDeprecationHeaders(t *testing.T) {
	tests := []struct {
		desc string
		cfg  config.Version
		want http.Header
	}{
		{desc: "not deprecated: nothing", cfg: config.Version{Value: "2"}, want: http.Header{}},
		{desc: "deprecated with sunset and link", cfg: config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z",
			Sunset: "2027-01-01T00:00:00Z", Link: "https://docs.example.com/v1-sunset"},
			want: http.Header{
				"Deprecation": {"@1780272000"},
				"Sunset":      {"Fri, 01 Jan 2027 00:00:00 GMT"},
				"Link": {`</upstream-link>; rel="next"`, `<https://docs.example.com/v1-sunset>; rel="deprecation"; type="text/html"`,
					`<https://docs.example.com/v1-sunset>; rel="sunset"; type="text/html"`},
			}},
		{desc: "sunset alone", cfg: config.Version{Value: "1", Sunset: "2027-01-01T01:30:00+01:00"},
			want: http.Header{"Sunset": {"Fri, 01 Jan 2027 00:30:00 GMT"}}},
		{desc: "header versions vary on the header", cfg: config.Version{Value: "2", From: "header"},
			want: http.Header{"Vary": {"Origin", "Api-Version"}}},
		{desc: "media-type versions vary on Accept", cfg: config.Version{Value: "2", From: "media_type"},
			want: http.Header{"Vary": {"Origin", "Accept"}}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := mustNew(t, tt.cfg, depAt)
			res := &http.Response{Header: http.Header{}}
			if _, ok := tt.want["Link"]; ok {
				res.Header.Set("Link", `</upstream-link>; rel="next"`)
			}
			if _, ok := tt.want["Vary"]; ok {
				res.Header.Set("Vary", "Origin")
			}
			if err := s.ProcessResponse(context.Background(), &gateway.Exchange{}, res); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(res.Header) != fmt.Sprint(tt.want) {
				t.Errorf("headers =\n %v\nwant\n %v", res.Header, tt.want)
			}
		})
	}
	if d := time.Unix(1780272000, 0).UTC(); !d.Equal(depAt) {
		t.Fatalf("test constant wrong: @1780272000 is %v", d)
	}
}

func TestDeprecatedUsageCounted(t *testing.T) {
	s := mustNew(t, config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z"}, depAt)
	for _, p := range []*gateway.Principal{{Subject: "alice"}, {Subject: "alice"}, {Subject: "bob"}, nil, {}} {
		ex := &gateway.Exchange{Request: httptest.NewRequest("GET", "/", nil), Principal: p}
		if err := s.ProcessRequest(context.Background(), ex); err != nil {
			t.Fatal(err)
		}
		if ex.Findings[FindingDeprecatedVersion] != "1" {
			t.Errorf("finding = %v", ex.Findings)
		}
	}
	want := map[string]uint64{"alice": 2, "bob": 1, AnonymousKey: 2}
	if got := s.Usage(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Usage = %v, want %v", got, want)
	}

	// Before its deprecation date a version is announced but not counted.
	early := mustNew(t, config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z"}, depAt.Add(-time.Second))
	ex := &gateway.Exchange{Request: httptest.NewRequest("GET", "/", nil), Principal: &gateway.Principal{Subject: "alice"}}
	if err := early.ProcessRequest(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	if len(early.Usage()) != 0 || ex.Findings != nil {
		t.Errorf("counted before deprecation: %v %v", early.Usage(), ex.Findings)
	}
}

func TestCounterBounded(t *testing.T) {
	c := NewCounter(3)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				c.Add(fmt.Sprintf("p%d", (w*1000+i)%10))
			}
		}()
	}
	wg.Wait()
	got := c.Snapshot()
	if len(got) != 4 {
		t.Errorf("keys = %d (%v), want 3 principals and %s", len(got), got, OverflowKey)
	}
	var total uint64
	for _, n := range got {
		total += n
	}
	if total != 8000 {
		t.Errorf("total = %d, want 8000: no event may be lost", total)
	}
	if got[OverflowKey] == 0 {
		t.Error("nothing counted under the overflow key")
	}
}

func TestVendorVersion(t *testing.T) {
	tests := []struct{ mt, want string }{
		{"application/vnd.example.v2+json", "v2"},
		{"application/vnd.github.v3", "v3"},
		{"application/vnd.example.v2.1+json", "v2.1"},
		{"application/vnd.v8engine.api.v4+json", "v4"},
		{"application/vnd.example+json", ""},
		{"application/json", ""},
		{"application/vnd.example.vnext+json", ""},
	}
	for _, tt := range tests {
		got, ok := vendorVersion(tt.mt)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("vendorVersion(%q) = %q, %v; want %q", tt.mt, got, ok, tt.want)
		}
	}
}

func FuzzAcceptedVersion(f *testing.F) {
	for _, s := range []string{"application/json; version=2", "application/vnd.x.v2+json;q=0.1, */*", ";;;", "a/b;version=\"2\"", "application/vnd."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		named, match := AcceptedVersion([]string{accept}, "2")
		if match && !named {
			t.Fatal("matched without a named version")
		}
	})
}

type loopback struct{}

func (loopback) Resolve(string, http.Header) (netip.Addr, netip.Addr, bool) {
	a := netip.MustParseAddr("127.0.0.1")
	return a, a, false
}

type okUpstream struct{ hits int }

func (u *okUpstream) Forward(w http.ResponseWriter, r *http.Request, ex *gateway.Exchange) {
	u.hits++
	w.Header().Set("Content-Type", "application/json")
	// The proxy runs the route's response stages on upstream responses;
	// this stand-in does the same.
	res := &http.Response{StatusCode: 200, Header: w.Header(), Body: http.NoBody, Request: r}
	for _, st := range ex.Route.Response {
		_ = st.ProcessResponse(r.Context(), ex, res)
	}
	w.WriteHeader(200)
	io.WriteString(w, `{"ok":true}`)
}

// TestThroughGateway checks the stage in a real gateway: admitted requests
// and refusals both carry the deprecation headers, a mismatch answers 406
// and a retired version 410, as problem documents.
func TestThroughGateway(t *testing.T) {
	cfg := config.Version{Value: "1", From: "header", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z",
		Sunset: "2027-01-01T00:00:00Z", Link: "https://docs.example.com/v1"}
	var now time.Time
	s, err := New(&cfg, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	up := &okUpstream{}
	route := &gateway.Route{Name: "books", Template: "/books", MaxBody: 1024,
		Request: []gateway.RequestStage{s}, Response: []gateway.ResponseStage{s}, Upstream: up}
	rb := router.NewBuilder[*gateway.Route]()
	if err := rb.Add("", []string{"GET"}, "/books", route); err != nil {
		t.Fatal(err)
	}
	g := gateway.New(gateway.Options{Router: rb.Build(), ClientIP: loopback{}, Log: slog.New(slog.DiscardHandler)})

	tests := []struct {
		desc    string
		at      time.Time
		version string
		status  int
		reason  string
	}{
		{desc: "deprecated version served", at: depAt.Add(time.Hour), version: "1", status: 200},
		{desc: "other version refused", at: depAt.Add(time.Hour), version: "2", status: 406, reason: ReasonVersionNotSupported},
		{desc: "retired", at: sunset, version: "1", status: 410, reason: ReasonVersionRetired},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			now = tt.at
			before := up.hits
			r := httptest.NewRequest(http.MethodGet, "http://gw.test/books", nil)
			r.Header.Set("API-Version", tt.version)
			rec := httptest.NewRecorder()
			g.ServeHTTP(rec, r)
			if rec.Code != tt.status {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.reason != "" {
				if !strings.Contains(rec.Body.String(), `"reason_id":"`+tt.reason+`"`) {
					t.Errorf("body = %s, want reason %s", rec.Body, tt.reason)
				}
				if up.hits != before {
					t.Error("a refused request reached the upstream")
				}
			}
			h := rec.Header()
			if h.Get("Deprecation") != "@1780272000" || h.Get("Sunset") != "Fri, 01 Jan 2027 00:00:00 GMT" ||
				!strings.Contains(strings.Join(h.Values("Link"), ","), `<https://docs.example.com/v1>; rel="deprecation"`) {
				t.Errorf("deprecation headers missing: %v", h)
			}
			if h.Get("Vary") != "Api-Version" {
				t.Errorf("Vary = %q", h.Get("Vary"))
			}
		})
	}
	if got := s.Usage(); got[AnonymousKey] != 1 || len(got) != 1 {
		t.Errorf("Usage = %v, want one anonymous use", got)
	}
}

func BenchmarkStage(b *testing.B) {
	ctx := context.Background()
	for _, c := range []struct {
		desc string
		cfg  config.Version
		hdr  [2]string
	}{
		{"header", config.Version{Value: "2", From: "header"}, [2]string{"API-Version", "2"}},
		{"media_type vendor", config.Version{Value: "2", From: "media_type"}, [2]string{"Accept", "application/vnd.example.v1+json, application/vnd.example.v2+json;q=0.9"}},
		{"deprecated path", config.Version{Value: "1", Deprecated: true, DeprecatedAt: "2026-06-01T00:00:00Z", Sunset: "2027-01-01T00:00:00Z", Link: "https://d.test/x"}, [2]string{}},
	} {
		s := mustNew(b, c.cfg, depAt)
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if c.hdr[0] != "" {
			r.Header.Set(c.hdr[0], c.hdr[1])
		}
		b.Run("request/"+c.desc, func(b *testing.B) {
			b.ReportAllocs()
			p := &gateway.Principal{Subject: "alice"}
			for b.Loop() {
				if err := s.ProcessRequest(ctx, &gateway.Exchange{Request: r, Principal: p}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("response/"+c.desc, func(b *testing.B) {
			b.ReportAllocs()
			res := &http.Response{}
			for b.Loop() {
				res.Header = http.Header{}
				_ = s.ProcessResponse(ctx, nil, res)
			}
		})
	}
}
