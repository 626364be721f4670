// Package overlimit is the local over-limit cache: it remembers limits that a store
// call found denying in a state that no traffic can change, and answers the same denial
// again, with the exact Decision the store would return, without asking the store.
//
// # Why such answers are exact
//
// A denied check never writes (SPEC §1), and a check that admits cost q ≥ 1 is the only
// thing that changes a key's state. Call a state frozen when no request of cost ≥ 1 can
// be admitted on it. The store's answer says when that holds: remaining = 0 means that
// not even one more unit fits. While a state is frozen it can only change with time, and
// for every algorithm the deny decision then moves with time in a way that the first
// denial pins down exactly. If a denial at store time t0 reported (limit, remaining = 0,
// resetAt, retryAfter r), then at any t1 in [t0, until) the store answers the same
// request with
//
//	allowed 0, the same limit, remaining 0, the same resetAt, retryAfter = t0 + r − t1
//
// where until, the end of the frozen interval, is (T = den/num ms per unit for gcra and
// token_bucket, q the cost of the observed denial):
//
//	fixed_window, token_budget  resetAt (the window rolls); any cost ≥ 1 is denied alike
//	gcra, token_bucket          t0 + r − ⌈(q−1)·T⌉ (one unit fits from then on); same q only
//	sliding_window              t0 + r (within the current sub-bucket); q = 1 only
//	sliding_window_log          resetAt (the oldest entry ages out); same q only
//
// (docs/performance.md derives each line.) Nothing cached is ever a guess: traffic from
// other replicas cannot admit anything on a frozen key either, so the cached answer stays
// exact under concurrent traffic. Only denials qualify: the cache never answers "allowed".
//
// # What is not cached
//
// Shadow-mode limits (they never deny), check-only calls (cost 0), request overrides
// (requests with different override rates share a key), a check whose key an earlier
// check of the same request charged (its decision saw an uncommitted charge), denials
// with remaining > 0 (other traffic could still be admitted and change the state),
// sliding_window denials at cost > 1 (the end of the frozen interval is not pinned down),
// gcra/token_bucket costs above the burst (saturated retry). A request is answered from
// the cache only when every one of its checks is; otherwise it goes to the store.
//
// # Time
//
// The cache serves requests with now = 0, "the store's clock", which is what every door
// of the service passes (Envoy's requests carry no time). It relies on that clock moving
// forward: a frozen state stays frozen only if nothing is evaluated on the key at an
// earlier store time, where an older window could be admitted and overwrite it.
// Requests that pass their own now (conformance replays, tests) may step back and are
// neither answered nor remembered, unless Options.ExplicitNow says their nows never
// step back.
//
// This process cannot read the store's clock. The cache brackets it with its own
// clocks: the entry keeps the local times just before the store call (sent) and just
// after its answer (recv); the store read t0 in between. Some time e later, the store's
// clock reads at most t0 + (e since sent) + 1 and at least t0 + (e since recv) − 1,
// give or take 0.1% for clock rate differences. The cache answers only if the upper
// bound is still inside the frozen interval, and answers at the lower bound: the
// decision is then the store's exact decision at a store time no later than the real
// one (remaining, resetAt and limit identical; retryAfter and the reset duration
// longer by at most one round trip plus 2 ms, so Retry-After is never early). An entry
// is trusted for at most MaxAge (default 1 s) after the store call, which bounds what a
// stepped store clock could do.
//
// Each local time is read on two clocks at once (one time.Now): Go's monotonic clock,
// which no one steps but which stops while the host is suspended (a sleeping laptop, a
// paused or migrated VM), and the wall clock, which can be stepped but, set right on
// resume, shows the time the store's clock went on for. The upper bound and MaxAge
// count e on whichever has gone further, so a suspend can only expire entries (a wall
// clock stepped back changes nothing; one stepped forward expires entries early, which
// costs store calls, never a wrong answer). The lower bound counts e on the monotonic
// clock alone: a wall clock stepped forward must not make it late and retryAfter
// early; after a suspend it lags, and retryAfter is longer by up to the time suspended
// (at most MaxAge, which the wall clock also bounds). A suspend the wall clock does not
// show (a paused VM whose clock nothing sets right) is not seen: for up to MaxAge after
// it, the cache may deny what the store would allow.
//
// One more assumption is documented rather than checked: every replica sharing the
// store serves the same rules for a key. During a rolling config change, a replica with
// a higher limit may admit on a key this one holds frozen, for at most MaxAge.
//
// Rule reloads clear the cache (decide calls Clear), and entries also carry the limit's
// parameters, so a changed limit never matches an entry made under the old one.
package overlimit

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Defaults.
const (
	DefaultMaxEntries = 65536
	DefaultMaxAge     = time.Second
	// shardCount is the number of shards of a cache of at least that many keys; a
	// smaller one uses fewer (shardsFor).
	shardCount = 32
	// maxRetryMs bounds the retryAfter of cached gcra denials: below it, tat − now stays
	// under the engines' clamp of 2^32 ms, where the formulas are linear in time.
	maxRetryMs = int64(1) << 31
)

