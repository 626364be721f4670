package overlimit

import (
	"fmt"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

func params(t *testing.T, p limiter.Params) *limiter.Params {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return &p
}

// one evaluates a single check on a memory engine at an explicit now.
func one(t *testing.T, e *limiter.MemoryEngine, now int64, c limiter.LimitCheck) limiter.Decision {
	t.Helper()
	d := make([]limiter.Decision, 1)
	if _, err := e.Evaluate(t.Context(), now, []limiter.LimitCheck{c}, d); err != nil {
		t.Fatal(err)
	}
	return d[0]
}

// For every algorithm, a frozen denial is answered exactly as the store answers it at
// every later ms of its frozen interval, and not at all from the interval's end on.
func TestFrozenIntervalPerAlgorithm(t *testing.T) {
	const t0 = int64(1_700_000_000_123)
	for _, tc := range []struct {
		p    limiter.Params
		cost int64
		fill int64 // cost-1 admissions before the observed denial
	}{
		{limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 1000}, 1, 3},
		{limiter.Params{Algorithm: limiter.TokenBudget, Limit: 3, PeriodMs: 1000}, 2, 3},
		{limiter.Params{Algorithm: limiter.GCRA, Limit: 3, PeriodMs: 1000, Burst: 2}, 1, 2},
		{limiter.Params{Algorithm: limiter.GCRA, Limit: 7, PeriodMs: 1000, Burst: 4}, 3, 4},
		{limiter.Params{Algorithm: limiter.TokenBucket, Limit: 3, PeriodMs: 1000, Burst: 4}, 1, 4},
		{limiter.Params{Algorithm: limiter.TokenBucket, Limit: 3, PeriodMs: 1000, Burst: 4}, 2, 4},
		{limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 4, PeriodMs: 1000, Buckets: 4}, 1, 4},
		{limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: 4, PeriodMs: 1000}, 3, 4},
	} {
		p := params(t, tc.p)
		t.Run(fmt.Sprintf("%s-cost-%d", p.Algorithm, tc.cost), func(t *testing.T) {
			e := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
			defer e.Close()
			c := New(Options{ExplicitNow: true, MaxAge: 1 << 40})
			for i := range tc.fill {
				one(t, e, t0-tc.fill+i, limiter.LimitCheck{Key: "k", Params: p, Cost: 1})
			}
			check := limiter.LimitCheck{Key: "k", Params: p, Cost: tc.cost}
			d := one(t, e, t0, check)
			if d.Allowed || d.Remaining != 0 {
				t.Fatalf("setup: %+v is not a frozen denial", d)
			}
			c.Remember(Call{Now: t0, StoreNow: t0}, []limiter.LimitCheck{check}, []limiter.Decision{d})
			if c.Stats().Entries != 1 {
				t.Fatal("not remembered")
			}
			hits := 0
			for now := t0; now < t0+2000; now++ {
				got := make([]limiter.Decision, 1)
				at, ok := c.Lookup(now, []limiter.LimitCheck{check}, got)
				want := one(t, e, now, check)
				if !ok {
					if hits > 0 && want.Allowed == false && want.Remaining == 0 && now < t0+d.RetryAfterMs-p.PeriodMs {
						t.Errorf("now %d: miss inside the frozen interval", now)
					}
					continue
				}
				hits++
				if at != now || got[0] != want {
					t.Fatalf("now %d: cached %+v at %d, store %+v", now, got[0], at, want)
				}
			}
			if hits == 0 {
				t.Error("never answered")
			}
		})
	}
}

func TestNotRemembered(t *testing.T) {
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 1000})
	sw := params(t, limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 3, PeriodMs: 1000})
	deny := limiter.Decision{Limit: 3, ResetAt: 2000, RetryAfterMs: 1000}
	for name, tc := range map[string]struct {
		checks []limiter.LimitCheck
		d      []limiter.Decision
		now    int64
	}{
		"shadow":          {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 1, Shadow: true}}, []limiter.Decision{deny}, 0},
		"check-only":      {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 0}}, []limiter.Decision{deny}, 0},
		"remaining":       {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 2}}, []limiter.Decision{{Limit: 3, Remaining: 1, ResetAt: 2000, RetryAfterMs: 1000}}, 0},
		"allowed":         {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 1}}, []limiter.Decision{{Allowed: true, Limit: 3, ResetAt: 2000}}, 0},
		"sliding-cost-2":  {[]limiter.LimitCheck{{Key: "a", Params: sw, Cost: 2}}, []limiter.Decision{{Limit: 3, ResetAt: 2000, RetryAfterMs: 10}}, 0},
		"explicit-now":    {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 1}}, []limiter.Decision{deny}, 1000},
		"second-same-key": {[]limiter.LimitCheck{{Key: "a", Params: p, Cost: 1}, {Key: "a", Params: p, Cost: 1}}, []limiter.Decision{{Allowed: true, Limit: 3, ResetAt: 2000}, deny}, 0},
	} {
		c := New(Options{})
		c.Remember(Call{Now: tc.now, StoreNow: 1000}, tc.checks, tc.d)
		if n := c.Stats().Entries; n != 0 {
			t.Errorf("%s: %d entries remembered", name, n)
		}
	}
}

