package limiter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// The exactness tests elsewhere draw small rules (limits up to 50). This one draws rules
// at the validation bounds, where the arithmetic is tightest: the largest rate
// denominators, period×burst near 2^50, gcra tolerances near 2^31 ms, limits of 2^32,
// sliding windows of one-millisecond sub-buckets, ten-year periods; costs at and around
// each rule's ceiling and at MaxCost; clocks near the end of the representable range;
// and time steps that land exactly on, and one millisecond before, the moment the state
// expires. The memory engine, the Redis engine and the exact model must agree on every
// field, and Redis must keep every written key at least until its state reads cold.

// logUniform draws from [lo, hi] with every bit length equally likely, so that values
// near both ends come up.
func logUniform(rng *rand.Rand, lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	bits := 0
	for x := hi; x > 0; x >>= 1 {
		bits++
	}
	top := int64(1) << (1 + rng.IntN(bits))
	v := top/2 + rng.Int64N(top/2+1)
	return min(max(v, lo), hi)
}

// boundParams draws a valid rule of algorithm a, biased toward the validation bounds.
func boundParams(rng *rand.Rand, a Algorithm) Params {
	for {
		p := Params{Algorithm: a}
		switch a {
		case GCRA, TokenBucket:
			num := []int64{1, 2, 3, maxDenominator, maxDenominator - 1, logUniform(rng, 1, maxDenominator)}[rng.IntN(6)]
			den := []int64{1, 3, 7, 1000, MaxPeriodMs, 1<<30 - 1, logUniform(rng, 1, MaxPeriodMs)}[rng.IntN(7)]
			g := gcd(num, den)
			num, den = num/g, den/g
			k := int64(1) // the same rate written with a common factor
			if rng.IntN(3) == 0 {
				k = logUniform(rng, 1, min(MaxLimit/num, MaxPeriodMs/den))
			}
			p.Limit, p.PeriodMs = num*k, den*k
			most := min(MaxLimit, maxScaled/den)
			if a == GCRA {
				most = min(most, maxToleranceMs*num/den)
			}
			if most < 1 {
				continue
			}
			p.Burst = []int64{most, logUniform(rng, 1, most), 1 + rng.Int64N(min(most, 5)), 0}[rng.IntN(4)]
		case FixedWindow, TokenBudget:
			p.Limit = []int64{1, 2, MaxLimit, MaxLimit - 1, logUniform(rng, 1, MaxLimit)}[rng.IntN(5)]
			p.PeriodMs = []int64{1, 2, 1000, MaxPeriodMs, logUniform(rng, 1, MaxPeriodMs)}[rng.IntN(5)]
		case SlidingWindow:
			p.Limit = []int64{1, 2, MaxLimit, logUniform(rng, 1, MaxLimit)}[rng.IntN(4)]
			p.Buckets = []int64{1, 2, 10, MaxBuckets, 1 + rng.Int64N(MaxBuckets)}[rng.IntN(5)]
			widest := min(maxScaled/(p.Limit+1), MaxPeriodMs/p.Buckets)
			p.PeriodMs = p.Buckets * []int64{1, widest, logUniform(rng, 1, widest)}[rng.IntN(3)]
		case SlidingWindowLog:
			p.Limit = []int64{1, 2, MaxLogLimit, logUniform(rng, 1, MaxLogLimit)}[rng.IntN(4)]
			p.PeriodMs = []int64{1, 2, 1000, MaxPeriodMs, logUniform(rng, 1, MaxPeriodMs)}[rng.IntN(5)]
		}
		if p.Validate() == nil {
			return p
		}
	}
}

// boundCost draws a cost around the rule's ceiling, at MaxCost, or small.
func boundCost(rng *rand.Rand, p *Params) int64 {
	c := p.Ceiling()
	switch rng.IntN(12) {
	case 0:
		return 0
	case 1, 2, 3:
		return 1
	case 4:
		return min(c, MaxCost)
	case 5:
		return min(c+1, MaxCost)
	case 6:
		return MaxCost
	case 7:
		return max(0, c-1)
	case 8:
		return logUniform(rng, 1, min(c, MaxCost))
	}
	return 1 + rng.Int64N(3)
}

