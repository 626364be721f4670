package limiter_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// The differential test: seeded random request sequences give identical outcomes and
// decisions from the in-memory engine (the Go reference) and the Redis engine (our Lua).
// RATELIMIT_DIFF_SEED=N replays one seed in every scenario; RATELIMIT_DIFF_OPS=N changes
// the number of requests per scenario.

type diffScenario struct {
	name     string
	seed     uint64
	start    int64 // the first now
	variants int   // params per key (> 1: rules change under a live key)
	stepBack bool  // the clock sometimes steps back
	// dense scenarios put two keys of one algorithm under small limits, short windows
	// and small clock steps (both ways), so limits repeat within requests, deny often and
	// meet rule changes and clock steps against live state.
	dense   bool
	alg     limiter.Algorithm
	bigJump bool // the clock sometimes jumps by 2^31..2^34 ms, both ways
	// mixed gives each key's variants random algorithms, so limits of different
	// algorithms share state: each must read the others' state as a cold key.
	mixed bool
}

var diffScenarios = []diffScenario{
	{name: "small-clock", seed: 1, start: 60_000, variants: 1, stepBack: false},
	{name: "epoch-1.7e12", seed: 2, start: 1_700_000_000_000, variants: 1, stepBack: false},
	{name: "epoch-1.7e12-odd", seed: 3, start: 1_712_345_678_901, variants: 1, stepBack: false},
	{name: "epoch-7.2e12", seed: 4, start: 7_200_000_000_000, variants: 1, stepBack: false},
	{name: "epoch-7.25e12", seed: 5, start: 7_250_000_000_003, variants: 1, stepBack: false},
	{name: "rule-changes", seed: 6, start: 1_700_000_000_000, variants: 3, stepBack: false},
	{name: "clock-steps-back", seed: 7, start: 1_750_000_000_000, variants: 1, stepBack: true},
	{name: "rule-changes-steps-back-7e12", seed: 8, start: 7_000_000_000_000, variants: 2, stepBack: true},
	{name: "big-clock-jumps", seed: 9, start: 7_000_000_000_000, variants: 1, stepBack: true, bigJump: true},
	{name: "algorithms-share-keys", seed: 10, start: 1_700_000_000_000, variants: 4, stepBack: true, dense: true, mixed: true},
}

func init() {
	for i, alg := range []limiter.Algorithm{limiter.GCRA, limiter.TokenBucket, limiter.FixedWindow,
		limiter.SlidingWindow, limiter.SlidingWindowLog, limiter.TokenBudget} {
		for v, variants := range []int{1, 3} {
			diffScenarios = append(diffScenarios, diffScenario{
				name: fmt.Sprintf("dense-%s-variants-%d", alg, variants), seed: uint64(100 + 2*i + v),
				start: 1_700_000_000_000 + int64(i)*7919, variants: variants, stepBack: true, dense: true, alg: alg,
			})
		}
		// State far ahead of a clock that jumped back by up to 2^34 ms (gcra clamps it at 2^32).
		diffScenarios = append(diffScenarios, diffScenario{
			name: fmt.Sprintf("dense-%s-clock-jumps", alg), seed: uint64(200 + i),
			start: 7_000_000_000_000, variants: 1, stepBack: true, dense: true, alg: alg, bigJump: true,
		})
	}
}

func TestRedisDifferential(t *testing.T) {
	e, _ := newRedis(t)
	ops := 1500
	if s := os.Getenv("RATELIMIT_DIFF_OPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatal(err)
		}
		ops = n
	}
	total := 0
	start := time.Now()
	for _, sc := range diffScenarios {
		if s := os.Getenv("RATELIMIT_DIFF_SEED"); s != "" {
			seed, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			sc.seed = seed
		}
		t.Run(sc.name, func(t *testing.T) {
			total += runDifferential(t, e, sc, ops)
		})
	}
	t.Logf("%d requests in %v", total, time.Since(start))
}

type diffKey struct {
	key      string
	variants []*limiter.Params
}

type diffOp struct {
	now    int64
	checks []limiter.LimitCheck
	out    limiter.Outcome
	got    []limiter.Decision
}

