package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// sharedRedisAddr is the Redis that scripts/test keeps running.
const sharedRedisAddr = "127.0.0.1:6379"

// testRedis returns a client of the shared Redis (or, if it is not running,
// of a redis-server started for the test) and a fresh key prefix whose keys
// are deleted when the test ends.
func testRedis(tb testing.TB) (redis.UniversalClient, string) {
	tb.Helper()
	client := redis.NewClient(&redis.Options{Addr: sharedRedisAddr})
	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		srv := startRedisServer(tb)
		client = redis.NewClient(&redis.Options{Addr: srv.addr})
	}
	prefix := testPrefix()
	tb.Cleanup(func() {
		defer client.Close()
		iter := client.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			client.Del(ctx, iter.Val())
		}
	})
	return client, prefix
}

// testPrefix is a key prefix no other test uses.
func testPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "moat:test:" + hex.EncodeToString(b) + ":"
}

// redisServer is a redis-server child process of the test, on a port of its
// own, that the test may stop and start again.
type redisServer struct {
	tb   testing.TB
	addr string
	port string
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// startRedisServer starts a redis-server on a free port, stopped when the
// test ends. It skips the test if redis-server is not installed.
func startRedisServer(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		tb.Skip("redis-server is not installed (apt-get install redis-server); skipping a test that needs its own Redis")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	s := &redisServer{tb: tb, addr: addr, port: port}
	s.start()
	tb.Cleanup(s.stop)
	return s
}

// start runs redis-server on s's port and waits until it answers.
func (s *redisServer) start() {
	s.tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command("redis-server", "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		s.tb.Fatalf("starting redis-server: %v", err)
	}
	s.cmd = cmd
	client := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1})
	defer client.Close()
	deadline := time.Now().Add(10 * time.Second)
	for client.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on %s did not answer within 10s", s.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills the server, if it runs, and waits for it to exit.
func (s *redisServer) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// gcraModel is the reference Store for the tests: a map of TATs, decide(),
// and all or nothing across the checks of a request, with nothing else.
type gcraModel struct {
	mu  sync.Mutex
	tat map[string]int64
}

func newGCRAModel() *gcraModel { return &gcraModel{tat: map[string]int64{}} }

func (m *gcraModel) Allow(_ context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := now.UnixNano()
	staged := map[string]int64{}
	olds := make([]int64, len(checks))
	allowed := true
	for i, c := range checks {
		old, ok := staged[c.Key]
		if !ok {
			old = m.tat[c.Key]
		}
		olds[i] = old
		res, next := decideCheck(old, n, &c)
		results[i] = res
		if res.Allowed {
			staged[c.Key] = next
		} else {
			allowed = false
		}
	}
	if allowed {
		for k, v := range staged {
			m.tat[k] = v
		}
		return true, nil
	}
	for i, c := range checks {
		if results[i].Allowed && c.Kind == KindQuota {
			used := quotaUsed(olds[i], c.WindowEnd)
			results[i] = Result{Allowed: true, Remaining: c.Quota - used, ResetAfter: time.Duration(c.WindowEnd - n)}
			continue
		}
		if results[i].Allowed { // its state without the charge
			tat := max(olds[i], n)
			t, tau := int64(c.Limit.Emission()), int64(c.Limit.Tolerance())
			results[i] = Result{Allowed: true, Remaining: remaining(tat, n, t, tau), ResetAfter: time.Duration(tat - n)}
		}
	}
	return false, nil
}

func (m *gcraModel) get(key string) (int64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.tat[key]
	return v, ok
}

// parityRequest is one request of a parity sequence.
type parityRequest struct {
	now    int64 // ns since the epoch
	checks []Check
}

