package overlimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// both is a reading of the local clocks when they agree: ms on each.
func both(ms int64) Stamp { return Stamp{Mono: ms, Wall: ms} }

// A suspended host (a sleeping laptop, a paused VM) stops the monotonic clock but not
// the store's, and the wall clock, set right on resume, shows the time that passed. An
// entry is answered only while the upper bound of the store's clock, counted on the
// clock that has gone further, is inside the frozen interval and the entry is within
// MaxAge on both clocks; the answer stays at the monotonic lower bound, so a wall clock
// stepped forward never makes retryAfter early. The window here ends 9000 ms after t0.
func TestSuspendedHost(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	const wall0 = int64(1_800_000_000_000) // the local wall clock at the store call
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	check := []limiter.LimitCheck{{Key: "k", Params: fw, Cost: 1}}
	deny := []limiter.Decision{{Limit: 3, ResetAt: t0 + 9000, RetryAfterMs: 9000}}
	for _, tc := range []struct {
		name       string
		maxAge     time.Duration
		mono, wall int64 // ms elapsed since the store call on each clock
		hit        bool
	}{
		{"no suspend", time.Hour, 10, 10, true},
		{"suspended to just before the window's end", time.Hour, 10, 8989, true},
		{"suspended to the window's end", time.Hour, 10, 8990, false},
		{"suspended past the window's end", time.Hour, 10, 60_000, false},
		{"suspended to MaxAge", time.Second, 10, 1000, true},
		{"suspended past MaxAge", time.Second, 10, 5000, false},
		{"wall clock stepped back", time.Second, 10, -5000, true},
		{"wall clock stepped back, monotonic at the window's end", time.Hour, 8990, -5000, false},
		{"wall clock stepped back, monotonic past MaxAge", time.Second, 1001, -5000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := Stamp{Mono: 5000, Wall: wall0}
			c := New(Options{Clock: func() Stamp { return now }, MaxAge: tc.maxAge})
			c.Remember(Call{StoreNow: t0, Sent: now, Recv: now}, check, deny)
			now = Stamp{Mono: 5000 + tc.mono, Wall: wall0 + tc.wall}
			d := make([]limiter.Decision, 1)
			at, ok := c.Lookup(0, check, d)
			if ok != tc.hit {
				t.Fatalf("answered %v, want %v", ok, tc.hit)
			}
			// the monotonic lower bound: t0 + elapsed − 1 − drift
			if want := t0 + tc.mono - 1 - drift(tc.mono); ok && (at != want || d[0].RetryAfterMs != t0+9000-want) {
				t.Errorf("answered at %d with %+v, want at %d (the monotonic lower bound)", at, d[0], want)
			}
		})
	}
}

// A full shard drops every sampled entry past MaxAge on either clock before it drops
// a live one: after a 5 s suspend, both entries of a shard that holds two are stale.
func TestFullShardDropsEntriesStaleOnTheWallClock(t *testing.T) {
	const t0 = int64(1_700_000_001_000)
	fw := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 10_000})
	deny := []limiter.Decision{{Limit: 3, ResetAt: t0 + 9000, RetryAfterMs: 9000}}
	c := New(Options{MaxEntries: 2 * shardCount, Clock: func() Stamp { return both(0) }})
	var keys []string
	for i := 0; len(keys) < 3; i++ {
		if k := fmt.Sprint("k", i); len(keys) == 0 || c.shard(k) == c.shard(keys[0]) {
			keys = append(keys, k)
		}
	}
	before := Stamp{Mono: 1000, Wall: 1_800_000_000_000}
	after := Stamp{Mono: 1010, Wall: before.Wall + 5000}
	for i, k := range keys {
		at := before
		if i == 2 {
			at = after
		}
		c.Remember(Call{StoreNow: t0, Sent: at, Recv: at}, []limiter.LimitCheck{{Key: k, Params: fw, Cost: 1}}, deny)
	}
	if n := c.Stats().Entries; n != 1 {
		t.Errorf("%d entries held, want 1 (the two stored before the suspend dropped)", n)
	}
}
