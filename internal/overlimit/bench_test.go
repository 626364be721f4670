package overlimit

import (
	"fmt"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// BenchmarkLookup measures a request answered from the cache (every check hits): its
// allocations must stay at zero.
func BenchmarkLookup(b *testing.B) {
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 3, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	const t0 = int64(1_700_000_001_000)
	deny := limiter.Decision{Limit: 3, ResetAt: 1_700_003_600_000, RetryAfterMs: 3_599_000}
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprintf("checks=%d", n), func(b *testing.B) {
			c := New(Options{MaxAge: time.Hour})
			checks := make([]limiter.LimitCheck, n)
			for i := range checks {
				checks[i] = limiter.LimitCheck{Key: fmt.Sprint("rlx:k", i), Params: p, Cost: 1}
				sent := c.Stamp()
				c.Remember(Call{StoreNow: t0, Sent: sent, Recv: sent}, checks[i:i+1], []limiter.Decision{deny})
			}
			out := make([]limiter.Decision, n)
			if _, ok := c.Lookup(0, checks, out); !ok {
				b.Fatal("not answered")
			}
			b.ReportAllocs()
			for b.Loop() {
				c.Lookup(0, checks, out)
			}
		})
	}
}
