-- gcra.lua is the state change of decide() (ratelimit.go) for one key, run
-- atomically by Redis. Redis.Allow calls it once per check, all checks of a
-- request in one pipeline, and again to refund the checks of a refused
-- request. It touches only KEYS[1], so it is safe on Redis Cluster.
--
-- The key holds the TAT: int64 nanoseconds since the Unix epoch, in decimal.
-- A missing key is TAT 0, as in decide().
--
-- charge: ARGV = {"charge", now, cost*T, T+tau+max delay, ttl margin ms}
--   Applies GCRA: tat = max(tat, now); admitted when now + T + tau + max
--   delay >= tat + cost*T (decideDelay's "allowAt - now <= maxDelay"), and then the key becomes tat + cost*T
--   with a TTL of (new TAT - now) + margin. A refusal writes nothing.
--   Returns {admitted 1|0, old TAT or "", now, TAT after}. The Go side runs
--   decide() on (old TAT, now) to build the Result and checks that it agrees.
--
-- refund: ARGV = {"refund", now, old TAT or "", charged TAT, ttl margin ms}
--   Undoes one charge. If the key still holds the charged TAT, it gets the
--   old one back exactly. If others have charged or refunded it since, it
--   loses the part of this charge that still counts: it becomes
--   max(cur - (charged - max(old, now)), now), which takes off at most this
--   charge and nothing that time had already used up. (With the server's
--   clock, now is later than any intervening writer's, so others' charges
--   are never taken off; with callers' clocks, at most their skew.)
--   Returns 1 if it changed the key, else 0.
--
-- quota: ARGV = {"quota", now, cost, quota, ttl margin ms, window end}
--   A quota's key holds the plain count of its window (the key names the
--   window; its end is int64 ns like now). Admitted when count + cost <=
--   quota: the key becomes count + cost and expires margin ms after the
--   window ends, by now's clock. A refusal writes
--   nothing. Returns {admitted 1|0, old count or "", now, count after}.
--
-- qrefund: ARGV = {"qrefund", now, cost, "", ttl margin ms}
--   Takes a quota charge back: count - cost, the key removed at zero, its
--   expiry kept. Returns 1 if it changed the key, else 0.
--
-- now is "" to use the server's clock (redis.call('TIME')).
--
-- Exactness. Lua numbers are doubles, exact only below 2^53 ns (about 104
-- days), and a Unix time in nanoseconds is about 2^60. So every time or
-- duration is held as a pair (s, n) meaning s*1e9 + n with 0 <= n < 1e9:
-- |s| < 1e10 and n < 1e9 are both exact, and adding, subtracting and
-- comparing pairs (with a carry) is exact over the whole int64 range. The
-- script needs nothing else: products (cost*T, (Burst-1)*T) are computed in
-- Go and passed in, and divisions (Remaining) are done in Go by decide().
-- Go range-checks every check first (checkSpan: cost*T and Burst*T within
-- fifty years), so decide's refusal of overflowing costs never applies.

local E = 1000000000 -- nanoseconds per second

-- parse reads a decimal int64 into (s, n); nil if v is not one.
local function parse(v)
	if type(v) ~= 'string' or not string.find(v, '^%-?%d+$') or #v > 20 then
		return nil
	end
	local neg = string.sub(v, 1, 1) == '-'
	if neg then
		v = string.sub(v, 2)
	end
	local s, n = 0, tonumber(v)
	if #v > 9 then
		s, n = tonumber(string.sub(v, 1, -10)), tonumber(string.sub(v, -9))
	end
	if neg then
		if n > 0 then
			s, n = -s - 1, E - n
		else
			s = -s
		end
	end
	return s, n
end

-- fmt writes (s, n) as a decimal int64, the inverse of parse.
local function fmt(s, n)
	local neg = s < 0
	if neg then -- magnitude of s*E + n
		if n > 0 then
			s, n = -s - 1, E - n
		else
			s = -s
		end
	end
	local v
	if s == 0 then
		v = string.format('%d', n)
	else
		v = string.format('%d%09d', s, n)
	end
	if neg and v ~= '0' then
		v = '-' .. v
	end
	return v
end

local function add(as, an, bs, bn)
	local s, n = as + bs, an + bn
	if n >= E then
		s, n = s + 1, n - E
	end
	return s, n
end

local function sub(as, an, bs, bn)
	local s, n = as - bs, an - bn
	if n < 0 then
		s, n = s - 1, n + E
	end
	return s, n
end

local function less(as, an, bs, bn)
	return as < bs or (as == bs and an < bn)
end

-- clock is now from the argument, or from the server when it is "".
local function clock(v)
	if v == '' then
		local t = redis.call('TIME')
		return tonumber(t[1]), tonumber(t[2]) * 1000
	end
	return parse(v)
end

-- ttl is the key's time to live in ms for a TAT (s, n) ahead of now: rounded
-- up, never negative, plus the margin.
local function ttl(s, n, margin)
	local ms = 0
	if s >= 0 then
		ms = s * 1000 + math.ceil(n / 1000000)
	end
	return ms + margin
end

local function bad(what)
	return redis.error_reply('ERR moat gcra: malformed ' .. what)
end

local op = ARGV[1]
local ns, nn = clock(ARGV[2])
if not ns then
	return bad('now')
end
local margin = tonumber(ARGV[5])
if not margin or margin < 1 then
	return bad('ttl margin')
end
local cur = redis.call('GET', KEYS[1])
local ts, tn = 0, 0
if cur then
	ts, tn = parse(cur)
	if not ts then
		return bad('stored TAT')
	end
end

if op == 'charge' then
	local cs, cn = parse(ARGV[3])
	local bs, bn = parse(ARGV[4])
	if not cs or not bs then
		return bad('limit')
	end
	local old = cur or ''
	if less(ts, tn, ns, nn) then
		ts, tn = ns, nn
	end
	local xs, xn = add(ts, tn, cs, cn) -- the TAT after this request
	local ls, ln = add(ns, nn, bs, bn) -- now + T + tau
	if less(ls, ln, xs, xn) then
		return {0, old, fmt(ns, nn), old}
	end
	local new = fmt(xs, xn)
	local ds, dn = sub(xs, xn, ns, nn)
	redis.call('SET', KEYS[1], new, 'PX', ttl(ds, dn, margin))
	return {1, old, fmt(ns, nn), new}
end

-- count reads a non-negative integer argument below 2^53, exact in Lua.
local function count(v)
	if type(v) ~= 'string' or not string.find(v, '^%d+$') or #v > 16 then
		return nil
	end
	return tonumber(v)
end

if op == 'quota' then
	local cost, quota = count(ARGV[3]), count(ARGV[4])
	local es, en = parse(ARGV[6])
	if not cost or not quota or not es then
		return bad('quota')
	end
	local used = 0
	if cur then
		used = count(cur)
		if not used then
			return bad('stored count')
		end
	end
	local old = cur or ''
	if used + cost > quota then
		return {0, old, fmt(ns, nn), old}
	end
	local new = string.format('%d', used + cost)
	local ds, dn = sub(es, en, ns, nn)
	redis.call('SET', KEYS[1], new, 'PX', ttl(ds, dn, margin))
	return {1, old, fmt(ns, nn), new}
end

if op == 'qrefund' then
	local cost = count(ARGV[3])
	if not cost then
		return bad('cost')
	end
	if not cur then
		return 0
	end
	local used = count(cur)
	if not used then
		return bad('stored count')
	end
	if used <= cost then
		redis.call('DEL', KEYS[1])
	else
		redis.call('SET', KEYS[1], string.format('%d', used - cost), 'KEEPTTL')
	end
	return 1
end

if op == 'refund' then
	if not cur then
		return 0 -- expired: the charge is gone already
	end
	local old, charged = ARGV[3], ARGV[4]
	local xs, xn = parse(charged)
	if not xs then
		return bad('charged TAT')
	end
	local vs, vn
	if cur == charged then
		if old == '' then
			redis.call('DEL', KEYS[1])
			return 1
		end
		vs, vn = parse(old)
		if not vs then
			return bad('old TAT')
		end
	else
		-- Others charged or refunded since: take off what of this charge
		-- still counts, charged - max(old, now), and keep at least now.
		if not less(ns, nn, ts, tn) then
			return 0 -- the key is idle: nothing of the charge counts any more
		end
		local os, on = 0, 0
		if old ~= '' then
			os, on = parse(old)
			if not os then
				return bad('old TAT')
			end
		end
		if less(os, on, ns, nn) then
			os, on = ns, nn
		end
		if not less(os, on, xs, xn) then
			return 0 -- time has used up the charge
		end
		local ds, dn = sub(xs, xn, os, on)
		vs, vn = sub(ts, tn, ds, dn)
		if less(vs, vn, ns, nn) then
			vs, vn = ns, nn
		end
	end
	local rs, rn = sub(vs, vn, ns, nn)
	redis.call('SET', KEYS[1], fmt(vs, vn), 'PX', ttl(rs, rn, margin))
	return 1
end

return bad('operation')
