package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisOptions configures a Redis store. The zero value is ready to use.
type RedisOptions struct {
	// Prefix is put before every check's key; default "moat:rl:".
	Prefix string
	// ServerTime makes the store use the Redis server's clock
	// (redis.call('TIME')) instead of the now passed to Allow, so instances
	// with skewed clocks still agree. Tests leave it false to inject time.
	ServerTime bool
}

// Redis is a Store that keeps each limit's TAT in Redis, shared by every
// gateway instance using the same server (standalone, Sentinel or Cluster,
// through a go-redis UniversalClient). It gives the same Results as decide()
// for the same sequence of requests and instants.
//
// Each check is one call of a Lua script on one key, so the store works on
// Cluster without hash tags; the checks of one request go in one pipeline
// (one round trip, or one per node on Cluster). A key expires by itself
// once its limit is back to full burst (its ResetAfter, plus a margin of
// redisTTLMargin for clock skew between instances).
//
// All or nothing across checks: the script charges a limit when it admits.
// When some check of the request refuses, a second round trip refunds the
// checks that were charged. Between the two round trips another instance
// can see those charges and refuse a request it would have admitted; the
// refund then still removes them (see gcra.lua). If the refund fails, the
// charges stay until they run out at the limit's rate; RefundErrors counts
// such failures.
//
// A Redis is safe for concurrent use. Allow does not enforce a time budget
// itself: it passes ctx to go-redis, which honours deadlines only with
// redis.Options.ContextTimeoutEnabled. Guarded bounds the wait either way.
type Redis struct {
	client     redis.UniversalClient
	prefix     string
	serverTime bool
	ttlMargin  time.Duration // tests lengthen it so injected clocks can stand still

	refundErrors atomic.Uint64
}

// redisTTLMargin is how long a key outlives its ResetAfter: enough for the
// clock skew between instances when they pass their own now.
const redisTTLMargin = time.Second

//go:embed gcra.lua
var gcraSource string

// gcraScript is loaded once per server: EVALSHA, then EVAL on NOSCRIPT.
var gcraScript = redis.NewScript(gcraSource)

// NewRedis returns a store that uses client, which it does not close.
func NewRedis(client redis.UniversalClient, o RedisOptions) *Redis {
	if o.Prefix == "" {
		o.Prefix = "moat:rl:"
	}
	return &Redis{client: client, prefix: o.Prefix, serverTime: o.ServerTime, ttlMargin: redisTTLMargin}
}

// RefundErrors returns how many refunds of a refused request's charges
// failed (Redis unreachable between the two round trips). Each one leaves a
// few limits charged for a request that did not go through.
func (r *Redis) RefundErrors() uint64 { return r.refundErrors.Load() }

// Allow implements Store. It returns an error, deciding nothing, when
// results and checks differ in length or a check fails checkSpan (an
// invalid Limit, or a cost of more than fifty years). It returns an error
// wrapping the cause when Redis fails, times out or answers something
// malformed; the results are then zero, and the charges it could make are
// refunded on a best-effort basis.
func (r *Redis) Allow(ctx context.Context, now time.Time, checks []Check, results []Result) (bool, error) {
	if len(results) != len(checks) {
		return false, fmt.Errorf("redis rate limit: %d results for %d checks", len(results), len(checks))
	}
	for i := range checks {
		if err := checkSpan(checks[i]); err != nil {
			return false, fmt.Errorf("redis rate limit: check %d: %w", i, err)
		}
	}
	clear(results)
	if len(checks) == 0 {
		return true, nil
	}
	var nowArg any = ""
	if !r.serverTime {
		nowArg = now.UnixNano()
	}
	margin := any(max(r.ttlMargin.Milliseconds(), 1))

	calls := make([]redisCall, len(checks))
	for i, c := range checks {
		calls[i].key[0] = r.prefix + c.Key
		if c.Kind == KindQuota {
			calls[i].args = []any{"quota", nowArg, max(c.Cost, 1), c.Quota, margin, c.WindowEnd}
			continue
		}
		t := int64(c.Limit.Emission())
		calls[i].args = []any{"charge", nowArg, max(c.Cost, 1) * t, t + int64(c.Limit.Tolerance()) + int64(c.MaxDelay), margin}
	}
	r.eval(ctx, calls)

	replies := make([]gcraReply, len(checks))
	var failed error
	for i, c := range checks {
		rep, err := parseGCRAReply(calls[i].cmd)
		if err == nil && c.Kind == KindQuota {
			rep = rep.quotaState(c.WindowEnd)
		}
		if err == nil && !r.serverTime && rep.now != now.UnixNano() {
			err = fmt.Errorf("script ran at %d, not the %d it was given", rep.now, now.UnixNano())
		}
		if err == nil {
			err = rep.check(c)
		}
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("check %d: %w", i, err))
			continue
		}
		replies[i] = rep
	}
	if failed != nil {
		r.refund(ctx, calls, replies, nowArg, margin)
		return false, fmt.Errorf("redis rate limit: %w", failed)
	}

	allowed := true
	for i := range checks {
		results[i], _ = decideCheck(replies[i].old, replies[i].now, &checks[i])
		allowed = allowed && results[i].Allowed
	}
	if allowed {
		return true, nil
	}
	for i := range checks {
		if replies[i].admitted {
			results[i] = unchargedCheck(replies[i].old, replies[i].now, &checks[i])
		}
	}
	r.refund(ctx, calls, replies, nowArg, margin)
	return false, nil
}

