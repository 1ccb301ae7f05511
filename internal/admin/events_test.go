package admin

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

func exchange(id string, at time.Time, route, reason string, status int, ip, subject string) *gateway.Exchange {
	ex := &gateway.Exchange{ID: id, Start: at, ReasonID: reason, Status: status, ClientIP: netip.MustParseAddr(ip),
		Request: &http.Request{Method: "GET", URL: &url.URL{Path: "/raw/path"}}}
	if route != "" {
		ex.Route = &gateway.Route{Name: route, Template: "/" + route + "/{id}"}
	}
	if subject != "" {
		ex.Principal = &gateway.Principal{Subject: subject}
	}
	return ex
}

func TestRingKeepsDenialsOnly(t *testing.T) {
	g := NewRing(3)
	g.Record(exchange("allowed", testNow, "books", "", 200, "10.0.0.1", ""))
	if n := len(g.Query(Filter{})); n != 0 {
		t.Fatalf("an allowed request was kept (%d events)", n)
	}
	for i := range 5 {
		g.Record(exchange(strconv.Itoa(i), testNow.Add(time.Duration(i)*time.Second), "books", "rate_limited", 429, "10.0.0.1", ""))
	}
	got := g.Query(Filter{})
	if len(got) != 3 || got[0].RequestID != "4" || got[2].RequestID != "2" {
		t.Errorf("ring of 3 after 5 denials holds %+v, want 4, 3, 2", got)
	}
}

func TestRingRecordCopiesFields(t *testing.T) {
	g := NewRing(4)
	g.Record(exchange("a", testNow, "books", "jwt_expired", 401, "::ffff:10.0.0.9", "alice"))
	long := exchange("b", testNow, "", "route_not_found", 404, "10.0.0.1", "")
	long.Request.URL.Path = "/" + string(make([]byte, 1000))
	g.Record(long)
	got := g.Query(Filter{})
	if e := got[1]; e.Route != "books" || e.Path != "/books/{id}" || e.Principal != "alice" || e.Status != 401 || e.Method != "GET" {
		t.Errorf("routed event %+v", e)
	}
	if e := got[0]; e.Route != "" || len(e.Path) != maxEventPath {
		t.Errorf("unrouted event path of %d bytes, want the request path cut to %d", len(e.Path), maxEventPath)
	}
}

func TestEventsEndpoint(t *testing.T) {
	s, ts := start(t, testAdmin(), Deps{})
	for i, e := range []*gateway.Exchange{
		exchange("r1", testNow.Add(-3*time.Hour), "books", "rate_limited", 429, "10.0.0.1", "alice"),
		exchange("r2", testNow.Add(-2*time.Hour), "books", "jwt_expired", 401, "10.0.0.2", ""),
		exchange("r3", testNow.Add(-30*time.Minute), "orders", "waf_blocked", 403, "10.0.1.7", "bob"),
		exchange("r4", testNow.Add(-10*time.Minute), "orders", "rate_limited", 429, "2001:db8::1", "alice"),
		exchange("ok", testNow, "orders", "", 200, "10.0.0.1", "alice"),
	} {
		_ = i
		s.RecordEvent(e)
	}
	tests := []struct {
		desc, query string
		want        []string
		code        int
	}{
		{"all, newest first", "", []string{"r4", "r3", "r2", "r1"}, 200},
		{"by reason", "reason=rate_limited", []string{"r4", "r1"}, 200},
		{"by route", "route=books", []string{"r2", "r1"}, 200},
		{"by client IP", "client_ip=10.0.0.2", []string{"r2"}, 200},
		{"by client prefix", "client_ip=10.0.0.0/16", []string{"r3", "r2", "r1"}, 200},
		{"by IPv6 client", "client_ip=2001:db8::1", []string{"r4"}, 200},
		{"by principal", "principal=alice", []string{"r4", "r1"}, 200},
		{"since a time", "since=" + url.QueryEscape(testNow.Add(-time.Hour).Format(time.RFC3339)), []string{"r4", "r3"}, 200},
		{"since a duration", "since=15m", []string{"r4"}, 200},
		{"limit", "limit=2", []string{"r4", "r3"}, 200},
		{"combined", "reason=rate_limited&principal=alice&limit=1", []string{"r4"}, 200},
		{"no match", "route=nope", []string{}, 200},
		{"bad client_ip", "client_ip=10.0.0", nil, 400},
		{"bad since", "since=yesterday", nil, 400},
		{"limit over the buffer", "limit=5000", nil, 400},
		{"zero limit", "limit=0", nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, h, b := do(t, ts, req{path: "/api/v1/events?" + tt.query, token: readToken})
			if code != tt.code {
				t.Fatalf("status %d, want %d: %s", code, tt.code, b)
			}
			if code != 200 {
				if reasonOf(t, h, b) != ReasonBadRequest {
					t.Errorf("reason %q", reasonOf(t, h, b))
				}
				return
			}
			got := decode[struct{ Events []Event }](t, b)
			ids := []string{}
			for _, e := range got.Events {
				ids = append(ids, e.RequestID)
			}
			if len(ids) != len(tt.want) {
				t.Fatalf("events %v, want %v", ids, tt.want)
			}
			for i := range ids {
				if ids[i] != tt.want[i] {
					t.Fatalf("events %v, want %v", ids, tt.want)
				}
			}
		})
	}
}

func BenchmarkRingRecordAllowed(b *testing.B) {
	g := NewRing(1000)
	ex := exchange("a", testNow, "books", "", 200, "10.0.0.1", "")
	b.ReportAllocs()
	for b.Loop() {
		g.Record(ex)
	}
}

func BenchmarkRingRecordDenied(b *testing.B) {
	g := NewRing(1000)
	ex := exchange("a", testNow, "books", "rate_limited", 429, "10.0.0.1", "alice")
	b.ReportAllocs()
	for b.Loop() {
		g.Record(ex)
	}
}
