// Package decide turns one rate-limit request (a domain and its descriptors) into
// decisions: it matches the rules, applies `replaces`, overrides and costs (SPEC §5),
// asks the engine once for the whole request (again only for quota_mode, quota.go),
// and picks the limit each descriptor reports. Every door into the service (ShouldRateLimit, ext_authz Check, the JSON
// decision endpoint) goes through it, so they share rules, keys and state.
package decide

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// Descriptor is one request descriptor in transport-neutral form.
type Descriptor struct {
	Entries  []descriptors.Entry
	Cost     *uint64   // the descriptor's own hits_addend; nil = use the request's
	Override *Override // a per-request limit override, or nil
	// Refund is Envoy's is_negative_hits: give back earlier hits. SPEC's algorithms only
	// consume (cost ≥ 0), so such a descriptor matches nothing: OK, and no state changes.
	// Refusing the request instead would have Envoy let its other descriptors past every
	// limit (failure_mode_deny is off by default).
	Refund bool
}

// Override is Envoy's RateLimitOverride: in a domain the rules define, the one limit of
// its descriptor, whatever the descriptor matched (see applyOverride).
type Override struct {
	RequestsPerUnit int64
	Unit            string // second..year
	UnitMultiplier  int64  // 0 = 1
}

// Request is one rate-limit request.
type Request struct {
	Domain      string
	Descriptors []Descriptor
	HitsAddend  uint64 // request-wide cost; 0 means 1
	Now         int64  // 0 = the engine's clock
}

// Status is the answer for one descriptor. OverLimit can be true in an allowed request:
// a quota-mode descriptor over its limit (quota.go).
type Status struct {
	OverLimit   bool
	Unlimited   bool               // the descriptor matched an unlimited limit; with no reported limit (Limit nil) it answers 2^32−1 remaining
	CostClamped bool               // its limits were charged Bounds.MaxCost for a larger cost
	Limit       *descriptors.Limit // the reported limit; nil when no limit applies
	Decision    limiter.Decision   // the reported limit's decision
	Checked     []Checked          // every limit evaluated for this descriptor (for metrics)
}

// Checked is one evaluated limit of a descriptor.
type Checked struct {
	Limit    *descriptors.Limit
	Decision limiter.Decision
	Shadow   bool
}

// Result is the answer to a request.
type Result struct {
	OverLimit bool
	Now       int64
	Statuses  []Status
	// WaitFor is, on a denial, the limit the request waits for: the enforced limit with
	// the longest wait, or in quota mode the one quota.go's rule names (quotaWaitFor).
	// nil when allowed. It points into a status's Checked.
	WaitFor    *Checked
	FailedOpen bool // the store failed and the fail_open policy allowed the request
	Cached     bool // answered by the local over-limit cache, without a store call
	// UnknownDomain: the rules do not define the request's domain, so nothing was
	// decided (allowed, as with no match; worth a metric: a misspelt domain in Envoy
	// lifts every limit).
	UnknownDomain bool
}

// RetryAfterMs is how long a denied request waits: WaitFor's wait; 0 when allowed.
func (r *Result) RetryAfterMs() int64 {
	if r.WaitFor == nil {
		return 0
	}
	return r.WaitFor.Decision.RetryAfterMs
}

// Observer sees every request a door decided, or failed to (metrics); api names the
// door: "rls", "ext_authz" or "decide" (the JSON endpoint).
type Observer interface {
	Observe(api string, start time.Time, req *Request, res *Result, err error)
}

// ErrInvalid marks errors caused by the request itself.
var ErrInvalid = errors.New("invalid rate limit request")

// ErrNoRules is the answer while no rule set is in place (rules from an xDS server
// that has not sent any yet). Deciding on no rules would allow everything; an error
// lets the caller's failure policy (Envoy's failure_mode_deny) decide instead.
var ErrNoRules = errors.New("no rules loaded yet")

// Decider holds the current rules and the engine.
type Decider struct {
	rules   atomic.Pointer[descriptors.RuleSet]
	engine  limiter.Engine
	keys    *storekey.Builder
	shadow  bool // global shadow mode (SPEC §5.4)
	bounds  Bounds
	failure FailurePolicy
	cache   *overlimit.Cache // the local over-limit cache, or nil
}

