package overlimit

import (
	"fmt"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// What Lookup must not answer from a remembered frozen denial (package comment, "What is
// not cached"), each beside the lookup it does answer, so a miss is not vacuous.
func TestLookupAnswersOnlyWhatTheStoreWouldDeny(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	gc := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000, Burst: 4})
	fwDeny := limiter.Decision{Limit: 3, ResetAt: 1_700_000_010_000, RetryAfterMs: 9000}
	// gcra, T = 100 ms, burst 4, full: cost 2 waits 200 ms, cost 1 only 100 ms.
	gcDeny := limiter.Decision{Limit: 4, ResetAt: t0 + 400, RetryAfterMs: 200}
	for _, tc := range []struct {
		name     string
		explicit bool
		remember limiter.LimitCheck
		d        limiter.Decision
		rememNow int64 // the Call's Now (0: the store's clock)
		lookNow  int64
		hit      limiter.LimitCheck // answered
		miss     limiter.LimitCheck // not answered
	}{
		{name: "check-only (cost 0) is the store's to allow",
			remember: limiter.LimitCheck{Key: "k", Params: fw, Cost: 1}, d: fwDeny,
			hit:  limiter.LimitCheck{Key: "k", Params: fw, Cost: 2},
			miss: limiter.LimitCheck{Key: "k", Params: fw, Cost: 0}},
		{name: "a shadow check never denies",
			remember: limiter.LimitCheck{Key: "k", Params: fw, Cost: 1}, d: fwDeny,
			hit:  limiter.LimitCheck{Key: "k", Params: fw, Cost: 1},
			miss: limiter.LimitCheck{Key: "k", Params: fw, Cost: 1, Shadow: true}},
		{name: "gcra: a smaller cost may fit",
			remember: limiter.LimitCheck{Key: "k", Params: gc, Cost: 2}, d: gcDeny,
			hit:  limiter.LimitCheck{Key: "k", Params: gc, Cost: 2},
			miss: limiter.LimitCheck{Key: "k", Params: gc, Cost: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mono := int64(5000)
			c := New(Options{Clock: func() Stamp { return both(mono) }})
			c.Remember(Call{Now: 0, StoreNow: t0, Sent: both(5000), Recv: both(5000)}, []limiter.LimitCheck{tc.remember}, []limiter.Decision{tc.d})
			mono = 5010
			d := make([]limiter.Decision, 1)
			if _, ok := c.Lookup(0, []limiter.LimitCheck{tc.hit}, d); !ok {
				t.Fatalf("%+v not answered", tc.hit)
			}
			if _, ok := c.Lookup(0, []limiter.LimitCheck{tc.miss}, d); ok {
				t.Errorf("%+v answered from the cache: %+v", tc.miss, d[0])
			}
		})
	}
}

// The clock an entry was taken on: without Options.ExplicitNow a request's own now is
// neither answered nor remembered; with it, an entry made at an explicit now (not the
// store's clock) never answers a request on the store's clock.
func TestLookupKeepsClocksApart(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	check := []limiter.LimitCheck{{Key: "k", Params: fw, Cost: 1}}
	deny := []limiter.Decision{{Limit: 3, ResetAt: 1_700_000_010_000, RetryAfterMs: 9000}}
	d := make([]limiter.Decision, 1)

	mono := int64(5000)
	c := New(Options{Clock: func() Stamp { return both(mono) }})
	c.Remember(Call{Now: 0, StoreNow: t0, Sent: both(5000), Recv: both(5000)}, check, deny)
	mono = 5010
	if _, ok := c.Lookup(0, check, d); !ok {
		t.Fatal("store clock: not answered")
	}
	if _, ok := c.Lookup(t0+10, check, d); ok {
		t.Error("explicit now answered without ExplicitNow")
	}

	e := New(Options{Clock: func() Stamp { return both(mono) }, ExplicitNow: true})
	e.Remember(Call{Now: t0, StoreNow: t0, Sent: both(5000), Recv: both(5000)}, check, deny)
	if _, ok := e.Lookup(t0+10, check, d); !ok {
		t.Fatal("ExplicitNow: explicit now not answered")
	}
	if _, ok := e.Lookup(0, check, d); ok {
		t.Error("an entry taken at an explicit now answered a request on the store's clock")
	}
}

// MaxAge is inclusive: an entry is trusted up to MaxAge after the store call, on the
// explicit clock and on the local monotonic clock, and not a millisecond later.
func TestMaxAgeIsInclusive(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	check := []limiter.LimitCheck{{Key: "k", Params: fw, Cost: 1}}
	deny := []limiter.Decision{{Limit: 3, ResetAt: 1_700_000_010_000, RetryAfterMs: 9000}}
	d := make([]limiter.Decision, 1)
	for _, tc := range []struct {
		name string
		age  int64
		hit  bool
	}{{"at MaxAge", 1000, true}, {"past MaxAge", 1001, false}} {
		t.Run("explicit "+tc.name, func(t *testing.T) {
			c := New(Options{ExplicitNow: true, Clock: func() Stamp { return both(0) }})
			c.Remember(Call{Now: t0, StoreNow: t0}, check, deny)
			if _, ok := c.Lookup(t0+tc.age, check, d); ok != tc.hit {
				t.Errorf("answered %v, want %v", ok, tc.hit)
			}
		})
		t.Run("store clock "+tc.name, func(t *testing.T) {
			mono := int64(5000)
			c := New(Options{Clock: func() Stamp { return both(mono) }})
			c.Remember(Call{Now: 0, StoreNow: t0, Sent: both(5000), Recv: both(5000)}, check, deny)
			mono = 5000 + tc.age
			if _, ok := c.Lookup(0, check, d); ok != tc.hit {
				t.Errorf("answered %v, want %v", ok, tc.hit)
			}
		})
	}
}

// A full shard makes room by dropping the entry stored longest ago (evictLocked), not
// a newer one: three keys of one shard that holds two, stored 100 ms apart, all within
// MaxAge.
func TestFullShardDropsTheOldestEntry(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	deny := []limiter.Decision{{Limit: 3, ResetAt: 1_700_000_010_000, RetryAfterMs: 9000}}
	mono := int64(1000)
	// Two entries per shard, and three keys of one shard.
	c := New(Options{MaxEntries: 2 * shardCount, Clock: func() Stamp { return both(mono) }})
	var keys []string
	for i := 0; len(keys) < 3; i++ {
		if k := fmt.Sprint("k", i); len(keys) == 0 || c.shard(k) == c.shard(keys[0]) {
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		mono = 1000 + 100*int64(i)
		c.Remember(Call{StoreNow: t0, Sent: both(mono), Recv: both(mono)}, []limiter.LimitCheck{{Key: k, Params: fw, Cost: 1}}, deny)
	}
	d := make([]limiter.Decision, 1)
	for i, k := range keys {
		_, hit := c.Lookup(0, []limiter.LimitCheck{{Key: k, Params: fw, Cost: 1}}, d)
		if want := i > 0; hit != want {
			t.Errorf("%s, stored at %d ms: answered %v, want %v (the oldest is dropped)", k, 1000+100*i, hit, want)
		}
	}
}