// assertParity runs reqs through r and through gcraModel and fails at the
// first difference in decision or Results; at the end the stored TATs must
// be equal too.
func assertParity(t *testing.T, client redis.UniversalClient, r *Redis, reqs []parityRequest) {
	t.Helper()
	ctx := context.Background()
	model := newGCRAModel()
	keys := map[string]int64{} // key -> quota window end, 0 for rate limits
	var admitted, refused int
	for i, req := range reqs {
		got := make([]Result, len(req.checks))
		want := make([]Result, len(req.checks))
		gotOK, err := r.Allow(ctx, time.Unix(0, req.now), req.checks, got)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		wantOK, _ := model.Allow(ctx, time.Unix(0, req.now), req.checks, want)
		if gotOK != wantOK || !slices.Equal(got, want) {
			t.Fatalf("request %d at %d, checks %+v:\nredis allowed %v %+v\nmodel allowed %v %+v",
				i, req.now, req.checks, gotOK, got, wantOK, want)
		}
		if gotOK {
			admitted++
		} else {
			refused++
		}
		for _, c := range req.checks {
			keys[c.Key] = c.WindowEnd
		}
	}
	for k, end := range keys {
		want, ok := model.get(k)
		if ok && end > 0 {
			want = quotaUsed(want, end) // Redis holds a quota's plain count
		}
		v, err := client.Get(ctx, r.prefix+k).Result()
		switch {
		case errors.Is(err, redis.Nil):
			if ok {
				t.Errorf("key %s: absent in Redis, model TAT %d", k, want)
			}
		case err != nil:
			t.Fatal(err)
		default:
			if got, _ := strconv.ParseInt(v, 10, 64); !ok || got != want {
				t.Errorf("key %s: Redis TAT %s, model %d (present %v)", k, v, want, ok)
			}
		}
	}
	t.Logf("%d requests: %d admitted, %d refused", len(reqs), admitted, refused)
}

// newTestRedis is a Redis store on client whose keys do not expire while
// an injected clock stands still.
func newTestRedis(client redis.UniversalClient, prefix string) *Redis {
	r := NewRedis(client, RedisOptions{Prefix: prefix})
	r.ttlMargin = time.Hour
	return r
}

// TestRedisDecideParity drives the Redis store and the decide() model with
// the same pseudo-random requests (several keys and limits, costs, requests
// of one to three checks, a clock that jumps, stands still and sometimes
// goes back) and requires identical decisions, Results and TATs.
func TestRedisDecideParity(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)

	year := 365 * 24 * time.Hour
	limits := []Limit{
		{Rate: 10, Period: time.Second, Burst: 3},
		{Rate: 1000, Period: time.Second, Burst: 50},
		{Rate: 5, Period: time.Minute, Burst: 5},
		{Rate: 7, Period: time.Second, Burst: 1},           // T does not divide evenly
		{Rate: 3, Period: 10 * time.Millisecond, Burst: 2}, // fine-grained
		{Rate: 10_000, Period: year, Burst: 10_000},        // Burst*T = 1 year > 2^53 ns
		{Rate: 1, Period: 20 * year, Burst: 2},             // T alone > 2^53 ns
	}
	rng := mrand.New(mrand.NewPCG(20240601, 7))
	now := time.Date(2025, 1, 1, 0, 0, 0, 123_456_789, time.UTC).UnixNano() + 1 // odd, > 2^60
	reqs := make([]parityRequest, 3000)
	for i := range reqs {
		switch p := rng.IntN(100); {
		case p < 30: // same instant
		case p < 80:
			now += rng.Int64N(int64(50 * time.Millisecond))
		case p < 88:
			now += rng.Int64N(int64(10 * time.Second))
		case p < 98:
			now -= rng.Int64N(int64(5 * time.Millisecond)) // a skewed instance
		default:
			now += rng.Int64N(int64(100 * 24 * time.Hour))
		}
		checks := make([]Check, 1+rng.IntN(3))
		for j := range checks {
			if rng.IntN(5) == 0 { // a daily quota of 1 to 40 requests
				q := Quota{Limit: 1 + rng.Int64N(40), Period: Day}
				id, _, end := q.Window(time.Unix(0, now))
				checks[j] = Check{Key: "q" + strconv.FormatInt(q.Limit%3, 10) + ":" + id, Kind: KindQuota, Quota: q.Limit, WindowEnd: end.UnixNano(), Cost: rng.Int64N(3)}
				continue
			}
			k := rng.IntN(len(limits))
			checks[j] = Check{Key: "k" + strconv.Itoa(k), Limit: limits[k], Cost: rng.Int64N(4)} // 0 counts as 1
			if rng.IntN(4) == 0 {                                                                // throttled: admitted with a delay when it fits
				checks[j].MaxDelay = time.Duration(rng.Int64N(int64(3 * limits[k].Emission())))
			}
			if checkSpan(checks[j]) != nil {
				// a cost or delay of more than 50 years is an error, not a decision
				checks[j].Cost, checks[j].MaxDelay = 1, 0
			}
		}
		reqs[i] = parityRequest{now: now, checks: checks}
	}
	assertParity(t, client, r, reqs)
}