// Options are a Decider's settings besides its rules and engine. They are fixed for
// its life: only the rules change while it serves.
type Options struct {
	// Keys builds the storage keys; required.
	Keys *storekey.Builder
	// Shadow is the global shadow mode (SPEC §5.4): every limit decides and counts, and
	// every request is allowed.
	Shadow bool
	// Bounds are what one request may carry; the zero value means DefaultBounds.
	// Otherwise every field counts (a zero field refuses everything it bounds): start
	// from DefaultBounds and change what differs.
	Bounds Bounds
	// Failure is the store failure policy; the zero value fails closed everywhere.
	Failure FailurePolicy
	// OverLimit is the local over-limit cache (package overlimit), or nil for none:
	// requests whose every limit is known to deny in a frozen state are answered
	// without a store call, with the decisions the store would return.
	OverLimit *overlimit.Cache
}

// New returns a Decider serving rules on engine. rules may be nil until SetRules: every
// request is then answered with ErrNoRules.
func New(rules *descriptors.RuleSet, engine limiter.Engine, o Options) *Decider {
	if o.Bounds == (Bounds{}) {
		o.Bounds = DefaultBounds
	}
	d := &Decider{engine: engine, keys: o.Keys, shadow: o.Shadow, bounds: o.Bounds,
		failure: o.Failure, cache: o.OverLimit}
	d.rules.Store(rules)
	return d
}

// Bounds returns the bounds requests are held to.
func (d *Decider) Bounds() Bounds { return d.bounds }

// SetRules swaps the rule set atomically; requests in flight finish on the old one.
// The local over-limit cache is cleared when the rules changed; a rule set identical to
// the one serving (a reload that changed nothing, an xDS reconnect) keeps it.
func (d *Decider) SetRules(rs *descriptors.RuleSet) {
	old := d.rules.Swap(rs)
	if d.cache != nil && old.Hash() != rs.Hash() { // a nil set hashes to ""
		d.cache.Clear()
	}
}

// Rules returns the rule set in use.
func (d *Decider) Rules() *descriptors.RuleSet { return d.rules.Load() }

// Engine returns the engine decisions are made on.
func (d *Decider) Engine() limiter.Engine { return d.engine }

// plan is the set of checks of one request and which descriptor each belongs to.
type plan struct {
	checks   []limiter.LimitCheck
	limits   []*descriptors.Limit
	owner    []int // descriptor index of each check
	override bool  // some descriptor's limits were replaced by a request override
	quota    bool  // some enforced limit is in quota mode (quota.go)
	// unlimited are the descriptors that matched an unlimited limit (without override),
	// clamped the ones whose limits are charged the bound for a larger cost (Decider.cost).
	unlimited, clamped []int

	// Inline storage: a request with up to inlineChecks checks (nearly all of them)
	// keeps its working memory here, in the one allocation of requestMemory.
	checksBuf    [inlineChecks]limiter.LimitCheck
	limitsBuf    [inlineChecks]*descriptors.Limit
	ownerBuf     [inlineChecks]int
	decisionsBuf [inlineChecks]limiter.Decision
	checkedBuf   [inlineChecks]Checked
	unlimitedBuf [inlineStatuses]int
	clampedBuf   [inlineStatuses]int
}

// inlineChecks is how many checks and descriptors a request holds without further
// allocations (docs/performance.md: allocation budgets).
const inlineChecks = 4

// requestMemory is everything one request needs, allocated at once; the Result handed
// out points into it.
type requestMemory struct {
	res      Result
	plan     plan
	statuses [inlineStatuses]Status
}

// inlineStatuses is how many descriptors a request holds without further allocations.
const inlineStatuses = 2

// result is the Result of req before any limit is decided: a status per descriptor,
// marked where the plan found it unlimited or its cost clamped.
func (mem *requestMemory) result(req *Request) *Result {
	res, p := &mem.res, &mem.plan
	res.Now = req.Now
	if n := len(req.Descriptors); n <= inlineStatuses {
		res.Statuses = mem.statuses[:n:n]
	} else {
		res.Statuses = make([]Status, n)
	}
	for _, i := range p.unlimited {
		res.Statuses[i].Unlimited = true
	}
	for _, i := range p.clamped {
		res.Statuses[i].CostClamped = true
	}
	return res
}

