package limiter

// The six algorithms of SPEC §4 in integer arithmetic. Rational quantities are scaled by
// their denominator so that every value is an exact integer; Params.Validate bounds the
// magnitudes below 2^50 so the Lua scripts, which compute in doubles, agree bit for bit.
// internal/redislua/request.lua mirrors each function here line for line.

// gcra works in units of 1/num ms, where the emission interval T = den/num ms. In those
// units T is den, the tolerance τ = T·B is den·B, and tat−now is diff.
func gcra(p *Params, st *State, now, q int64) (Decision, State, bool) {
	num, den, burst := p.num, p.den, p.Burst
	var diff int64 // (max(tat, now) − now)·num
	if st.Live && st.A >= now {
		diff = min(st.A-now, maxAheadMs)*num + st.B
	}
	tau := den * burst
	d := Decision{Limit: burst}
	if q <= burst && diff+den*q <= tau {
		newDiff := diff + den*q
		d.Allowed = true
		d.Remaining = (tau - newDiff) / den
		d.ResetAt = now + ceilDiv(newDiff, num)
		if q == 0 {
			return d, State{}, false
		}
		ahead := ceilDiv(newDiff, num)
		return d, State{Live: true, A: now + newDiff/num, B: newDiff % num, ExpireAt: now + max(ahead, 1)}, true
	}
	d.Remaining = max(0, tau-diff) / den
	d.ResetAt = now + ceilDiv(diff, num)
	if q > burst {
		d.RetryAfterMs = saturatedRetry(diff, den, q-burst, num)
	} else {
		d.RetryAfterMs = ceilDiv(diff+den*q-tau, num)
	}
	return d, State{}, false
}

// tokenBucket keeps tokens scaled by den; the refill rate is num scaled tokens per ms.
func tokenBucket(p *Params, st *State, now, q int64) (Decision, State, bool) {
	num, den := p.num, p.den
	full := p.Burst * den
	tokens, last := full, now
	if st.Live {
		// min: a bucket whose capacity was lowered (a rule change keeps the key) holds
		// at most the new capacity, even before any time has passed.
		tokens, last = min(st.B, full), st.A
		if elapsed := now - last; elapsed > 0 {
			if elapsed >= ceilDiv(full-tokens, num) {
				tokens = full
			} else {
				tokens += elapsed * num
			}
		}
	}
	d := Decision{Limit: p.Burst}
	if q <= p.Burst && tokens >= q*den {
		left := tokens - q*den
		refill := ceilDiv(full-left, num)
		d.Allowed = true
		d.Remaining = left / den
		d.ResetAt = now + refill
		if q == 0 {
			return d, State{}, false
		}
		// The bucket is full again refill ms after its (never rewound) refill time.
		return d, State{Live: true, A: max(last, now), B: left, ExpireAt: max(last, now) + max(refill, 1)}, true
	}
	d.Remaining = tokens / den
	d.ResetAt = now + ceilDiv(full-tokens, num)
	if q > p.Burst {
		d.RetryAfterMs = saturatedRetry(full-tokens, den, q-p.Burst, num)
	} else {
		d.RetryAfterMs = ceilDiv(q*den-tokens, num)
	}
	return d, State{}, false
}

// windowCount returns the count stored for the window starting at ws, or 0.
func windowCount(st *State, ws int64) int64 {
	if st.Live && st.A == ws {
		return st.B
	}
	return 0
}

func fixedWindow(p *Params, st *State, now, q int64) (Decision, State, bool) {
	ws := floorDiv(now, p.PeriodMs) * p.PeriodMs
	count := windowCount(st, ws)
	d := Decision{Limit: p.Limit, ResetAt: ws + p.PeriodMs}
	if count+q <= p.Limit {
		d.Allowed = true
		d.Remaining = p.Limit - count - q
		return d, State{Live: true, A: ws, B: count + q, ExpireAt: d.ResetAt}, q > 0
	}
	d.Remaining = max(0, p.Limit-count)
	d.RetryAfterMs = d.ResetAt - now
	return d, State{}, false
}

func tokenBudget(p *Params, st *State, now, q int64) (Decision, State, bool) {
	ws := floorDiv(now, p.PeriodMs) * p.PeriodMs
	served := windowCount(st, ws)
	d := Decision{Limit: p.Limit, ResetAt: ws + p.PeriodMs}
	if served < p.Limit {
		d.Allowed = true
		d.Remaining = max(0, p.Limit-served-q)
		return d, State{Live: true, A: ws, B: served + q, ExpireAt: d.ResetAt}, q > 0
	}
	d.RetryAfterMs = d.ResetAt - now
	return d, State{}, false
}

