package conformance

import (
	"context"
	"fmt"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Result is the outcome of one suite.
type Result struct {
	Suite    string
	Ops      int
	Skipped  bool   // a primitive out of scope (throttlekit's lease)
	Mismatch string // empty when every op matched
}

// Replay runs every suite of f through engine, with base added to every now and every
// expected resetAt (SPEC §8). Each suite's keys are prefixed with keyPrefix and the suite
// index, so suites start cold; pass a fresh prefix per run against a shared store.
func Replay(ctx context.Context, engine limiter.Engine, f *File, base int64, keyPrefix string) ([]Result, error) {
	// Every suite's limits first: a bad suite or base stops the replay before any
	// state is written.
	checks := make([][]limiter.LimitCheck, len(f.Suites))
	for i := range f.Suites {
		s := &f.Suites[i]
		limits, err := s.checks(fmt.Sprintf("%s:%d:", keyPrefix, i))
		if err == nil && limits != nil {
			err = replayableNows(s, base)
		}
		if err == nil {
			err = alignedBase(base, limits)
		}
		if err != nil {
			return nil, fmt.Errorf("suite %q: %w", s.Name, err)
		}
		checks[i] = limits
	}
	results := make([]Result, 0, len(f.Suites))
	for i := range f.Suites {
		s := &f.Suites[i]
		r := Result{Suite: s.Primitive + " " + s.Name, Ops: len(s.Ops)}
		if checks[i] == nil {
			r.Skipped = true
		} else {
			var err error
			r.Mismatch, err = replaySuite(ctx, engine, s, checks[i], base)
			if err != nil {
				return nil, fmt.Errorf("suite %q: %w", s.Name, err)
			}
		}
		results = append(results, r)
	}
	return results, nil
}

// replayableNows refuses a suite with an op at now + base = 0: 0 is the store-clock
// sentinel (SPEC §2), so the engine would decide it at its own clock and every mismatch
// would be the replay's. The throttlekit timelines start at 0 and need a base (SPEC §8).
func replayableNows(s *Suite, base int64) error {
	for i, op := range s.Ops {
		if op.Now+base == 0 {
			return fmt.Errorf("op %d: now %d + base %d is 0, the store-clock sentinel (SPEC §2): replay with a base (--base) that moves the timeline off 0", i, op.Now, base)
		}
	}
	return nil
}

// alignedBase refuses a base that is not a multiple of an epoch-aligned window (SPEC
// §8): the replay would move the windows' edges and every expected resetAt would be
// off, and report mismatches that are the base's, not the engine's.
func alignedBase(base int64, checks []limiter.LimitCheck) error {
	for _, c := range checks {
		switch c.Params.Algorithm {
		case limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBudget:
			if base%c.Params.PeriodMs != 0 {
				return fmt.Errorf("base %d ms is not a multiple of the %s window of %d ms", base, c.Params.Algorithm, c.Params.PeriodMs)
			}
		}
	}
	return nil
}

// checks builds the suite's limits (with cost 0; each op sets its costs). It returns nil
// for the primitive out of scope (lease) and an error for one it does not know.
func (s *Suite) checks(prefix string) ([]limiter.LimitCheck, error) {
	switch s.Primitive {
	case "rateLimit":
		if s.Strategy == nil {
			return nil, fmt.Errorf("rateLimit suite without strategy")
		}
		p, err := Params(s.Strategy.Kind, s.Strategy.Options)
		if err != nil {
			return nil, err
		}
		return []limiter.LimitCheck{{Key: prefix + s.Key, Params: p}}, nil
	case "tokenBudget":
		p, err := Params("tokenBudget", s.Options)
		if err != nil {
			return nil, err
		}
		return []limiter.LimitCheck{{Key: prefix + "budget", Params: p}}, nil
	case "request":
		out := make([]limiter.LimitCheck, len(s.Limits))
		for i, l := range s.Limits {
			p, err := Params(l.Kind, l.Options)
			if err != nil {
				return nil, fmt.Errorf("limit %d: %w", i, err)
			}
			out[i] = limiter.LimitCheck{Key: prefix + l.Key, Params: p, Shadow: l.Shadow}
		}
		return out, nil
	case "lease":
		return nil, nil // out of scope: no lease primitive here
	}
	// A misspelt or new primitive must not pass as "skipped": it would replay nothing.
	return nil, fmt.Errorf("unknown primitive %q (want rateLimit, tokenBudget, request or lease)", s.Primitive)
}

// replaySuite returns a description of the first mismatch, or "".
func replaySuite(ctx context.Context, engine limiter.Engine, s *Suite, checks []limiter.LimitCheck, base int64) (string, error) {
	got := make([]limiter.Decision, len(checks))
	for n, op := range s.Ops {
		if err := op.setCosts(checks); err != nil {
			return "", fmt.Errorf("op %d: %w", n, err)
		}
		out, err := engine.Evaluate(ctx, op.Now+base, checks, got)
		if err != nil {
			return "", fmt.Errorf("op %d: %w", n, err)
		}
		step := fmt.Sprintf("op %d (now %d, replayed at %d)", n, op.Now, op.Now+base)
		want := op.Expect.Decisions
		if s.Primitive != "request" {
			want = []Decision{op.Expect.Decision}
		} else if out.Allowed != op.Expect.Allowed {
			return fmt.Sprintf("%s: request allowed %v, want %v", step, out.Allowed, op.Expect.Allowed), nil
		}
		if len(want) != len(got) {
			return "", fmt.Errorf("op %d: %d expected decisions for %d limits", n, len(want), len(got))
		}
		for i := range got {
			w := want[i]
			w.ResetAt += base
			if diff := differences(fromLimiter(got[i]), w); diff != "" {
				return fmt.Sprintf("%s limit %d: %s", step, i, diff), nil
			}
		}
	}
	return "", nil
}

func (op *Op) setCosts(checks []limiter.LimitCheck) error {
	switch {
	case op.Costs != nil:
		if len(op.Costs) != len(checks) {
			return fmt.Errorf("%d costs for %d limits", len(op.Costs), len(checks))
		}
		for i := range checks {
			checks[i].Cost = op.Costs[i]
		}
	case op.Cost != nil:
		checks[0].Cost = *op.Cost
	case op.Tokens != nil:
		checks[0].Cost = *op.Tokens
	default:
		return fmt.Errorf("op without cost")
	}
	return nil
}

func fromLimiter(d limiter.Decision) Decision {
	return Decision{Allowed: d.Allowed, Limit: d.Limit, Remaining: d.Remaining, ResetAt: d.ResetAt, RetryAfterMs: d.RetryAfterMs}
}

// differences names each field in which got differs from want: "remaining 2, want 3;
// resetAt 61000, want 61001", or "" when they are equal.
func differences(got, want Decision) string {
	var out []string
	add := func(name string, g, w any) {
		if g != w {
			out = append(out, fmt.Sprintf("%s %v, want %v", name, g, w))
		}
	}
	add("allowed", got.Allowed, want.Allowed)
	add("limit", got.Limit, want.Limit)
	add("remaining", got.Remaining, want.Remaining)
	add("resetAt", got.ResetAt, want.ResetAt)
	add("retryAfterMs", got.RetryAfterMs, want.RetryAfterMs)
	return strings.Join(out, "; ")
}
