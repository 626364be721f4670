// Package limiter holds the decision contract of SPEC.md: the Decision type, the six
// algorithms in exact integer arithmetic, the engines that keep their state, and the
// all-or-nothing evaluation of one request.
package limiter

import (
	"fmt"
)

// Algorithm names one of the six rate-limit algorithms of SPEC §4.
type Algorithm uint8

const (
	FixedWindow Algorithm = iota // the default, as in envoyproxy/ratelimit
	GCRA
	TokenBucket
	SlidingWindow
	SlidingWindowLog
	TokenBudget
)

var algorithmNames = [...]string{
	FixedWindow:      "fixed_window",
	GCRA:             "gcra",
	TokenBucket:      "token_bucket",
	SlidingWindow:    "sliding_window",
	SlidingWindowLog: "sliding_window_log",
	TokenBudget:      "token_budget",
}

func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("algorithm(%d)", a)
}

// ParseAlgorithm maps a YAML algorithm name to its Algorithm.
func ParseAlgorithm(s string) (Algorithm, bool) {
	for i, n := range algorithmNames {
		if n == s {
			return Algorithm(i), true
		}
	}
	return 0, false
}

// Bounds that keep every intermediate value of every algorithm an exact integer below
// 2^53, so that the Lua scripts (which only have IEEE doubles) compute bit for bit what
// the Go code computes. Validate rejects any rule outside them. See docs/algorithms.md.
const (
	maxScaled      = int64(1) << 50 // scaled magnitudes: period×burst, capacity×period, limit×sub-bucket
	maxDenominator = int64(1) << 20 // reduced rate denominators (gcra limit, token_bucket refill)
	maxAheadMs     = int64(1) << 32 // state further ahead of now than this is clamped (clock steps)
	maxToleranceMs = int64(1) << 31 // gcra tolerance period×burst/limit
	// MaxLimit bounds requests_per_unit, burst and budget.
	MaxLimit = int64(1) << 32
	// MaxCost bounds the cost of one check (Envoy's hits_addend is a uint32).
	MaxCost = int64(1)<<32 - 1
	// MaxLogLimit caps sliding_window_log limits: its state grows with the limit, and
	// the Redis engine writes one ZSET member per admitted unit (about a microsecond of
	// Redis each, during which Redis serves nobody else), so a request admitted at a
	// limit of 10,000 held Redis for 23 ms. At 1,000, one limit's admission stays near
	// a millisecond; sliding_window serves larger limits in fixed memory.
	MaxLogLimit = int64(1000)
	// MaxBuckets caps sliding_window sub-buckets (each is read on every check).
	MaxBuckets = int64(100)
	// MaxPeriodMs is the longest window: 10 years.
	MaxPeriodMs = int64(10 * 365 * 24 * 3600 * 1000)
	// RetryCapMs saturates retryAfterMs of requests that can never be admitted
	// (cost above the burst or capacity): 2^40 ms, about 35 years.
	RetryCapMs = int64(1) << 40
	// MaxNowMs is the latest supported clock value: 2200-01-01T00:00:00Z.
	MaxNowMs = int64(7258118400000)
)

// Params is one limit's configuration. Build it with the fields set, then call
// Validate, which also derives the reduced integers the algorithms run on. Do not
// change it while an engine uses it: the Redis engine sends its fields by pointer.
type Params struct {
	Algorithm Algorithm
	Limit     int64 // L: requests per period (gcra rate, token_bucket refill, window quota, budget)
	PeriodMs  int64 // P: the period or window in milliseconds
	Burst     int64 // gcra burst B, token_bucket capacity C; 0 means Limit
	Buckets   int64 // sliding_window sub-buckets S; 0 means 10

	// Derived by Validate.
	num, den int64 // gcra: T = den/num ms (num = L', den = P'); token_bucket: rate num/den tokens per ms
	width    int64 // sliding_window sub-bucket width w = P/S
}

// Num and Den expose the reduced rate for the Redis engine's script arguments.
func (p *Params) Num() int64 { return p.num }

// Den is the reduced period (see Num).
func (p *Params) Den() int64 { return p.den }

// Width is the sliding_window sub-bucket width in ms.
func (p *Params) Width() int64 { return p.width }

// Ceiling is the limit reported to clients (SPEC §1).
func (p *Params) Ceiling() int64 {
	if p.Algorithm == GCRA || p.Algorithm == TokenBucket {
		return p.Burst
	}
	return p.Limit
}