// boundStep draws the time to the next request: none, a millisecond, the rule's own
// periods, a jump of up to 2^34 ms, or exactly to (or just before) the moment the
// key's state expires, where an early expiry would show.
func boundStep(rng *rand.Rand, p *Params, now int64, st State) int64 {
	switch rng.IntN(14) {
	case 0, 1:
		return 0
	case 2:
		return 1
	case 3:
		return rng.Int64N(1000)
	case 4:
		return p.PeriodMs
	case 5:
		return p.PeriodMs - 1
	case 6:
		switch {
		case p.Algorithm == GCRA || p.Algorithm == TokenBucket:
			return ceilDiv(p.den, p.num) // one unit's refill
		case p.width > 0:
			return p.width
		}
		return 0
	case 7, 8:
		if st.Live && st.ExpireAt > now {
			return st.ExpireAt - now
		}
		return 0
	case 9:
		if st.Live && st.ExpireAt > now+1 {
			return st.ExpireAt - now - 1
		}
		return 0
	case 10:
		return logUniform(rng, 1, 1<<34)
	}
	return logUniform(rng, 1, max(2, p.PeriodMs))
}

// bothEngines is a memory engine and a Redis engine on a private redis-server (also
// returned), closed when the test ends.
func bothEngines(t *testing.T) (*MemoryEngine, *RedisEngine, *testredis.Server) {
	t.Helper()
	srv := testredis.Start(t)
	re, err := NewRedisEngine(RedisOptions{URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { re.Close() })
	mem := NewMemoryEngine(MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	return mem, re, srv
}

func TestEnginesAgreeAtTheBounds(t *testing.T) {
	mem, re, srv := bothEngines(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 99))
	starts := []int64{1, 60_000, 1_700_000_000_000, 1_712_345_678_901, MaxNowMs - 1_000_000, MaxNowMs - 5}
	algorithms := []Algorithm{GCRA, TokenBucket, FixedWindow, SlidingWindow, SlidingWindowLog, TokenBudget}
	sequences, steps := 1200, 30
	if testing.Short() {
		sequences = 240
	}
	ops := 0
	for s := range sequences {
		p := boundParams(rng, algorithms[s%len(algorithms)])
		m := &model{p: p}
		key := fmt.Sprintf("bounds:%d", s)
		now := starts[rng.IntN(len(starts))]
		if rng.IntN(4) == 0 {
			now = 1 + rng.Int64N(MaxNowMs)
		}
		var history []string
		for range steps {
			step := boundStep(rng, &p, now, mem.shards[mem.shardOf(key)].data[key])
			if now+step > MaxNowMs {
				break
			}
			now += step
			q := boundCost(rng, &p)
			checks := []LimitCheck{{Key: key, Params: &p, Cost: q}}
			got, fromRedis := make([]Decision, 1), make([]Decision, 1)
			if _, err := mem.Evaluate(ctx, now, checks, got); err != nil {
				t.Fatal(err)
			}
			written := time.Now()
			if _, err := re.Evaluate(ctx, now, checks, fromRedis); err != nil {
				t.Fatal(err)
			}
			want := m.check(now, q)
			history = append(history, fmt.Sprintf("now %d cost %d: %+v", now, q, got[0]))
			if got[0] != want || fromRedis[0] != want {
				t.Fatalf("%+v, sequence %d:\n memory %+v\n redis  %+v\n model  %+v\nafter:\n  %s",
					p, s, got[0], fromRedis[0], want, strings.Join(history, "\n  "))
			}
			if want.Allowed && q > 0 {
				checkTTLCoversState(t, srv, key, now, mem.shards[mem.shardOf(key)].data[key].ExpireAt, written)
			}
			ops++
		}
	}
	t.Logf("%d decisions agreed (memory, Redis, model)", ops)
}

// checkTTLCoversState checks SPEC §9 for a key written since the time written: its TTL
// ends no earlier than the state reads cold (expireAt, as the memory engine computed
// it, or the floor of one second), less the time since then.
func checkTTLCoversState(t *testing.T, srv *testredis.Server, key string, now, expireAt int64, written time.Time) {
	t.Helper()
	// The raw integer: go-redis's PTTL().Result() overflows time.Duration for TTLs near
	// 2^50 ms.
	ttl, err := srv.Client().Do(context.Background(), "PTTL", key).Int64()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Since(written).Milliseconds() + 1 // Redis counts whole milliseconds
	if need := max(expireAt-now, 1000) - since; ttl < need {
		t.Fatalf("%s at %d: PTTL %d ms %d ms after the write, but the state reads cold %d ms after it", key, now, ttl, since, expireAt-now)
	}
}
