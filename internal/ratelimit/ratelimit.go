// Package ratelimit decides whether requests are within their rate limits,
// with the generic cell rate algorithm (GCRA), in memory or shared across
// gateway instances through Redis.
//
// GCRA keeps one timestamp per key: the theoretical arrival time (TAT) of the
// next request at the sustained rate. A request of cost n is admitted when
// TAT - now <= tau, where T = Period/Rate is the emission interval and
// tau = (Burst-1)*T the burst tolerance; admitting it moves TAT to
// max(TAT, now) + n*T. A rejected request changes nothing, so rejected
// traffic does not eat into the allowance. The memory and Redis backends
// implement the same arithmetic on integer nanoseconds, so a sequence of
// requests at the same instants gets the same decisions from both.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Limit is a rate limit: Rate requests per Period sustained, and up to Burst
// at once. A zero Limit is not valid; see Validate.
type Limit struct {
	Rate   int64         // requests per Period, at least 1
	Period time.Duration // at least 1ms
	Burst  int64         // requests admitted at once, at least 1
}

// Validate reports what is wrong with l, if anything.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1:
		return errors.New("rate must be at least 1")
	case l.Period < time.Millisecond:
		return errors.New("period must be at least 1ms")
	case l.Burst < 1:
		return errors.New("burst must be at least 1")
	case l.Period/time.Duration(l.Rate) < 1:
		return fmt.Errorf("rate %d per %s is finer than 1ns per request", l.Rate, l.Period)
	case l.Burst > maxSpan/int64(l.Emission()):
		return fmt.Errorf("burst %d at %d per %s spans more than 50 years", l.Burst, l.Rate, l.Period)
	}
	return nil
}

// maxSpan bounds how far ahead of now a TAT may run, so that the int64
// nanosecond arithmetic of decide cannot overflow: Validate refuses a limit
// whose full burst takes longer to refill, and decide refuses a cost above
// the burst without computing it. Fifty years is far beyond any sensible
// limit, and now + 2*maxSpan stays within int64 until about the year 2160.
const maxSpan = int64(50 * 365 * 24 * time.Hour)

// Emission returns T, the time one request uses up at the sustained rate.
func (l Limit) Emission() time.Duration { return l.Period / time.Duration(l.Rate) }

// Tolerance returns tau, how far ahead of now the TAT may run: (Burst-1)*T.
func (l Limit) Tolerance() time.Duration { return time.Duration(l.Burst-1) * l.Emission() }

// Policy says what a limit does when its shared store cannot decide (Redis
// unreachable, or slower than the budget).
type Policy uint8

// The policies. The zero value is FailClosed: a security stage fails closed
// unless told otherwise.
const (
	FailClosed Policy = iota // refuse: 503 limiter_unavailable
	FailOpen                 // admit, and say so in logs
	Local                    // decide in memory on this instance, with LocalShare of the limit
)

// String returns the configuration name of p.
func (p Policy) String() string {
	switch p {
	case FailOpen:
		return "fail_open"
	case Local:
		return "local"
	}
	return "fail_closed"
}

// ParsePolicy returns the Policy named name (as String spells it).
func ParsePolicy(name string) (Policy, error) {
	for p := FailClosed; p <= Local; p++ {
		if p.String() == name {
			return p, nil
		}
	}
	return FailClosed, fmt.Errorf("unknown policy %q: want fail_closed, fail_open or local", name)
}

// ErrUnavailable is returned (wrapped) by a store that could not decide for a
// limit whose policy is FailClosed.
var ErrUnavailable = errors.New("rate limiter unavailable")

// Check is one limit to apply to one request.
type Check struct {
	Key   string // the limited subject, already namespaced by the caller (limit name + key value)
	Kind  Kind   // KindRate (Limit) or KindQuota (Quota, WindowEnd)
	Limit Limit
	Cost  int64 // requests this one counts as; 0 means 1

	// Quota and WindowEnd describe a KindQuota check: at most Quota
	// requests in the window that ends at WindowEnd (Unix nanoseconds).
	// The Key must name the window (see Quota.Window).
	Quota     int64
	WindowEnd int64

	OnUnavailable Policy  // what to do when the shared store cannot decide
	LocalShare    float64 // with Local: the share of Limit this instance applies alone, in (0, 1]

	// MaxDelay throttles instead of refusing: a request that would fit
	// within MaxDelay is admitted and charged now, with Result.Delay saying
	// how long the caller must hold it before forwarding. 0 refuses at once.
	MaxDelay time.Duration
}

// Result is the state of one limit after a decision.
type Result struct {
	Allowed    bool
	Remaining  int64         // requests that would still be admitted right now
	RetryAfter time.Duration // if not allowed: how long until this request would be; else 0
	ResetAfter time.Duration // how long until the limit is back to its full burst
	Delay      time.Duration // if allowed by throttling: how long to hold the request first
}