// TestRedisDecideParityEdges runs short sequences at the ends of the int64
// nanosecond range, where the script's (seconds, nanoseconds) arithmetic
// must still agree with decide() to the nanosecond.
func TestRedisDecideParityEdges(t *testing.T) {
	tests := []struct {
		desc  string
		start int64
		limit Limit
	}{
		{desc: "epoch", start: 0, limit: Limit{Rate: 10, Period: time.Second, Burst: 3}},
		// decide() takes a missing key as TAT 0, which refuses before -tau.
		{desc: "across the epoch", start: -int64(150*time.Millisecond) + 7, limit: Limit{Rate: 10, Period: time.Second, Burst: 3}},
		{desc: "long before the epoch", start: -int64(200 * 365 * 24 * time.Hour), limit: Limit{Rate: 3, Period: time.Hour, Burst: 2}},
		{desc: "near the end of int64", start: math.MaxInt64 - int64(time.Hour), limit: Limit{Rate: 7, Period: time.Second, Burst: 4}},
		{desc: "odd nanoseconds", start: 1_700_000_000_999_999_999, limit: Limit{Rate: 3, Period: time.Second, Burst: 2}},
		{desc: "huge emission", start: 1_700_000_000_000_000_001, limit: Limit{Rate: 1, Period: 20 * 365 * 24 * time.Hour, Burst: 2}}, // T > 2^53 ns
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			client, prefix := testRedis(t)
			r := newTestRedis(client, prefix)
			var reqs []parityRequest
			now := tt.start
			for i := range 40 {
				reqs = append(reqs, parityRequest{now: now, checks: []Check{
					{Key: "a", Limit: tt.limit},
					{Key: "b", Limit: tt.limit, Cost: int64(1 + i%2)},
				}})
				if i%3 == 2 {
					now += int64(tt.limit.Emission()) / 2
				}
			}
			assertParity(t, client, r, reqs)
		})
	}
}

// TestRedisOutOfRange checks that a check decide cannot compute within
// int64 is an error, and that Redis is not touched.
func TestRedisOutOfRange(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)
	ok := Check{Key: "ok", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}
	tests := []struct {
		desc string
		bad  Check
	}{
		{desc: "invalid limit", bad: Check{Key: "bad", Limit: Limit{Rate: 0, Period: time.Second, Burst: 1}}},
		{desc: "burst of a century", bad: Check{Key: "bad", Limit: Limit{Rate: 1, Period: 365 * 24 * time.Hour, Burst: 100}}},
		{desc: "cost of a century", bad: Check{Key: "bad", Limit: Limit{Rate: 1, Period: 365 * 24 * time.Hour, Burst: 1}, Cost: 100}},
	}
	for _, tt := range tests {
		allowed, err := r.Allow(context.Background(), time.Unix(1_750_000_000, 0), []Check{ok, tt.bad}, make([]Result, 2))
		if allowed || err == nil {
			t.Errorf("%s: allowed %v, err %v; want an error", tt.desc, allowed, err)
		}
		if n, _ := client.Exists(context.Background(), prefix+"ok").Result(); n != 0 {
			t.Errorf("%s: the valid check was charged", tt.desc)
		}
	}
}

