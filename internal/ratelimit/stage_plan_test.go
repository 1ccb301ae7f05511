package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/gateway"
)

// reasonOf returns the reason of a stage verdict, "" for admitted.
func reasonOf(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var rej *gateway.Reject
	if !errors.As(err, &rej) {
		t.Fatalf("verdict %v is not a Reject", err)
	}
	return rej.ReasonID
}

func TestStageQuota(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	st, err := NewStage([]Rule{
		{Name: "daily", Quota: &Quota{Limit: 2, Period: Day}, Key: KeyPrincipal, Headers: true, Store: mem},
		{Name: "burst", Limit: Limit{Rate: 100, Period: time.Second, Burst: 100}, Key: KeyPrincipal, Store: mem},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 2 {
		if err := st.ProcessRequest(ctx, withPrincipal(exchange("192.0.2.1"), "sso", "alice", "")); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
	ex := withPrincipal(exchange("192.0.2.1"), "sso", "alice", "")
	err = st.ProcessRequest(ctx, ex)
	if got := reasonOf(t, err); got != ReasonQuotaExceeded {
		t.Fatalf("third request: %q, want quota_exceeded", got)
	}
	var rej *gateway.Reject
	errors.As(err, &rej)
	_, _, end := (&Quota{Limit: 2, Period: Day}).Window(time.Now())
	if ra := rej.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q, want the seconds until %v", ra, end)
	}
	if got := rej.Header.Get("RateLimit-Policy"); !strings.HasPrefix(got, `"daily";q=2;w=86400`) {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if got := ex.Limits[1]; got.Name != "burst" || !got.Allowed || got.Remaining != 98 {
		t.Errorf("the rate limit was charged by the refused request: %+v", got)
	}
	if err := st.ProcessRequest(ctx, withPrincipal(exchange("192.0.2.1"), "sso", "bob", "")); err != nil {
		t.Errorf("another principal: %v", err)
	}
}

func TestStagePlans(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	rate := func(name string, n int64) Rule {
		return Rule{Name: name, Limit: Limit{Rate: n, Period: time.Hour, Burst: n}, Key: KeyPrincipal, Store: mem}
	}
	st, err := NewPlanStage([]Rule{rate("route", 100)}, Plans{Rules: map[string][]Rule{
		"free": {rate("free", 1)},
		"pro":  {rate("pro", 3)},
	}, Default: "free", Claim: "plan"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	call := func(subject, plan string) string {
		ex := withPrincipal(exchange("192.0.2.1"), "keys", subject, "")
		switch {
		case subject == "":
			ex.Principal = nil
		case strings.HasPrefix(plan, "claim:"):
			ex.Principal.Claims = map[string]any{"plan": strings.TrimPrefix(plan, "claim:")}
		default:
			ex.Principal.Plan = plan
		}
		return reasonOf(t, st.ProcessRequest(ctx, ex))
	}
	tests := []struct {
		desc, subject, plan, want string
	}{
		{desc: "pro 1", subject: "p", plan: "pro"},
		{desc: "pro 2", subject: "p", plan: "pro"},
		{desc: "pro 3", subject: "p", plan: "pro"},
		{desc: "pro 4 is over the pro plan", subject: "p", plan: "pro", want: ReasonRateLimited},
		{desc: "no plan gets the default plan", subject: "f"},
		{desc: "and its limit", subject: "f", want: ReasonRateLimited},
		{desc: "unknown plan is refused", subject: "x", plan: "gold", want: ReasonPlanUnknown},
		{desc: "a token claim names the plan", subject: "c", plan: "claim:pro"},
		{desc: "pro twice from the claim", subject: "c", plan: "claim:pro"},
		{desc: "an unknown plan from a claim is refused", subject: "c", plan: "claim:gold", want: ReasonPlanUnknown},
		{desc: "public request meets only the route's rules", subject: ""},
		{desc: "public request again", subject: ""},
	}
	for _, tt := range tests {
		if got := call(tt.subject, tt.plan); got != tt.want {
			t.Fatalf("%s: %q, want %q", tt.desc, got, tt.want)
		}
	}
	if _, err := NewPlanStage(nil, Plans{Rules: map[string][]Rule{"pro": {rate("pro", 1)}}, Default: "free"}); err == nil {
		t.Error("a default plan that is not defined was accepted")
	}
}

func TestStageThrottle(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	st, err := NewStage([]Rule{{Name: "smooth", Limit: Limit{Rate: 100, Period: time.Second, Burst: 1}, Key: KeyGlobal,
		MaxDelay: 25 * time.Millisecond, Store: mem}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first := exchange("192.0.2.1")
	if err := st.ProcessRequest(ctx, first); err != nil || first.Limits[0].Delay != 0 {
		t.Fatalf("first: %v, delay %v", err, first.Limits[0].Delay)
	}
	held := exchange("192.0.2.1")
	if err := st.ProcessRequest(ctx, held); err != nil {
		t.Fatalf("second request was refused instead of held: %v", err)
	}
	if d := held.Limits[0].Delay; d <= 0 || d > 25*time.Millisecond {
		t.Fatalf("second request held %v, want (0, 25ms]", d)
	}

	// A client that leaves while held is let go at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	var got error
	for range 3 { // fill the queue until one is held with the cancelled context
		ex := exchange("192.0.2.1")
		if got = st.ProcessRequest(cctx, ex); ex.Limits[0].Delay > 0 || got != nil {
			break
		}
	}
	if reasonOf(t, got) != ReasonRateLimited {
		t.Fatalf("held request of a client that left: %v", got)
	}
}

func TestStageKeyExpr(t *testing.T) {
	mem := NewMemory(MemoryOptions{SweepInterval: -1})
	defer mem.Close()
	tenant := func(ex *gateway.Exchange) (string, error) {
		v := ex.Request.Header.Get("X-Tenant")
		if v == "boom" {
			return "", errors.New("no such key")
		}
		return v, nil
	}
	st, err := NewStage([]Rule{{Name: "tenant", Limit: Limit{Rate: 1, Period: time.Hour, Burst: 1}, Key: KeyExpr, Expr: tenant, Store: mem}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		desc, tenant, want string
	}{
		{desc: "tenant a", tenant: "a"},
		{desc: "tenant a again", tenant: "a", want: ReasonRateLimited},
		{desc: "tenant b has its own counter", tenant: "b"},
		{desc: "a failing expression counts in a shared counter", tenant: "boom"},
		{desc: "and cannot be used to escape", tenant: "boom", want: ReasonRateLimited},
	}
	for _, tt := range tests {
		if got := reasonOf(t, st.ProcessRequest(ctx, exchange("192.0.2.1", "X-Tenant", tt.tenant))); got != tt.want {
			t.Fatalf("%s: %q, want %q", tt.desc, got, tt.want)
		}
	}
}
