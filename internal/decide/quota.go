package decide

import (
	"context"
	"slices"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// quota_mode, as envoyproxy/ratelimit defines it (PRs #1045 and #1059): the limits of a
// descriptor entry with quota_mode: true are soft. Call a request descriptor whose
// enforced limits are in quota mode a quota descriptor, and over when one of them denies.
// The request is denied only if a limit outside quota mode denies, or if every quota
// descriptor of the request is over. A quota descriptor that is over while the request
// is allowed reports OVER_LIMIT in its status (as there), and its denying limits consume
// nothing (a denied check never changes state, SPEC §1).
//
// The engine knows only enforced and shadow limits, so the rule is reached in rounds,
// each one atomic all-or-nothing call (SPEC §5.1): the first with every quota limit
// enforced (if it allows, no quota descriptor is over, and everything is charged as
// usual); after a denial, unless it stands, the quota descriptors that are over become
// shadow (evaluated, never denying, charging only where they allow) and the request is
// evaluated again. A denied round consumes nothing, so only the last round charges.
// Each round shadows exactly the quota descriptors the round before found over, so a
// descriptor that came back within its limit in between is enforced again: a round
// that allows has enforced some quota descriptor within its limit, and the answer is
// the rule's answer at the moment of that round. The first round finds every quota
// descriptor that is over, so a second round is usually the last; a further one
// happens only when other traffic changes a quota descriptor in between. Traffic that
// keeps doing so could keep a request going, so after maxQuotaRounds a request still
// denied stays denied. Requests without a quota descriptor over its limit take one
// round.

// maxQuotaRounds bounds the store calls of one request in quota mode: the usual two, a
// third for a change by other traffic in between, and one more.
const maxQuotaRounds = 4

// evaluateRounds asks the store for the request's decisions, and in quota mode again
// while a denial does not stand (softenQuota), at most maxQuotaRounds times in all.
func (d *Decider) evaluateRounds(ctx context.Context, req *Request, p *plan, decisions []limiter.Decision) (limiter.Outcome, bool, error) {
	out, failedOpen, err := d.evaluate(ctx, req.Domain, req.Now, p, decisions)
	for round := 1; round < maxQuotaRounds; round++ {
		if err != nil || failedOpen || out.Allowed || !p.quota || !d.softenQuota(p, decisions) {
			break
		}
		out, failedOpen, err = d.evaluate(ctx, req.Domain, req.Now, p, decisions)
	}
	return out, failedOpen, err
}

// descState is what a round says of one request descriptor.
type descState uint8

const (
	notQuota   descState = iota // no enforced quota-mode limit
	quotaUnder                  // every quota limit allows
	quotaOver                   // some quota limit denies
)

// quotaStates classifies the descriptors by the latest round's decisions, and reports
// whether a limit outside quota mode denied. Shadow checks report their own deny
// decision (SPEC §8), so a descriptor made shadow in an earlier round that has since
// come back within its limit counts as under again.
func (d *Decider) quotaStates(p *plan, decisions []limiter.Decision) (states []descState, enforcedDenied bool) {
	states = make([]descState, p.owner[len(p.owner)-1]+1) // owners ascend (plan)
	for i, l := range p.limits {
		if l.Shadow || d.shadow {
			continue
		}
		o := p.owner[i]
		switch {
		case !l.Quota:
			enforcedDenied = enforcedDenied || !decisions[i].Allowed
		case !decisions[i].Allowed:
			states[o] = quotaOver
		case states[o] == notQuota:
			states[o] = quotaUnder
		}
	}
	return states, enforcedDenied
}

// softenQuota looks at a denied round. If the denial stands (a limit outside quota mode
// denied, or every quota descriptor is over) it returns false; otherwise it makes the
// quota checks of the descriptors that are over shadow and returns true: evaluate again.
func (d *Decider) softenQuota(p *plan, decisions []limiter.Decision) bool {
	states, enforcedDenied := d.quotaStates(p, decisions)
	if enforcedDenied || !slices.Contains(states, quotaUnder) {
		return false
	}
	for i, l := range p.limits {
		if l.Quota && !l.Shadow && !d.shadow {
			// Shadow exactly the descriptors over now: one made shadow in an earlier
			// round that is back within its limit is enforced again, so that the round
			// that charges always enforces a quota descriptor within its limit.
			p.checks[i].Shadow = states[p.owner[i]] == quotaOver
		}
	}
	return true
}

// quotaWaitFor is the check a denied request waits for (-1: none): the denying limit
// outside quota mode with the longest wait, and, when every quota descriptor is over
// (or none of those limits denied: the rounds ran out), the longer of that and the
// soonest one of the quota descriptors over comes back (its denying limit with the
// longest wait). Ties go to the first, and to the limit outside quota mode.
func (d *Decider) quotaWaitFor(p *plan, decisions []limiter.Decision) int {
	states, _ := d.quotaStates(p, decisions)
	longest := make([]int, len(states)) // per quota descriptor over: its longest wait (-1: none)
	for o := range longest {
		longest[o] = -1
	}
	hard := -1
	for i, l := range p.limits {
		dec := decisions[i]
		switch {
		case l.Shadow || d.shadow || dec.Allowed:
		case l.Quota:
			if o := p.owner[i]; longest[o] < 0 || tighterDenial(dec, decisions[longest[o]]) {
				longest[o] = i
			}
		case hard < 0 || tighterDenial(dec, decisions[hard]):
			hard = i
		}
	}
	// With a quota descriptor under, the denial is the ordinary limit's; unless none
	// denied: the request ran out of rounds (maxQuotaRounds) while its enforced quota
	// descriptors were over, and waits for the soonest of them, as when all are over.
	if !slices.Contains(states, quotaOver) || hard >= 0 && slices.Contains(states, quotaUnder) {
		return hard
	}
	soonest := -1
	for o, s := range states {
		if s == quotaOver && (soonest < 0 || decisions[longest[o]].RetryAfterMs < decisions[soonest].RetryAfterMs) {
			soonest = longest[o]
		}
	}
	if hard >= 0 && decisions[hard].RetryAfterMs >= decisions[soonest].RetryAfterMs {
		return hard
	}
	return soonest
}
