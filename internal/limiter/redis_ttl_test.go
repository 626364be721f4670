package limiter_test

import (
	"context"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// ttlEpoch is the fixed clock the TTL tests charge at: 800 s into an hour, on a second.
const ttlEpoch = int64(1_700_000_000_000)

type ttlCharge struct{ at, cost int64 }

// ratCeil is ⌈x⌉ for a rational x.
func ratCeil(x *big.Rat) int64 {
	q, m := new(big.Int).DivMod(x.Num(), x.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

// coldAt is the first ms from which the state left by charges reads exactly like no
// state, derived from the definitions of SPEC §4 in exact rationals (not from the code
// under test). Charges are in time order and all allowed.
func coldAt(t *testing.T, p *limiter.Params, charges []ttlCharge) int64 {
	t.Helper()
	last := charges[len(charges)-1].at
	P := p.PeriodMs
	rat := func(n int64) *big.Rat { return new(big.Rat).SetInt64(n) }
	switch p.Algorithm {
	case limiter.GCRA:
		// T = P/L, τ = T·B; tat = max(stored ?? now, now) + T·q. A stored tat ≤ now reads
		// like a cold key (max(tat, now) = now), so the state is cold from ⌈tat⌉ on.
		T := new(big.Rat).SetFrac64(P, p.Limit)
		tau := new(big.Rat).Mul(T, rat(p.Burst))
		var tat *big.Rat
		for _, c := range charges {
			now := rat(c.at)
			if tat == nil || tat.Cmp(now) < 0 {
				tat = now
			}
			tat = new(big.Rat).Add(tat, new(big.Rat).Mul(T, rat(c.cost)))
			if allowAt := new(big.Rat).Sub(tat, tau); now.Cmp(allowAt) < 0 {
				t.Fatalf("gcra charge %+v would be denied", c)
			}
		}
		return ratCeil(tat)
	case limiter.TokenBucket:
		// r = L/P tokens per ms; the state (tokens, last) is cold once the bucket has
		// refilled to C: from last + ⌈(C − tokens)/r⌉ on.
		C, r := rat(p.Burst), new(big.Rat).SetFrac64(p.Limit, P)
		var tokens *big.Rat
		var at int64
		for _, c := range charges {
			if tokens == nil {
				tokens, at = new(big.Rat).Set(C), c.at
			}
			tokens = new(big.Rat).Add(tokens, new(big.Rat).Mul(rat(max(0, c.at-at)), r))
			if tokens.Cmp(C) > 0 {
				tokens.Set(C)
			}
			if tokens.Cmp(rat(c.cost)) < 0 {
				t.Fatalf("token_bucket charge %+v would be denied", c)
			}
			tokens.Sub(tokens, rat(c.cost))
			at = max(at, c.at)
		}
		return at + ratCeil(new(big.Rat).Quo(new(big.Rat).Sub(C, tokens), r))
	case limiter.FixedWindow, limiter.TokenBudget:
		// The count belongs to the window of the last charge; the next window reads 0.
		return last/P*P + P
	case limiter.SlidingWindow:
		// Sub-bucket j counts while j ∈ [c−S, c]; the newest non-empty one is the last
		// charge's, ⌊last/w⌋, which is stale once c > ⌊last/w⌋ + S.
		w := P / p.Buckets
		return (last/w+1)*w + P
	case limiter.SlidingWindowLog:
		// An entry stamped s is dropped once s ≤ now − P; the log is empty (cold) when
		// its newest entry is: from newest + P on (not oldest + P).
		newest := int64(0)
		for _, c := range charges {
			newest = max(newest, c.at)
		}
		return newest + P
	}
	t.Fatalf("no bound for %v", p.Algorithm)
	return 0
}

// memProbe replays charges into a fresh memory engine (no sweeper, so state is never
// dropped: only the algorithm decides whether it reads cold) and returns the decision of
// one more check at now. charges may be empty: a cold key.
func memProbe(t *testing.T, p *limiter.Params, charges []ttlCharge, now, cost int64) limiter.Decision {
	t.Helper()
	e := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer e.Close()
	ctx := context.Background()
	d := make([]limiter.Decision, 1)
	for _, c := range charges {
		if out, err := e.Evaluate(ctx, c.at, oneCheck(p, "k", c.cost), d); err != nil || !out.Allowed {
			t.Fatalf("memory charge %+v: %+v %v %+v", c, out, err, d[0])
		}
	}
	if _, err := e.Evaluate(ctx, now, oneCheck(p, "k", cost), d); err != nil {
		t.Fatal(err)
	}
	return d[0]
}

// Every algorithm's key lives at least until its state has become equivalent to a cold
// key, and at least the 1 s floor (SPEC §9). The bound comes from SPEC §4; the memory
// engine confirms the state is cold at the bound and not 1 ms before it, so the bound is
// tight; Redis must keep the key (PTTL) and the state (a q = 0 probe at bound − 1) that
// long.
func TestRedisTTLCoversState(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	prefix := uniquePrefix(t)
	for _, P := range []int64{3_600_000, 1_000} {
		buckets := int64(3)
		if P == 1_000 {
			buckets = 10
		}
		ps := []limiter.Params{
			// Rates of 7 per period: T = P/7 and r = 7/P are not whole milliseconds.
			{Algorithm: limiter.GCRA, Limit: 7, PeriodMs: P, Burst: 5},
			{Algorithm: limiter.TokenBucket, Limit: 7, PeriodMs: P, Burst: 5},
			{Algorithm: limiter.FixedWindow, Limit: 5, PeriodMs: P},
			{Algorithm: limiter.SlidingWindow, Limit: 5, PeriodMs: P, Buckets: buckets},
			{Algorithm: limiter.SlidingWindowLog, Limit: 5, PeriodMs: P},
			{Algorithm: limiter.TokenBudget, Limit: 5, PeriodMs: P},
		}
		patterns := map[string][]ttlCharge{
			"one":    {{ttlEpoch + 37, 1}},
			"spread": {{ttlEpoch + 37, 1}, {ttlEpoch + P/3 + 17, 2}, {ttlEpoch + P/3 + 18, 1}},
		}
		for _, pat := range []string{"one", "spread"} {
			charges := patterns[pat]
			for i := range ps {
				p := params(t, ps[i])
				t.Run(fmt.Sprintf("%s/P=%d/%s", p.Algorithm, P, pat), func(t *testing.T) {
					last := charges[len(charges)-1].at
					bound := coldAt(t, p, charges)
					if bound <= last {
						t.Fatalf("bound %d not after the last charge %d", bound, last)
					}

					// The bound is where the state turns cold: at bound every check reports
					// what a fresh key reports; 1 ms earlier a q = 0 check still sees the
					// charges (every algorithm here makes that observable: remaining is
					// below the ceiling, or resetAt lies ahead).
					for _, cost := range []int64{0, 1, p.Ceiling()} {
						got, cold := memProbe(t, p, charges, bound, cost), memProbe(t, p, nil, bound, cost)
						if got != cold {
							t.Errorf("at the bound %d, cost %d: %+v, a cold key %+v", bound, cost, got, cold)
						}
					}
					before, cold := memProbe(t, p, charges, bound-1, 0), memProbe(t, p, nil, bound-1, 0)
					if before == cold {
						t.Errorf("at bound−1 = %d the state already reads cold (%+v): the bound is not tight", bound-1, before)
					}

					// Redis: charge at the same nows, then read the key's TTL.
					key := prefix + ":" + t.Name()
					d := make([]limiter.Decision, 1)
					var start time.Time
					for _, ch := range charges {
						start = time.Now()
						if out, err := e.Evaluate(ctx, ch.at, oneCheck(p, key, ch.cost), d); err != nil || !out.Allowed {
							t.Fatalf("redis charge %+v: %+v %v %+v", ch, out, err, d[0])
						}
					}
					pttl, err := c.PTTL(ctx, key).Result()
					if err != nil {
						t.Fatal(err)
					}
					// The TTL was set between start and now: PTTL has lost at most that much.
					slack := time.Since(start).Milliseconds() + 1
					want := max(bound-last, 1000)
					if pttl <= 0 {
						t.Fatalf("PTTL %v: the key has no TTL or is gone", pttl)
					}
					if got := pttl.Milliseconds() + slack; got < want {
						t.Errorf("PTTL %v (+%d ms elapsed) after the last charge at +%d: want ≥ %d ms (state cold at +%d, floor 1000 ms)",
							pttl, slack, last-ttlEpoch, want, bound-ttlEpoch)
					}

					// The script's own view agrees: still live at bound − 1, cold at bound
					// (q = 0 writes nothing).
					if _, err := e.Evaluate(ctx, bound-1, oneCheck(p, key, 0), d); err != nil {
						t.Fatal(err)
					}
					if d[0] != before {
						t.Errorf("redis at bound−1: %+v, memory %+v", d[0], before)
					}
					if _, err := e.Evaluate(ctx, bound, oneCheck(p, key, 0), d); err != nil {
						t.Fatal(err)
					}
					if want := memProbe(t, p, nil, bound, 0); d[0] != want {
						t.Errorf("redis at the bound: %+v, a cold key %+v", d[0], want)
					}
				})
			}
		}
	}
}
