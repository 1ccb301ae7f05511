package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// GuardOptions configures a Guarded store. The zero value gives the defaults.
type GuardOptions struct {
	// Budget is how long a request waits for the remote store; default 50ms.
	Budget time.Duration
	// TripAfter is how many consecutive remote failures open the circuit
	// breaker; default 5.
	TripAfter uint32
	// OpenFor is how long the open breaker skips the remote before it lets
	// one probe through (half-open); default 1s.
	OpenFor time.Duration
	// Log receives fallbacks, at most one record per policy per 10s with the
	// number suppressed since the last, and breaker trips and recoveries.
	// Default slog.Default().
	Log *slog.Logger
	// Synchronous calls the remote on the request's goroutine, trusting it
	// to return when the budget's context deadline passes (a go-redis
	// client with ContextTimeoutEnabled does). Otherwise each call runs on
	// its own goroutine that the guard stops waiting for at the budget,
	// which costs tens of microseconds of CPU per request.
	Synchronous bool
}

// The defaults of GuardOptions.
const (
	defaultGuardBudget    = 50 * time.Millisecond
	defaultGuardTripAfter = 5
	defaultGuardOpenFor   = time.Second
	guardLogEvery         = 10 * time.Second
	guardClosedRetry      = time.Second // RetryAfter of a check refused by FailClosed
)

// GuardStats counts what a Guarded store did since it was made.
type GuardStats struct {
	RemoteErrors   uint64 // remote calls that failed or ran past the budget
	BreakerOpen    uint64 // requests not sent to the remote: breaker open, or half-open with its probe out
	FailClosed     uint64 // checks refused by policy FailClosed
	FailOpen       uint64 // checks admitted by policy FailOpen
	LocalFallbacks uint64 // checks decided by the local store (policy Local)
}

// Guarded is a Store that asks a shared remote store (Redis) and, when the
// remote fails, is slower than the budget, or its circuit breaker is open,
// decides each check by the check's OnUnavailable policy:
//
//   - FailClosed: the check refuses (RetryAfter 1s) and Allow returns an
//     error wrapping ErrUnavailable and the cause, with the results filled;
//   - FailOpen: the check admits (Allowed true, the other fields zero: the
//     state is unknown);
//   - Local: the check goes to the local store with its Rate and Burst scaled
//     by LocalShare (at least 1; Period unchanged). The Local checks of one
//     request go to the local store in one call, all or nothing among them.
//
// The request is admitted only if every check admits. When a FailClosed
// check refuses, the Local checks of the request are not charged and report
// the same refusal.
//
// The remote call runs in its own goroutine and Allow stops waiting for it
// at the budget, whether or not the remote honours its context. A call that
// answers after the budget is ignored; if it charged, that charge stays in
// the remote and the request is decided again by the fallback. After
// TripAfter consecutive failures the breaker opens and no remote call is
// made for OpenFor; then one probe goes through, and shared limiting
// resumes when it succeeds.
//
// A Guarded is safe for concurrent use.
type Guarded struct {
	remote, local Store
	budget        time.Duration
	breaker       *gobreaker.TwoStepCircuitBreaker[struct{}]
	log           *slog.Logger
	sync          bool // call the remote on the request goroutine (see GuardOptions.Synchronous)

	remoteErrors, breakerOpen       atomic.Uint64
	failClosed, failOpen, localUsed atomic.Uint64
	logGates                        [Local + 1]guardLogGate // one per Policy
}

// errGuardCallerGone marks a remote call cut short by the caller's own
// context: it says nothing about the remote, so the breaker ignores it.
var errGuardCallerGone = errors.New("caller gave up")

// NewGuarded returns a store that asks remote and falls back to local.
func NewGuarded(remote, local Store, o GuardOptions) *Guarded {
	if o.Budget <= 0 {
		o.Budget = defaultGuardBudget
	}
	if o.TripAfter == 0 {
		o.TripAfter = defaultGuardTripAfter
	}
	if o.OpenFor <= 0 {
		o.OpenFor = defaultGuardOpenFor
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	g := &Guarded{remote: remote, local: local, budget: o.Budget, log: o.Log, sync: o.Synchronous}
	for i := range g.logGates {
		g.logGates[i].last.Store(math.MinInt64)
	}
	g.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "ratelimit-remote",
		MaxRequests: 1,
		Timeout:     o.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.TripAfter },
		IsExcluded:  func(err error) bool { return errors.Is(err, errGuardCallerGone) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				g.log.Warn("rate limit store unreachable, using fallback policies", "breaker", to.String(), "open_for", o.OpenFor)
			case gobreaker.StateClosed:
				g.log.Info("rate limit store reachable again", "breaker", to.String(), "was", from.String())
			}
		},
	})
	return g
}

// Stats returns the counters.
func (g *Guarded) Stats() GuardStats {
	return GuardStats{
		RemoteErrors:   g.remoteErrors.Load(),
		BreakerOpen:    g.breakerOpen.Load(),
		FailClosed:     g.failClosed.Load(),
		FailOpen:       g.failOpen.Load(),
		LocalFallbacks: g.localUsed.Load(),
	}
}