// Decide evaluates a request all or nothing.
func (d *Decider) Decide(ctx context.Context, req *Request) (*Result, error) {
	if req.Domain == "" {
		return nil, fmt.Errorf("%w: domain is empty", ErrInvalid)
	}
	if len(req.Descriptors) == 0 {
		return nil, fmt.Errorf("%w: no descriptors", ErrInvalid)
	}
	if err := d.bounds.check(req); err != nil {
		return nil, err
	}
	rules := d.rules.Load() // one rule set for the whole request, even across a swap
	if rules == nil {
		return nil, ErrNoRules
	}
	mem := new(requestMemory)
	p := &mem.plan
	d.plan(rules, req, p)
	res := mem.result(req)
	if len(p.checks) == 0 {
		res.UnknownDomain = !rules.HasDomain(req.Domain) // checks imply a known domain
		return res, nil
	}
	var decisions []limiter.Decision
	if n := len(p.checks); n <= inlineChecks {
		decisions = p.decisionsBuf[:n:n]
	} else {
		decisions = make([]limiter.Decision, n)
	}
	if now, ok := d.cachedDenial(req.Now, p, decisions); ok {
		res.Now, res.OverLimit, res.Cached = now, true, true
		d.report(res, p, decisions)
		return res, nil
	}
	out, failedOpen, err := d.evaluateRounds(ctx, req, p, decisions)
	if err != nil {
		if errors.Is(err, limiter.ErrBadRequest) {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return nil, err
	}
	if failedOpen {
		res.FailedOpen = true
		return res, nil
	}
	res.Now, res.OverLimit = out.Now, !out.Allowed
	d.report(res, p, decisions)
	return res, nil
}

// report fills each descriptor's status: the enforced limit that denied, else the
// enforced limit with the lowest remaining (SPEC §5.2). Of several limits that denied,
// see tighterDenial. Shadow-mode limits are never
// reported, so shadow mode shows nothing to clients (no headers, no remaining count);
// they appear in Checked for metrics. A quota-mode limit is reported like any enforced
// one, also when quota.go evaluated it as shadow: a quota descriptor over its limit shows
// OVER_LIMIT even when the request is allowed.
func (d *Decider) report(res *Result, p *plan, decisions []limiter.Decision) {
	// A descriptor's checks are consecutive (plan builds them descriptor by descriptor),
	// so each status's Checked is a window of one slice.
	var checked []Checked
	if n := len(p.checks); n <= inlineChecks {
		checked = p.checkedBuf[:n:n]
	} else {
		checked = make([]Checked, n)
	}
	wait := -1 // the check the request waits for
	for i := range p.checks {
		st := &res.Statuses[p.owner[i]]
		dec, shadow := decisions[i], p.limits[i].Shadow || d.shadow // as configured, not as quota.go sent it
		checked[i] = Checked{Limit: p.limits[i], Decision: dec, Shadow: shadow}
		switch {
		case len(st.Checked) == 0:
			st.Checked = checked[i : i+1]
		case p.owner[i-1] == p.owner[i]: // the window grows over checked[i]
			st.Checked = st.Checked[:len(st.Checked)+1]
		default: // not consecutive (plan never does this): copy
			st.Checked = append(st.Checked[:len(st.Checked):len(st.Checked)], checked[i])
		}
		if !dec.Allowed && !shadow && (wait < 0 || tighterDenial(dec, decisions[wait])) {
			wait = i
		}
		switch {
		case shadow:
		case !dec.Allowed:
			if !st.OverLimit || tighterDenial(dec, st.Decision) {
				st.OverLimit, st.Limit, st.Decision = true, p.limits[i], dec
			}
		case st.OverLimit:
		case st.Limit == nil || dec.Remaining < st.Decision.Remaining:
			st.Limit, st.Decision = p.limits[i], dec
		}
	}
	for i := range res.Statuses { // callers may append: never into a neighbour's window
		st := &res.Statuses[i]
		st.Checked = st.Checked[:len(st.Checked):len(st.Checked)]
	}
	if p.quota {
		wait = -1
		if res.OverLimit {
			wait = d.quotaWaitFor(p, decisions)
		}
	}
	if wait >= 0 {
		res.WaitFor = &checked[wait]
	}
}

// tighterDenial says whether denial a goes before denial b: the longer wait, the first
// of equals. It picks a descriptor's reported denial (so the status's reset names the
// moment the request's Retry-After names, outside quota mode the longest wait of all
// denials) and the limit the request waits for (WaitFor, quotaWaitFor). A reported
// denial's remaining may be above 0 (a cost above what is left); Envoy's X-RateLimit
// headers, which show the status with the lowest remaining, may then describe another
// descriptor of the request.
func tighterDenial(a, b limiter.Decision) bool {
	return a.RetryAfterMs > b.RetryAfterMs
}
