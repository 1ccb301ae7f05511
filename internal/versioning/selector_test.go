package versioning

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
)

func ver(value, from string, opts ...func(*config.Version)) *config.Version {
	v := &config.Version{Value: value, From: from}
	for _, o := range opts {
		o(v)
	}
	v.ApplyDefaults()
	return v
}

func isDefault(v *config.Version) { v.Default = true }

func named(name string, v *config.Version) Member { return Member{Name: name, Version: v} }

func TestCheckGroup(t *testing.T) {
	tests := []struct {
		desc    string
		members []Member
		wantErr []string // substrings; none: legal
	}{
		{desc: "two header versions", members: []Member{named("a", ver("1", "header")), named("b", ver("2", "header", isDefault))}},
		{desc: "three media-type versions", members: []Member{named("a", ver("1", "media_type")), named("b", ver("2", "media_type")),
			named("c", ver("2024-06-01", "media_type", isDefault))}},
		{desc: "same custom header in another case", members: []Member{
			named("a", ver("1", "header", func(v *config.Version) { v.Header = "x-api-version" })),
			named("b", ver("2", "header", func(v *config.Version) { v.Header = "X-Api-Version" }))}},
		{desc: "no default is fine", members: []Member{named("a", ver("1", "header")), named("b", ver("2", "header"))}},
		{desc: "one route", members: []Member{named("a", ver("1", "header"))}, wantErr: []string{"at least two"}},
		{desc: "no version block", members: []Member{named("a", ver("1", "header")), named("b", nil)},
			wantErr: []string{"b has no version block"}},
		{desc: "path versions", members: []Member{named("a", ver("1", "path")), named("b", ver("2", "path"))},
			wantErr: []string{"a takes its version from the path"}},
		{desc: "header and media type", members: []Member{named("a", ver("1", "header")), named("b", ver("2", "media_type"))},
			wantErr: []string{"a reads the version from header Api-Version and b from media_type"}},
		{desc: "different headers", members: []Member{named("a", ver("1", "header")),
			named("b", ver("2", "header", func(v *config.Version) { v.Header = "Accept-Version" }))},
			wantErr: []string{"header Api-Version", "header Accept-Version"}},
		{desc: "same version once normalised", members: []Member{named("a", ver("V2", "header")), named("b", ver("2", "header"))},
			wantErr: []string{"a and b both serve version 2"}},
		{desc: "two defaults", members: []Member{named("a", ver("1", "media_type", isDefault)), named("b", ver("2", "media_type", isDefault))},
			wantErr: []string{"a and b are both default"}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := CheckGroup(tt.members)
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
}

// group builds the member stages and the Selector of a version group, each
// member's route holding its stage.
func group(t testing.TB, now time.Time, versions ...*config.Version) (*Selector, []*gateway.Route) {
	t.Helper()
	members := make([]Member, len(versions))
	routes := make([]*gateway.Route, len(versions))
	for i, v := range versions {
		s, err := NewMember(v, clock(now))
		if err != nil {
			t.Fatal(err)
		}
		routes[i] = &gateway.Route{Name: "v" + v.Value, Request: []gateway.RequestStage{s}, Response: []gateway.ResponseStage{s}}
		members[i] = Member{Name: routes[i].Name, Version: v, Route: routes[i]}
	}
	sel, err := NewSelector(members)
	if err != nil {
		t.Fatal(err)
	}
	return sel, routes
}

func request(hdr ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://gw.test/books", nil)
	for _, kv := range hdr {
		k, v, _ := strings.Cut(kv, ":")
		r.Header.Add(k, strings.TrimPrefix(v, " "))
	}
	return r
}

func TestSelectorPick(t *testing.T) {
	retiring := func(v *config.Version) {
		v.Deprecated, v.DeprecatedAt, v.Sunset = true, "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"
	}
	header := []*config.Version{ver("1", "header", retiring), ver("2", "header", isDefault), ver("3-beta", "header")}
	headerNoDefault := []*config.Version{ver("1", "header", retiring), ver("2", "header")}
	media := []*config.Version{ver("1", "media_type", retiring), ver("2", "media_type", isDefault)}
	mediaNoDefault := []*config.Version{ver("1", "media_type", retiring), ver("2", "media_type")}
	tests := []struct {
		desc     string
		versions []*config.Version
		now      time.Time
		hdr      []string
		want     string // the route picked
		status   int    // its version stage's verdict; 0: admitted
		reason   string
	}{
		{desc: "header names v1", versions: header, hdr: []string{"API-Version: 1"}, want: "v1"},
		{desc: "header names V2 with spaces", versions: header, hdr: []string{"Api-Version:  V2 "}, want: "v2"},
		{desc: "header names a label", versions: header, hdr: []string{"API-Version: 3-BETA"}, want: "v3-beta"},
		{desc: "no header: the default", versions: header, want: "v2"},
		{desc: "unserved version: the default refuses", versions: header, hdr: []string{"API-Version: 9"}, want: "v2",
			status: 406, reason: ReasonVersionNotSupported},
		{desc: "header twice: refused", versions: header, hdr: []string{"API-Version: 1", "API-Version: 2"}, want: "v2",
			status: 406, reason: ReasonVersionNotSupported},
		{desc: "no header, no default: version required", versions: headerNoDefault, want: "v1",
			status: 400, reason: ReasonVersionRequired},
		{desc: "unserved, no default, first member retired: still 406", versions: headerNoDefault, now: sunset,
			hdr: []string{"API-Version: 9"}, want: "v1", status: 406, reason: ReasonVersionNotSupported},
		{desc: "no header, no default, first member retired: still 400", versions: headerNoDefault, now: sunset,
			want: "v1", status: 400, reason: ReasonVersionRequired},
		{desc: "retired version named: 410", versions: header, now: sunset, hdr: []string{"API-Version: 1"}, want: "v1",
			status: 410, reason: ReasonVersionRetired},
		{desc: "non-ASCII look-alike is not a version", versions: header, hdr: []string{"API-Version: \u212a"}, want: "v2",
			status: 406, reason: ReasonVersionNotSupported},
		{desc: "media parameter", versions: media, hdr: []string{"Accept: application/json; version=1"}, want: "v1"},
		{desc: "vendor type", versions: media, hdr: []string{"Accept: application/vnd.example.v2+json"}, want: "v2"},
		{desc: "highest q wins", versions: media, hdr: []string{"Accept: application/vnd.example.v2+json;q=0.5, application/vnd.example.v1+json"},
			want: "v1"},
		{desc: "equal q: the first", versions: media, hdr: []string{"Accept: application/vnd.example.v2+json, application/vnd.example.v1+json"},
			want: "v2"},
		{desc: "unserved range skipped", versions: media, hdr: []string{"Accept: application/vnd.example.v9+json, application/vnd.example.v1+json;q=0.1"},
			want: "v1"},
		{desc: "q=0 names nothing: the default", versions: media, hdr: []string{"Accept: application/vnd.example.v1+json;q=0"}, want: "v2"},
		{desc: "no version in Accept: the default", versions: media, hdr: []string{"Accept: application/json"}, want: "v2"},
		{desc: "no version, no default", versions: mediaNoDefault, hdr: []string{"Accept: */*"}, want: "v1",
			status: 400, reason: ReasonVersionRequired},
		{desc: "only unserved versions", versions: mediaNoDefault, hdr: []string{"Accept: application/json; version=7"}, want: "v1",
			status: 406, reason: ReasonVersionNotSupported},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = depAt
			}
			sel, _ := group(t, now, tt.versions...)
			r := request(tt.hdr...)
			got := sel.Pick(r)
			if got.Name != tt.want {
				t.Fatalf("Pick = %s, want %s", got.Name, tt.want)
			}
			err := got.Request[0].ProcessRequest(context.Background(), &gateway.Exchange{Request: r})
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("the picked route refuses: %v", err)
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

// TestMemberHeaders checks that a member announces its deprecation only to
// requests that selected it, and always varies on the version's source.
func TestMemberHeaders(t *testing.T) {
	retiring := func(v *config.Version) {
		v.Deprecated, v.DeprecatedAt, v.Sunset = true, "2026-06-01T00:00:00Z", "2027-01-01T00:00:00Z"
	}
	sel, _ := group(t, depAt, ver("1", "header", retiring), ver("2", "header"))
	for _, tt := range []struct {
		desc      string
		hdr       []string
		announced bool
	}{
		{desc: "v1 asked for", hdr: []string{"API-Version: 1"}, announced: true},
		{desc: "unserved version", hdr: []string{"API-Version: 9"}},
		{desc: "no version", hdr: nil},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			r := request(tt.hdr...)
			route := sel.Pick(r)
			res := &http.Response{Header: http.Header{}}
			for _, st := range route.Response {
				if err := st.ProcessResponse(context.Background(), &gateway.Exchange{Request: r}, res); err != nil {
					t.Fatal(err)
				}
			}
			if got := res.Header.Get("Deprecation") != ""; got != tt.announced {
				t.Errorf("Deprecation sent = %v, want %v (%v)", got, tt.announced, res.Header)
			}
			if res.Header.Get("Vary") != "Api-Version" {
				t.Errorf("Vary = %q", res.Header.Get("Vary"))
			}
		})
	}
}

func TestNewSelectorNeedsRoutes(t *testing.T) {
	_, err := NewSelector([]Member{named("a", ver("1", "header")), named("b", ver("2", "header"))})
	if err == nil || !strings.Contains(err.Error(), "a: no route") {
		t.Fatalf("err = %v", err)
	}
}

func TestPickHeaderDoesNotAllocate(t *testing.T) {
	sel, _ := group(t, depAt, ver("1", "header"), ver("2", "header", isDefault), ver("2024-06-01", "header"))
	for _, hdr := range [][]string{{"API-Version: v2024-06-01"}, {"API-Version: 9"}, nil} {
		r := request(hdr...)
		if n := testing.AllocsPerRun(100, func() { sel.Pick(r) }); n != 0 {
			t.Errorf("Pick with %v allocates %v times", hdr, n)
		}
	}
}

// FuzzSelect checks, for any version header and Accept value, that Pick
// never fails and agrees with the members' own checks: the picked member
// admits the request whenever some member would.
func FuzzSelect(f *testing.F) {
	f.Add("2", "application/vnd.example.v1+json;q=0.5, application/json;version=2")
	f.Add("V1 ", "application/json; version=\"1\"")
	f.Add("", ";;;, */*;q=0")
	f.Add("\u212a", "application/vnd.x.v+json, application/vnd.x.vv2.1+json;q=nan")
	f.Fuzz(func(t *testing.T, header, accept string) {
		for _, from := range []string{"header", "media_type"} {
			for _, withDefault := range []bool{false, true} {
				vs := []*config.Version{ver("1", from), ver("2", from), ver("2.1", from)}
				if withDefault {
					vs[1].Default = true
				}
				sel, routes := group(t, depAt, vs...)
				r := request()
				r.Header["Api-Version"] = []string{header}
				r.Header["Accept"] = []string{accept}
				picked := sel.Pick(r)
				if picked == nil {
					t.Fatal("Pick returned nil")
				}
				pickedOK := picked.Request[0].ProcessRequest(context.Background(), &gateway.Exchange{Request: r}) == nil
				for _, rt := range routes {
					if rt.Request[0].ProcessRequest(context.Background(), &gateway.Exchange{Request: r}) == nil && !pickedOK {
						t.Fatalf("%s: %s admits header %q accept %q, but Pick chose %s, which refuses", from, rt.Name, header, accept, picked.Name)
					}
				}
			}
		}
	})
}