// With now = 0 the answer is at the lower bound of the store's clock, and the upper
// bound must stay inside the frozen interval.
func TestStoreClockBrackets(t *testing.T) {
	var mono int64 = 5000
	c := New(Options{Clock: func() Stamp { return both(mono) }, MaxAge: 1 << 40})
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	check := []limiter.LimitCheck{{Key: "k", Params: p, Cost: 1}}
	const t0 = 1_700_000_001_000 // window ends at ...10_000
	// sent at mono 5000, answered at 5004 (a 4 ms round trip)
	c.Remember(Call{Now: 0, StoreNow: t0, Sent: both(5000), Recv: both(5004)}, check,
		[]limiter.Decision{{Limit: 3, ResetAt: 1_700_000_010_000, RetryAfterMs: 9000}})
	d := make([]limiter.Decision, 1)
	mono = 6004 // 1 s after the answer
	at, ok := c.Lookup(0, check, d)
	if !ok {
		t.Fatal("miss")
	}
	// lower bound: t0 + 1000 − 1 − 1 (drift for 1000 ms)
	if want := int64(t0 + 998); at != want || d[0].RetryAfterMs != 1_700_000_010_000-want {
		t.Errorf("at %d (want %d), decision %+v", at, want, d[0])
	}
	// upper bound at mono m: t0 + (m − 5000) + 1 + drift must stay below the window end:
	// 8989 + 1 + 9 < 9000.
	mono = 5000 + 8989
	if _, ok := c.Lookup(0, check, d); !ok {
		t.Error("miss with the upper bound inside the window")
	}
	mono = 5000 + 8990
	if _, ok := c.Lookup(0, check, d); ok {
		t.Error("hit with the upper bound at the window's end")
	}
	// a different cost is answered alike for fixed_window; different params never.
	mono = 6004
	if _, ok := c.Lookup(0, []limiter.LimitCheck{{Key: "k", Params: p, Cost: 5}}, d); !ok {
		t.Error("fixed_window: another cost ≥ 1 not answered")
	}
	q := *p
	q.Limit = 4
	if _, ok := c.Lookup(0, []limiter.LimitCheck{{Key: "k", Params: &q, Cost: 1}}, d); ok {
		t.Error("answered under other params")
	}
}

func TestMaxAgeAndBounds(t *testing.T) {
	var mono int64
	c := New(Options{Clock: func() Stamp { return both(mono) }, MaxEntries: 64})
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1, PeriodMs: 3_600_000})
	deny := []limiter.Decision{{Limit: 1, ResetAt: 1_700_003_600_000, RetryAfterMs: 3_600_000}}
	for i := range 1000 {
		c.Remember(Call{StoreNow: 1_700_000_000_000}, []limiter.LimitCheck{{Key: fmt.Sprint(i), Params: p, Cost: 1}}, deny)
	}
	if n := c.Stats().Entries; n > 64 || n < 32 {
		t.Errorf("%d entries held, bound 64", n)
	}
	check := []limiter.LimitCheck{{Key: "999", Params: p, Cost: 1}}
	d := make([]limiter.Decision, 1)
	if _, ok := c.Lookup(0, check, d); !ok {
		t.Fatal("the latest entry was evicted")
	}
	mono = DefaultMaxAge.Milliseconds() + 1
	if _, ok := c.Lookup(0, check, d); ok {
		t.Error("answered after MaxAge")
	}
	c.Clear()
	if n := c.Stats().Entries; n != 0 {
		t.Errorf("%d entries after Clear", n)
	}
}

// A full cache holds exactly MaxEntries keys, as many as Lookup answers, for sizes below
// the number of shards, at it, and above it whether or not they divide evenly.
func TestHoldsExactlyMaxEntries(t *testing.T) {
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1, PeriodMs: 3_600_000})
	deny := []limiter.Decision{{Limit: 1, ResetAt: 1_700_003_600_000, RetryAfterMs: 3_600_000}}
	for _, size := range []int{1, 2, 5, 31, 32, 33, 100, 1000} {
		t.Run(fmt.Sprint("size-", size), func(t *testing.T) {
			c := New(Options{MaxEntries: size, Clock: func() Stamp { return both(0) }})
			// enough keys that every shard is filled, whatever the hash seed
			checks := make([]limiter.LimitCheck, 20*size+200)
			for i := range checks {
				checks[i] = limiter.LimitCheck{Key: fmt.Sprint("k", i), Params: p, Cost: 1}
				c.Remember(Call{StoreNow: 1_700_000_000_000}, checks[i:i+1], deny)
			}
			answered := 0
			d := make([]limiter.Decision, 1)
			for i := range checks {
				if _, ok := c.Lookup(0, checks[i:i+1], d); ok {
					answered++
				}
			}
			if n := c.Stats().Entries; n != int64(size) || answered != size {
				t.Errorf("%d entries counted, %d keys answered, want %d", n, answered, size)
			}
		})
	}
}
