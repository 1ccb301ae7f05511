package ratelimit

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

func exchange(ip string, header ...string) *gateway.Exchange {
	r := httptest.NewRequest("GET", "/x", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return &gateway.Exchange{Request: r, ClientIP: netip.MustParseAddr(ip), Route: &gateway.Route{Name: "r"}}
}

func TestStageRefusesOverTheLimit(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	st, err := NewStage([]Rule{{Name: "per-ip", Limit: Limit{Rate: 2, Period: time.Hour, Burst: 2}, Key: KeyClientIP, IPv6Prefix: 64, Headers: true, Store: mem}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := st.ProcessRequest(context.Background(), exchange("192.0.2.1")); err != nil {
			t.Fatalf("request %d refused: %v", i+1, err)
		}
	}
	ex := exchange("192.0.2.1")
	err = st.ProcessRequest(context.Background(), ex)
	var rej *gateway.Reject
	if !errors.As(err, &rej) || rej.Status != 429 || rej.ReasonID != ReasonRateLimited {
		t.Fatalf("third request: %v, want 429 rate_limited", err)
	}
	if ra := rej.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	if got := rej.Header.Get("RateLimit-Policy"); got != `"per-ip";q=2;w=3600` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if got := rej.Header.Get("RateLimit"); !strings.HasPrefix(got, `"per-ip";r=0;t=`) {
		t.Errorf("RateLimit %q", got)
	}
	if err := st.ProcessRequest(context.Background(), exchange("192.0.2.2")); err != nil {
		t.Errorf("another client was refused: %v", err)
	}
}

func TestStageKeys(t *testing.T) {
	tests := []struct {
		desc string
		rule Rule
		a, b *gateway.Exchange
		same bool
	}{
		{desc: "IPv6 clients in one /64 share", rule: Rule{Key: KeyClientIP, IPv6Prefix: 64},
			a: exchange("2001:db8:1:2::1"), b: exchange("2001:db8:1:2:ffff::9"), same: true},
		{desc: "IPv6 clients in different /64s do not", rule: Rule{Key: KeyClientIP, IPv6Prefix: 64},
			a: exchange("2001:db8:1:2::1"), b: exchange("2001:db8:1:3::1")},
		{desc: "IPv4-mapped is IPv4", rule: Rule{Key: KeyClientIP, IPv6Prefix: 64},
			a: exchange("::ffff:192.0.2.1"), b: exchange("192.0.2.1"), same: true},
		{desc: "header values", rule: Rule{Key: KeyHeader, Header: "X-Tenant"},
			a: exchange("192.0.2.1", "X-Tenant", "a"), b: exchange("192.0.2.2", "X-Tenant", "b")},
		{desc: "missing header shares one counter", rule: Rule{Key: KeyHeader, Header: "X-Tenant"},
			a: exchange("192.0.2.1"), b: exchange("192.0.2.2"), same: true},
		{desc: "global", rule: Rule{Key: KeyGlobal}, a: exchange("192.0.2.1"), b: exchange("198.51.100.1"), same: true},
		{desc: "one principal from two addresses", rule: Rule{Key: KeyPrincipal, IPv6Prefix: 64},
			a: withPrincipal(exchange("192.0.2.1"), "sso", "alice", ""), b: withPrincipal(exchange("198.51.100.1"), "sso", "alice", ""), same: true},
		{desc: "the same subject from two authenticators is not one principal", rule: Rule{Key: KeyPrincipal, IPv6Prefix: 64},
			a: withPrincipal(exchange("192.0.2.1"), "sso", "alice", ""), b: withPrincipal(exchange("192.0.2.1"), "staff", "alice", "")},
		{desc: "unauthenticated requests count by address", rule: Rule{Key: KeyPrincipal, IPv6Prefix: 64},
			a: exchange("192.0.2.1"), b: exchange("192.0.2.2")},
		{desc: "two keys of one owner are two counters", rule: Rule{Key: KeyAPIKey, IPv6Prefix: 64},
			a: withPrincipal(exchange("192.0.2.1"), "keys", "team", "k1"), b: withPrincipal(exchange("192.0.2.1"), "keys", "team", "k2")},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			tt.rule.Name = "l"
			ka, kb := tt.rule.key(tt.a), tt.rule.key(tt.b)
			if (ka == kb) != tt.same {
				t.Errorf("keys %q and %q: same %v, want %v", ka, kb, ka == kb, tt.same)
			}
		})
	}
	long := Rule{Name: "l", Key: KeyHeader, Header: "X-Tenant"}
	if k := long.key(exchange("192.0.2.1", "X-Tenant", strings.Repeat("z", 5000))); len(k) > 2+maxKeyValue+2 {
		t.Errorf("a long header value made a %d-byte key", len(k))
	}
}

// failing is a Store that cannot decide, as a guarded Redis store reports a
// fail_closed limit it could not reach.
type failing struct{ err error }

func (f failing) Allow(_ context.Context, _ time.Time, checks []Check, results []Result) (bool, error) {
	for i := range checks {
		results[i] = Result{RetryAfter: time.Second}
	}
	return false, f.err
}

func TestStageFailsClosed(t *testing.T) {
	for _, cause := range []error{ErrUnavailable, errors.New("redis: connection refused")} {
		st, err := NewStage([]Rule{{Name: "shared", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}, Key: KeyGlobal, Store: failing{cause}}})
		if err != nil {
			t.Fatal(err)
		}
		err = st.ProcessRequest(context.Background(), exchange("192.0.2.1"))
		var rej *gateway.Reject
		if !errors.As(err, &rej) || rej.Status != http.StatusServiceUnavailable || rej.ReasonID != ReasonLimiterUnavailable {
			t.Errorf("%v: got %v, want 503 limiter_unavailable", cause, err)
		}
	}
}

func TestStageHeadersOnAllowedResponses(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	st, _ := NewStage([]Rule{
		{Name: "shown", Limit: Limit{Rate: 10, Period: time.Minute, Burst: 5}, Key: KeyGlobal, Headers: true, Store: mem},
		{Name: "quiet", Limit: Limit{Rate: 10, Period: time.Minute, Burst: 5}, Key: KeyGlobal, Store: mem},
	})
	ex := exchange("192.0.2.1")
	if err := st.ProcessRequest(context.Background(), ex); err != nil {
		t.Fatal(err)
	}
	res := &http.Response{StatusCode: 200, Header: http.Header{}}
	st.ProcessResponse(context.Background(), ex, res)
	if got := res.Header.Get("RateLimit"); got != `"shown";r=4;t=6` {
		t.Errorf("RateLimit %q, want only the announced limit", got)
	}
}

func TestNewStageRejectsBadRules(t *testing.T) {
	if _, err := NewStage([]Rule{{Name: "x", Limit: Limit{}, Store: NewMemory(MemoryOptions{SweepInterval: -1})}}); err == nil {
		t.Error("an invalid limit was accepted")
	}
	if st, err := NewStage(nil); st != nil || err != nil {
		t.Error("no rules must give no stage")
	}
}

func withPrincipal(ex *gateway.Exchange, authenticator, subject, keyID string) *gateway.Exchange {
	kind := "jwt"
	if keyID != "" {
		kind = "api_key"
	}
	ex.Principal = &gateway.Principal{Authenticator: authenticator, Subject: subject, KeyID: keyID, Kind: kind}
	return ex
}
