package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/anomaly"
)

// testAlerts are the alerts the fake detection keeps, newest first.
func testAlerts() []anomaly.Alert {
	at := testNow.Add(-time.Minute)
	return []anomaly.Alert{
		{Detector: anomaly.DetectorAuthFailures, Signal: anomaly.SignalAuthFailures, Severity: "high", SubjectKind: anomaly.KindIP,
			Subject: "203.0.113.7", Count: 25, Threshold: 20, Window: time.Minute, At: at, EndsAt: at.Add(15 * time.Minute),
			BlockedUntil: at.Add(15 * time.Minute), Sample: []anomaly.Sample{{At: at, Route: "login", Status: 401, ReasonID: "basic_invalid"}}},
		{Detector: anomaly.DetectorVolumeSpike, Signal: anomaly.SignalRequests, Severity: "warning", SubjectKind: anomaly.KindPrincipal,
			Subject: "jwt:alice", Count: 900, Threshold: 600, Baseline: 120.5, Window: time.Minute, At: at.Add(-time.Minute), EndsAt: at.Add(4 * time.Minute)},
		{Detector: anomaly.DetectorAuthFailures, Signal: anomaly.SignalAuthFailures, Severity: "high", SubjectKind: anomaly.KindPrincipal,
			Subject: "jwt:alice", Count: 21, Threshold: 20, Window: time.Minute, At: at.Add(-2 * time.Minute), EndsAt: at},
	}
}

func TestAlertsEndpoint(t *testing.T) {
	var asked []int
	_, ts := start(t, testAdmin(), Deps{Alerts: func(limit int) []anomaly.Alert { asked = append(asked, limit); return testAlerts() }})
	tests := []struct {
		desc, query string
		want        []string // detector/subject of the alerts returned, in order
		status      int
	}{
		{"all, newest first", "", []string{"auth_failures/203.0.113.7", "volume_spike/jwt:alice", "auth_failures/jwt:alice"}, 200},
		{"by detector", "?detector=auth_failures", []string{"auth_failures/203.0.113.7", "auth_failures/jwt:alice"}, 200},
		{"by subject", "?subject=jwt:alice", []string{"volume_spike/jwt:alice", "auth_failures/jwt:alice"}, 200},
		{"by subject and detector", "?subject=jwt%3Aalice&detector=auth_failures", []string{"auth_failures/jwt:alice"}, 200},
		{"by subject kind", "?subject_kind=ip", []string{"auth_failures/203.0.113.7"}, 200},
		{"limit", "?limit=1", []string{"auth_failures/203.0.113.7"}, 200},
		{"nothing matches", "?subject=192.0.2.1", []string{}, 200},
		{"unknown detector", "?detector=sqli", nil, 400},
		{"unknown kind", "?subject_kind=user", nil, 400},
		{"limit zero", "?limit=0", nil, 400},
		{"limit over the buffer", "?limit=1001", nil, 400},
		{"limit not a number", "?limit=ten", nil, 400},
		{"subject too long", "?subject=" + strings.Repeat("a", 1025), nil, 400},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, h, b := do(t, ts, req{path: "/api/v1/alerts" + tt.query, token: readToken})
			if code != tt.status {
				t.Fatalf("status %d, want %d: %s", code, tt.status, b)
			}
			if code != 200 {
				if reasonOf(t, h, b) != ReasonBadRequest {
					t.Errorf("reason %q", reasonOf(t, h, b))
				}
				return
			}
			got := decode[struct{ Alerts []AlertView }](t, b)
			ids := make([]string, len(got.Alerts))
			for i, a := range got.Alerts {
				ids[i] = a.Detector + "/" + a.Subject
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("alerts %v, want %v", ids, tt.want)
			}
		})
	}
	// The document's content: what the detection knows, in UTC, with the
	// block end and volume baseline only where they mean something.
	_, _, b := do(t, ts, req{path: "/api/v1/alerts", token: readToken})
	raw := decode[struct{ Alerts []map[string]any }](t, b)
	first, second := raw.Alerts[0], raw.Alerts[1]
	if first["blocked_until"] != "2026-11-21T12:14:00Z" || first["window"] != "1m0s" || first["window_seconds"] != 60.0 || first["count"] != 25.0 {
		t.Errorf("first alert %v", first)
	}
	if _, ok := first["baseline"]; ok {
		t.Error("baseline on an auth_failures alert")
	}
	if second["baseline"] != 120.5 {
		t.Errorf("volume_spike baseline %v", second["baseline"])
	}
	if _, ok := second["blocked_until"]; ok {
		t.Error("blocked_until on an alert that did not block")
	}
	if s, ok := second["sample"].([]any); !ok || len(s) != 0 {
		t.Errorf("sample %v, want []", second["sample"])
	}
	for _, n := range asked {
		if n != 0 {
			t.Errorf("Alerts asked for %d, want all (0) so filters see every alert", n)
		}
	}
}