// Store applies several limits to one request at once: the request is
// admitted only if every limit admits it, and then every limit is charged;
// if any limit refuses, none is charged. results must have len(checks)
// entries; Allow fills every one (for a refused request, the refusing
// limits have Allowed false and the others show their state without the
// charge). now is the decision time; stores that use a shared clock may
// ignore it (see RedisOptions.ServerTime).
//
// Allow returns an error only when the store cannot decide (a Redis
// failure); it never returns an error for a refusal. A Store is safe for
// concurrent use.
type Store interface {
	Allow(ctx context.Context, now time.Time, checks []Check, results []Result) (allowed bool, err error)
}

// decide is GCRA for one key: given the stored TAT (0 for a new key) it
// returns the result and the new TAT (unchanged when refused). All
// arithmetic is in int64 nanoseconds; the Redis script mirrors it.
func decide(tat, now int64, l Limit, cost int64) (Result, int64) {
	return decideDelay(tat, now, l, cost, 0)
}

// decideCheck is decide for a Check of either kind, throttling a rate
// limit by its MaxDelay.
func decideCheck(tat, now int64, c *Check) (Result, int64) {
	if c.Kind == KindQuota {
		return decideQuota(tat, now, c)
	}
	return decideDelay(tat, now, c.Limit, c.Cost, int64(c.MaxDelay))
}

// decideDelay is decide with throttling: a request that fits within
// maxDelay of now is admitted and charged at once, as if it arrived at its
// allowAt, and Result.Delay says how long to hold it. Its TAT then runs up
// to maxDelay further ahead than the burst tolerance, so the requests that
// follow wait their turn behind it: held requests are served at the
// sustained rate, in order, and never more than maxDelay late.
func decideDelay(tat, now int64, l Limit, cost int64, maxDelay int64) (Result, int64) {
	if cost <= 0 {
		cost = 1
	}
	t := int64(l.Emission())
	tau := int64(l.Tolerance())
	if tat < now {
		tat = now
	}
	if cost > maxSpan/t {
		// Never admissible (Validate keeps Burst*t within maxSpan), and
		// cost*t would overflow: refuse without computing it.
		return Result{Remaining: remaining(tat, now, t, tau), RetryAfter: time.Duration(maxSpan), ResetAfter: time.Duration(tat - now)}, tat
	}
	newTAT := tat + cost*t
	allowAt := newTAT - t - tau // the earliest instant this request fits
	if now < allowAt && allowAt-now <= maxDelay {
		return Result{
			Allowed:    true,
			Delay:      time.Duration(allowAt - now),
			ResetAfter: time.Duration(newTAT - now),
		}, newTAT
	}
	if now < allowAt {
		return Result{
			Allowed:    false,
			Remaining:  remaining(tat, now, t, tau),
			RetryAfter: time.Duration(allowAt - now),
			ResetAfter: time.Duration(tat - now),
		}, tat
	}
	return Result{
		Allowed:    true,
		Remaining:  remaining(newTAT, now, t, tau),
		ResetAfter: time.Duration(newTAT - now),
	}, newTAT
}

// remaining is how many requests of cost 1 still fit at now with the given TAT.
func remaining(tat, now, t, tau int64) int64 {
	room := now + tau + t - tat // time budget left
	if room <= 0 {
		return 0
	}
	return room / t
}

// checkSpan reports whether c can be decided without overflow: its Limit is
// valid (which bounds the full refill by maxSpan) and its cost does not span
// more than maxSpan either. Stores refuse such checks with an error.
func checkSpan(c Check) error {
	if c.Kind == KindQuota {
		return checkQuota(c)
	}
	if err := c.Limit.Validate(); err != nil {
		return err
	}
	if c.Cost > maxSpan/int64(c.Limit.Emission()) {
		return fmt.Errorf("cost %d takes more than 50 years to refill", c.Cost)
	}
	if c.MaxDelay < 0 || int64(c.MaxDelay) > maxSpan {
		return fmt.Errorf("max delay %s out of range", c.MaxDelay)
	}
	return nil
}

// unchargedCheck is the Result of a check that would have admitted a
// request that another check refused: its state without the charge.
func unchargedCheck(tat, now int64, c *Check) Result {
	if c.Kind == KindQuota {
		left := max(c.Quota-quotaUsed(tat, c.WindowEnd), 0)
		return Result{Allowed: true, Remaining: left, ResetAfter: time.Duration(max(c.WindowEnd-now, 0))}
	}
	l := c.Limit
	tat = max(tat, now)
	return Result{
		Allowed:    true,
		Remaining:  remaining(tat, now, int64(l.Emission()), int64(l.Tolerance())),
		ResetAfter: time.Duration(tat - now),
	}
}