// slidingWindow works in units of 1/w: the estimate full + oldest·(w−e)/w becomes
// full·w + oldest·(w−e). Stored counts are read clamped to the limit (and their sum to
// limit+1), which changes no decision under a fixed rule and bounds the products after
// a rule's limit is lowered.
func slidingWindow(p *Params, st *State, now, q int64) (Decision, State, bool) {
	L, w, S := p.Limit, p.width, p.Buckets
	c := floorDiv(now, w)
	e := now - c*w
	var full, oldest, current int64
	for _, r := range st.Runs {
		n := min(r.N, L)
		switch {
		case r.At == c-S:
			oldest = n
		case r.At > c-S && r.At <= c:
			full += n
			if r.At == c {
				current = n
			}
		}
	}
	full = min(full, L+1)
	est := full*w + oldest*(w-e)
	d := Decision{Limit: L, ResetAt: (c+1)*w + p.PeriodMs}
	if q <= L && est+q*w <= L*w {
		d.Allowed = true
		d.Remaining = (L*w - est - q*w) / w
		if q == 0 {
			return d, State{}, false
		}
		return d, slidingNext(st, c, S, current+q, d.ResetAt), true
	}
	if L*w > est {
		d.Remaining = (L*w - est) / w
	}
	d.RetryAfterMs = (c+1)*w - now
	// q > L implies D > oldest·weight, so only q ≤ L can take the interpolated wait.
	if q <= L && oldest > 0 {
		if excess := est + q*w - L*w; excess <= oldest*(w-e) {
			d.RetryAfterMs = ceilDiv(excess, oldest)
		}
	}
	d.RetryAfterMs = max(1, d.RetryAfterMs)
	return d, State{}, false
}

// slidingNext keeps the sub-buckets still inside [c−S, c] and sets bucket c to n.
func slidingNext(st *State, c, S, n, expireAt int64) State {
	runs := make([]Run, 0, len(st.Runs)+1)
	for _, r := range st.Runs {
		if r.At >= c-S && r.At < c {
			runs = append(runs, r)
		}
	}
	runs = append(runs, Run{At: c, N: n})
	return State{Live: true, Runs: runs, ExpireAt: expireAt}
}

func slidingLog(p *Params, st *State, now, q int64) (Decision, State, bool) {
	L, P := p.Limit, p.PeriodMs
	live := st.Runs
	for len(live) > 0 && live[0].At <= now-P {
		live = live[1:]
	}
	// Runs are in stamp order; an entry stamped after now (a clock that stepped back)
	// stays until its own stamp has aged out.
	var n int64
	for _, r := range live {
		n += r.N
	}
	d := Decision{Limit: L}
	if n+q <= L {
		d.Allowed = true
		d.Remaining = L - n - q
		if q == 0 {
			d.ResetAt = oldestStamp(live, now) + P
			return d, State{}, false
		}
		runs := logInsert(live, now, q)
		d.ResetAt = runs[0].At + P
		return d, State{Live: true, Runs: runs, ExpireAt: runs[len(runs)-1].At + P}, true
	}
	d.Remaining = max(0, L-n)
	d.ResetAt = oldestStamp(live, now) + P
	if n == 0 {
		d.RetryAfterMs = P
	} else {
		k := min(max(n+q-L, 1), n)
		d.RetryAfterMs = max(1, kthStamp(live, k)+P-now)
	}
	return d, State{}, false
}

func oldestStamp(runs []Run, now int64) int64 {
	if len(runs) == 0 {
		return now
	}
	return runs[0].At
}

// kthStamp returns the stamp of the k-th oldest entry (1-based).
func kthStamp(runs []Run, k int64) int64 {
	for _, r := range runs {
		if k <= r.N {
			return r.At
		}
		k -= r.N
	}
	return runs[len(runs)-1].At
}

// logInsert returns a new slice with q entries stamped now added in stamp order.
func logInsert(runs []Run, now, q int64) []Run {
	out := make([]Run, 0, len(runs)+1)
	i := 0
	for ; i < len(runs) && runs[i].At < now; i++ {
		out = append(out, runs[i])
	}
	if i < len(runs) && runs[i].At == now {
		out = append(out, Run{At: now, N: runs[i].N + q})
		i++
	} else {
		out = append(out, Run{At: now, N: q})
	}
	return append(out, runs[i:]...)
}