// newBlocks returns a Memory block store on the tests' clock.
func newBlocks() *anomaly.Memory {
	return anomaly.NewMemory(0, func() time.Time { return testNow })
}

func TestBlockLifecycle(t *testing.T) {
	var al auditLog
	store := newBlocks()
	_, ts := start(t, testAdmin(), Deps{Blocks: store, Audit: al.fn})

	add := func(body string) (int, http.Header, []byte) {
		return do(t, ts, req{method: "POST", path: "/api/v1/blocks", token: writeToken, ctype: "application/json", body: body})
	}
	code, h, b := add(`{"kind":"ip","subject":"2001:db8:7:7::1","duration":"15m"}`)
	if code != 201 {
		t.Fatalf("POST: %d %s", code, b)
	}
	got := decode[BlockView](t, b)
	if got.Kind != "ip" || got.Subject != "2001:db8:7:7::/64" || !got.Until.Equal(testNow.Add(15*time.Minute)) {
		t.Errorf("created %+v: an IPv6 address is blocked as its /64", got)
	}
	loc := h.Get("Location")
	if loc != "/api/v1/blocks/ip/2001:db8:7:7::%2F64" {
		t.Errorf("Location %q", loc)
	}
	if ok, _, _ := store.Blocked(context.Background(), "ip", "2001:db8:7:7::/64"); !ok {
		t.Fatal("the store has no block: the stage would not refuse")
	}
	if code, _, b := add(`{"kind":"principal","subject":"jwt:mallory","duration":"1h"}`); code != 201 {
		t.Fatalf("POST principal: %d %s", code, b)
	}
	// A shorter block keeps the longer one in force, and says so.
	code, _, b = add(`{"kind":"principal","subject":"jwt:mallory","duration":"1m"}`)
	if got := decode[BlockView](t, b); code != 201 || !got.Until.Equal(testNow.Add(time.Hour)) {
		t.Errorf("shorter block: %d until %v, want the 1h block kept", code, got.Until)
	}

	code, _, b = do(t, ts, req{path: "/api/v1/blocks", token: readToken})
	list := decode[struct {
		Blocks    []BlockView
		Truncated bool
	}](t, b)
	if code != 200 || len(list.Blocks) != 2 || list.Truncated {
		t.Fatalf("list: %d %s", code, b)
	}
	if list.Blocks[0].Subject != "jwt:mallory" || list.Blocks[1].Subject != "2001:db8:7:7::/64" {
		t.Errorf("list order %+v, want latest end first", list.Blocks)
	}

	// DELETE by the Location (escaped slash) lifts the block.
	if code, _, b := do(t, ts, req{method: "DELETE", path: loc, token: writeToken}); code != 204 || len(b) != 0 {
		t.Fatalf("DELETE %s: %d %s", loc, code, b)
	}
	if ok, _, _ := store.Blocked(context.Background(), "ip", "2001:db8:7:7::/64"); ok {
		t.Error("still blocked after DELETE")
	}
	code, h, b = do(t, ts, req{method: "DELETE", path: loc, token: writeToken})
	if code != 404 || reasonOf(t, h, b) != ReasonNotFound {
		t.Errorf("second DELETE: %d %s", code, b)
	}
	// Principals are escaped as any segment.
	if code, _, b := do(t, ts, req{method: "DELETE", path: "/api/v1/blocks/principal/" + url.PathEscape("jwt:mallory"), token: writeToken}); code != 204 {
		t.Fatalf("DELETE principal: %d %s", code, b)
	}
	_, _, b = do(t, ts, req{path: "/api/v1/blocks", token: readToken})
	if !strings.Contains(string(b), `"blocks":[]`) {
		t.Errorf("list after deletes: %s", b)
	}

	var actions []string
	for _, r := range al.all() {
		if r.actor != "ops" {
			t.Errorf("audit %+v: actor %q, want ops", r, r.actor)
		}
		actions = append(actions, fmt.Sprintf("%s %v", r.action, r.err == nil))
	}
	want := []string{"block_add true", "block_add true", "block_add true", "block_remove true", "block_remove false", "block_remove true"}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Errorf("audit %v, want %v", actions, want)
	}
	if recs := al.all(); !strings.Contains(recs[0].msg, "ip 2001:db8:7:7::/64 blocked until 2026-11-21T12:15:00Z") {
		t.Errorf("audit message %q", recs[0].msg)
	}
}