// TestRedisAllOrNothing pins the refund: a request refused by one check
// leaves the other checks' TATs exactly as they were, and reports their
// state without the charge.
func TestRedisAllOrNothing(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)
	ctx := context.Background()
	now := time.Unix(1_750_000_000, 0)
	open := Check{Key: "open", Limit: Limit{Rate: 10, Period: time.Second, Burst: 10}}
	tight := Check{Key: "tight", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}

	results := make([]Result, 2)
	if ok, err := r.Allow(ctx, now, []Check{open, tight}, results); err != nil || !ok {
		t.Fatalf("first request: %v %v", ok, err)
	}
	before, _ := client.Get(ctx, prefix+"open").Result()
	ok, err := r.Allow(ctx, now, []Check{open, tight}, results)
	if err != nil || ok {
		t.Fatalf("second request: allowed %v, err %v; want a refusal", ok, err)
	}
	if after, _ := client.Get(ctx, prefix+"open").Result(); after != before {
		t.Errorf("refused request left open charged: TAT %s, was %s", after, before)
	}
	want := []Result{
		{Allowed: true, Remaining: 9, ResetAfter: 100 * time.Millisecond},
		{Allowed: false, Remaining: 0, RetryAfter: time.Second, ResetAfter: time.Second},
	}
	if !slices.Equal(results, want) {
		t.Errorf("results %+v, want %+v", results, want)
	}
	if r.RefundErrors() != 0 {
		t.Errorf("RefundErrors = %d", r.RefundErrors())
	}
}

// TestRedisTTL checks that a key expires once its limit is full again:
// ResetAfter plus the margin.
func TestRedisTTL(t *testing.T) {
	client, prefix := testRedis(t)
	r := NewRedis(client, RedisOptions{Prefix: prefix, ServerTime: true})
	ctx := context.Background()
	results := make([]Result, 1)
	c := Check{Key: "ttl", Limit: Limit{Rate: 1, Period: 10 * time.Second, Burst: 5}}
	if _, err := r.Allow(ctx, time.Now(), []Check{c}, results); err != nil {
		t.Fatal(err)
	}
	ttl, err := client.PTTL(ctx, prefix+"ttl").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := results[0].ResetAfter + redisTTLMargin
	if ttl > want || ttl < want-time.Second {
		t.Errorf("PTTL %v, want about %v (ResetAfter %v + margin %v)", ttl, want, results[0].ResetAfter, redisTTLMargin)
	}
}

// TestRedisServerTime checks that with ServerTime the store ignores the
// caller's clock: a caller 50 years behind gets the same decisions.
func TestRedisServerTime(t *testing.T) {
	client, prefix := testRedis(t)
	r := NewRedis(client, RedisOptions{Prefix: prefix, ServerTime: true})
	ctx := context.Background()
	wrong := time.Date(1975, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Check{Key: "st", Limit: Limit{Rate: 2, Period: time.Hour, Burst: 2}}
	results := make([]Result, 1)
	for i, want := range []bool{true, true, false} {
		ok, err := r.Allow(ctx, wrong, []Check{c}, results)
		if err != nil || ok != want {
			t.Fatalf("request %d: allowed %v, err %v; want %v", i, ok, err, want)
		}
	}
	if ra := results[0].RetryAfter; ra < 29*time.Minute || ra > 30*time.Minute {
		t.Errorf("RetryAfter %v, want about 30m", ra)
	}
	v, err := client.Get(ctx, prefix+"st").Int64()
	if err != nil {
		t.Fatal(err)
	}
	server, err := client.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(v - server.UnixNano()); d < 59*time.Minute || d > time.Hour {
		t.Errorf("stored TAT is %v from the server's now, want about 1h", d)
	}
}

// TestRedisMalformedState checks that a key holding something that is not
// a TAT gives an error, not a panic or a decision.
func TestRedisMalformedState(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)
	ctx := context.Background()
	for _, v := range []string{"garbage", "1.5", "", "12345678901234567890123"} {
		if err := client.Set(ctx, prefix+"bad", v, 0).Err(); err != nil {
			t.Fatal(err)
		}
		results := make([]Result, 2)
		checks := []Check{
			{Key: "good", Limit: Limit{Rate: 1, Period: time.Second, Burst: 5}},
			{Key: "bad", Limit: Limit{Rate: 1, Period: time.Second, Burst: 5}},
		}
		ok, err := r.Allow(ctx, time.Unix(1_750_000_000, 0), checks, results)
		if err == nil || ok {
			t.Errorf("stored %q: allowed %v, err %v; want an error", v, ok, err)
		}
		if got, _ := client.Get(ctx, prefix+"good").Result(); got != "" {
			t.Errorf("stored %q: the good check's charge was not refunded: TAT %s", v, got)
		}
	}
}

