package decide

import (
	"context"
	"errors"
	"fmt"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Policy says what a request gets when the store cannot answer (docs/reliability.md).
type Policy uint8

const (
	// FailClosed returns the store error: gRPC UNAVAILABLE, and Envoy's
	// failure_mode_deny decides (SPEC §6). The default.
	FailClosed Policy = iota
	// FailOpen answers OK for every descriptor, without limits.
	FailOpen
	// Local decides with this replica's in-memory engine until the store returns. Each
	// replica then enforces every limit on its own: a fleet of N replicas admits up to N
	// times a limit, and nothing counted locally is carried back to the store.
	Local
)

var policyNames = [...]string{FailClosed: "fail_closed", FailOpen: "fail_open", Local: "local"}

func (p Policy) String() string { return policyNames[p] }

// ParsePolicy reads a policy name.
func ParsePolicy(s string) (Policy, error) {
	for i, n := range policyNames {
		if n == s {
			return Policy(i), nil
		}
	}
	return 0, fmt.Errorf("unknown store failure policy %q (want fail_closed, fail_open or local)", s)
}

// FailurePolicy is the store failure policy, overridable per domain.
type FailurePolicy struct {
	Default   Policy
	PerDomain map[string]Policy
	Local     limiter.Engine // the engine Local decides with; required when any policy is Local
	// OnFallback, when set, is told each request answered by a policy instead of the store.
	OnFallback func(domain string, p Policy)
}

func (f *FailurePolicy) policyFor(domain string) Policy {
	if p, ok := f.PerDomain[domain]; ok {
		return p
	}
	return f.Default
}

// Validate checks that a Local policy has its engine.
func (f *FailurePolicy) Validate() error {
	uses := f.Default == Local
	for _, p := range f.PerDomain {
		uses = uses || p == Local
	}
	if uses && f.Local == nil {
		return errors.New("the local store failure policy needs a local engine")
	}
	return nil
}

// evaluate runs the plan's checks on the engine, and on a store failure applies the
// policy.
// It returns done = true when the policy answered the request (fail_open) without
// decisions.
func (d *Decider) evaluate(ctx context.Context, domain string, now int64, p *plan, out []limiter.Decision) (o limiter.Outcome, failedOpen bool, err error) {
	o, err = d.storeEvaluate(ctx, now, p, out)
	if err == nil || !errors.Is(err, limiter.ErrStore) || limiter.CallerGaveUp(ctx) {
		// A caller that gave up gets no answer anyway, and the store may have decided
		// (its reply was not read in time): a local policy would charge a second time.
		return o, false, err
	}
	policy := d.failure.policyFor(domain)
	if d.failure.OnFallback != nil && policy != FailClosed {
		d.failure.OnFallback(domain, policy)
	}
	switch policy {
	case FailOpen:
		return limiter.Outcome{Now: now, Allowed: true}, true, nil
	case Local:
		o, err = d.failure.Local.Evaluate(ctx, now, p.checks, out)
		return o, false, err
	}
	return o, false, err
}
