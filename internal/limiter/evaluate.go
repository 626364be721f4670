package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// LimitCheck is one limit of one request: the storage key it charges, its rule, its
// cost (0 = check-only) and whether it runs in shadow mode.
type LimitCheck struct {
	Key    string
	Params *Params
	Cost   int64
	Shadow bool
}

// Outcome is the answer to a whole request.
type Outcome struct {
	Now     int64 // the single now every limit was evaluated at (the store's clock when 0 was passed)
	Allowed bool  // false iff some enforced (non-shadow) limit denied
}

// CallerGaveUp says whether ctx's caller has given up on a store call: cancelled, or
// its deadline passed. A call whose socket deadlines the caller's deadline set fails an
// instant before ctx says it is done, and its script may have run. Such a failure is
// not the store's: the circuit breaker does not count it, the failure policy does not
// answer it (a local policy would charge a second time), and metrics count it as
// canceled, not as a store timeout.
func CallerGaveUp(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// Engine decides every check of one request at one now, all or nothing (SPEC §5): if
// every enforced limit allows, every limit consumes its cost; otherwise nothing is
// consumed. decisions must have len(checks); it receives one Decision per check, with
// the reporting rule of SPEC §8 (denying limits show their deny decision, the others
// their q = 0 decision). now = 0 means the engine's clock.
type Engine interface {
	Evaluate(ctx context.Context, now int64, checks []LimitCheck, decisions []Decision) (Outcome, error)
	Close() error
}

// Pinger is implemented by engines whose store can be unreachable (Redis): Ping checks
// that the store answers and takes a decision (readiness, the circuit breaker's probe).
type Pinger interface {
	Ping(ctx context.Context) error
}

// ErrBadRequest wraps errors caused by the caller's input (a bad now or cost).
var ErrBadRequest = errors.New("invalid request")

// validateChecks rejects input that would break exactness before any state is touched.
func validateChecks(now int64, checks []LimitCheck, decisions []Decision) error {
	if now < 0 || now > MaxNowMs {
		return fmt.Errorf("%w: now %d outside [0, %d]", ErrBadRequest, now, MaxNowMs)
	}
	if len(decisions) != len(checks) {
		return fmt.Errorf("%w: %d decisions for %d checks", ErrBadRequest, len(decisions), len(checks))
	}
	for i := range checks {
		if c := checks[i].Cost; c < 0 || c > MaxCost {
			return fmt.Errorf("%w: cost %d outside [0, %d]", ErrBadRequest, c, MaxCost)
		}
	}
	return nil
}

// StateStore is what evaluateLocked needs from an engine that holds state in process:
// read a key's state and, on commit, write it.
type StateStore interface {
	Load(key string) State
	Store(key string, st State)
}

// evaluateLocked runs SPEC §5 over states the caller has locked. Limits are evaluated in
// request order on working copies, so a key charged by an earlier limit of the same
// request shows that charge to a later one; the copies are committed only if every
// enforced limit allowed.
//
// The working set is a few parallel slices with linear lookup (requests carry few
// limits, so this beats a map), backed by arrays on this function's stack for requests
// of up to workingInline keys: the whole evaluation then allocates nothing. (The store
// is a type parameter, not an interface value: a memView boxed in an interface cost an
// allocation per request.)
func evaluateLocked[S StateStore](store S, now int64, checks []LimitCheck, decisions []Decision) bool {
	var (
		keysBuf   [workingInline]string
		statesBuf [workingInline]State
		dirtyBuf  [workingInline]bool
	)
	keys, states, dirty := keysBuf[:0], statesBuf[:0], dirtyBuf[:0]
	if n := len(checks); n > workingInline {
		keys, states, dirty = make([]string, 0, n), make([]State, 0, n), make([]bool, 0, n)
	}
	allowed := true
	for i := range checks {
		c := &checks[i]
		w := slices.Index(keys, c.Key)
		if w < 0 {
			w = len(keys)
			keys, states, dirty = append(keys, c.Key), append(states, store.Load(c.Key)), append(dirty, false)
		}
		d, next, write := Check(c.Params, &states[w], now, c.Cost)
		decisions[i] = d
		switch {
		case !d.Allowed && !c.Shadow:
			allowed = false
		case d.Allowed && write:
			states[w], dirty[w] = next, true
		}
	}
	if allowed {
		for w, k := range keys {
			if dirty[w] {
				store.Store(k, states[w])
			}
		}
		return true
	}
	// Denied: nothing is consumed, and the limits that did not deny report the state as
	// it stands (their q = 0 decision against the stored, uncharged state).
	for i := range checks {
		if decisions[i].Allowed {
			st := store.Load(checks[i].Key)
			decisions[i], _, _ = Check(checks[i].Params, &st, now, 0)
		}
	}
	return false
}

// workingInline is how many distinct keys evaluateLocked keeps on its stack.
const workingInline = 4