// TestParseGCRAReply feeds the reply parser what a broken or foreign
// script could send.
func TestParseGCRAReply(t *testing.T) {
	tests := []struct {
		desc  string
		reply any
		err   error
		ok    bool
	}{
		{desc: "admitted", reply: []any{int64(1), "", "100", "200"}, ok: true},
		{desc: "refused", reply: []any{int64(0), "300", "100", "300"}, ok: true},
		{desc: "error reply", err: errors.New("ERR boom")},
		{desc: "nil", reply: nil},
		{desc: "not an array", reply: "OK"},
		{desc: "short", reply: []any{int64(1), "", "100"}},
		{desc: "flag not a number", reply: []any{"1", "", "100", "200"}},
		{desc: "flag out of range", reply: []any{int64(2), "", "100", "200"}},
		{desc: "now not a string", reply: []any{int64(1), "", int64(100), "200"}},
		{desc: "now not a number", reply: []any{int64(1), "", "x", "200"}},
		{desc: "TAT overflows", reply: []any{int64(1), "99999999999999999999", "100", "200"}},
		{desc: "admitted without TAT", reply: []any{int64(1), "", "100", ""}},
		{desc: "nested nil", reply: []any{int64(1), nil, "100", "200"}},
	}
	for _, tt := range tests {
		cmd := redis.NewCmd(context.Background())
		cmd.SetVal(tt.reply)
		if tt.err != nil {
			cmd.SetErr(tt.err)
		}
		_, err := parseGCRAReply(cmd)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok %v", tt.desc, err, tt.ok)
		}
	}
}

// TestRedisUnreachable checks that a store whose server is gone returns an
// error wrapping the cause, in bounded time.
func TestRedisUnreachable(t *testing.T) {
	srv := startRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1})
	defer client.Close()
	r := NewRedis(client, RedisOptions{Prefix: testPrefix()})
	srv.stop()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	results := make([]Result, 1)
	ok, err := r.Allow(ctx, time.Now(), []Check{{Key: "k", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}}, results)
	var opErr *net.OpError
	if ok || !errors.As(err, &opErr) {
		t.Fatalf("allowed %v, err %v; want a network error", ok, err)
	}
}

// TestRedisNoScript checks that the store reloads its script when the
// server's script cache is flushed.
func TestRedisNoScript(t *testing.T) {
	srv := startRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.addr})
	defer client.Close()
	r := newTestRedis(client, testPrefix())
	ctx := context.Background()
	c := []Check{{Key: "k", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}, {Key: "j", Limit: Limit{Rate: 1, Period: time.Second, Burst: 1}}}
	results := make([]Result, 2)
	now := time.Unix(1_750_000_000, 0)
	for i, want := range []bool{true, false} {
		if err := client.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		ok, err := r.Allow(ctx, now, c, results)
		if err != nil || ok != want {
			t.Fatalf("request %d after SCRIPT FLUSH: allowed %v, err %v; want %v", i, ok, err, want)
		}
	}
}

