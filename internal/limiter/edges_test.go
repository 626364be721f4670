package limiter

import (
	"context"
	"testing"
)

// A cost above the burst or capacity can never be admitted, and its wait saturates at
// RetryCapMs; below the cap it is exact. At cost = ceiling + ⌊RetryCapMs/T⌋ with an
// integral T the exact wait, m·T, sits just under the cap: it must be reported as is,
// by both engines and the exact model, not rounded up to the cap.
func TestSaturatedRetryJustBelowTheCap(t *testing.T) {
	mem, re, _ := bothEngines(t)
	const now = int64(1_700_000_000_000)
	m := RetryCapMs / 1000 // T = 1000 ms: m·T = 1,099,511,627,000 < 2^40
	for _, tc := range []struct {
		name string
		p    Params
		cost int64
		want Decision
	}{
		{"gcra", Params{Algorithm: GCRA, Limit: 1, PeriodMs: 1000}, 1 + m,
			Decision{Limit: 1, Remaining: 1, ResetAt: now, RetryAfterMs: m * 1000}},
		{"token_bucket", Params{Algorithm: TokenBucket, Limit: 1, PeriodMs: 1000}, 1 + m,
			Decision{Limit: 1, Remaining: 1, ResetAt: now, RetryAfterMs: m * 1000}},
		{"gcra, one more unit: saturated", Params{Algorithm: GCRA, Limit: 1, PeriodMs: 1000}, 2 + m,
			Decision{Limit: 1, Remaining: 1, ResetAt: now, RetryAfterMs: RetryCapMs}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParams(t, tc.p)
			model := &model{p: *p}
			if got := model.check(now, tc.cost); got != tc.want {
				t.Fatalf("model %+v, want %+v", got, tc.want)
			}
			for name, e := range map[string]Engine{"memory": mem, "redis": re} {
				out := make([]Decision, 1)
				if _, err := e.Evaluate(context.Background(), now, []LimitCheck{{Key: "sat:" + tc.name, Params: p, Cost: tc.cost}}, out); err != nil {
					t.Fatal(err)
				}
				if out[0] != tc.want {
					t.Errorf("%s: %+v, want %+v", name, out[0], tc.want)
				}
			}
		})
	}
}

// Eviction in a full shard (SPEC §9's bounds, memory.go evict): state that has expired at
// now is dropped first, as expired, and is not weighed against live state; among live
// states the one holding the fewest units goes, then the one expiring soonest. One shard
// of two keys, so that every key is in evict's sample and the outcome is deterministic.
func TestMemoryEvictionOrder(t *testing.T) {
	short := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 1000})
	long := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 10_000})
	longer := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 100_000})
	type charge struct {
		key  string
		p    *Params
		now  int64
		cost int64
	}
	for _, tc := range []struct {
		name      string
		charges   []charge // the last one fills the shard past its bound
		kept      string   // a key that must keep its charge
		keptP     *Params
		keptNow   int64
		remaining int64 // kept's remaining at keptNow
		evictions uint64
	}{
		{
			// "a" (5 held) expires at 2000; "b" (1 held) lives on. At 2000 "a" reads cold:
			// it is dropped as expired, and "b" keeps its unit.
			name: "expired at now is dropped, not a live key",
			charges: []charge{
				{"a", short, 1000, 5}, {"b", long, 1500, 1}, {"c", long, 2000, 1},
			},
			kept: "b", keptP: long, keptNow: 2000, remaining: 4, evictions: 0,
		},
		{
			// "a" and "b" hold one unit each; "a" expires at 10,000, "b" at 100,000: "a" goes.
			name: "equal units: the soonest to expire goes",
			charges: []charge{
				{"a", long, 1000, 1}, {"b", longer, 1000, 1}, {"c", long, 1500, 1},
			},
			kept: "b", keptP: longer, keptNow: 1500, remaining: 4, evictions: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := NewMemoryEngine(MemoryOptions{MaxKeys: 2, Shards: 1, Sweep: -1})
			defer e.Close()
			out := make([]Decision, 1)
			for _, c := range tc.charges {
				if _, err := e.Evaluate(context.Background(), c.now, []LimitCheck{{Key: c.key, Params: c.p, Cost: c.cost}}, out); err != nil {
					t.Fatal(err)
				}
				if !out[0].Allowed {
					t.Fatalf("setup: %s at %d denied", c.key, c.now)
				}
			}
			if _, err := e.Evaluate(context.Background(), tc.keptNow, []LimitCheck{{Key: tc.kept, Params: tc.keptP, Cost: 0}}, out); err != nil {
				t.Fatal(err)
			}
			if out[0].Remaining != tc.remaining {
				t.Errorf("%s: remaining %d, want %d (its charge was forgiven by eviction)", tc.kept, out[0].Remaining, tc.remaining)
			}
			if got := e.Evictions(); got != tc.evictions {
				t.Errorf("evictions = %d, want %d", got, tc.evictions)
			}
		})
	}
}

