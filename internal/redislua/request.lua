-- request.lua: rate-limit requests, each with all of its limits, evaluated atomically in
-- one script call (SPEC §5). This file is the project's own; it mirrors internal/limiter
-- (Check in decision.go, the algorithms in algorithms.go, evaluateLocked in evaluate.go)
-- line for line, the log through ZSET queries instead of a slice, and must agree with it
-- bit for bit (internal/limiter/redis_diff_test.go). manifest.json records its sha256.
--
-- Contract (contractVersion 5)
--   One call decides r >= 1 requests, one after the other: each is all or nothing on
--   its own, and a later request sees an earlier one's charge. (The service batches
--   requests that arrive together into one call: one command and one round trip.)
--   KEYS     the storage keys of request 1's limits, then request 2's, ...; within a
--            request keys may repeat: limits with the same key share state, and a later
--            limit sees an earlier limit's charge.
--   ARGV[1]  every integer of the call below, in order, each as an 8-byte little-endian
--            IEEE-754 double (exact below 2^53): read with struct.unpack (one call up
--            to 4,000 values), where a decimal argument each cost a tonumber and Redis
--            an object.
--   r, the number of requests
--   g, the number of parameter groups
--   then g parameter groups, numbered 1..g, of 9 integers each (the limits of one rule
--   share a group, so a call carries a rule's parameters once however many of its
--   requests use it):
--       algorithm  0 fixed_window, 1 gcra, 2 token_bucket, 3 sliding_window,
--                  4 sliding_window_log, 5 token_budget
--       shadow     1 = never denies, 0 = enforced
--       limit      L (Params.Limit)
--       periodMs   P (Params.PeriodMs)
--       burst      gcra burst / token_bucket capacity (Params.Burst, defaults applied)
--       num, den   reduced rate (Params.Num/Den): gcra T = den/num ms; token_bucket
--                  num/den tokens per ms; 0 for other algorithms
--       width      sliding_window sub-bucket width w = P/S in ms (Params.Width), else 0
--       buckets    sliding_window S (Params.Buckets), else 0
--   then per request:
--     now    epoch ms; 0 = the Redis clock, TIME as sec*1000 + floor(usec/1000), read
--            once per call
--     n      the number of its limits (its next n KEYS)
--     then 2 integers per limit:
--       group      its parameter group, 1..g
--       cost       q >= 0 (0 = check-only)
--   Reply: per request {now, allowed (1/0), then per limit: allowed (1/0), limit,
--          remaining, resetAt, retryAfterMs}, all integers, concatenated.
--   A call whose ARGV is not one string of whole 8-byte values, whose layout does not
--   add up, whose parameters are not whole numbers within limiter.Params' bounds (an
--   algorithm code above 5, a limit, burst or period out of range, a zero rate or
--   sub-bucket, a log over its cap), that names a group outside 1..g, or whose now or a
--   cost is not a whole number within limiter's bounds (MaxNowMs, MaxCost) is refused
--   before anything runs.
--
-- Semantics of one request: limits are checked in order on working copies of their keys' states; the
-- copies are written only when every non-shadow limit allowed. Otherwise nothing is
-- written and each limit that allowed reports its cost-0 decision against the stored
-- state. A check with cost 0 never writes.
--
-- Storage. Every key holds one limit's state, a serialization of limiter.State; a key
-- of another Redis type, or content this script did not write (or that another
-- algorithm wrote), reads as a cold key and is replaced when written.
--   gcra, token_bucket, fixed_window, token_budget: a STRING "k:X:A:B" of decimal
--     integers ("%d"), read with one GET and written with one SET ... PX:
--     k  the algorithm code of the writer (another code reads as cold)
--     X  State.ExpireAt, epoch ms; from now >= X the state reads as cold
--     gcra:          A = floor(tat) ms, B = tat's fraction in 1/num ms
--     token_bucket:  A = last refill ms, B = tokens scaled by den
--     fixed_window, token_budget: A = window start ms, B = count
--   sliding_window: a HASH with k and X as above and one field per sub-bucket index
--     ("%d") = its count (at most S+1); all values decimal integers.
--   sliding_window_log: a ZSET with one member per admitted unit, "<stamp>:<i>" with
--     score = stamp (i numbers the units at one stamp), and the member "X" with score
--     -ExpireAt (negative, so below every stamp). Counting, the oldest and the k-th
--     oldest live entry and dropping expired stamps are O(log n) Redis operations;
--     memory is bounded by the limit (validation caps it at 1,000).
-- Every write sets the expiry to max(X - now, 1000) ms: the state reads as cold from X on,
-- and the one-second floor keeps replays stable when vector time runs ahead of the
-- wall clock.
--
-- Exactness: Lua numbers are doubles. Params.Validate bounds every intermediate value
-- below 2^53, so integer + - * are exact; every division goes through quo (exact
-- truncated division with a correction step). Numbers are never turned into text with
-- tostring or ..; every number given to redis.call goes through string.format('%d')
-- (Redis's own number-to-text conversion may use exponent notation).

local floor, mmin, mmax = math.floor, math.min, math.max
local fmt = string.format

local RETRY_CAP = 1099511627776 -- 2^40, limiter.RetryCapMs
local MAX_AHEAD = 4294967296 -- 2^32, limiter maxAheadMs
local TTL_FLOOR = 1000
local MAX_INT = 9007199254740991 -- 2^53 - 1
local MAX_LIMIT = 4294967296 -- 2^32, limiter.MaxLimit (limits and bursts)
local MAX_COST = 4294967295 -- 2^32 - 1, limiter.MaxCost
local MAX_PERIOD = 315360000000 -- ten years in ms, limiter.MaxPeriodMs
local MAX_LOG_LIMIT = 1000 -- limiter.MaxLogLimit: the log keeps one entry per unit
local MAX_BUCKETS = 100 -- limiter.MaxBuckets: a sliding_window keeps up to one field per bucket
local MAX_NOW = 7258118400000 -- limiter.MaxNowMs
local GROUP = 9 -- integers per parameter group
local BATCH = 512 -- fields per HSET/HDEL call (unpack has a stack limit)

local FIXED_WINDOW, GCRA, TOKEN_BUCKET, SLIDING_WINDOW, SLIDING_LOG, TOKEN_BUDGET = 0, 1, 2, 3, 4, 5

-- quo returns a/b truncated toward zero, as Go's integer division, for b > 0 and
-- |a| < 2^53. The double quotient is off by at most one (and only for |a| near 2^53);
-- the remainder fixes it.
local function quo(a, b)
  if a < 0 then
    return -quo(-a, b)
  end
  local q = floor(a / b)
  local r = a - q * b
  if r < 0 then
    q = q - 1
  elseif r >= b then
    q = q + 1
  end
  return q
end

-- ceildiv is limiter.ceilDiv: (a + b - 1) / b in Go's truncated division.
local function ceildiv(a, b)
  return quo(a + b - 1, b)
end

-- floordiv is limiter.floorDiv: floor(a/b) for b > 0 and any a.
local function floordiv(a, b)
  local q = quo(a, b)
  if a < 0 and q * b ~= a then
    q = q - 1
  end
  return q
end

-- saturated_retry is limiter.saturatedRetry: min(RETRY_CAP, ceil((x + per*m)/div)).
local function saturated_retry(x, per, m, div)
  local a = quo(per, div)
  local b = per - a * div
  if a > 0 and m > quo(RETRY_CAP, a) then
    return RETRY_CAP
  end
  return mmin(a * m + ceildiv(b * m + x, div), RETRY_CAP)
end

local NONE = {}

-- Each algorithm returns allowed, limit, remaining, resetAt, retryAfterMs, then the
-- state to store (nothing when nothing is written). Input states are never modified.
-- The four string-state algorithms (gcra, token_bucket, fixed_window, token_budget)
-- take their state as scalars, live, A and B (live false: cold), and return the new
-- one as A, B, X: a request whose limits all keep string states then reads, decides
-- and writes without building a table per limit (decide_one, decide_strings).

local function gcra(p, live, A, B, now, q)
  local num, den, burst = p.num, p.den, p.burst
  local diff = 0
  if live and A >= now then
    diff = mmin(A - now, MAX_AHEAD) * num + B
  end
  local tau = den * burst
  if q <= burst and diff + den * q <= tau then
    local newdiff = diff + den * q
    local rem = quo(tau - newdiff, den)
    local ahead = ceildiv(newdiff, num)
    if q == 0 then
      return true, burst, rem, now + ahead, 0, nil
    end
    local whole = quo(newdiff, num)
    return true, burst, rem, now + ahead, 0, now + whole, newdiff - whole * num, now + mmax(ahead, 1)
  end
  local rem = quo(mmax(0, tau - diff), den)
  local retry
  if q > burst then
    retry = saturated_retry(diff, den, q - burst, num)
  else
    retry = ceildiv(diff + den * q - tau, num)
  end
  return false, burst, rem, now + ceildiv(diff, num), retry
end

local function token_bucket(p, live, A, B, now, q)
  local num, den, cap = p.num, p.den, p.burst
  local full = cap * den
  local tokens, last = full, now
  if live then
    tokens, last = mmin(B, full), A -- a lowered capacity caps the stored tokens at once
    local elapsed = now - last
    if elapsed > 0 then
      if elapsed >= ceildiv(full - tokens, num) then
        tokens = full
      else
        tokens = tokens + elapsed * num
      end
    end
  end
  if q <= cap and tokens >= q * den then
    local left = tokens - q * den
    local refill = ceildiv(full - left, num)
    local rem = quo(left, den)
    if q == 0 then
      return true, cap, rem, now + refill, 0
    end
    return true, cap, rem, now + refill, 0, mmax(last, now), left, mmax(last, now) + mmax(refill, 1)
  end
  local retry
  if q > cap then
    retry = saturated_retry(full - tokens, den, q - cap, num)
  else
    retry = ceildiv(q * den - tokens, num)
  end
  return false, cap, quo(tokens, den), now + ceildiv(full - tokens, num), retry
end

-- window_count is the count a window state holds for the window starting at ws.
local function window_count(live, A, B, ws)
  if live and A == ws then
    return B
  end
  return 0
end

local function fixed_window(p, live, A, B, now, q)
  local L, P = p.limit, p.period
  local ws = floordiv(now, P) * P
  local count = window_count(live, A, B, ws)
  local reset = ws + P
  if count + q <= L then
    if q > 0 then
      return true, L, L - count - q, reset, 0, ws, count + q, reset
    end
    return true, L, L - count - q, reset, 0
  end
  return false, L, mmax(0, L - count), reset, reset - now
end

local function token_budget(p, live, A, B, now, q)
  local L, P = p.limit, p.period
  local ws = floordiv(now, P) * P
  local served = window_count(live, A, B, ws)
  local reset = ws + P
  if served < L then
    if q > 0 then
      return true, L, mmax(0, L - served - q), reset, 0, ws, served + q, reset
    end
    return true, L, mmax(0, L - served - q), reset, 0
  end
  return false, L, 0, reset, reset - now
end

-- sliding_window works in units of 1/w (see limiter.slidingWindow).
local function sliding_window(p, st, now, q)
  local L, w, S = p.limit, p.width, p.buckets
  local c = floordiv(now, w)
  local e = now - c * w
  local ats, ns = st.ats, st.ns
  local full, oldest, current = 0, 0, 0
  for i = 1, #ats do
    local at = ats[i]
    local n = mmin(ns[i], L)
    if at == c - S then
      oldest = n
    elseif at > c - S and at <= c then
      full = full + n
      if at == c then
        current = n
      end
    end
  end
  full = mmin(full, L + 1)
  local est = full * w + oldest * (w - e)
  local reset = (c + 1) * w + p.period
  if q <= L and est + q * w <= L * w then
    local rem = quo(L * w - est - q * w, w)
    if q == 0 then
      return true, L, rem, reset, 0, nil
    end
    -- limiter.slidingNext: keep sub-buckets in [c-S, c), then set c.
    local nats, nns = {}, {}
    for i = 1, #ats do
      if ats[i] >= c - S and ats[i] < c then
        nats[#nats + 1] = ats[i]
        nns[#nns + 1] = ns[i]
      end
    end
    nats[#nats + 1] = c
    nns[#nns + 1] = current + q
    return true, L, rem, reset, 0, { live = true, X = reset, ats = nats, ns = nns }
  end
  local rem = 0
  if L * w > est then
    rem = quo(L * w - est, w)
  end
  local retry = (c + 1) * w - now
  if q <= L and oldest > 0 then
    local excess = est + q * w - L * w
    if excess <= oldest * (w - e) then
      retry = ceildiv(excess, oldest)
    end
  end
  return false, L, rem, reset, mmax(1, retry), nil
end

-- The log's state is a ZSET seen through a view (see load): stored entries with a
-- stamp above lo are live; a working copy adds `added` units at now and drops stamps
-- <= dropT. Entries are counted and ranked by Redis (ZCOUNT, ZRANGEBYSCORE LIMIT), so
-- a check costs O(log n), not O(n).

-- log_lo is the exclusive lower bound of the live stored stamps: max(now - P, dropT, 0).
local function log_lo(st, now, P)
  local lo = now - P
  if st.dropT and st.dropT > lo then
    lo = st.dropT
  end
  return '(' .. fmt('%d', mmax(lo, 0))
end

-- log_stamp returns the stamp of the (i+1)-th oldest live stored entry.
local function log_stamp(key, lo, i)
  local r = redis.call('ZRANGEBYSCORE', key, lo, '+inf', 'WITHSCORES', 'LIMIT', fmt('%d', i), '1')
  return tonumber(r[2])
end

-- sliding_log is limiter.slidingLog over the merged sequence of live stored entries and
-- the units added at now.
local function sliding_log(p, st, now, q, key)
  local L, P = p.limit, p.period
  local added = st.added
  local nst, lo, s1 = 0, nil, nil
  if st.stored then
    lo = log_lo(st, now, P)
    nst = redis.call('ZCOUNT', key, lo, '+inf')
    if nst > 0 then
      s1 = log_stamp(key, lo, 0)
    end
  end
  local n = nst + added
  -- limiter.oldestStamp: the first live entry, or now when the log is empty
  local oldest = now
  if s1 and (added == 0 or s1 < now) then
    oldest = s1
  end
  if n + q <= L then
    if q == 0 then
      return true, L, L - n - q, oldest + P, 0, nil
    end
    -- after limiter.logInsert the first entry is min(s1, now) and the last max(top, now)
    local first, last = now, now
    if s1 then
      first = mmin(s1, now)
      local r = redis.call('ZRANGE', key, '-1', '-1', 'WITHSCORES')
      last = mmax(tonumber(r[2]), now)
    end
    local dropT = nil
    if st.stored then
      dropT = now - P
      if st.dropT and st.dropT > dropT then
        dropT = st.dropT
      end
    end
    return true, L, L - n - q, first + P, 0,
      { kind = 'zset', live = true, X = last + P, stored = st.stored, dropT = dropT, added = added + q }
  end
  local retry
  if n == 0 then
    retry = P
  else
    -- limiter.kthStamp: live stored entries below now, then the ones at now (stored and
    -- added), then the stored ones above now
    local k = mmin(mmax(n + q - L, 1), n)
    local below, at = 0, 0
    if nst > 0 then
      below = redis.call('ZCOUNT', key, lo, '(' .. fmt('%d', now))
    end
    local stamp
    if k <= below then
      stamp = log_stamp(key, lo, k - 1)
    else
      if nst > 0 then
        at = redis.call('ZCOUNT', key, fmt('%d', now), fmt('%d', now))
      end
      if k <= below + at + added then
        stamp = now
      else
        stamp = log_stamp(key, lo, k - 1 - added)
      end
    end
    retry = mmax(1, stamp + P - now)
  end
  return false, L, mmax(0, L - n), oldest + P, retry, nil
end

-- The string-state algorithms, by code (scalar state); the other two take tables.
local SCALAR = {
  [FIXED_WINDOW] = fixed_window,
  [GCRA] = gcra,
  [TOKEN_BUCKET] = token_bucket,
  [TOKEN_BUDGET] = token_budget,
}

-- The Redis type each algorithm keeps its state in (see Storage above).
local function kind_of(algo)
  if algo == SLIDING_LOG then
    return 'zset'
  elseif algo == SLIDING_WINDOW then
    return 'hash'
  end
  return 'string'
end

local COLD = {
  string = { kind = 'string', live = false, k = -1, A = 0, B = 0, X = 0 },
  hash = { kind = 'hash', live = false, k = -1, X = 0, ats = NONE, ns = NONE },
  zset = { kind = 'zset', live = false, X = 0, stored = false, added = 0 },
}

-- expired says whether a state with expiry X reads as cold at now (X = 0: never).
local function expired(X, now)
  return X ~= 0 and now >= X
end

-- check is limiter.Check. A state of another kind (string, hash, zset) or written by
-- another algorithm reads as cold.
local function check(p, st, now, q, key)
  local kind = kind_of(p.algo)
  if st.kind ~= kind or not st.live or (kind ~= 'zset' and st.k ~= p.algo) or expired(st.X, now) then
    st = COLD[kind]
  end
  if p.scalar then
    local ok, limit, rem, reset, retry, A, B, X = p.scalar(p, st.live, st.A, st.B, now, q)
    local nxt = nil
    if A then
      nxt = { kind = 'string', live = true, k = p.algo, A = A, B = B, X = X }
    end
    return ok, limit, rem, reset, retry, nxt
  end
  local f = p.algo == SLIDING_WINDOW and sliding_window or sliding_log
  local ok, limit, rem, reset, retry, nxt = f(p, st, now, q, key)
  if nxt and kind ~= 'zset' then
    nxt.kind, nxt.k = kind, p.algo
  end
  return ok, limit, rem, reset, retry, nxt
end

-- parse_int reads an integer as this script stores it: optional minus, no leading
-- zeros, below 2^53 in magnitude; anything else is nil.
local function parse_int(s)
  if #s > 17 or not (s == '0' or string.find(s, '^%-?[1-9]%d*$')) then
    return nil
  end
  local x = tonumber(s)
  if x == nil or x > MAX_INT or x < -MAX_INT then
    return nil
  end
  return x
end

local FOREIGN = { kind = 'none' }

-- parse_fields reads a string state "k:X:A:B" into its four numbers; anything else is
-- nil.
local function parse_fields(v)
  local k, X, A, B = string.match(v, '^(%d):(%d+):(%-?%d+):(%-?%d+)$')
  if k == nil or #X > 16 or #A > 17 or #B > 17 then
    return nil
  end
  X, A, B = tonumber(X), tonumber(A), tonumber(B)
  if X > MAX_INT or A > MAX_INT or A < -MAX_INT or B > MAX_INT or B < -MAX_INT then
    return nil
  end
  return tonumber(k), X, A, B
end

-- parse_string reads a string state as a state table; anything else is nil.
local function parse_string(v)
  local k, X, A, B = parse_fields(v)
  if k == nil then
    return nil
  end
  return { kind = 'string', live = true, k = k, A = A, B = B, X = X }
end

-- read_reply passes on the reply of a read made with redis.pcall, so that a key of
-- another type (WRONGTYPE) reads as foreign, and fails the call on any other error (an
-- ACL without the command, say): read as no state, a counter would let the request
-- past its limit and be overwritten.
-- In a batched call the requests before this one have been written already; their
-- callers get the call's error all the same (as for any failed call, docs/redis.md).
local function read_reply(v)
  if type(v) == 'table' and v.err and string.sub(v.err, 1, 9) ~= 'WRONGTYPE' then
    error(v)
  end
  return v
end

-- load reads a key once per request into an entry: its Redis type, the state it holds
-- (orig), and for a hash the fields as stored, for the write-back diff. A key of another
-- type, or content this script did not write, loads as FOREIGN: cold for every
-- algorithm, and replaced when it is written.
-- A key is read straight away with the command its algorithm's type needs (GET,
-- HGETALL; Redis has no empty hashes, so an empty reply means no key): one command
-- instead of TYPE + a read. Only a WRONGTYPE answer falls back to TYPE.
local function load(key, want)
  local r0, t = nil, nil
  if want == 'string' then
    local v = read_reply(redis.pcall('GET', key))
    if v == false then
      return { type = 'none', valid = true, orig = FOREIGN, runs = NONE, scalars = NONE }
    elseif type(v) == 'string' then
      local st = parse_string(v)
      return { type = 'string', valid = st ~= nil, orig = st or FOREIGN, runs = NONE, scalars = NONE }
    end
  elseif want == 'hash' then
    r0 = read_reply(redis.pcall('HGETALL', key))
    if r0.err then
      r0 = nil
    elseif #r0 == 0 then
      t = 'none'
    else
      t = 'hash'
    end
  end
  if t == nil then
    t = redis.call('TYPE', key)
    t = t.ok or t
  end
  local e = { type = t, valid = false, orig = FOREIGN, runs = NONE, scalars = {} }
  if t == 'none' then
    e.valid = true
  elseif t == 'string' then
    -- a string state read for a limit of another kind: kept as what it is, so that a
    -- later limit of the request with the state's own algorithm still sees it
    local st = parse_string(redis.call('GET', key))
    e.valid, e.orig = st ~= nil, st or FOREIGN
  elseif t == 'zset' then
    -- member "X" holds -ExpireAt as its score, below every stamp
    local x = redis.call('ZSCORE', key, 'X')
    x = x and tonumber(x)
    if x and x == floor(x) and x < 0 and x >= -MAX_INT then
      e.valid = true
      e.orig = { kind = 'zset', live = true, X = -x, stored = true, added = 0 }
    end
  elseif t == 'hash' then
    local r = r0 or redis.call('HGETALL', key)
    local st = { kind = 'hash', live = true, k = -1, X = 0, ats = NONE, ns = NONE }
    local scalars = e.scalars
    local ats, cnt = nil, nil -- sub-bucket counts, made only when there are some
    for i = 1, #r, 2 do
      local f, x = r[i], parse_int(r[i + 1])
      if x == nil then
        return e
      end
      if f == 'k' or f == 'X' then
        st[f] = x
        scalars[f] = x
      else
        local at = parse_int(f)
        if at == nil then
          scalars[f] = x -- not ours: ignored, deleted on write
        else
          if ats == nil then
            ats, cnt = {}, {}
          end
          ats[#ats + 1] = at
          cnt[at] = x
        end
      end
    end
    if ats ~= nil then
      -- limiter keeps runs in index order
      if #ats > 1 then
        table.sort(ats)
      end
      local ns = {}
      for i = 1, #ats do
        ns[i] = cnt[ats[i]]
      end
      st.ats, st.ns = ats, ns
      e.runs = cnt
    end
    e.valid, e.orig = true, st
  end
  return e
end

local function flush(cmd, key, args)
  if #args > 0 then
    redis.call(cmd, key, unpack(args))
  end
end

local function expire(key, X, now)
  redis.call('PEXPIRE', key, fmt('%d', mmax(X - now, TTL_FLOOR)))
end

-- store_hash writes a sliding_window state (the only hash): only the fields that differ
-- from what is stored.
local function store_hash(key, e, st, now)
  local runs, scalars = e.runs, e.scalars
  if e.type ~= 'hash' or not e.valid then
    if e.type ~= 'none' then
      redis.call('DEL', key)
    end
    runs, scalars = {}, {}
  end
  local set, del = {}, {}
  -- k and X, then the sub-buckets; every other field (another writer's) is dropped
  if scalars.k ~= st.k then
    set[#set + 1] = 'k'
    set[#set + 1] = fmt('%d', st.k)
  end
  if scalars.X ~= st.X then
    set[#set + 1] = 'X'
    set[#set + 1] = fmt('%d', st.X)
  end
  for f in pairs(scalars) do
    if f ~= 'k' and f ~= 'X' then
      del[#del + 1] = f
    end
  end
  local keep = {}
  for i = 1, #st.ats do
    local at, n = st.ats[i], st.ns[i]
    keep[at] = true
    if runs[at] ~= n then
      set[#set + 1] = fmt('%d', at)
      set[#set + 1] = fmt('%d', n)
      if #set >= 2 * BATCH then
        flush('HSET', key, set)
        set = {}
      end
    end
  end
  for at in pairs(runs) do
    if not keep[at] then
      del[#del + 1] = fmt('%d', at)
      if #del >= BATCH then
        flush('HDEL', key, del)
        del = {}
      end
    end
  end
  flush('HDEL', key, del)
  flush('HSET', key, set)
  expire(key, st.X, now)
end

-- store_string writes a string state: "k:X:A:B" with its expiry, in one command (SET
-- replaces a key of any type).
local function store_string(key, k, X, A, B, now)
  redis.call('SET', key, fmt('%d:%d:%d:%d', k, X, A, B), 'PX', fmt('%d', mmax(X - now, TTL_FLOOR)))
end

-- store_zset writes a log: drop the stamps the working copy dropped, add its units at
-- now as members "now:i" (i continues the count already stored at now), set X.
local function store_zset(key, e, st, now)
  local base = 0
  if not st.stored then
    if e.type ~= 'none' then
      redis.call('DEL', key)
    end
  else
    if st.dropT and st.dropT >= 1 then
      redis.call('ZREMRANGEBYSCORE', key, '0', fmt('%d', st.dropT))
    end
    base = redis.call('ZCOUNT', key, fmt('%d', now), fmt('%d', now))
  end
  local score = fmt('%d', now)
  local add = {}
  for i = 1, st.added do
    add[#add + 1] = score
    add[#add + 1] = fmt('%d:%d', now, base + i)
    if #add >= 2 * BATCH then
      flush('ZADD', key, add)
      add = {}
    end
  end
  add[#add + 1] = fmt('%d', -st.X)
  add[#add + 1] = 'X'
  flush('ZADD', key, add)
  expire(key, st.X, now)
end

-- read_group reads the parameter group whose first integer is v[b + 1] (v: ARGV as
-- numbers). A call reads each group once, however many limits use it.
local function read_group(v, b)
  return {
    algo = v[b + 1],
    shadow = v[b + 2] == 1,
    limit = v[b + 3],
    period = v[b + 4],
    burst = v[b + 5],
    num = v[b + 6],
    den = v[b + 7],
    width = v[b + 8],
    buckets = v[b + 9],
    scalar = SCALAR[v[b + 1]], -- the algorithm's function when it keeps a string state
  }
end

-- store writes a key's new state in its Redis type.
local function store(key, e, st, now)
  if st.kind == 'string' then
    store_string(key, st.k, st.X, st.A, st.B, now)
  elseif st.kind == 'zset' then
    store_zset(key, e, st, now)
  else
    store_hash(key, e, st, now)
  end
end

-- read_string reads a key's string state as k, X, A, B; a missing key, a key of
-- another type (GET's error) or content this script did not write gives k = -1.
local function read_string(key)
  local s = read_reply(redis.pcall('GET', key))
  if type(s) == 'string' then
    local k, X, A, B = parse_fields(s)
    if k ~= nil then
      return k, X, A, B
    end
  end
  return -1, 0, 0, 0
end

-- check_scalar decides one string-state limit against the state k, X, A, B: a state
-- another algorithm wrote, or that expired, reads as cold.
local function check_scalar(p, k, X, A, B, now, q)
  local live = k == p.algo and not expired(X, now)
  return p.scalar(p, live, A, B, now, q)
end

-- decide_one is decide for a request with one limit, the common case, without the
-- bookkeeping several limits need: the limit's own decision is the request's, and a
-- denial leaves nothing to write and nothing to check again.
local function decide_one(kb, p, cost, now, reply)
  local key = KEYS[kb + 1]
  local ok, limit, rem, reset, retry
  if p.scalar then
    -- A string state, read, decided and written as scalars (load, check and store
    -- without their tables). This is read_string and check_scalar written out: on
    -- the most common path the two calls cost about 3% of a call's Redis time
    -- (BenchmarkScriptCompare, limits=1, 2026-11-22).
    local v = redis.pcall('GET', key)
    if type(v) == 'table' then
      v = read_reply(v)
    end
    local live, A, B = false, 0, 0
    if type(v) == 'string' then
      local k, X, a, b = parse_fields(v)
      if k == p.algo and not expired(X, now) then
        live, A, B = true, a, b
      end
    end
    local nA, nB, nX
    ok, limit, rem, reset, retry, nA, nB, nX = p.scalar(p, live, A, B, now, cost)
    if ok and nA then
      store_string(key, p.algo, nX, nA, nB, now)
    end
  else
    local e = load(key, kind_of(p.algo))
    local nxt
    ok, limit, rem, reset, retry, nxt = check(p, e.orig, now, cost, key)
    if ok and nxt then
      store(key, e, nxt, now)
    end
  end
  local m = #reply -- then put_decision, written out as the read above is
  reply[m + 1] = now
  reply[m + 2] = (ok or p.shadow) and 1 or 0
  reply[m + 3] = ok and 1 or 0
  reply[m + 4] = limit
  reply[m + 5] = rem
  reply[m + 6] = reset
  reply[m + 7] = retry
end

-- Requests whose limits all keep string states (gcra, token_bucket, fixed_window,
-- token_budget: the common case) are decided on scalars, without a table per limit:
-- a call keeps every such request's key states in the flat arrays below, reused
-- from one request to the next. A request's keys get slots 1..s (a key that repeats
-- within the request shares its slot); slot j holds SLOT numbers from 1 + (j-1)*SLOT:
-- the stored state k, X, A, B (k = -1: none of ours, which reads as cold), then the
-- working copy k, X, A, B, then dirty (1: the working copy is to be written).
local SLOT = 9
local slots, slot_of = {}, {}
local slot_keys = {}

-- put_decision writes one limit's five reply integers from reply[r + 1] on.
local function put_decision(reply, r, ok, limit, rem, reset, retry)
  reply[r + 1] = ok and 1 or 0
  reply[r + 2] = limit
  reply[r + 3] = rem
  reply[r + 4] = reset
  reply[r + 5] = retry
end

-- decide_strings evaluates a request whose n limits (KEYS[kb + 1 .. kb + n], groups
-- and costs v[ab + 1], v[ab + 2], ...) all keep string states, with decide's
-- semantics, and appends {now, allowed, then five integers per limit} to reply.
local function decide_strings(kb, v, ab, groups, now, n, reply)
  local m = #reply
  reply[m + 1] = now
  reply[m + 2] = 1 -- allowed; set below (filled now so that reply stays a sequence)
  local s, allowed = 0, true
  for i = 1, n do
    local key = KEYS[kb + i]
    local j = 0
    for c = 1, s do
      if slot_keys[c] == key then
        j = c
        break
      end
    end
    local b
    if j == 0 then
      s = s + 1
      j, b = s, (s - 1) * SLOT
      slot_keys[j] = key
      local k, X, A, B = read_string(key)
      slots[b + 1], slots[b + 2], slots[b + 3], slots[b + 4] = k, X, A, B
      slots[b + 5], slots[b + 6], slots[b + 7], slots[b + 8] = k, X, A, B
      slots[b + 9] = 0
    else
      b = (j - 1) * SLOT
    end
    slot_of[i] = j
    local p = groups[v[ab + 2 * i - 1]]
    local ok, limit, rem, reset, retry, nA, nB, nX =
      check_scalar(p, slots[b + 5], slots[b + 6], slots[b + 7], slots[b + 8], now, v[ab + 2 * i])
    if not ok and not p.shadow then
      allowed = false
    elseif ok and nA then
      slots[b + 5], slots[b + 6], slots[b + 7], slots[b + 8] = p.algo, nX, nA, nB
      slots[b + 9] = 1
    end
    put_decision(reply, m + 2 + 5 * (i - 1), ok, limit, rem, reset, retry)
  end

  if allowed then
    for j = 1, s do
      local b = (j - 1) * SLOT
      if slots[b + 9] == 1 then
        store_string(slot_keys[j], slots[b + 5], slots[b + 6], slots[b + 7], slots[b + 8], now)
      end
    end
  else
    -- Denied: nothing is written; the limits that allowed report their cost-0 decision
    -- against the stored state.
    reply[m + 2] = 0
    for i = 1, n do
      local r = m + 2 + 5 * (i - 1)
      if reply[r + 1] == 1 then
        local b = (slot_of[i] - 1) * SLOT
        put_decision(reply, r, check_scalar(groups[v[ab + 2 * i - 1]],
          slots[b + 1], slots[b + 2], slots[b + 3], slots[b + 4], now, 0))
      end
    end
  end
end

-- decide evaluates one request: its n limits are KEYS[kb + 1 .. kb + n], their groups
-- and costs are v[ab + 1], v[ab + 2], v[ab + 3], ... It appends {now, allowed, then five
-- integers per limit} to reply.
local function decide(kb, v, ab, groups, now, n, reply)
  local entries, work, dirty = {}, {}, {}
  local params, decisions = {}, {}
  local allowed = true
  for i = 1, n do
    local p = groups[v[ab + 2 * i - 1]]
    params[i] = p
    local key = KEYS[kb + i]
    if entries[key] == nil then
      local e = load(key, kind_of(p.algo))
      entries[key] = e
      work[key] = e.orig
    end
    local ok, limit, rem, reset, retry, nxt = check(p, work[key], now, v[ab + 2 * i], key)
    decisions[i] = { ok, limit, rem, reset, retry }
    if not ok and not p.shadow then
      allowed = false
    elseif ok and nxt then
      work[key] = nxt
      dirty[key] = true
    end
  end

  if allowed then
    for key in pairs(dirty) do
      store(key, entries[key], work[key], now)
    end
  else
    -- Denied: nothing is written; the limits that allowed report their cost-0 decision
    -- against the stored state.
    for i = 1, n do
      if decisions[i][1] then
        local key = KEYS[kb + i]
        local ok, limit, rem, reset, retry = check(params[i], entries[key].orig, now, 0, key)
        decisions[i] = { ok, limit, rem, reset, retry }
      end
    end
  end

  local m = #reply
  reply[m + 1] = now
  reply[m + 2] = allowed and 1 or 0
  m = m + 2
  for i = 1, n do
    local d = decisions[i]
    put_decision(reply, m, d[1], d[2], d[3], d[4], d[5])
    m = m + 5
  end
end

-- main

-- is_count says whether x is a whole number in [0, 2^53).
local function is_count(x)
  return x ~= nil and x >= 0 and x <= MAX_INT and x == floor(x)
end

-- The call's integers, unpacked from ARGV[1] at once (values v[1..nv]; nil if ARGV is
-- not one string of whole 8-byte values). The layout check below refuses any value that
-- is not what its place wants: fractions, NaN and infinities included. struct.unpack
-- returns its values on the Lua stack (Redis 7's takes 7,997 at most), so a long call
-- is read in chunks; its last return value is the position after them, not a value.
local UNPACK_CHUNK = 4000
local v, nv = nil, 0
do
  local s = ARGV[1]
  if #ARGV == 1 and #s % 8 == 0 then
    nv = #s / 8
    if nv <= UNPACK_CHUNK then
      v = { struct.unpack('<' .. string.rep('d', nv), s) }
      v[nv + 1] = nil
    else
      v = {}
      for at = 0, nv - 1, UNPACK_CHUNK do
        local k = mmin(UNPACK_CHUNK, nv - at)
        local t = { struct.unpack('<' .. string.rep('d', k), s, 8 * at + 1) }
        for j = 1, k do
          v[at + j] = t[j]
        end
      end
    end
  end
end

-- group_in_range says whether the parameter group at v[b + 1 ..] holds whole numbers
-- within the bounds limiter.Params.Validate holds rules to, as far as the script needs
-- them to run safely: a known algorithm, no division by zero, no log longer than its
-- cap. (The finer exact-arithmetic bounds of Validate are the engine's to keep.)
local function group_in_range(v, b)
  for i = b + 1, b + GROUP do
    if not is_count(v[i]) then
      return false
    end
  end
  local algo, shadow, limit, period, burst = v[b + 1], v[b + 2], v[b + 3], v[b + 4], v[b + 5]
  -- a limit of 0 (it blocks) runs only as fixed_window, as limiter.Params.Validate makes it
  local least = algo == FIXED_WINDOW and 0 or 1
  if algo > TOKEN_BUDGET or shadow > 1 or limit < least or limit > MAX_LIMIT or period < 1
      or period > MAX_PERIOD or burst < 1 or burst > MAX_LIMIT then
    return false
  end
  if algo == GCRA or algo == TOKEN_BUCKET then
    return v[b + 6] >= 1 and v[b + 7] >= 1 -- num, den
  elseif algo == SLIDING_WINDOW then
    return v[b + 8] >= 1 and v[b + 9] >= 1 and v[b + 9] <= MAX_BUCKETS -- width, buckets
  elseif algo == SLIDING_LOG then
    return limit <= MAX_LOG_LIMIT
  end
  return true
end

-- layout checks the whole call before anything runs, so a bad call writes nothing. It
-- returns r and g, or nil.
local function layout()
  if v == nil then
    return nil
  end
  local r, g = v[1], v[2]
  if not is_count(r) or r < 1 or not is_count(g) then
    return nil
  end
  local a, k = 2 + GROUP * g, 0
  for b = 2, a - 1, GROUP do
    if not group_in_range(v, b) then
      return nil
    end
  end
  for _ = 1, r do
    local n = v[a + 2]
    if not is_count(v[a + 1]) or v[a + 1] > MAX_NOW or not is_count(n) then
      return nil
    end
    for j = a + 3, a + 2 + 2 * n, 2 do
      local gi, q = v[j], v[j + 1]
      if not is_count(gi) or gi < 1 or gi > g or not is_count(q) or q > MAX_COST then
        return nil
      end
    end
    a, k = a + 2 + 2 * n, k + n
  end
  if a ~= nv or k ~= #KEYS then
    return nil
  end
  return r, g
end

local r, g = layout()
if r == nil then
  return redis.error_reply('ERR ratelimit request.lua: bad KEYS/ARGV layout')
end

local groups = {}
for i = 1, g do
  groups[i] = read_group(v, 2 + GROUP * (i - 1))
end

-- all_strings says whether all n limits whose groups are v[ab + 1], v[ab + 3], ... keep
-- string states.
local function all_strings(v, ab, groups, n)
  for i = 1, n do
    if not groups[v[ab + 2 * i - 1]].scalar then
      return false
    end
  end
  return true
end

local clock = nil -- the Redis clock, read once, when a request asks for it
local reply = {}
local a, k = 2 + GROUP * g, 0
for _ = 1, r do
  local now, n = v[a + 1], v[a + 2]
  if now == 0 then
    if clock == nil then
      if redis.replicate_commands then
        redis.replicate_commands() -- effects replication (the default from Redis 5 on)
      end
      local t = redis.call('TIME')
      clock = tonumber(t[1]) * 1000 + quo(tonumber(t[2]), 1000)
    end
    now = clock
  end
  if n == 1 then
    decide_one(k, groups[v[a + 3]], v[a + 4], now, reply)
  elseif all_strings(v, a + 2, groups, n) then
    decide_strings(k, v, a + 2, groups, now, n, reply)
  else
    decide(k, v, a + 2, groups, now, n, reply)
  end
  a, k = a + 2 + 2 * n, k + n
end
return reply