// Options configure a Cache.
type Options struct {
	MaxEntries int           // bound on remembered keys (default 65,536)
	MaxAge     time.Duration // how long a remembered denial is trusted at most (default 1 s)
	// ExplicitNow also answers and remembers requests that pass their own now. Only for
	// callers whose nows never step back (replays, tests): see the package comment.
	ExplicitNow bool
	// Clock reads this process's two clocks (default: one time.Now, which carries
	// both readings). Tests inject one.
	Clock func() Stamp
}

// Stamp is one reading of this process's two clocks, in milliseconds: Mono on Go's
// monotonic clock (counted from the cache's making), Wall on the wall clock (Unix time).
type Stamp struct{ Mono, Wall int64 }

// longestSince is the time from s to now on whichever clock has gone further. The
// monotonic clock stops while the host is suspended, the store's clock and (once set
// right) the wall clock do not; a wall clock stepped back then changes nothing, one
// stepped forward only makes an entry look older (a store call, never a wrong answer).
func (s Stamp) longestSince(now Stamp) int64 {
	return max(now.Mono-s.Mono, now.Wall-s.Wall)
}

// Cache is safe for concurrent use.
type Cache struct {
	shards   [shardCount]shard
	mask     uint64 // a key's shard is its hash's low bits: shards[:mask+1] are in use
	maxAge   int64
	explicit bool
	clock    func() Stamp
	seed     maphash.Seed
	size     atomic.Int64

	hits, stores atomic.Uint64
}

// shard is padded to 128 bytes: the 40 bytes two neighbours use are then never on one
// 64-byte cache line, wherever the array starts, so lookups on one shard do not slow
// down another's.
type shard struct {
	mu  sync.RWMutex           // 24 bytes
	m   map[string]entry       // 8
	max int                    // 8: the most keys it holds
	_   [128 - 24 - 8 - 8]byte // padding
}

// entry is one frozen denial.
type entry struct {
	params  limiter.Params
	cost    int64 // the observed cost; anyCost: every cost ≥ 1 is answered
	anyCost bool
	t0      int64 // the store's now of the observed denial
	limit   int64
	resetAt int64
	retryAt int64 // t0 + retryAfterMs
	until   int64 // the state is frozen for store times < until
	clock   bool  // t0 was the store's clock (the request passed now = 0)
	sent    Stamp // the local clocks before the store call
	recv    Stamp // the local clocks after its answer; MaxAge counts from it
}

// New returns an empty cache.
func New(o Options) *Cache {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Clock == nil {
		base := time.Now()
		o.Clock = func() Stamp {
			t := time.Now() // t.Sub(base) reads the monotonic clock, UnixMilli the wall clock
			return Stamp{Mono: int64(t.Sub(base) / time.Millisecond), Wall: t.UnixMilli()}
		}
	}
	n := shardsFor(o.MaxEntries)
	c := &Cache{
		mask:     uint64(n - 1),
		maxAge:   o.MaxAge.Milliseconds(),
		explicit: o.ExplicitNow,
		clock:    o.Clock,
		seed:     maphash.MakeSeed(),
	}
	for i := range c.inUse() {
		sh := &c.shards[i]
		sh.m = make(map[string]entry)
		// The first MaxEntries % n shards hold one key more: together they hold
		// MaxEntries exactly.
		sh.max = o.MaxEntries / n
		if i < o.MaxEntries%n {
			sh.max++
		}
	}
	return c
}

