package versioning

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

func TestNewNotice(t *testing.T) {
	const link = "https://docs.example.com/migrate"
	tests := []struct {
		desc       string
		deprecated bool
		at, sunset time.Time
		link       string
		want       http.Header // nil: no notice
	}{
		{desc: "nothing to announce", link: link},
		{desc: "deprecated at a date", deprecated: true, at: depAt, want: http.Header{"Deprecation": {"@1780272000"}}},
		{desc: "deprecated without a date: the epoch", deprecated: true, want: http.Header{"Deprecation": {"@0"}}},
		{desc: "everything", deprecated: true, at: depAt, sunset: sunset, link: link, want: http.Header{
			"Deprecation": {"@1780272000"},
			"Sunset":      {"Fri, 01 Jan 2027 00:00:00 GMT"},
			"Link":        {"<" + link + `>; rel="deprecation"; type="text/html"`, "<" + link + `>; rel="sunset"; type="text/html"`},
		}},
		{desc: "sunset alone, with a link", sunset: sunset, link: link, want: http.Header{
			"Sunset": {"Fri, 01 Jan 2027 00:00:00 GMT"},
			"Link":   {"<" + link + `>; rel="sunset"; type="text/html"`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			n := NewNotice(tt.deprecated, tt.at, tt.sunset, tt.link)
			if tt.want == nil {
				if n != nil {
					t.Fatalf("notice %+v, want none", n)
				}
				return
			}
			h := http.Header{}
			n.Apply(h)
			if fmt.Sprint(h) != fmt.Sprint(tt.want) {
				t.Errorf("headers =\n %v\nwant\n %v", h, tt.want)
			}
		})
	}
	var none *Notice
	none.Apply(http.Header{}) // a nil Notice announces nothing
	if none.Retired(sunset) || none.InEffect(sunset) || !none.Sunset().IsZero() {
		t.Error("a nil Notice retires or counts")
	}
}

func TestNoticeDates(t *testing.T) {
	n := NewNotice(true, depAt, sunset, "")
	for _, tt := range []struct {
		now               time.Time
		inEffect, retired bool
	}{
		{now: depAt.Add(-time.Second)},
		{now: depAt, inEffect: true},
		{now: sunset.Add(-time.Second), inEffect: true},
		{now: sunset, inEffect: true, retired: true},
	} {
		if got := n.InEffect(tt.now); got != tt.inEffect {
			t.Errorf("InEffect(%v) = %v", tt.now, got)
		}
		if got := n.Retired(tt.now); got != tt.retired {
			t.Errorf("Retired(%v) = %v", tt.now, got)
		}
	}
	if undated := NewNotice(true, time.Time{}, time.Time{}, ""); !undated.InEffect(time.Unix(0, 0)) {
		t.Error("a deprecation without a date is not in effect")
	}
}

func TestOperations(t *testing.T) {
	notices := map[string]*Notice{
		"/old":     NewNotice(true, depAt, sunset, "https://docs.example.com/old"),
		"/undated": NewNotice(true, time.Time{}, time.Time{}, ""),
		"/soon":    NewNotice(true, depAt.Add(time.Hour), time.Time{}, ""),
	}
	lookup := func(r *http.Request) (string, *Notice) { return "op" + r.URL.Path, notices[r.URL.Path] }
	for _, tt := range []struct {
		desc        string
		path        string
		now         time.Time
		status      int
		finding     any
		deprecation string
	}{
		{desc: "not deprecated", path: "/new"},
		{desc: "deprecated, counted", path: "/old", now: depAt, finding: "op/old", deprecation: "@1780272000"},
		{desc: "deprecated without date, counted", path: "/undated", now: depAt, finding: "op/undated", deprecation: "@0"},
		{desc: "deprecation to come: announced, not counted", path: "/soon", now: depAt, deprecation: "@1780275600"},
		{desc: "retired", path: "/old", now: sunset, status: http.StatusGone, deprecation: "@1780272000"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			s := NewOperations(lookup, clock(tt.now))
			ex := &gateway.Exchange{Request: httptest.NewRequest("GET", tt.path, nil), Principal: &gateway.Principal{Subject: "alice"}}
			err := s.ProcessRequest(context.Background(), ex)
			var rej *gateway.Reject
			switch {
			case tt.status == 0 && err != nil:
				t.Fatalf("err = %v", err)
			case tt.status != 0 && (!errors.As(err, &rej) || rej.Status != tt.status || rej.ReasonID != ReasonVersionRetired):
				t.Fatalf("err = %v, want %d %s", err, tt.status, ReasonVersionRetired)
			}
			if got := ex.Findings[FindingDeprecatedOperation]; got != tt.finding {
				t.Errorf("finding = %v, want %v", got, tt.finding)
			}
			if tt.finding != nil && s.Usage()["alice"] != 1 {
				t.Errorf("usage = %v", s.Usage())
			}
			res := &http.Response{Header: http.Header{}}
			if err := s.ProcessResponse(context.Background(), ex, res); err != nil {
				t.Fatal(err)
			}
			if got := res.Header.Get("Deprecation"); got != tt.deprecation {
				t.Errorf("Deprecation = %q, want %q", got, tt.deprecation)
			}
		})
	}
}