func TestBlockIPv6PrefixConfigured(t *testing.T) {
	store := newBlocks()
	_, ts := start(t, testAdmin(), Deps{Blocks: store, BlockIPv6Prefix: 48})
	code, _, b := do(t, ts, req{method: "POST", path: "/api/v1/blocks", token: writeToken, ctype: "application/json",
		body: `{"kind":"ip","subject":"2001:db8:7:7::1","duration":"15m"}`})
	if got := decode[BlockView](t, b); code != 201 || got.Subject != "2001:db8:7::/48" {
		t.Errorf("%d %s, want the /48", code, b)
	}
	code, _, _ = do(t, ts, req{method: "POST", path: "/api/v1/blocks", token: writeToken, ctype: "application/json",
		body: `{"kind":"ip","subject":"2001:db8:7:7::/64","duration":"15m"}`})
	if code != 400 {
		t.Errorf("a /64 with ipv6_prefix 48: %d, want 400", code)
	}
	// Another address of the same /48 names the same block.
	if code, _, b := do(t, ts, req{method: "DELETE", path: "/api/v1/blocks/ip/2001:db8:7:ffff::99", token: writeToken}); code != 204 {
		t.Errorf("DELETE by another address of the /48: %d %s", code, b)
	}
	if ok, _, _ := store.Blocked(context.Background(), "ip", "2001:db8:7::/48"); ok {
		t.Error("still blocked")
	}
}