// TestRedisTwoInstances runs two independent clients ("instances") against
// one limit of N per period with a frozen clock: together they admit
// exactly N. Each request also carries a per-instance limit, so refused
// requests are refunded concurrently; the shared limit must end exactly
// where the admitted requests put it.
func TestRedisTwoInstances(t *testing.T) {
	_, prefix := testRedis(t)
	ctx := context.Background()
	now := time.Unix(1_750_000_000, 0)
	const shared, perInstance = 40, 8
	newInstance := func() *Redis {
		c := redis.NewClient(&redis.Options{Addr: sharedRedisAddr})
		t.Cleanup(func() { c.Close() })
		if c.Ping(ctx).Err() != nil {
			t.Skip("the shared Redis on " + sharedRedisAddr + " is not running (scripts/test starts it)")
		}
		return newTestRedis(c, prefix)
	}
	global := Limit{Rate: shared, Period: time.Minute, Burst: shared}

	run := func(desc string, own func(inst int) []Check, want int64) {
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for inst, r := range []*Redis{newInstance(), newInstance()} {
			for range 8 {
				wg.Go(func() {
					results := make([]Result, len(own(inst)))
					for range 30 {
						ok, err := r.Allow(ctx, now, own(inst), results)
						if err != nil {
							t.Error(err)
							return
						}
						if ok {
							admitted.Add(1)
						}
					}
				})
			}
		}
		wg.Wait()
		if got := admitted.Load(); got != want {
			t.Errorf("%s: admitted %d, want exactly %d", desc, got, want)
		}
	}
	run("shared and per-instance limits", func(inst int) []Check {
		return []Check{
			{Key: "shared", Limit: global},
			{Key: "instance-" + strconv.Itoa(inst), Limit: Limit{Rate: perInstance, Period: time.Minute, Burst: perInstance}},
		}
	}, 2*perInstance)
	run("shared limit alone, after the refunds", func(int) []Check {
		return []Check{{Key: "shared", Limit: global}}
	}, shared-2*perInstance)
}

// TestRedisDecideSequence is a short readable sequence, in the
// style of TestDecide, checked against the numbers decide gives.
func TestRedisDecideSequence(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)
	l := Limit{Rate: 10, Period: time.Second, Burst: 3}
	ms := int64(time.Millisecond)
	base := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	tests := []struct {
		desc      string
		at        int64 // ms
		cost      int64
		allowed   bool
		remaining int64
		retry     time.Duration
	}{
		{desc: "first", at: 0, allowed: true, remaining: 2},
		{desc: "cost 2 fills the burst", at: 0, cost: 2, allowed: true, remaining: 0},
		{desc: "over the burst", at: 0, allowed: false, retry: 100 * time.Millisecond},
		{desc: "cost 3 does not fit yet, cost 1 would", at: 100, cost: 3, allowed: false, remaining: 1, retry: 200 * time.Millisecond},
		{desc: "one emission later", at: 100, allowed: true, remaining: 0},
		{desc: "long idle refills to the burst", at: 10_000, allowed: true, remaining: 2},
	}
	for _, tt := range tests {
		results := make([]Result, 1)
		ok, err := r.Allow(context.Background(), time.Unix(0, base+tt.at*ms), []Check{{Key: "seq", Limit: l, Cost: tt.cost}}, results)
		if err != nil {
			t.Fatal(err)
		}
		res := results[0]
		if ok != tt.allowed || res.Allowed != tt.allowed || res.Remaining != tt.remaining || res.RetryAfter != tt.retry {
			t.Fatalf("%s: got %v %+v, want allowed %v remaining %d retry %v", tt.desc, ok, res, tt.allowed, tt.remaining, tt.retry)
		}
	}
}