// The sweep drops state from the moment it reads cold (now >= ExpireAt, as Check reads
// it), not a millisecond later.
func TestMemorySweepAtExpiry(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 1000})
	out := make([]Decision, 1)
	if _, err := e.Evaluate(context.Background(), 1500, []LimitCheck{{Key: "k", Params: p, Cost: 1}}, out); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		now  int64
		keys int
	}{{1999, 1}, {2000, 0}} {
		e.sweep(tc.now)
		if got := e.Keys(); got != tc.keys {
			t.Fatalf("after a sweep at %d: %d keys, want %d (state expires at 2000)", tc.now, got, tc.keys)
		}
	}
}

// MaxBytes is a bound that may be reached exactly: two entries that fill a shard's bytes
// to the byte are both kept, and a third evicts one.
func TestMemoryBytesBoundIsInclusive(t *testing.T) {
	st := State{Live: true}
	size := entrySize("k1", st)
	e := NewMemoryEngine(MemoryOptions{MaxBytes: 2 * size, Shards: 1, Sweep: -1})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 1000})
	out := make([]Decision, 1)
	for i, k := range []string{"k1", "k2", "k3"} {
		if _, err := e.Evaluate(context.Background(), 1000, []LimitCheck{{Key: k, Params: p, Cost: 1}}, out); err != nil {
			t.Fatal(err)
		}
		want := min(i+1, 2)
		if got := e.Keys(); got != want {
			t.Fatalf("after %s: %d keys, want %d (bound %d bytes, %d per entry)", k, got, want, 2*size, size)
		}
		if got := e.Bytes(); got != int64(want)*size {
			t.Fatalf("after %s: %d bytes, want %d", k, got, int64(want)*size)
		}
	}
}

// CeilingWindowMs rounds up (params.go): a burst of 1002 at 1001/s refills in 1000.999 ms,
// which is 1001 ms, never a shorter window, which a client pacing itself at the ceiling
// would run faster than the rule.
func TestCeilingWindowRoundsUp(t *testing.T) {
	for _, tc := range []struct {
		p    Params
		want int64
	}{
		{Params{Algorithm: GCRA, Limit: 1001, PeriodMs: 1000, Burst: 1002}, 1001},
		{Params{Algorithm: TokenBucket, Limit: 1001, PeriodMs: 1000, Burst: 1002}, 1001},
		{Params{Algorithm: GCRA, Limit: 600, PeriodMs: 60_000, Burst: 20}, 2000},
		{Params{Algorithm: FixedWindow, Limit: 7, PeriodMs: 1000}, 1000},
	} {
		p := mustParams(t, tc.p)
		if got := p.CeilingWindowMs(); got != tc.want {
			t.Errorf("%+v: %d ms, want %d", tc.p, got, tc.want)
		}
	}
}
