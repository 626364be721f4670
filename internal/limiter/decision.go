package limiter

// Decision is the answer of one limit to one check (SPEC §1), in the contract's field order.
type Decision struct {
	Allowed      bool
	Limit        int64 // the ceiling reported to clients
	Remaining    int64 // whole units still admissible right after this decision, never negative
	ResetAt      int64 // epoch ms at which the limit is fully replenished
	RetryAfterMs int64 // 0 iff allowed
}

// State is the stored state of one key. Each algorithm uses the fields its comment names;
// the zero State with Live false is a cold key.
type State struct {
	Live bool
	// Algo is the algorithm that wrote the state. Another algorithm reads it as a cold
	// key, as request.lua does (limits of different algorithms may share a key in
	// vectors; the service's keys name the algorithm).
	Algo Algorithm
	// Held is how many units the state holds (the decision that wrote it: limit −
	// remaining), for the memory engine's eviction: dropping the state that holds
	// the fewest forgives the fewest. Units, not a share of the limit: a key of a
	// limit of 1 used once is full, yet forgives one unit. Not part of the state's
	// meaning; beside Live and Algo it takes no room of its own.
	Held uint32
	// gcra: A = floor(tat) in ms, B = the fraction of tat in units of 1/num ms.
	// token_bucket: A = last refill time in ms, B = tokens scaled by den.
	// fixed_window, token_budget: A = window start in ms, B = count.
	A, B int64
	// sliding_window: counts per sub-bucket index; sliding_window_log: runs of entries
	// per stamp in stamp order. Both are Run slices so one type covers them.
	Runs []Run
	// ExpireAt is the epoch ms after which this state reads as a cold key (SPEC §9).
	ExpireAt int64
}

// Run is a (position, count) pair: a sub-bucket index and its count, or a log stamp and
// the number of units admitted at it.
type Run struct {
	At, N int64
}

// Check evaluates one limit at now with cost q against st without modifying st. When
// the check allows with q > 0 it returns the state to store (write true).
func Check(p *Params, st *State, now, q int64) (d Decision, next State, write bool) {
	if !st.Live || st.Algo != p.Algorithm || (st.ExpireAt != 0 && now >= st.ExpireAt) {
		st = &State{}
	}
	switch p.Algorithm {
	case GCRA:
		d, next, write = gcra(p, st, now, q)
	case TokenBucket:
		d, next, write = tokenBucket(p, st, now, q)
	case SlidingWindow:
		d, next, write = slidingWindow(p, st, now, q)
	case SlidingWindowLog:
		d, next, write = slidingLog(p, st, now, q)
	case TokenBudget:
		d, next, write = tokenBudget(p, st, now, q)
	default:
		d, next, write = fixedWindow(p, st, now, q)
	}
	next.Algo = p.Algorithm
	if write {
		next.Held = heldBy(d)
	}
	return d, next, write
}

// heldBy is how many units d's limit has in use, up to 2^32−1.
func heldBy(d Decision) uint32 {
	return uint32(min(max(d.Limit-d.Remaining, 0), 1<<32-1))
}

// ceilDiv returns ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// floorDiv returns ⌊a/b⌋ for b > 0 and any a.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// saturatedRetry returns min(RetryCapMs, ⌈(x + per·m)/div⌉) exactly, for a request whose
// cost exceeds the limit's ceiling by m units and can never be admitted. per·m may be far
// beyond 2^63, so it is split as per = a·div + b (the Lua script does the same).
func saturatedRetry(x, per, m, div int64) int64 {
	a, b := per/div, per%div
	if a > 0 && m > RetryCapMs/a {
		return RetryCapMs
	}
	r := a*m + ceilDiv(b*m+x, div)
	return min(r, RetryCapMs)
}
