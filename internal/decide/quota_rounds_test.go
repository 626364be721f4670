package decide

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// betweenRounds is an engine that runs before(call) ahead of each of its calls: the
// traffic of other requests that lands between one request's quota rounds.
type betweenRounds struct {
	limiter.Engine
	calls  int
	before func(call int)
}

func (e *betweenRounds) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	e.calls++
	if e.before != nil {
		e.before(e.calls)
	}
	return e.Engine.Evaluate(ctx, now, checks, out)
}

const roundsRules = `
domain: d
descriptors:
  - key: fast               # a soft quota: 1 a second
    quota_mode: true
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: slow               # a soft quota: 2 an hour
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
`

// roundsFixture is a Decider whose engine lets a test act between rounds, another
// Decider on the same state for the other traffic, and the engine's clock.
type roundsFixture struct {
	d, other *Decider
	engine   *betweenRounds
	clock    *atomic.Int64
}

func newRoundsFixture(t *testing.T) *roundsFixture {
	t.Helper()
	rs, err := descriptors.Parse("rounds.yaml", []byte(roundsRules))
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(1_700_000_000_000)
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: clock.Load})
	t.Cleanup(func() { mem.Close() })
	keys := storekey.New("rounds:", 0)
	engine := &betweenRounds{Engine: mem}
	return &roundsFixture{
		d:      New(rs, engine, Options{Keys: keys}),
		other:  New(rs, mem, Options{Keys: keys}),
		engine: engine,
		clock:  clock,
	}
}

// take sends one request of the other traffic for the descriptor key=value.
func (f *roundsFixture) take(t *testing.T, key string) {
	t.Helper()
	req := &Request{Domain: "d", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: key, Value: "x"}}}}}
	if res, err := f.other.Decide(context.Background(), req); err != nil || res.OverLimit {
		t.Fatalf("other traffic on %s: %+v, %v", key, res, err)
	}
}

func (f *roundsFixture) decideBoth(t *testing.T) *Result {
	t.Helper()
	req := &Request{Domain: "d", Descriptors: []Descriptor{
		{Entries: []descriptors.Entry{{Key: "fast", Value: "x"}}},
		{Entries: []descriptors.Entry{{Key: "slow", Value: "x"}}},
	}}
	res, err := f.d.Decide(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// A quota descriptor made shadow in one round is enforced again once it is back within
// its limit: otherwise traffic between rounds could leave every quota descriptor shadow
// and over in the round that charges, and the request would pass.
func TestQuotaRoundsEnforceADescriptorThatCameBack(t *testing.T) {
	f := newRoundsFixture(t)
	f.take(t, "fast") // fast: used up for this second
	f.take(t, "slow") // slow: one of two left
	f.engine.before = func(call int) {
		switch call {
		case 2: // between rounds 1 and 2: fast's second ends, slow is used up
			f.clock.Add(1000)
			f.take(t, "slow")
		case 3: // between rounds 2 and 3: fast is used up again
			f.take(t, "fast")
		}
	}
	res := f.decideBoth(t)
	if !res.OverLimit {
		t.Fatalf("allowed while both quota descriptors were over in the round that decided (%d rounds)", f.engine.calls)
	}
	if !res.Statuses[0].OverLimit || !res.Statuses[1].OverLimit {
		t.Errorf("statuses %+v: want both over", res.Statuses)
	}
}

// Traffic that flips the quota descriptors between every pair of rounds cannot keep a
// request going: after maxQuotaRounds it is denied.
func TestQuotaRoundsAreBounded(t *testing.T) {
	f := newRoundsFixture(t)
	f.take(t, "fast")
	f.engine.before = func(call int) {
		if call == 1 || call > 2*maxQuotaRounds { // stops, so that an unbounded loop ends too
			return
		}
		// Each round finds the descriptor it enforces over and the other back within.
		f.clock.Add(3_600_000) // both windows end
		if call%2 == 0 {
			f.take(t, "slow")
			f.take(t, "slow")
		} else {
			f.take(t, "fast")
		}
	}
	res := f.decideBoth(t)
	if f.engine.calls != maxQuotaRounds {
		t.Errorf("%d rounds, want the bound %d", f.engine.calls, maxQuotaRounds)
	}
	if !res.OverLimit {
		t.Fatal("a request that ran out of rounds was allowed")
	}
	// Its last round found slow over and fast back within: it waits for slow, as every
	// denial names the limit it waits for (Retry-After, the RateLimit headers).
	if res.WaitFor == nil || res.WaitFor.Limit.Path != "slow" || res.RetryAfterMs() <= 0 {
		t.Errorf("denied after the last round, waits for %+v (%d ms); want slow's limit and its wait", res.WaitFor, res.RetryAfterMs())
	}
}
