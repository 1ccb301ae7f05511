package anomaly

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/authn"
	"github.com/moat-gateway/moat/internal/authz"
	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/gateway"
	"github.com/moat-gateway/moat/internal/router"
	"github.com/moat-gateway/moat/internal/waf"
)

// TestClassifiedReasonsMatchTheirStages pins the copies of other stages'
// reasons and findings to the originals.
func TestClassifiedReasonsMatchTheirStages(t *testing.T) {
	for _, c := range []struct{ copy, orig string }{
		{reasonCredentialsMissing, authn.ReasonCredentialsMissing},
		{reasonLockedOut, authn.ReasonLockedOut},
		{reasonOwnerMismatch, authz.ReasonOwnerMismatch},
		{reasonWAFBlocked, waf.ReasonBlocked},
		{findingObjectID, authz.FindingObjectID},
		{findingWAFWouldBlock, waf.NoteWouldBlock},
	} {
		if c.copy != c.orig {
			t.Errorf("copy %q differs from %q", c.copy, c.orig)
		}
	}
	p := &gateway.Principal{Authenticator: "jwt", Subject: "alice"}
	ex := &gateway.Exchange{Principal: p}
	if got := ObservationFrom(ex).PrincipalKey; got != authz.PrincipalKey(p) {
		t.Errorf("principal key %q, authz uses %q", got, authz.PrincipalKey(p))
	}
}

func TestObservationFrom(t *testing.T) {
	start := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		desc string
		ex   *gateway.Exchange
		want Observation
	}{
		{
			desc: "owner mismatch on a path parameter",
			ex: &gateway.Exchange{Start: start, ClientIP: netip.MustParseAddr("192.0.2.1"), Status: 403, ReasonID: "owner_mismatch",
				Route:     &gateway.Route{Name: "orders"},
				Principal: &gateway.Principal{Authenticator: "jwt", Subject: "mallory"},
				Params:    []router.Param{{Key: "org", Value: "acme"}, {Key: "id", Value: "42"}},
				Findings:  map[string]any{"object_id": "42"}},
			want: Observation{At: start, ClientIP: netip.MustParseAddr("192.0.2.1"), Status: 403, ReasonID: "owner_mismatch",
				RouteName: "orders", PrincipalKey: "jwt:mallory", ObjectIDs: []string{"acme", "42", "42"}},
		},
		{
			desc: "WAF block",
			ex:   &gateway.Exchange{Start: start, Status: 403, ReasonID: "waf_blocked", Findings: map[string]any{"waf_rule_ids": []int{942100}}},
			want: Observation{At: start, Status: 403, ReasonID: "waf_blocked", WAFHit: true},
		},
		{
			desc: "WAF detect mode would have blocked",
			ex:   &gateway.Exchange{Start: start, Status: 200, Findings: map[string]any{"waf_would_block": true}},
			want: Observation{At: start, Status: 200, WAFHit: true},
		},
		{
			desc: "WAF notice-level matches are no hit",
			ex:   &gateway.Exchange{Start: start, Status: 200, Findings: map[string]any{"waf_rule_ids": []int{920350}, "waf_score": 2}},
			want: Observation{At: start, Status: 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got := ObservationFrom(tt.ex)
			if got.At != tt.want.At || got.ClientIP != tt.want.ClientIP || got.Status != tt.want.Status || got.ReasonID != tt.want.ReasonID ||
				got.RouteName != tt.want.RouteName || got.PrincipalKey != tt.want.PrincipalKey || got.WAFHit != tt.want.WAFHit ||
				!slices.Equal(got.ObjectIDs, tt.want.ObjectIDs) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestAuthenticatedWAFBurstCountsAgainstThePrincipal(t *testing.T) {
	d := New(testConfig(t, nil), Options{})
	for i := range 12 {
		d.Observe(Observation{At: t0.Add(time.Duration(i) * time.Second), ClientIP: ip("198.51.100.200"), PrincipalKey: "jwt:eve",
			Status: 403, ReasonID: "waf_blocked", WAFHit: true})
	}
	if got, want := fired(drain(d)), []string{"waf_burst/principal/jwt:eve/waf_hits"}; !slices.Equal(got, want) {
		t.Errorf("fired %q, want %q", got, want)
	}
}

// BenchmarkObserve measures the request-path cost of one observation with
// an address, a principal and an object ID, over 10000 subjects.
func BenchmarkObserve(b *testing.B) {
	d := New(testConfig(b, nil), Options{})
	obs := make([]Observation, 10000)
	ids := make([]string, len(obs))
	for i := range obs {
		ids[i] = strconv.Itoa(i)
		obs[i] = Observation{ClientIP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), PrincipalKey: "jwt:user-" + ids[i],
			Status: 200, RouteName: "orders", ObjectIDs: []string{ids[i%50]}}
	}
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			o := obs[i%len(obs)]
			o.At = t0.Add(time.Duration(i) * time.Millisecond)
			d.Observe(o)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				o := obs[i%len(obs)]
				o.At = t0.Add(time.Duration(i) * time.Millisecond)
				d.Observe(o)
				i++
			}
		})
	})
	drain(d)
}

// FuzzObserve feeds arbitrary client-controlled values (principal keys,
// object IDs, reasons, addresses, times) through Observe: it must never
// panic and must keep its bounds.
func FuzzObserve(f *testing.F) {
	f.Add("jwt:alice", "42", "owner_mismatch", []byte{192, 0, 2, 1}, int64(0), 403, true)
	f.Add("", "", "", []byte{}, int64(-1), 0, false)
	f.Add("k", "x", "auth_locked_out", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, int64(1<<62), 429, false)
	d := New(testConfig(f, func(c *config.Anomaly) { c.MaxSubjects = 64 }), Options{})
	f.Fuzz(func(t *testing.T, principal, objectID, reason string, addr []byte, at int64, status int, waf bool) {
		a, _ := netip.AddrFromSlice(addr)
		for i := range 3 {
			d.Observe(Observation{At: time.Unix(0, at).Add(time.Duration(i) * time.Second), PrincipalKey: principal, ClientIP: a,
				Status: status, ReasonID: reason, ObjectIDs: []string{objectID, objectID + "x"}, WAFHit: waf})
		}
		drain(d)
		if n := d.Stats().Subjects; n > 64 {
			t.Fatalf("%d subjects, max 64", n)
		}
	})
}
