package admin

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-gateway/moat/internal/config"
)

// testClock is a clock the tests move by hand, for Deps.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock { return &testClock{t: testNow} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// loginLimit returns a login_limit block.
func loginLimit(failures int64, per, cooldown time.Duration) config.AdminLoginLimit {
	return config.AdminLoginLimit{Failures: failures, Per: config.Duration(per), Cooldown: config.Duration(cooldown)}
}

func TestLoginLimiter(t *testing.T) {
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	v6a, v6b, v6other := netip.MustParseAddr("2001:db8:1:1::1"), netip.MustParseAddr("2001:db8:1:1::ffff"), netip.MustParseAddr("2001:db8:1:2::1")
	type step struct {
		at    time.Duration // since testNow
		op    string        // "fail" records failures; "check" reads the lock
		from  netip.Addr
		n     int           // fail: how many failures (default 1)
		every time.Duration // fail: the time between them
		want  bool          // fail: the last one started a lockout; check: locked
		retry time.Duration // check, when locked: the time left
	}
	tests := []struct {
		desc  string
		cfg   config.AdminLoginLimit
		steps []step
	}{
		{"the tenth failure locks the address out", loginLimit(10, time.Minute, 5*time.Minute), []step{
			{op: "fail", from: a, n: 9},
			{op: "check", from: a},
			{op: "fail", from: a, want: true},
			{op: "check", from: a, want: true, retry: 5 * time.Minute},
		}},
		{"other addresses are not locked out", loginLimit(10, time.Minute, 5*time.Minute), []step{
			{op: "fail", from: a, n: 10, want: true},
			{op: "check", from: b},
			{op: "fail", from: b, n: 9},
			{op: "check", from: b},
		}},
		{"the lockout lasts the cooldown", loginLimit(10, time.Minute, 5*time.Minute), []step{
			{op: "fail", from: a, n: 10, want: true},
			{at: 4*time.Minute + 59*time.Second, op: "check", from: a, want: true, retry: time.Second},
			{at: 5 * time.Minute, op: "check", from: a},
		}},
		{"failures while locked out do not start another lockout", loginLimit(3, time.Minute, 5*time.Minute), []step{
			{op: "fail", from: a, n: 3, want: true},
			{at: time.Second, op: "fail", from: a, n: 5},
			{at: time.Second, op: "check", from: a, want: true, retry: 5*time.Minute - time.Second},
		}},
		{"failures at the sustained rate never lock", loginLimit(10, time.Minute, 5*time.Minute), []step{
			{op: "fail", from: a, n: 100, every: 6 * time.Second},
			{at: 600 * time.Second, op: "check", from: a},
		}},
		{"failures faster than the rate lock in the end", loginLimit(10, time.Minute, 5*time.Minute), []step{
			// Each failure 5s after the last uses up 1s more than comes
			// back: the 50th uses up the last attempt.
			{op: "fail", from: a, n: 49, every: 5 * time.Second},
			{at: 245 * time.Second, op: "fail", from: a, want: true},
		}},
		{"an IPv4-mapped address is its IPv4 address", loginLimit(2, time.Minute, time.Minute), []step{
			{op: "fail", from: a},
			{op: "fail", from: mapped, want: true},
			{op: "check", from: a, want: true, retry: time.Minute},
		}},
		{"IPv6 addresses are counted per /64", loginLimit(10, time.Minute, time.Minute), []step{
			{op: "fail", from: v6a, n: 5},
			{op: "fail", from: v6b, n: 5, want: true},
			{op: "check", from: v6a, want: true, retry: time.Minute},
			{op: "check", from: v6other},
		}},
		{"a lockout that ends before the count recovers is set again by the next failure", loginLimit(2, time.Hour, time.Second), []step{
			{op: "fail", from: a, n: 2, want: true},
			{at: time.Second, op: "check", from: a},
			{at: time.Second, op: "fail", from: a, want: true},
			{at: time.Second, op: "check", from: a, want: true, retry: time.Second},
		}},
		{"one failure allowed", loginLimit(1, time.Minute, time.Minute), []step{
			{op: "fail", from: a, want: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			l, err := newLoginLimiter(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				now := testNow.Add(s.at)
				switch s.op {
				case "fail":
					started := false
					for j := range max(s.n, 1) {
						started = l.failed(s.from, now.Add(time.Duration(j)*s.every))
						if started && j < max(s.n, 1)-1 {
							t.Fatalf("step %d: failure %d of %d started a lockout", i, j+1, s.n)
						}
					}
					if started != s.want {
						t.Errorf("step %d: the last failure started a lockout: %v, want %v", i, started, s.want)
					}
				case "check":
					retry, locked := l.locked(s.from, now)
					if locked != s.want || (locked && retry != s.retry) {
						t.Errorf("step %d: locked %v for %v, want %v for %v", i, locked, retry, s.want, s.retry)
					}
				}
			}
		})
	}
}

func TestLoginLimiterDisabled(t *testing.T) {
	l, err := newLoginLimiter(config.AdminLoginLimit{Disabled: true})
	if l != nil || err != nil {
		t.Errorf("disabled: %v, %v; want no limiter", l, err)
	}
}

// TestLoginLimiterForgets: keys are forgotten once they change nothing, so
// memory holds only the addresses that failed recently.
func TestLoginLimiterForgets(t *testing.T) {
	l, err := newLoginLimiter(loginLimit(2, time.Minute, 5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		l.failed(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), testNow)
	}
	l.failed(netip.MustParseAddr("192.0.2.1"), testNow)
	l.failed(netip.MustParseAddr("192.0.2.1"), testNow) // locked out until +5m
	if n := l.store.Len(); n != 1002 {
		t.Fatalf("%d keys after 1001 addresses failed, one of them locked out: want 1002", n)
	}
	// Two minutes later the counters are back to zero; the lock is not
	// over. The next failure sweeps.
	l.failed(netip.MustParseAddr("192.0.2.9"), testNow.Add(2*time.Minute))
	if n := l.store.Len(); n != 2 {
		t.Errorf("%d keys after the sweep, want 2 (the lock in force and the new failure)", n)
	}
	if _, locked := l.locked(netip.MustParseAddr("192.0.2.1"), testNow.Add(2*time.Minute)); !locked {
		t.Error("the sweep lifted a lockout in force")
	}
	// The sweep at 10m forgets everything before it, the ended lock
	// included; within a minute of it no other sweep runs.
	l.failed(netip.MustParseAddr("192.0.2.10"), testNow.Add(10*time.Minute))
	l.failed(netip.MustParseAddr("192.0.2.11"), testNow.Add(10*time.Minute+30*time.Second))
	if n := l.store.Len(); n != 2 {
		t.Errorf("%d keys, want 2 (the failures at 10m and 10m30s)", n)
	}
}

// serveFrom sends one request to s from the address from, with the bearer
// token when not empty.
func serveFrom(s *Server, from, method, path, token string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://127.0.0.1:9901"+path, nil)
	r.RemoteAddr = net.JoinHostPort(from, "40000")
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	return rec
}

// TestLoginLimit: ten wrong tokens from one address lock it out; the
// eleventh request is refused with 429 even with the right token, while
// other addresses are served; once the cooldown has passed the right token
// works again.
func TestLoginLimit(t *testing.T) {
	clock := newClock()
	var al auditLog
	cfg := testAdmin()
	cfg.LoginLimit = loginLimit(10, time.Minute, 5*time.Minute)
	s, err := New(cfg, Deps{Status: func() Status { return Status{} }, Audit: al.fn, Now: clock.now})
	if err != nil {
		t.Fatal(err)
	}
	const attacker, operator = "192.0.2.66", "192.0.2.7"
	status := func(from, token string) int { return serveFrom(s, from, "GET", "/api/v1/status", token).Code }

	// Requests without a credential guess nothing and do not count;
	// successes do not count either.
	for range 20 {
		if code := status(attacker, ""); code != 401 {
			t.Fatalf("no token: %d, want 401", code)
		}
	}
	for i := range 9 {
		if code := status(attacker, fmt.Sprintf("wrong-token-%d", i)); code != 401 {
			t.Fatalf("wrong token %d: %d, want 401", i+1, code)
		}
		if code := status(attacker, readToken); code != 200 {
			t.Fatalf("right token after %d wrong ones: %d, want 200", i+1, code)
		}
	}
	if code := status(attacker, "wrong-token-9"); code != 401 {
		t.Fatalf("wrong token 10: %d, want 401", code)
	}

	// Locked out: the right token is refused like any other, with no hint
	// of why beyond the reason.
	rec := serveFrom(s, attacker, "GET", "/api/v1/status", readToken)
	if rec.Code != 429 || reasonOf(t, rec.Header(), rec.Body.Bytes()) != ReasonLockedOut {
		t.Fatalf("right token after 10 wrong ones: %d %s, want 429 %s", rec.Code, rec.Body, ReasonLockedOut)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "300" {
		t.Errorf("Retry-After %q, want 300", ra)
	}
	if body := rec.Body.String(); strings.Contains(body, "detail") || strings.Contains(body, "token") || rec.Header().Get("WWW-Authenticate") != "" {
		t.Errorf("the refusal says more than its reason: %s %v", body, rec.Header())
	}
	for _, rq := range []struct{ method, path, token string }{
		{"GET", "/api/v1/status", "wrong-token-10"},
		{"GET", "/api/v1/status", ""},
		{"PUT", "/api/v1/config", writeToken},
		{"GET", "/metrics", readToken},
	} {
		if rec := serveFrom(s, attacker, rq.method, rq.path, rq.token); rec.Code != 429 {
			t.Errorf("%s %s while locked out: %d, want 429", rq.method, rq.path, rec.Code)
		}
	}
	// What needs no credential is still served.
	for _, p := range []string{"/healthz", "/readyz", "/ui/"} {
		if rec := serveFrom(s, attacker, "GET", p, ""); rec.Code != 200 {
			t.Errorf("GET %s while locked out: %d, want 200", p, rec.Code)
		}
	}
	if code := status(operator, readToken); code != 200 {
		t.Errorf("another address: %d, want 200", code)
	}

	clock.advance(5*time.Minute - time.Second)
	rec = serveFrom(s, attacker, "GET", "/api/v1/status", readToken)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" {
		t.Errorf("1s before the end of the cooldown: %d Retry-After %q, want 429 and 1", rec.Code, rec.Header().Get("Retry-After"))
	}
	clock.advance(time.Second)
	if code := status(attacker, readToken); code != 200 {
		t.Errorf("right token after the cooldown: %d, want 200", code)
	}

	counts := map[string]int{}
	var lockoutMsg string
	for _, r := range al.all() {
		if r.from.String() != attacker || r.actor != "" || r.err == nil {
			t.Errorf("audit %+v: want the attacker's address, no actor and an error", r)
		}
		counts[r.action]++
		if r.action == ActionLockout {
			lockoutMsg = r.msg + ": " + r.err.Error()
		}
	}
	if counts["admin_auth_failure"] != 30 || counts[ActionLockout] != 1 || counts[ActionLockedOut] != 6 {
		t.Errorf("audited %v, want 30 admin_auth_failure, 1 %s, 6 %s", counts, ActionLockout, ActionLockedOut)
	}
	if want := "client address 192.0.2.66 locked out of the admin API for 5m0s: too many failed authentications (admin.login_limit: 10 per 1m0s)"; lockoutMsg != want {
		t.Errorf("lockout audited as %q, want %q", lockoutMsg, want)
	}
	if st := s.AuthStats(); st != (AuthStats{Failures: 30, Lockouts: 1, LockedOut: 6}) {
		t.Errorf("stats %+v", st)
	}
}

// TestLoginLimitCountsRefusedCredentials: every kind of presented but
// refused credential counts toward the lockout.
func TestLoginLimitCountsRefusedCredentials(t *testing.T) {
	cfg := testAdmin()
	cfg.LoginLimit = loginLimit(4, time.Minute, time.Minute)
	s, err := New(cfg, Deps{Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	for _, auth := range []string{"Bearer " + strings.Repeat("x", 44), "Basic " + readToken, "Bearer ", "Bearer " + strings.Repeat("a", 2000)} {
		r := httptest.NewRequest("GET", "http://127.0.0.1:9901/api/v1/status", nil)
		r.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != 401 {
			t.Fatalf("Authorization %.20q: %d, want 401", auth, rec.Code)
		}
	}
	if rec := serveFrom(s, "192.0.2.1", "GET", "/api/v1/status", readToken); rec.Code != http.StatusTooManyRequests {
		t.Errorf("after 4 refused credentials: %d, want 429", rec.Code)
	}
}

// TestLoginLimitDisabled: with login_limit disabled, failures never lock
// anyone out, but are still counted.
func TestLoginLimitDisabled(t *testing.T) {
	cfg := testAdmin()
	cfg.LoginLimit.Disabled = true
	s, err := New(cfg, Deps{Status: func() Status { return Status{} }})
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		serveFrom(s, "192.0.2.1", "GET", "/api/v1/status", "wrong")
	}
	if rec := serveFrom(s, "192.0.2.1", "GET", "/api/v1/status", readToken); rec.Code != 200 {
		t.Errorf("after 50 failures with the limit disabled: %d, want 200", rec.Code)
	}
	if st := s.AuthStats(); st != (AuthStats{Failures: 50}) {
		t.Errorf("stats %+v", st)
	}
}