// shardsFor returns how many shards a cache of size keys uses: shardCount, or for a
// smaller size the largest power of two not above it, so that every shard holds at
// least one key (a shard of none could never remember its keys) and a key's shard is
// still a mask of its hash.
func shardsFor(size int) int {
	n := shardCount
	for n > size {
		n /= 2
	}
	return n
}

// inUse returns the shards keys go to.
func (c *Cache) inUse() []shard { return c.shards[:c.mask+1] }

// Stamp reads the cache's clocks: stamp a store call with it before and after.
func (c *Cache) Stamp() Stamp { return c.clock() }

func (c *Cache) shard(key string) *shard {
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// Lookup answers a whole request from the cache if it can: when every check hits, it
// fills decisions (all denials) and returns the now they were decided at. now is the
// request's now (0: the store's clock).
func (c *Cache) Lookup(now int64, checks []limiter.LimitCheck, decisions []limiter.Decision) (int64, bool) {
	if c.size.Load() == 0 || len(checks) == 0 || len(decisions) != len(checks) || (now != 0 && !c.explicit) {
		return 0, false
	}
	var stack [4]entry
	found := stack[:0]
	for i := range checks {
		ch := &checks[i]
		if ch.Shadow || ch.Cost < 1 || ch.Params == nil {
			return 0, false
		}
		sh := c.shard(ch.Key)
		sh.mu.RLock()
		e, ok := sh.m[ch.Key]
		sh.mu.RUnlock()
		if !ok || e.params != *ch.Params || (!e.anyCost && e.cost != ch.Cost) {
			return 0, false
		}
		found = append(found, e)
	}
	at := now
	var local Stamp
	if now == 0 {
		local = c.clock()
		var ok bool
		if at, ok = storeClockAt(found, local); !ok {
			return 0, false
		}
	}
	for i := range found {
		e := &found[i]
		if at < e.t0 || at >= e.until || at-e.t0 > c.maxAge {
			return 0, false
		}
		if now == 0 && c.stale(e, local) {
			return 0, false
		}
	}
	for i := range found {
		e := &found[i]
		decisions[i] = limiter.Decision{Limit: e.limit, ResetAt: e.resetAt, RetryAfterMs: e.retryAt - at}
	}
	c.hits.Add(1)
	return at, true
}

// storeClockAt picks one now for a whole request on the store's clock: the latest lower
// bound of that clock that every entry allows. ok is false if an entry is not on the
// store's clock or its upper bound may have left the frozen interval. The upper bound
// counts the time since the call on the clock that has gone further (a suspended host
// stops only the monotonic one); the lower bound counts it on the monotonic clock alone,
// since a wall clock stepped forward would put it ahead of the store and make
// retryAfter early.
func storeClockAt(found []entry, local Stamp) (at int64, ok bool) {
	for i := range found {
		e := &found[i]
		if !e.clock {
			return 0, false
		}
		sinceSent := e.sent.longestSince(local)
		if e.t0+sinceSent+1+drift(sinceSent) >= e.until {
			return 0, false
		}
		sinceRecv := local.Mono - e.recv.Mono
		at = max(at, e.t0, e.t0+sinceRecv-1-drift(sinceRecv))
	}
	return at, true
}

// stale reports whether an entry is older than MaxAge at local time now, on either
// clock: Lookup no longer answers it, and a full shard drops it first.
func (c *Cache) stale(e *entry, now Stamp) bool { return e.recv.longestSince(now) > c.maxAge }

// drift is a 0.1% allowance (at least 1 ms per started second) for the store's clock
// running at a slightly different rate than this process's.
func drift(elapsedMs int64) int64 {
	if elapsedMs <= 0 {
		return 0
	}
	return (elapsedMs + 999) / 1000
}

// Call describes one store call for Remember.
type Call struct {
	Now      int64 // the now the request passed (0: the store's clock)
	StoreNow int64 // the now the store evaluated at (limiter.Outcome.Now)
	Sent     Stamp // Stamp() just before the call
	Recv     Stamp // Stamp() just after it answered
}

// Remember records the denials of one store call that leave their keys frozen.
func (c *Cache) Remember(call Call, checks []limiter.LimitCheck, decisions []limiter.Decision) {
	if len(decisions) != len(checks) || (call.Now != 0 && !c.explicit) {
		return
	}
	for i := range checks {
		ch, d := &checks[i], &decisions[i]
		if d.Allowed || ch.Shadow || ch.Params == nil || earlierKey(checks, i) {
			continue
		}
		until, anyCost, ok := frozenUntil(ch.Params, ch.Cost, call.StoreNow, d)
		if !ok || until <= call.StoreNow {
			continue
		}
		c.put(ch.Key, entry{
			params: *ch.Params, cost: ch.Cost, anyCost: anyCost,
			t0: call.StoreNow, limit: d.Limit, resetAt: d.ResetAt, retryAt: call.StoreNow + d.RetryAfterMs,
			until: until, clock: call.Now == 0, sent: call.Sent, recv: call.Recv,
		})
	}
}

// earlierKey reports whether a check before i has the same key: check i's decision
// then saw that check's uncommitted charge, not the stored state.
func earlierKey(checks []limiter.LimitCheck, i int) bool {
	for j := 0; j < i; j++ {
		if checks[j].Key == checks[i].Key {
			return true
		}
	}
	return false
}

// frozenUntil returns the end of the interval in which a denial at t0 with cost q stays
// the same frozen denial (package comment), and whether every cost ≥ 1 is answered
// alike; ok is false when the denial must not be cached.
func frozenUntil(p *limiter.Params, q, t0 int64, d *limiter.Decision) (until int64, anyCost, ok bool) {
	if q < 1 || d.Remaining != 0 || d.RetryAfterMs < 1 {
		return 0, false, false
	}
	switch p.Algorithm {
	case limiter.FixedWindow, limiter.TokenBudget:
		return d.ResetAt, true, d.ResetAt == t0+d.RetryAfterMs
	case limiter.GCRA, limiter.TokenBucket:
		if q > p.Burst || d.RetryAfterMs >= maxRetryMs {
			return 0, false, false
		}
		// One unit fits again ⌈(q−1)·T⌉ ms before the cost-q request would; (q−1)·den
		// ≤ burst·den ≤ 2^50, so the product is exact.
		return t0 + d.RetryAfterMs - ceilDiv((q-1)*p.Den(), p.Num()), false, true
	case limiter.SlidingWindow:
		if q != 1 {
			return 0, false, false
		}
		return t0 + d.RetryAfterMs, false, true
	case limiter.SlidingWindowLog:
		return d.ResetAt, false, true
	}
	return 0, false, false
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func (c *Cache) put(key string, e entry) {
	sh := c.shard(key)
	sh.mu.Lock()
	if _, ok := sh.m[key]; !ok {
		if len(sh.m) >= sh.max {
			c.evictLocked(sh, e.recv)
		}
		c.size.Add(1)
	}
	sh.m[key] = e
	sh.mu.Unlock()
	c.stores.Add(1)
}

// evictLocked makes room in a full shard: it drops every stale entry among a sample of
// 16 (map order is random), or else the sampled entry stored longest ago.
func (c *Cache) evictLocked(sh *shard, now Stamp) {
	var victim string
	oldest := int64(-1)
	seen, dropped := 0, 0
	for k, e := range sh.m {
		if c.stale(&e, now) {
			delete(sh.m, k)
			dropped++
		} else if oldest < 0 || e.recv.Mono < oldest {
			victim, oldest = k, e.recv.Mono
		}
		if seen++; seen >= 16 {
			break
		}
	}
	if dropped == 0 && oldest >= 0 {
		delete(sh.m, victim)
		dropped = 1
	}
	c.size.Add(-int64(dropped))
}

// Clear forgets everything (a rule reload).
func (c *Cache) Clear() {
	for i := range c.inUse() {
		sh := &c.shards[i]
		sh.mu.Lock()
		c.size.Add(-int64(len(sh.m)))
		sh.m = make(map[string]entry)
		sh.mu.Unlock()
	}
}

// Stats counts answered requests, remembered denials and the keys held.
type Stats struct {
	Hits, Stores uint64
	Entries      int64
}

// Stats reports the cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{Hits: c.hits.Load(), Stores: c.stores.Load(), Entries: c.size.Load()}
}
