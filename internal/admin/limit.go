package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/moat-gateway/moat/internal/config"
	"github.com/moat-gateway/moat/internal/ratelimit"
)

// Audit actions of the login limit.
const (
	// ActionLockout is audited once when a client address is locked out.
	ActionLockout = "admin_lockout"
	// ActionLockedOut is audited for each request refused with 429
	// because its client address is locked out.
	ActionLockedOut = "admin_locked_out"
)

// lockoutIPv6Prefix is the length of the IPv6 prefixes failures are
// counted and locked per, as the gateway's brute-force lockout does: one
// host usually holds a whole /64.
const lockoutIPv6Prefix = 64

// sweepEvery is how often, at most, recording a failure also forgets the
// addresses whose counters are back to zero and whose lockout ended.
const sweepEvery = time.Minute

var errLockedOut = errors.New("client address locked out after repeated failed authentications")

// loginLimiter locks client addresses out of the admin API after repeated
// failed authentications (admin.login_limit). Failures are counted per
// address in a GCRA memory store: an address may fail Failures times at
// once and regains one attempt every Per/Failures; the failure that uses
// up the last one sets a lock that lasts Cooldown. The store forgets a key
// once its counter is back to zero or its lock has ended, so memory holds
// only the addresses that failed within the last Per or Cooldown. It is
// safe for concurrent use.
type loginLimiter struct {
	store     *ratelimit.Memory
	failures  ratelimit.Limit
	lock      ratelimit.Limit
	lastSweep atomic.Int64 // Unix nanoseconds of the last sweep

	lockouts, refused atomic.Uint64
}

// newLoginLimiter returns the limiter of a defaulted, validated
// login_limit, or nil when it is disabled. It starts no goroutine:
// recording failures sweeps the store now and then.
func newLoginLimiter(c config.AdminLoginLimit) (*loginLimiter, error) {
	if c.Disabled {
		return nil, nil
	}
	l := &loginLimiter{
		store:    ratelimit.NewMemory(ratelimit.MemoryOptions{Shards: 8, SweepInterval: -1}),
		failures: ratelimit.Limit{Rate: c.Failures, Period: c.Per.D(), Burst: c.Failures},
		lock:     ratelimit.Limit{Rate: 1, Period: c.Cooldown.D(), Burst: 1},
	}
	for _, lim := range []ratelimit.Limit{l.failures, l.lock} {
		if err := lim.Validate(); err != nil {
			return nil, fmt.Errorf("admin.login_limit: %w", err)
		}
	}
	return l, nil
}

// clientKey is the address failures are counted for: an IPv4 address, or
// the /64 of an IPv6 one.
func clientKey(a netip.Addr) string {
	if a.Is6() && !a.Is4In6() {
		if p, err := a.Prefix(lockoutIPv6Prefix); err == nil {
			return p.String()
		}
	}
	return a.Unmap().String()
}

// locked reports whether the client is locked out at now, and for how much
// longer. It reads the lock without setting it: a check whose cost is over
// the burst is never admitted nor charged, and its Remaining is zero only
// while a lock is set.
func (l *loginLimiter) locked(from netip.Addr, now time.Time) (time.Duration, bool) {
	checks := []ratelimit.Check{{Key: "lock:" + clientKey(from), Limit: l.lock, Cost: 2}}
	res := make([]ratelimit.Result, 1)
	if _, err := l.store.Allow(context.Background(), now, checks, res); err != nil {
		return 0, false // cannot happen: the limits were validated
	}
	return res[0].ResetAfter, res[0].Remaining == 0
}

// failed records a failed authentication of the client at now and reports
// whether it started a lockout (true once per lockout, however many
// failures race for it).
func (l *loginLimiter) failed(from netip.Addr, now time.Time) bool {
	l.sweep(now)
	key := clientKey(from)
	res := make([]ratelimit.Result, 1)
	ok, err := l.store.Allow(context.Background(), now, []ratelimit.Check{{Key: "fail:" + key, Limit: l.failures}}, res)
	if err != nil || (ok && res[0].Remaining > 0) {
		return false
	}
	// That was the last attempt left (or one past it, when a lock ended
	// before the counter recovered): lock the address.
	ok, err = l.store.Allow(context.Background(), now, []ratelimit.Check{{Key: "lock:" + key, Limit: l.lock}}, res)
	if err != nil || !ok {
		return false // already locked
	}
	l.lockouts.Add(1)
	return true
}

// sweep forgets the keys that no longer change a decision, at most once
// per sweepEvery.
func (l *loginLimiter) sweep(now time.Time) {
	n, last := now.UnixNano(), l.lastSweep.Load()
	if n-last < int64(sweepEvery) || !l.lastSweep.CompareAndSwap(last, n) {
		return
	}
	l.store.Sweep(now)
}

// AuthStats counts the admin listener's authentication refusals since it
// was created.
type AuthStats struct {
	Failures  uint64 // requests answered 401 admin_unauthenticated
	Lockouts  uint64 // client addresses locked out by admin.login_limit
	LockedOut uint64 // requests answered 429 admin_locked_out
}

// AuthStats returns the counters of refused authentications and lockouts,
// for the metrics.
func (s *Server) AuthStats() AuthStats {
	st := AuthStats{Failures: s.authFailures.Load()}
	if s.limit != nil {
		st.Lockouts, st.LockedOut = s.limit.lockouts.Load(), s.limit.refused.Load()
	}
	return st
}

// refuseLockedOut answers 429 admin_locked_out, with Retry-After and no
// detail, and returns true when the client is locked out. It runs before
// the credential is looked at, so the answer is the same whether the
// credential is valid or not.
func (s *Server) refuseLockedOut(w http.ResponseWriter, r *http.Request, from netip.Addr) bool {
	if s.limit == nil {
		return false
	}
	retry, locked := s.limit.locked(from, s.now())
	if !locked {
		return false
	}
	s.limit.refused.Add(1)
	s.audit(ActionLockedOut, nil, from, r.Method+" "+r.URL.Path, errLockedOut)
	w.Header().Set("Retry-After", strconv.FormatInt(int64((retry+time.Second-1)/time.Second), 10))
	s.problem(w, http.StatusTooManyRequests, ReasonLockedOut, "", nil)
	return true
}

// countsAsGuess reports whether an authentication error is a presented
// credential that was refused: a request without any credential (a
// browser opening the dashboard, a probe) guesses nothing.
func countsAsGuess(err error) bool { return !errors.Is(err, errNoCredentials) }

// authFailed counts a refused authentication and, when it was a guess,
// records it against the client's address, auditing the lockout it starts.
func (s *Server) authFailed(from netip.Addr, err error) {
	s.authFailures.Add(1)
	if s.limit == nil || !countsAsGuess(err) {
		return
	}
	if s.limit.failed(from, s.now()) {
		l := s.cfg.LoginLimit
		s.audit(ActionLockout, nil, from,
			fmt.Sprintf("client address %s locked out of the admin API for %s", clientKey(from), l.Cooldown.D()),
			fmt.Errorf("too many failed authentications (admin.login_limit: %d per %s)", l.Failures, l.Per.D()))
	}
}