// refund undoes the charges of the admitted replies, in one pipeline, in
// reverse order so that two charges of one key unwind exactly.
func (r *Redis) refund(ctx context.Context, calls []redisCall, replies []gcraReply, nowArg, margin any) {
	var undo []redisCall
	for i := len(calls) - 1; i >= 0; i-- {
		if !replies[i].admitted {
			continue
		}
		args := []any{"refund", nowArg, replies[i].oldRaw, replies[i].nextRaw, margin}
		if calls[i].args[0] == "quota" {
			args = []any{"qrefund", nowArg, calls[i].args[2], "", margin}
		}
		undo = append(undo, redisCall{key: calls[i].key, args: args})
	}
	if len(undo) == 0 {
		return
	}
	r.eval(ctx, undo)
	for _, c := range undo {
		if c.cmd.Err() != nil {
			r.refundErrors.Add(1)
		}
	}
}

// redisCall is one call of gcraScript.
type redisCall struct {
	key  [1]string // the script's KEYS
	args []any
	cmd  *redis.Cmd
}

// eval runs calls in one pipeline with EVALSHA, then those the server did
// not have cached with EVAL in a second one. Errors are left in each cmd.
func (r *Redis) eval(ctx context.Context, calls []redisCall) {
	pipe := r.client.Pipeline()
	for i := range calls {
		calls[i].cmd = gcraScript.EvalSha(ctx, pipe, calls[i].key[:], calls[i].args...)
	}
	_, _ = pipe.Exec(ctx) // every cmd carries its own error

	var retry redis.Pipeliner
	for i := range calls {
		if !redis.HasErrorPrefix(calls[i].cmd.Err(), "NOSCRIPT") {
			continue
		}
		if retry == nil {
			retry = r.client.Pipeline()
		}
		calls[i].cmd = gcraScript.Eval(ctx, retry, calls[i].key[:], calls[i].args...)
	}
	if retry != nil {
		_, _ = retry.Exec(ctx)
	}
}

// gcraReply is the answer of a charge: {admitted, old TAT or "", now, TAT after}.
type gcraReply struct {
	admitted bool
	old      int64 // 0 when the key was absent, as decide() expects
	now      int64
	next     int64
	oldRaw   string // as stored, "" when absent; sent back by a refund
	nextRaw  string
}

// parseGCRAReply reads a charge's reply, or the error that replaced it.
func parseGCRAReply(cmd *redis.Cmd) (gcraReply, error) {
	v, err := cmd.Result()
	if err != nil {
		return gcraReply{}, err
	}
	a, ok := v.([]any)
	if !ok || len(a) != 4 {
		return gcraReply{}, fmt.Errorf("malformed script reply %T", v)
	}
	flag, ok := a[0].(int64)
	if !ok || (flag != 0 && flag != 1) {
		return gcraReply{}, errors.New("malformed script reply: admitted flag")
	}
	rep := gcraReply{admitted: flag == 1}
	var strs [3]string
	for i := range strs {
		if strs[i], ok = a[i+1].(string); !ok {
			return gcraReply{}, fmt.Errorf("malformed script reply: field %d is %T", i+1, a[i+1])
		}
	}
	rep.oldRaw, rep.nextRaw = strs[0], strs[2]
	if rep.oldRaw != "" {
		if rep.old, err = strconv.ParseInt(rep.oldRaw, 10, 64); err != nil {
			return gcraReply{}, fmt.Errorf("malformed script reply: old TAT: %w", err)
		}
	}
	if rep.now, err = strconv.ParseInt(strs[1], 10, 64); err != nil {
		return gcraReply{}, fmt.Errorf("malformed script reply: now: %w", err)
	}
	if rep.nextRaw != "" {
		if rep.next, err = strconv.ParseInt(rep.nextRaw, 10, 64); err != nil {
			return gcraReply{}, fmt.Errorf("malformed script reply: new TAT: %w", err)
		}
	}
	if rep.admitted && rep.nextRaw == "" {
		return gcraReply{}, errors.New("malformed script reply: admitted without a new TAT")
	}
	return rep, nil
}

// quotaState turns a quota reply's counts into the values the memory store
// would hold (windowEnd + count, 0 for none), which decideCheck reads.
func (rep gcraReply) quotaState(windowEnd int64) gcraReply {
	if rep.old > 0 {
		rep.old += windowEnd
	}
	if rep.next > 0 {
		rep.next += windowEnd
	}
	return rep
}

// check reports whether the script's decision is decide()'s for c: the
// Result comes from decide(), so the two must never part.
func (rep gcraReply) check(c Check) error {
	res, next := decideCheck(rep.old, rep.now, &c)
	if res.Allowed != rep.admitted || (rep.admitted && next != rep.next) {
		return fmt.Errorf("script and decide disagree: script admitted %v TAT %d, decide admitted %v TAT %d",
			rep.admitted, rep.next, res.Allowed, next)
	}
	return nil
}

var _ Store = (*Redis)(nil)