func TestBlockRequestsRefused(t *testing.T) {
	var al auditLog
	store := newBlocks()
	if err := store.Block(context.Background(), "ip", "192.0.2.1", testNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	_, ts := start(t, testAdmin(), Deps{Blocks: store, Alerts: func(int) []anomaly.Alert { return nil }, Audit: al.fn})
	good := `{"kind":"ip","subject":"192.0.2.9","duration":"15m"}`
	tests := []struct {
		desc                      string
		method, path, token, body string
		ctype                     string
		header                    map[string]string
		status                    int
		reason                    string
	}{
		{"no token on GET blocks", "GET", "/api/v1/blocks", "", "", "", nil, 401, ReasonUnauthenticated},
		{"no token on GET alerts", "GET", "/api/v1/alerts", "", "", "", nil, 401, ReasonUnauthenticated},
		{"read token on POST", "POST", "/api/v1/blocks", readToken, good, "application/json", nil, 403, ReasonForbidden},
		{"read token on DELETE", "DELETE", "/api/v1/blocks/ip/192.0.2.1", readToken, "", "", nil, 403, ReasonForbidden},
		{"wrong token on DELETE", "DELETE", "/api/v1/blocks/ip/192.0.2.1", "nope", "", "", nil, 401, ReasonUnauthenticated},
		{"foreign Host on GET blocks", "GET", "/api/v1/blocks", readToken, "", "", map[string]string{"Host": "evil.example"}, 403, ReasonHostNotAllowed},
		{"foreign Host on GET alerts", "GET", "/api/v1/alerts", readToken, "", "", map[string]string{"Host": "evil.example"}, 403, ReasonHostNotAllowed},
		{"foreign Host on POST", "POST", "/api/v1/blocks", writeToken, good, "application/json", map[string]string{"Host": "evil.example"}, 403, ReasonHostNotAllowed},
		{"foreign Origin on POST", "POST", "/api/v1/blocks", writeToken, good, "application/json", map[string]string{"Origin": "http://evil.example"}, 403, ReasonOriginNotAllowed},
		{"foreign Origin on DELETE", "DELETE", "/api/v1/blocks/ip/192.0.2.1", writeToken, "", "", map[string]string{"Origin": "http://evil.example"}, 403, ReasonOriginNotAllowed},
		{"cross-site DELETE", "DELETE", "/api/v1/blocks/ip/192.0.2.1", writeToken, "", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, ReasonOriginNotAllowed},
		{"unknown kind", "POST", "/api/v1/blocks", writeToken, `{"kind":"user","subject":"alice","duration":"1m"}`, "application/json", nil, 400, ReasonBadRequest},
		{"IPv4 prefix", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.0/24","duration":"1m"}`, "application/json", nil, 400, ReasonBadRequest},
		{"IPv6 prefix of another length", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"2001:db8::/48","duration":"1m"}`, "application/json", nil, 400, ReasonBadRequest},
		{"not an address", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"example.com","duration":"1m"}`, "application/json", nil, 400, ReasonBadRequest},
		{"principal without authenticator", "POST", "/api/v1/blocks", writeToken, `{"kind":"principal","subject":"alice","duration":"1m"}`, "application/json", nil, 400, ReasonBadRequest},
		{"missing duration", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.9"}`, "application/json", nil, 400, ReasonBadRequest},
		{"duration too short", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.9","duration":"500ms"}`, "application/json", nil, 400, ReasonBadRequest},
		{"duration too long", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.9","duration":"721h"}`, "application/json", nil, 400, ReasonBadRequest},
		{"negative duration", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.9","duration":"-1h"}`, "application/json", nil, 400, ReasonBadRequest},
		{"unknown field", "POST", "/api/v1/blocks", writeToken, `{"kind":"ip","subject":"192.0.2.9","duration":"1m","reason":"x"}`, "application/json", nil, 400, ReasonBadRequest},
		{"not JSON", "POST", "/api/v1/blocks", writeToken, good, "text/plain", nil, 415, ReasonUnsupportedMediaType},
		{"empty body", "POST", "/api/v1/blocks", writeToken, "", "application/json", nil, 400, ReasonBadRequest},
		{"DELETE unknown kind", "DELETE", "/api/v1/blocks/user/alice", writeToken, "", "", nil, 400, ReasonBadRequest},
		{"DELETE bad address", "DELETE", "/api/v1/blocks/ip/300.1.1.1", writeToken, "", "", nil, 400, ReasonBadRequest},
		{"DELETE unescaped slash", "DELETE", "/api/v1/blocks/ip/2001:db8::/64", writeToken, "", "", nil, 404, ReasonNotFound},
		{"DELETE not blocked", "DELETE", "/api/v1/blocks/ip/192.0.2.2", writeToken, "", "", nil, 404, ReasonNotFound},
		{"PUT blocks", "PUT", "/api/v1/blocks", writeToken, good, "application/json", nil, 405, ReasonMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			code, h, b := do(t, ts, req{method: tt.method, path: tt.path, token: tt.token, body: tt.body, ctype: tt.ctype, header: tt.header})
			if code != tt.status || reasonOf(t, h, b) != tt.reason {
				t.Errorf("%d %s, want %d %s", code, b, tt.status, tt.reason)
			}
		})
	}
	if ok, _, _ := store.Blocked(context.Background(), "ip", "192.0.2.1"); !ok {
		t.Error("a refused request lifted the block")
	}
	if ok, _, _ := store.Blocked(context.Background(), "ip", "192.0.2.9"); ok {
		t.Error("a refused request added a block")
	}
	for _, r := range al.all() {
		if r.action == "block_add" || (r.action == "block_remove" && r.err == nil) {
			t.Errorf("refused request audited as done: %+v", r)
		}
	}
}

// failingBlocks is a block store that fails with err.
type failingBlocks struct{ err error }

func (f failingBlocks) Block(context.Context, string, string, time.Time) error { return f.err }
func (f failingBlocks) Blocked(context.Context, string, string) (bool, time.Time, error) {
	return false, time.Time{}, f.err
}
func (f failingBlocks) List(context.Context) ([]anomaly.Block, error) { return nil, f.err }
func (f failingBlocks) Unblock(context.Context, string, string) error { return f.err }

func TestBlockStoreFailures(t *testing.T) {
	tests := []struct {
		desc   string
		err    error
		status int
		reason string
	}{
		{"store down", errors.New("dial tcp 127.0.0.1:6379: connection refused"), 500, ReasonInternalError},
		{"no blocks in the serving configuration", fmt.Errorf("anomaly blocks: %w", ErrNotAvailable), 501, ReasonNotAvailable},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			var al auditLog
			_, ts := start(t, testAdmin(), Deps{Blocks: failingBlocks{tt.err}, Audit: al.fn})
			for _, rq := range []req{
				{path: "/api/v1/blocks", token: readToken},
				{method: "POST", path: "/api/v1/blocks", token: writeToken, ctype: "application/json", body: `{"kind":"ip","subject":"192.0.2.9","duration":"1m"}`},
				{method: "DELETE", path: "/api/v1/blocks/ip/192.0.2.9", token: writeToken},
			} {
				code, h, b := do(t, ts, rq)
				if code != tt.status || reasonOf(t, h, b) != tt.reason {
					t.Errorf("%s %s: %d %s, want %d %s", rq.method, rq.path, code, b, tt.status, tt.reason)
				}
				if strings.Contains(string(b), "6379") {
					t.Errorf("the store's error reached the client: %s", b)
				}
			}
			recs := al.all()
			if len(recs) != 2 || recs[0].action != "block_add" || recs[1].action != "block_remove" || recs[0].err == nil || recs[1].err == nil {
				t.Errorf("audit %+v, want failed block_add and block_remove", recs)
			}
		})
	}
}

func TestAnomalyEndpointsNotWired(t *testing.T) {
	_, ts := start(t, testAdmin(), Deps{})
	for _, rq := range []req{
		{path: "/api/v1/alerts", token: readToken},
		{path: "/api/v1/blocks", token: readToken},
		{method: "POST", path: "/api/v1/blocks", token: writeToken, ctype: "application/json", body: `{"kind":"ip","subject":"192.0.2.9","duration":"1m"}`},
		{method: "DELETE", path: "/api/v1/blocks/ip/192.0.2.9", token: writeToken},
	} {
		code, h, b := do(t, ts, rq)
		if code != 501 || reasonOf(t, h, b) != ReasonNotAvailable {
			t.Errorf("%s %s: %d %s, want 501 %s", rq.method, rq.path, code, b, ReasonNotAvailable)
		}
	}
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		desc, pattern, path string
		ok                  bool
		params              map[string]string
	}{
		{"literal", "/api/v1/blocks", "/api/v1/blocks", true, nil},
		{"literal differs", "/api/v1/blocks", "/api/v1/block", false, nil},
		{"escaped literal does not match", "/api/v1/blocks", "/api/v1/%62locks", false, nil},
		{"one param", "/api/v1/keys/{id}", "/api/v1/keys/AbCd1234", true, map[string]string{"id": "AbCd1234"}},
		{"param then literal", "/api/v1/keys/{id}/revoke", "/api/v1/keys/AbCd1234/revoke", true, map[string]string{"id": "AbCd1234"}},
		{"two params, escaped slash", "/api/v1/blocks/{kind}/{subject}", "/api/v1/blocks/ip/2001:db8::%2F64", true, map[string]string{"kind": "ip", "subject": "2001:db8::/64"}},
		{"escaped colon and space", "/api/v1/blocks/{kind}/{subject}", "/api/v1/blocks/principal/jwt%3Aa%20b", true, map[string]string{"kind": "principal", "subject": "jwt:a b"}},
		{"raw slash is another segment", "/api/v1/blocks/{kind}/{subject}", "/api/v1/blocks/ip/2001:db8::/64", false, nil},
		{"empty param", "/api/v1/keys/{id}", "/api/v1/keys/", false, nil},
		{"bad escape", "/api/v1/keys/{id}", "/api/v1/keys/%zz", false, nil},
		{"trailing slash", "/api/v1/keys/{id}", "/api/v1/keys/a/", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			params, ok := matchPath(tt.pattern, tt.path)
			if ok != tt.ok || fmt.Sprint(params) != fmt.Sprint(tt.params) {
				t.Errorf("got %v %v, want %v %v", params, ok, tt.params, tt.ok)
			}
		})
	}
}

// FuzzMatchPath feeds arbitrary request paths to the router's matcher: it
// never panics, and a match yields non-empty parameters that escape back
// to a path the pattern matches again.
func FuzzMatchPath(f *testing.F) {
	for _, p := range []string{"/api/v1/blocks/ip/1.2.3.4", "/api/v1/blocks/ip/2001:db8::%2F64", "/api/v1/blocks//x", "/api/v1/blocks/%", "/ui/app.js"} {
		f.Add(p)
	}
	patterns := []string{"/api/v1/blocks/{kind}/{subject}", "/api/v1/keys/{id}/revoke", "/ui/{id}"}
	f.Fuzz(func(t *testing.T, path string) {
		for _, pat := range patterns {
			params, ok := matchPath(pat, path)
			if !ok {
				continue
			}
			again := pat
			for k, v := range params {
				if v == "" {
					t.Fatalf("%q matched %q with an empty %s", path, pat, k)
				}
				again = strings.Replace(again, "{"+k+"}", url.PathEscape(v), 1)
			}
			if p2, ok := matchPath(pat, again); !ok || fmt.Sprint(p2) != fmt.Sprint(params) {
				t.Fatalf("%q -> %v -> %q does not match again", path, params, again)
			}
		}
	})
}
