package limiter

import (
	"context"
	"math/big"
	"math/rand/v2"
	"sort"
	"testing"
)

// model is an independent exact implementation of SPEC §4 in math/big rationals, written
// straight from the formulas (no scaling, no bounds tricks), used as the oracle for the
// engine's integer arithmetic.
type model struct {
	p Params
	// gcra
	tat *big.Rat
	// token_bucket
	tokens *big.Rat
	last   int64
	// fixed_window, token_budget
	ws, count int64
	set       bool
	// sliding_window
	buckets map[int64]int64
	// sliding_window_log: one stamp per admitted unit
	log []int64
}

func r(n int64) *big.Rat         { return new(big.Rat).SetInt64(n) }
func frac(a, b int64) *big.Rat   { return big.NewRat(a, b) }
func add(a, b *big.Rat) *big.Rat { return new(big.Rat).Add(a, b) }
func sub(a, b *big.Rat) *big.Rat { return new(big.Rat).Sub(a, b) }
func mul(a, b *big.Rat) *big.Rat { return new(big.Rat).Mul(a, b) }
func quo(a, b *big.Rat) *big.Rat { return new(big.Rat).Quo(a, b) }
func ratMax(a, b *big.Rat) *big.Rat {
	if a.Cmp(b) >= 0 {
		return a
	}
	return b
}

func floorRat(x *big.Rat) int64 {
	q := new(big.Int).Div(x.Num(), x.Denom()) // Euclidean: floor for positive denominators
	return q.Int64()
}

func ceilRat(x *big.Rat) int64 { return -floorRat(new(big.Rat).Neg(x)) }

// capRetry mirrors the documented saturation of waits for requests that can never pass.
func capRetry(x *big.Rat) int64 {
	if x.Cmp(r(RetryCapMs)) >= 0 {
		return RetryCapMs
	}
	return ceilRat(x)
}

func (m *model) check(now, q int64) Decision {
	switch m.p.Algorithm {
	case GCRA:
		return m.gcra(now, q)
	case TokenBucket:
		return m.tokenBucket(now, q)
	case SlidingWindow:
		return m.sliding(now, q)
	case SlidingWindowLog:
		return m.slidingLog(now, q)
	case TokenBudget:
		return m.budget(now, q)
	}
	return m.fixed(now, q)
}

func (m *model) gcra(now, q int64) Decision {
	T := frac(m.p.PeriodMs, m.p.Limit)
	tau := mul(T, r(m.p.Burst))
	tat := r(now)
	if m.tat != nil {
		tat = ratMax(m.tat, r(now))
	}
	newTat := add(tat, mul(T, r(q)))
	allowAt := sub(newTat, tau)
	d := Decision{Limit: m.p.Burst}
	if r(now).Cmp(allowAt) < 0 {
		d.Remaining = max(0, floorRat(quo(sub(tau, sub(tat, r(now))), T)))
		d.ResetAt = ceilRat(tat)
		d.RetryAfterMs = capRetry(sub(allowAt, r(now)))
		return d
	}
	if q > 0 {
		m.tat = newTat
	}
	d.Allowed = true
	d.Remaining = max(0, floorRat(quo(sub(tau, sub(newTat, r(now))), T)))
	d.ResetAt = ceilRat(newTat)
	return d
}

func (m *model) tokenBucket(now, q int64) Decision {
	rate := frac(m.p.Limit, m.p.PeriodMs)
	C := r(m.p.Burst)
	tokens, last := C, now
	if m.tokens != nil {
		tokens, last = m.tokens, m.last
	}
	tokens = add(tokens, mul(r(max(0, now-last)), rate))
	if tokens.Cmp(C) > 0 {
		tokens = C
	}
	d := Decision{Limit: m.p.Burst}
	if tokens.Cmp(r(q)) >= 0 {
		left := sub(tokens, r(q))
		if q > 0 {
			m.tokens, m.last = left, max(last, now)
		}
		d.Allowed = true
		d.Remaining = floorRat(left)
		d.ResetAt = now + ceilRat(quo(sub(C, left), rate))
		return d
	}
	d.Remaining = floorRat(tokens)
	d.ResetAt = now + ceilRat(quo(sub(C, tokens), rate))
	wait := quo(sub(r(q), tokens), rate)
	if q > m.p.Burst { // never admitted: the wait saturates
		d.RetryAfterMs = capRetry(wait)
	} else { // an admissible wait is exact, even past the cap (up to 2^50 ms)
		d.RetryAfterMs = ceilRat(wait)
	}
	return d
}

func (m *model) windowStart(now int64) int64 { return now / m.p.PeriodMs * m.p.PeriodMs }

func (m *model) fixed(now, q int64) Decision {
	ws := m.windowStart(now)
	count := int64(0)
	if m.set && m.ws == ws {
		count = m.count
	}
	d := Decision{Limit: m.p.Limit, ResetAt: ws + m.p.PeriodMs}
	if count+q <= m.p.Limit {
		if q > 0 {
			m.set, m.ws, m.count = true, ws, count+q
		}
		d.Allowed, d.Remaining = true, m.p.Limit-count-q
		return d
	}
	d.Remaining = max(0, m.p.Limit-count)
	d.RetryAfterMs = d.ResetAt - now
	return d
}

