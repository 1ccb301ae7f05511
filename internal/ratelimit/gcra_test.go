package ratelimit

import (
	"testing"
	"time"
)

// TestDecide walks GCRA through a burst, a refusal, and recovery, at exact
// instants.
func TestDecide(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 3} // T = 100ms, tau = 200ms
	ms := int64(time.Millisecond)
	tests := []struct {
		desc      string
		at        int64 // ms
		allowed   bool
		remaining int64
		retry     time.Duration
	}{
		{desc: "first", at: 0, allowed: true, remaining: 2},
		{desc: "burst 2", at: 0, allowed: true, remaining: 1},
		{desc: "burst 3", at: 0, allowed: true, remaining: 0},
		{desc: "over the burst", at: 0, allowed: false, remaining: 0, retry: 100 * time.Millisecond},
		{desc: "still early", at: 50, allowed: false, remaining: 0, retry: 50 * time.Millisecond},
		{desc: "one emission later", at: 100, allowed: true, remaining: 0},
		{desc: "long idle refills to the burst", at: 10_000, allowed: true, remaining: 2},
	}
	var tat int64
	for _, tt := range tests {
		res, next := decide(tat, tt.at*ms, l, 1)
		if res.Allowed != tt.allowed || res.Remaining != tt.remaining || res.RetryAfter != tt.retry {
			t.Fatalf("%s: got %+v, want allowed %v remaining %d retry %v", tt.desc, res, tt.allowed, tt.remaining, tt.retry)
		}
		if !res.Allowed && next != tat {
			t.Fatalf("%s: a refusal changed the TAT", tt.desc)
		}
		tat = next
	}
}

func TestDecideCost(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 5}
	res, tat := decide(0, 0, l, 5)
	if !res.Allowed || res.Remaining != 0 {
		t.Fatalf("cost 5 within burst 5: %+v", res)
	}
	if res, _ := decide(tat, 0, l, 1); res.Allowed {
		t.Fatal("admitted past the burst")
	}
	if res, _ := decide(0, 0, l, 6); res.Allowed {
		t.Fatal("admitted a cost larger than the burst")
	}
	if res, next := decide(0, 0, l, 1<<62); res.Allowed || next != 0 {
		t.Fatal("a huge cost overflowed into an admission")
	}
}

func TestLimitValidate(t *testing.T) {
	tests := []struct {
		desc string
		l    Limit
		ok   bool
	}{
		{desc: "ok", l: Limit{Rate: 100, Period: time.Minute, Burst: 10}, ok: true},
		{desc: "zero rate", l: Limit{Period: time.Second, Burst: 1}},
		{desc: "zero burst", l: Limit{Rate: 1, Period: time.Second}},
		{desc: "tiny period", l: Limit{Rate: 1, Period: time.Microsecond, Burst: 1}},
		{desc: "too fine", l: Limit{Rate: 2_000_000_000, Period: time.Second, Burst: 1}},
		{desc: "burst spanning centuries", l: Limit{Rate: 1, Period: 24 * time.Hour, Burst: 1_000_000}},
	}
	for _, tt := range tests {
		if err := tt.l.Validate(); (err == nil) != tt.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tt.desc, err, tt.ok)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []Policy{FailClosed, FailOpen, Local} {
		if got, err := ParsePolicy(p.String()); err != nil || got != p {
			t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	if _, err := ParsePolicy("retry"); err == nil {
		t.Error("an unknown policy was accepted")
	}
}

// TestDecideThrottle checks that a request that fits within the maximum
// delay is admitted with the delay to hold it, that held requests queue at
// the sustained rate, and that one beyond the delay is refused uncharged.
func TestDecideThrottle(t *testing.T) {
	l := Limit{Rate: 10, Period: time.Second, Burst: 2} // T = 100ms, tau = 100ms
	ms := int64(time.Millisecond)
	maxDelay := 250 * ms
	tests := []struct {
		desc    string
		at      int64 // ms
		allowed bool
		delay   time.Duration
		retry   time.Duration
	}{
		{desc: "burst 1", at: 0, allowed: true},
		{desc: "burst 2", at: 0, allowed: true},
		{desc: "held one emission", at: 0, allowed: true, delay: 100 * time.Millisecond},
		{desc: "held two emissions", at: 0, allowed: true, delay: 200 * time.Millisecond},
		{desc: "three emissions is past the max delay", at: 0, allowed: false, retry: 300 * time.Millisecond},
		{desc: "later, the queue moved", at: 100, allowed: true, delay: 200 * time.Millisecond},
	}
	var tat int64
	for _, tt := range tests {
		res, next := decideDelay(tat, tt.at*ms, l, 1, maxDelay)
		if res.Allowed != tt.allowed || res.Delay != tt.delay || res.RetryAfter != tt.retry {
			t.Fatalf("%s: got %+v, want allowed %v delay %v retry %v", tt.desc, res, tt.allowed, tt.delay, tt.retry)
		}
		if !res.Allowed && next != tat {
			t.Fatalf("%s: a refusal changed the TAT", tt.desc)
		}
		tat = next
	}
}
