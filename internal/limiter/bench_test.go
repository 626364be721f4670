package limiter

import (
	"context"
	"strconv"
	"testing"
)

// Each algorithm on the memory engine: one check per request, on 1024 warm keys that
// never reach their limits (docs/performance.md lists the allocation budgets).
func BenchmarkMemoryAlgorithms(b *testing.B) {
	for _, p := range []Params{
		{Algorithm: FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000},
		{Algorithm: GCRA, Limit: 1 << 20, PeriodMs: 1000},
		{Algorithm: TokenBucket, Limit: 1 << 20, PeriodMs: 1000},
		{Algorithm: SlidingWindow, Limit: 1 << 30, PeriodMs: 3_600_000},
		{Algorithm: SlidingWindowLog, Limit: MaxLogLimit, PeriodMs: 1000},
		{Algorithm: TokenBudget, Limit: 1 << 30, PeriodMs: 3_600_000},
	} {
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
		b.Run(p.Algorithm.String(), func(b *testing.B) {
			e := NewMemoryEngine(MemoryOptions{Sweep: -1})
			defer e.Close()
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = "bench:" + strconv.Itoa(i)
			}
			checks := []LimitCheck{{Params: &p, Cost: 1}}
			d := make([]Decision, 1)
			ctx := context.Background()
			now := int64(1_700_000_000_000)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				checks[0].Key = keys[i%len(keys)]
				if i%len(keys) == 0 {
					now++ // a log gets one run per ms per key
				}
				if out, err := e.Evaluate(ctx, now, checks, d); err != nil || !out.Allowed {
					b.Fatalf("%v %+v", err, d[0])
				}
				i++
			}
		})
	}
}

// Three limits per request, all or nothing, on the memory engine.
func BenchmarkMemoryThreeChecks(b *testing.B) {
	p := Params{Algorithm: FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	checks := []LimitCheck{{Key: "a", Params: &p, Cost: 1}, {Key: "b", Params: &p, Cost: 1}, {Key: "c", Params: &p, Cost: 1}}
	d := make([]Decision, 3)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(context.Background(), 1_700_000_000_000, checks, d); err != nil {
			b.Fatal(err)
		}
	}
}