// ExampleNewRedis shows the store on a go-redis client; the client should
// honour context deadlines so that Guarded's budget also ends the calls.
func ExampleNewRedis() {
	client := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{sharedRedisAddr},
		ContextTimeoutEnabled: true,
		MaxRetries:            -1, // a retried pipeline could charge twice
	})
	defer client.Close()
	store := NewRedis(client, RedisOptions{ServerTime: true})
	fmt.Printf("%T\n", store)
	// Output: *ratelimit.Redis
}

// TestRedisRefundInterleaved drives the script's refund directly through
// the orders a single Allow never produces: others charging the key
// between a charge and its refund, refunds out of order, and time using a
// charge up.
func TestRedisRefundInterleaved(t *testing.T) {
	client, prefix := testRedis(t)
	r := newTestRedis(client, prefix)
	ctx := context.Background()
	T := int64(100 * time.Millisecond)
	l := Limit{Rate: 10, Period: time.Second, Burst: 10} // T = 100ms
	now := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	margin := int64(time.Hour / time.Millisecond)

	charge := func(key string, at int64) gcraReply {
		t.Helper()
		calls := []redisCall{{key: [1]string{prefix + key}, args: []any{"charge", at, T, int64(l.Tolerance()) + T, margin}}}
		r.eval(ctx, calls)
		rep, err := parseGCRAReply(calls[0].cmd)
		if err != nil || !rep.admitted {
			t.Fatalf("charge %s at %d: %+v %v", key, at, rep, err)
		}
		return rep
	}
	refund := func(key string, at int64, rep gcraReply) int64 {
		t.Helper()
		calls := []redisCall{{key: [1]string{prefix + key}, args: []any{"refund", at, rep.oldRaw, rep.nextRaw, margin}}}
		r.eval(ctx, calls)
		n, err := calls[0].cmd.Int64()
		if err != nil {
			t.Fatalf("refund %s: %v", key, err)
		}
		return n
	}
	tat := func(key string) string {
		v, _ := client.Get(ctx, prefix+key).Result()
		return v
	}
	str := func(v int64) string { return strconv.FormatInt(v, 10) }

	t.Run("untouched key gets the old TAT back", func(t *testing.T) {
		charge("a", now)
		b := charge("a", now)
		if refund("a", now, b) != 1 || tat("a") != str(now+T) {
			t.Errorf("TAT %s, want %d", tat("a"), now+T)
		}
	})
	t.Run("refunds in charge order", func(t *testing.T) {
		base := charge("b", now) // now+T, stays
		x := charge("b", now)    // now+2T
		y := charge("b", now)    // now+3T
		refund("b", now, x)      // others charged since: takes off T
		if tat("b") != str(now+2*T) {
			t.Fatalf("after the first refund TAT %s, want %d", tat("b"), now+2*T)
		}
		refund("b", now, y)
		if tat("b") != base.nextRaw {
			t.Errorf("after both refunds TAT %s, want %s", tat("b"), base.nextRaw)
		}
	})
	t.Run("time used the charge up", func(t *testing.T) {
		x := charge("c", now)               // now+T
		later := now + int64(5*time.Second) // the key went idle
		y := charge("c", later)             // later+T, clamped to later
		if refund("c", later, x) != 0 || tat("c") != y.nextRaw {
			t.Errorf("refund of a used-up charge changed the TAT to %s, want %s", tat("c"), y.nextRaw)
		}
	})
	t.Run("idle key", func(t *testing.T) {
		x := charge("d", now)
		charge("d", now)
		if refund("d", now+int64(time.Second), x) != 0 {
			t.Errorf("refund changed an idle key")
		}
	})
	t.Run("expired key", func(t *testing.T) {
		x := charge("e", now)
		client.Del(ctx, prefix+"e")
		if refund("e", now, x) != 0 || tat("e") != "" {
			t.Errorf("refund recreated an expired key: %s", tat("e"))
		}
	})
}