func runDifferential(t *testing.T, e *limiter.RedisEngine, sc diffScenario, ops int) int {
	r := rand.New(rand.NewPCG(sc.seed, 0x5eed))
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	ctx := context.Background()
	prefix := uniquePrefix(t)

	keys := make([]diffKey, 6)
	algs := []limiter.Algorithm{limiter.GCRA, limiter.TokenBucket, limiter.FixedWindow,
		limiter.SlidingWindow, limiter.SlidingWindowLog, limiter.TokenBudget}
	if sc.dense {
		keys = keys[:2]
	}
	for i := range keys {
		alg := algs[(i+int(sc.seed))%len(algs)]
		if sc.dense {
			alg = sc.alg
		}
		name := alg.String()
		if sc.mixed {
			name = "mixed"
		}
		keys[i].key = fmt.Sprintf("%s:%d:%s", prefix, i, name)
		for range sc.variants {
			if sc.mixed {
				alg = algs[r.IntN(len(algs))]
			}
			if sc.dense {
				keys[i].variants = append(keys[i].variants, denseParams(r, alg))
			} else {
				keys[i].variants = append(keys[i].variants, randParams(r, alg))
			}
		}
	}

	now := sc.start
	var history []diffOp
	lastWall := time.Now()
	want := make([]limiter.Decision, 4)
	got := make([]limiter.Decision, 4)
	admitted := 0
	for op := range ops {
		n := 1 + r.IntN(4)
		checks := make([]limiter.LimitCheck, n)
		for i := range checks {
			k := &keys[r.IntN(len(keys))]
			p := k.variants[r.IntN(len(k.variants))]
			checks[i] = limiter.LimitCheck{Key: k.key, Params: p, Cost: randCost(r, p), Shadow: r.IntN(7) == 0}
		}
		// Redis expires keys in wall time. Vector time must not run slower than the wall
		// clock across a stall, or a key could expire in Redis while its state is live.
		step := randStep(r, sc)
		if gap := time.Since(lastWall).Milliseconds() - 20; gap > 0 && gap > step {
			step = gap
		}
		now = min(max(now+step, 1), limiter.MaxNowMs)
		lastWall = time.Now()

		wantOut, err := mem.Evaluate(ctx, now, checks, want[:n])
		if err != nil {
			t.Fatal(err)
		}
		gotOut, err := e.Evaluate(ctx, now, checks, got[:n])
		if err != nil {
			t.Fatalf("op %d: %v", op, err)
		}
		history = append(history, diffOp{now, checks, gotOut, append([]limiter.Decision(nil), got[:n]...)})
		if len(history) > 12 {
			history = history[1:]
		}
		mismatch := gotOut != wantOut
		for i := range n {
			mismatch = mismatch || got[i] != want[i]
		}
		if mismatch {
			var b strings.Builder
			fmt.Fprintf(&b, "scenario %s seed %d op %d now %d: redis %+v, memory %+v\n", sc.name, sc.seed, op, now, gotOut, wantOut)
			for i, c := range checks {
				fmt.Fprintf(&b, "  limit %d key %s params %+v cost %d shadow %v\n    redis  %+v\n    memory %+v\n",
					i, c.Key[len(prefix):], *c.Params, c.Cost, c.Shadow, got[i], want[i])
			}
			b.WriteString("recent requests (redis answers):\n")
			for _, h := range history[:len(history)-1] {
				fmt.Fprintf(&b, "  now %d allowed %v:", h.now, h.out.Allowed)
				for i, c := range h.checks {
					fmt.Fprintf(&b, " [%s q=%d shadow=%v → %+v]", c.Key[len(prefix):], c.Cost, c.Shadow, h.got[i])
				}
				b.WriteByte('\n')
			}
			t.Fatal(b.String())
		}
		if gotOut.Allowed {
			admitted++
		}
	}
	t.Logf("%d requests (%d allowed), now %d → %d", ops, admitted, sc.start, now)
	return ops
}

// logUniform returns an integer in [lo, hi] spread evenly over magnitudes.
func logUniform(r *rand.Rand, lo, hi int64) int64 {
	x := math.Exp(math.Log(float64(lo)) + r.Float64()*(math.Log(float64(hi+1))-math.Log(float64(lo))))
	return min(max(int64(x), lo), hi)
}

func randPeriod(r *rand.Rand, max int64) int64 {
	switch r.IntN(4) {
	case 0:
		return 1 + r.Int64N(5000)
	case 1:
		return 1000 * (1 + r.Int64N(3600))
	case 2:
		return logUniform(r, 1, 100_000)
	default:
		return logUniform(r, 1, max)
	}
}