// CeilingWindowMs is the time the ceiling stands for when it is reported as a quota per
// window (SPEC §6's current_limit pairs it with a unit): the window of the window
// algorithms and token_budget; for gcra and token_bucket the time the burst or capacity
// takes to refill from empty at the rule's rate, B·P/L, rounded up to whole ms. The
// ceiling per this window is the rule's rate, where the burst per the rule's period
// would misstate it (600 per minute with a burst of 20 is 20 per 2 s, not 20 per
// minute). Call it on validated Params.
func (p *Params) CeilingWindowMs() int64 {
	if (p.Algorithm == GCRA || p.Algorithm == TokenBucket) && p.num > 0 {
		return (p.Burst*p.den + p.num - 1) / p.num // B·den ≤ 2^50 (Validate)
	}
	return p.PeriodMs
}

// Validate checks that the rule can be computed exactly (SPEC §3), fills defaults and
// derives the reduced integers. The error names the bound that was exceeded.
//
// A limit of 0 blocks, as in envoyproxy/ratelimit (`requests_per_unit: 0` is its way to
// deny a value outright): it runs as fixed_window with L = 0, whatever the algorithm
// asked, since gcra and token_bucket would divide by zero. Every request that costs
// anything is denied until the window's end (its Retry-After), a cost-0 check is
// allowed, and nothing is ever written.
func (p *Params) Validate() error {
	if p.Limit == 0 {
		*p = Params{Algorithm: FixedWindow, PeriodMs: p.PeriodMs, Burst: 1}
	}
	if p.Limit < 0 || p.Limit > MaxLimit {
		return fmt.Errorf("limit %d out of range [0, %d]", p.Limit, MaxLimit)
	}
	if p.PeriodMs < 1 || p.PeriodMs > MaxPeriodMs {
		return fmt.Errorf("period %d ms out of range [1, %d]", p.PeriodMs, MaxPeriodMs)
	}
	if p.Burst == 0 {
		p.Burst = p.Limit
	}
	if p.Burst < 1 || p.Burst > MaxLimit {
		return fmt.Errorf("burst %d out of range [1, %d]", p.Burst, MaxLimit)
	}
	switch p.Algorithm {
	case GCRA:
		return p.validateGCRA()
	case TokenBucket:
		return p.validateTokenBucket()
	case SlidingWindow:
		return p.validateSlidingWindow()
	case SlidingWindowLog:
		if p.Limit > MaxLogLimit {
			return fmt.Errorf("sliding_window_log keeps one entry per admitted unit: limit %d exceeds the cap %d (use sliding_window)", p.Limit, MaxLogLimit)
		}
	case FixedWindow, TokenBudget:
	default:
		return fmt.Errorf("unknown algorithm %d", p.Algorithm)
	}
	return nil
}

func (p *Params) validateGCRA() error {
	g := gcd(p.Limit, p.PeriodMs)
	p.num, p.den = p.Limit/g, p.PeriodMs/g
	if p.num > maxDenominator {
		return fmt.Errorf("gcra: emission interval %d/%d ms has a denominator above 2^20 (%d); choose a limit and period with a larger common factor", p.den, p.num, maxDenominator)
	}
	if p.den > maxScaled/p.Burst {
		return fmt.Errorf("gcra: period×burst/gcd = %d×%d exceeds the exact-arithmetic bound 2^50", p.den, p.Burst)
	}
	if p.den*p.Burst > maxToleranceMs*p.num {
		return fmt.Errorf("gcra: tolerance period×burst/limit exceeds 2^31 ms (24.8 days); use a shorter period, a smaller burst, or fixed_window")
	}
	return nil
}

func (p *Params) validateTokenBucket() error {
	g := gcd(p.Limit, p.PeriodMs)
	p.num, p.den = p.Limit/g, p.PeriodMs/g
	if p.num > maxDenominator {
		return fmt.Errorf("token_bucket: refill %d per %d ms has a numerator above 2^20 (%d) after reduction; choose a refill and period with a larger common factor", p.num, p.den, maxDenominator)
	}
	if p.den > maxScaled/p.Burst {
		return fmt.Errorf("token_bucket: capacity×period/gcd = %d×%d exceeds the exact-arithmetic bound 2^50", p.Burst, p.den)
	}
	return nil
}

func (p *Params) validateSlidingWindow() error {
	if p.Buckets == 0 {
		p.Buckets = 10
	}
	if p.Buckets < 1 || p.Buckets > MaxBuckets {
		return fmt.Errorf("sliding_window: buckets %d out of range [1, %d]", p.Buckets, MaxBuckets)
	}
	if p.PeriodMs%p.Buckets != 0 {
		return fmt.Errorf("sliding_window: window %d ms is not divisible by buckets %d", p.PeriodMs, p.Buckets)
	}
	p.width = p.PeriodMs / p.Buckets
	if p.width > maxScaled/(p.Limit+1) {
		return fmt.Errorf("sliding_window: (limit+1)×sub-bucket width = %d×%d exceeds the exact-arithmetic bound 2^50", p.Limit+1, p.width)
	}
	return nil
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