// Allow implements Store. Besides the fallback's ErrUnavailable, it returns
// an error, deciding nothing, when a check fails checkSpan (without
// blaming the remote), and when ctx ends before the remote answers (the
// caller gave up).
func (g *Guarded) Allow(ctx context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	if len(results) != len(checks) {
		return false, fmt.Errorf("guarded rate limit: %d results for %d checks", len(results), len(checks))
	}
	for i := range checks {
		if err := checkSpan(checks[i]); err != nil { // the caller's mistake, not the remote's
			return false, fmt.Errorf("guarded rate limit: check %d: %w", i, err)
		}
	}
	if len(checks) == 0 {
		return true, nil
	}
	done, err := g.breaker.Allow()
	if err != nil {
		g.breakerOpen.Add(1)
		return g.fallback(ctx, now, checks, results, fmt.Errorf("remote rate limit store skipped: %w", err))
	}
	ok, err := g.callRemote(ctx, now, checks, results)
	if err == nil {
		done(nil)
		return ok, nil
	}
	if ctx.Err() != nil {
		done(errGuardCallerGone)
		clear(results)
		return false, fmt.Errorf("checking rate limits: %w", context.Cause(ctx))
	}
	done(err)
	g.remoteErrors.Add(1)
	return g.fallback(ctx, now, checks, results, err)
}

// guardCall is one remote call, with its own copies of the checks and
// results so that a call abandoned at the budget shares nothing with the
// caller.
type guardCall struct {
	checks  []Check
	results []Result
	ok      bool
	err     error
	done    chan struct{}
}

// callRemote asks the remote and waits at most the budget.
func (g *Guarded) callRemote(ctx context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, g.budget)
	defer cancel() // also tells an abandoned call to stop
	if g.sync {
		ok, err := g.remote.Allow(rctx, now, checks, results)
		if err != nil && rctx.Err() != nil && ctx.Err() == nil {
			return false, fmt.Errorf("remote rate limit store: no answer within %v: %w", g.budget, err)
		}
		return ok, err
	}
	c := &guardCall{
		checks:  append([]Check(nil), checks...),
		results: make([]Result, len(checks)),
		done:    make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		c.ok, c.err = g.remote.Allow(rctx, now, c.checks, c.results)
	}()
	select {
	case <-c.done:
	case <-rctx.Done():
		select {
		case <-c.done: // it answered just in time
		default:
			return false, fmt.Errorf("remote rate limit store: no answer within %v: %w", g.budget, context.Cause(rctx))
		}
	}
	if c.err != nil {
		return false, c.err
	}
	copy(results, c.results)
	return c.ok, nil
}

// fallback decides the checks by their policies; cause is why the remote
// could not.
func (g *Guarded) fallback(ctx context.Context, now time.Time, checks []Check, results []Result, cause error) (bool, error) {
	var closed, open, local int
	for i, c := range checks {
		switch c.OnUnavailable {
		case FailOpen:
			results[i] = Result{Allowed: true}
			open++
		case Local:
			results[i] = Result{}
			local++
		default: // FailClosed, and anything unknown
			results[i] = Result{RetryAfter: guardClosedRetry}
			closed++
		}
	}

	var localErr error
	allowed := closed == 0
	if local > 0 && closed > 0 {
		for i, c := range checks {
			if c.OnUnavailable == Local {
				results[i] = Result{RetryAfter: guardClosedRetry}
			}
		}
		local = 0
	}
	if local > 0 {
		lc := make([]Check, 0, local)
		at := make([]int, 0, local)
		for i, c := range checks {
			if c.OnUnavailable == Local {
				lc = append(lc, localCheck(c))
				at = append(at, i)
			}
		}
		lr := make([]Result, local)
		ok, err := g.local.Allow(ctx, now, lc, lr)
		if err != nil {
			localErr = fmt.Errorf("local rate limit store: %w", err)
			for _, i := range at {
				results[i] = Result{RetryAfter: guardClosedRetry}
			}
			allowed = false
		} else {
			for j, i := range at {
				results[i] = lr[j]
			}
			allowed = allowed && ok
		}
	}

	g.failClosed.Add(uint64(closed))
	g.failOpen.Add(uint64(open))
	g.localUsed.Add(uint64(local))
	g.logFallback(now, FailClosed, closed, cause)
	g.logFallback(now, FailOpen, open, cause)
	g.logFallback(now, Local, local, errors.Join(cause, localErr))

	if closed > 0 || localErr != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(cause, localErr))
	}
	return allowed, nil
}

// localCheck is c with its limit cut to LocalShare, for the local store. A
// share outside (0, 1] counts as 1: configuration validation rejects it.
func localCheck(c Check) Check {
	share := c.LocalShare
	if !(share > 0 && share <= 1) {
		share = 1
	}
	if c.Kind == KindQuota {
		c.Quota = max(1, int64(float64(c.Quota)*share))
		return c
	}
	c.Limit.Rate = max(1, int64(float64(c.Limit.Rate)*share))
	c.Limit.Burst = max(1, int64(float64(c.Limit.Burst)*share))
	return c
}

// guardLogGate lets one log record through per guardLogEvery and counts
// the ones it holds back.
type guardLogGate struct {
	last       atomic.Int64 // UnixNano of the last record; MinInt64 for never
	suppressed atomic.Uint64
}

// pass reports whether to log at now, and how many records were held back
// since the last one.
func (l *guardLogGate) pass(now int64) (suppressed uint64, ok bool) {
	last := l.last.Load()
	if last != math.MinInt64 && now-last < int64(guardLogEvery) {
		l.suppressed.Add(1)
		return 0, false
	}
	if !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return 0, false
	}
	return l.suppressed.Swap(0), true
}

// logFallback logs that n checks of one request fell back to policy p.
func (g *Guarded) logFallback(now time.Time, p Policy, n int, cause error) {
	if n == 0 {
		return
	}
	suppressed, ok := g.logGates[p].pass(now.UnixNano())
	if !ok {
		return
	}
	g.log.Warn("rate limit store unavailable, applying fallback policy",
		"policy", p.String(), "checks", n, "suppressed", suppressed, "error", cause)
}

var _ Store = (*Guarded)(nil)