func randLimit(r *rand.Rand, max int64) int64 {
	switch r.IntN(3) {
	case 0:
		return 1 + r.Int64N(10)
	case 1:
		return logUniform(r, 1, 1_000_000)
	default:
		return logUniform(r, 1, max)
	}
}

// randParams draws a valid rule, fractional rates and magnitudes near the exactness
// bounds included.
func randParams(r *rand.Rand, alg limiter.Algorithm) *limiter.Params {
	for {
		p := limiter.Params{Algorithm: alg}
		switch alg {
		case limiter.GCRA, limiter.TokenBucket:
			p.Limit = randLimit(r, limiter.MaxLimit)
			p.PeriodMs = randPeriod(r, limiter.MaxPeriodMs)
			switch r.IntN(3) {
			case 1:
				p.Burst = 1 + r.Int64N(10)
			case 2:
				p.Burst = logUniform(r, 1, limiter.MaxLimit)
			}
		case limiter.FixedWindow, limiter.TokenBudget:
			p.Limit = randLimit(r, limiter.MaxLimit)
			p.PeriodMs = randPeriod(r, limiter.MaxPeriodMs)
		case limiter.SlidingWindow:
			p.Limit = randLimit(r, limiter.MaxLimit)
			s := int64(10)
			switch r.IntN(3) {
			case 1:
				s, p.Buckets = 1, 1
			case 2:
				s = 1 + r.Int64N(limiter.MaxBuckets)
				p.Buckets = s
			}
			w := randPeriod(r, limiter.MaxPeriodMs/s)
			if r.IntN(2) == 0 {
				w = 1 + r.Int64N(500)
			}
			p.PeriodMs = w * s
		case limiter.SlidingWindowLog:
			switch r.IntN(20) {
			case 0:
				p.Limit = 1 + r.Int64N(limiter.MaxLogLimit)
			case 1, 2, 3, 4, 5, 6:
				p.Limit = 1 + r.Int64N(500)
			default:
				p.Limit = 1 + r.Int64N(20)
			}
			p.PeriodMs = randPeriod(r, 1_000_000_000)
		}
		if p.Validate() == nil {
			return &p
		}
	}
}

// randCost mixes check-only, small costs, costs around and far above the ceiling.
func randCost(r *rand.Rand, p *limiter.Params) int64 {
	c := p.Ceiling()
	switch x := r.IntN(100); {
	case x < 10:
		return 0
	case x < 45:
		return 1
	case x < 65:
		return 1 + r.Int64N(5)
	case x < 85:
		return r.Int64N(min(c, 2000) + 3)
	case x < 90:
		return c
	case x < 95:
		return c + 1 + r.Int64N(3)
	case x < 98:
		return r.Int64N(min(c+3, limiter.MaxCost))
	default:
		return limiter.MaxCost
	}
}

// denseParams draws a small rule: limits up to 10, windows and periods of a few ms.
func denseParams(r *rand.Rand, alg limiter.Algorithm) *limiter.Params {
	for {
		p := limiter.Params{Algorithm: alg, Limit: 1 + r.Int64N(10), PeriodMs: 1 + r.Int64N(100)}
		switch alg {
		case limiter.GCRA, limiter.TokenBucket:
			if r.IntN(2) == 0 {
				p.Burst = 1 + r.Int64N(10)
			}
		case limiter.SlidingWindow:
			p.Buckets = 1 + r.Int64N(5)
			p.PeriodMs = p.Buckets * (1 + r.Int64N(20))
		}
		if p.Validate() == nil {
			return &p
		}
	}
}

// randStep mixes repeated instants, small and large steps, and (optionally) a clock
// that steps back.
func randStep(r *rand.Rand, sc diffScenario) int64 {
	back := sc.stepBack
	if sc.bigJump && r.IntN(50) == 0 {
		j := logUniform(r, 1<<31, 1<<34)
		if r.IntN(2) == 0 {
			return -j
		}
		return j
	}
	if sc.dense {
		if r.IntN(4) == 0 {
			return 0
		}
		return r.Int64N(51) - 20
	}
	switch x := r.IntN(100); {
	case x < 20:
		return 0
	case x < 50:
		return 1 + r.Int64N(10)
	case x < 75:
		return 1 + r.Int64N(1000)
	case x < 90:
		return 1 + r.Int64N(100_000)
	case x < 97 || !back:
		return logUniform(r, 1, 100_000_000)
	default:
		return -logUniform(r, 1, 10_000)
	}
}