func (m *model) budget(now, q int64) Decision {
	ws := m.windowStart(now)
	served := int64(0)
	if m.set && m.ws == ws {
		served = m.count
	}
	d := Decision{Limit: m.p.Limit, ResetAt: ws + m.p.PeriodMs}
	if served < m.p.Limit {
		if q > 0 {
			m.set, m.ws, m.count = true, ws, served+q
		}
		d.Allowed, d.Remaining = true, max(0, m.p.Limit-served-q)
		return d
	}
	d.RetryAfterMs = d.ResetAt - now
	return d
}

func (m *model) sliding(now, q int64) Decision {
	S := m.p.Buckets
	w := m.p.PeriodMs / S
	c := now / w
	e := now - c*w
	weight := frac(w-e, w)
	var full int64
	for j := c - S + 1; j <= c; j++ {
		full += m.buckets[j]
	}
	oldest := m.buckets[c-S]
	est := add(r(full), mul(r(oldest), weight))
	proj := add(est, r(q))
	L := r(m.p.Limit)
	d := Decision{Limit: m.p.Limit, ResetAt: ceilRat(add(r((c+1)*w), r(m.p.PeriodMs)))}
	if proj.Cmp(L) <= 0 {
		if q > 0 {
			if m.buckets == nil {
				m.buckets = map[int64]int64{}
			}
			m.buckets[c] += q
		}
		d.Allowed, d.Remaining = true, max(0, floorRat(sub(L, proj)))
		return d
	}
	d.Remaining = max(0, floorRat(sub(L, est)))
	D := sub(proj, L)
	if oldest > 0 && D.Cmp(mul(r(oldest), weight)) <= 0 {
		d.RetryAfterMs = ceilRat(quo(mul(D, r(w)), r(oldest)))
	} else {
		d.RetryAfterMs = (c+1)*w - now
	}
	d.RetryAfterMs = max(1, d.RetryAfterMs)
	return d
}

func (m *model) slidingLog(now, q int64) Decision {
	P, L := m.p.PeriodMs, m.p.Limit
	kept := m.log[:0:0]
	for _, s := range m.log {
		if s > now-P {
			kept = append(kept, s)
		}
	}
	m.log = kept
	n := int64(len(kept))
	d := Decision{Limit: L}
	if n+q <= L {
		for i := int64(0); i < q; i++ {
			m.log = append(m.log, now)
		}
		sort.Slice(m.log, func(i, j int) bool { return m.log[i] < m.log[j] })
		d.Allowed, d.Remaining = true, L-n-q
		d.ResetAt = now + P
		if len(m.log) > 0 {
			d.ResetAt = m.log[0] + P
		}
		return d
	}
	d.Remaining = max(0, L-n)
	d.ResetAt = now + P
	if n > 0 {
		d.ResetAt = kept[0] + P
	}
	if n == 0 {
		d.RetryAfterMs = P
	} else {
		k := min(max(n+q-L, 1), n)
		d.RetryAfterMs = max(1, kept[k-1]+P-now)
	}
	return d
}

// randomParams draws a valid rule of the given algorithm, small enough to exercise
// limits often and with awkward fractions.
func randomParams(rng *rand.Rand, a Algorithm) Params {
	periods := []int64{1, 7, 100, 333, 1000, 3000, 60_000, 3_600_000, 86_400_000}
	for {
		p := Params{Algorithm: a, Limit: 1 + rng.Int64N(50), PeriodMs: periods[rng.IntN(len(periods))]}
		if rng.IntN(2) == 0 {
			p.Burst = 1 + rng.Int64N(60)
		}
		if a == SlidingWindow {
			p.Buckets = []int64{1, 2, 3, 4, 5, 10}[rng.IntN(6)]
		}
		if p.Validate() == nil {
			return p
		}
	}
}

// TestEnginesMatchExactModel: random (now, cost) sequences against random valid rules
// give the same Decision from the memory engine as from the big.Rat model.
func TestEngineMatchesExactModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	algorithms := []Algorithm{GCRA, TokenBucket, FixedWindow, SlidingWindow, SlidingWindowLog, TokenBudget}
	engine := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer engine.Close()
	ops := 0
	for round := 0; round < 600; round++ {
		a := algorithms[round%len(algorithms)]
		p := randomParams(rng, a)
		m := &model{p: p}
		now := 1 + rng.Int64N(MaxNowMs-10_000_000)
		check := []LimitCheck{{Key: string(rune('a'+round%26)) + string(rune(round)), Params: &p}}
		out := make([]Decision, 1)
		for step := 0; step < 60; step++ {
			now += []int64{0, 0, 1, 3, 17, 99, 250, 1000, p.PeriodMs / 3, p.PeriodMs}[rng.IntN(10)]
			q := rng.Int64N(p.Ceiling() + 3)
			if rng.IntN(40) == 0 {
				q = MaxCost
			}
			check[0].Cost = q
			if _, err := engine.Evaluate(context.Background(), now, check, out); err != nil {
				t.Fatal(err)
			}
			want := m.check(now, q)
			if out[0] != want {
				t.Fatalf("round %d %s %+v step %d now %d q %d:\n engine %+v\n  model %+v", round, a, p, step, now, q, out[0], want)
			}
			ops++
		}
	}
	t.Logf("%d random checks agreed with the exact model", ops)
}
