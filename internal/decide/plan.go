package decide

import (
	"slices"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// plan matches every descriptor against rules and builds the request's checks in
// request order, into p (zero, with its inline buffers).
func (d *Decider) plan(rules *descriptors.RuleSet, req *Request, p *plan) {
	var matchedBuf [inlineChecks][]*descriptors.Limit
	var matched [][]*descriptors.Limit
	if len(req.Descriptors) <= inlineChecks {
		matched = matchedBuf[:len(req.Descriptors)]
	} else {
		matched = make([][]*descriptors.Limit, len(req.Descriptors))
	}
	var replaced map[string]bool
	for i := range req.Descriptors {
		if req.Descriptors[i].Refund {
			continue // matches nothing (Descriptor.Refund)
		}
		matched[i] = rules.Match(req.Domain, req.Descriptors[i].Entries)
		// An override (Envoy's per-descriptor limit) in a domain the rules know stands
		// in for whatever the descriptor matched (applyOverride): its one limit has no
		// name and no replaces, so replaces neither removes it nor comes from it.
		if o := req.Descriptors[i].Override; o != nil && rules.HasDomain(req.Domain) {
			if ov := applyOverride(req.Domain, matched[i], o); ov != nil {
				matched[i], p.override = ov, true
			}
		}
		for _, l := range matched[i] {
			for _, name := range l.Replaces {
				if replaced == nil {
					replaced = make(map[string]bool)
				}
				replaced[name] = true
			}
		}
	}
	p.checks, p.limits, p.owner = p.checksBuf[:0], p.limitsBuf[:0], p.ownerBuf[:0]
	p.unlimited, p.clamped = p.unlimitedBuf[:0], p.clampedBuf[:0]
	for i := range req.Descriptors {
		desc := &req.Descriptors[i]
		if desc.Refund {
			continue
		}
		q, clamped := d.cost(req, desc)
		limits := filterReplaced(matched[i], replaced)
		if slices.ContainsFunc(matched[i], func(l *descriptors.Limit) bool { return l.Unlimited }) {
			// As envoyproxy/ratelimit: unlimited even when replaced or beside a shadow
			// limit; the status shows it when no enforced limit is reported.
			p.unlimited = append(p.unlimited, i)
		}
		for _, l := range limits {
			if l.Unlimited {
				continue
			}
			shadow := l.Shadow || d.shadow
			p.quota = p.quota || (l.Quota && !shadow)
			p.checks = append(p.checks, limiter.LimitCheck{
				Key:    d.keys.LimitKey(req.Domain, l, desc.Entries),
				Params: &l.Params,
				Cost:   q,
				Shadow: shadow,
			})
			p.limits = append(p.limits, l)
			p.owner = append(p.owner, i)
		}
		if clamped && len(p.owner) > 0 && p.owner[len(p.owner)-1] == i {
			p.clamped = append(p.clamped, i)
		}
	}
}

// cost is the cost desc is charged in req: its own hits_addend, else the request's (0
// means 1), at most the bound; clamped says the bound cut it. A cost can come from a
// client's header (Envoy's hits_addend format, or filter state set from one): refusing
// the request would have Envoy let it past every limit, and leaving the descriptor out
// would make any cost above the bound free, so a larger cost counts as the bound.
func (d *Decider) cost(req *Request, desc *Descriptor) (q int64, clamped bool) {
	c := req.HitsAddend
	if desc.Cost != nil {
		c = *desc.Cost
	} else if c == 0 {
		c = 1
	}
	bound := min(d.bounds.MaxCost, uint64(limiter.MaxCost))
	return int64(min(c, bound)), c > bound
}

// filterReplaced drops limits whose name another matched limit replaces. The common
// case (nothing replaced) returns the matched slice itself without allocating.
func filterReplaced(limits []*descriptors.Limit, replaced map[string]bool) []*descriptors.Limit {
	if len(replaced) == 0 {
		return limits
	}
	out := make([]*descriptors.Limit, 0, len(limits))
	for _, l := range limits {
		if l.Name == "" || !replaced[l.Name] {
			out = append(out, l)
		}
	}
	return out
}

// applyOverride is the one limit a descriptor's override stands for, as
// envoyproxy/ratelimit applies it in a domain it knows: the override's rate and unit,
// enforced whatever the descriptor matched (a limit, only unlimited ones, or none), and
// without the matched entry's name, replaces, shadow_mode or quota_mode. It keeps the
// first matched limit's algorithm and metrics path where there is one (its storage key
// is derived from that limit's), or fixed_window, envoyproxy/ratelimit's algorithm,
// when that algorithm cannot take the rate exactly (a sliding_window_log over its cap,
// a gcra rate with a large denominator); a descriptor that matched nothing counts under
// a per-domain "#override" path (bounded metrics) with fixed_window.
//
// An override the service cannot apply at all (an unknown unit, a window past 10
// years) is ignored, and the configured limits apply: refusing the request would be an
// error that Envoy's failure mode lets past every limit of the request. It returns nil
// then.
func applyOverride(domain string, matched []*descriptors.Limit, o *Override) []*descriptors.Limit {
	unitMs, ok := descriptors.UnitMillis(o.Unit)
	mult := max(o.UnitMultiplier, 1)
	if !ok || mult > limiter.MaxPeriodMs/unitMs { // unitMs*mult would wrap past int64 into a "valid" window
		return nil
	}
	ov := descriptors.Limit{Domain: domain, Path: overridePath, ID: overridePath,
		Unit: o.Unit, UnitMultiplier: mult, RequestsPerUnit: o.RequestsPerUnit}
	fixed := limiter.Params{Algorithm: limiter.FixedWindow, Limit: o.RequestsPerUnit, PeriodMs: unitMs * mult}
	ov.Params = fixed
	if i := slices.IndexFunc(matched, func(l *descriptors.Limit) bool { return !l.Unlimited }); i >= 0 {
		base := matched[i]
		ov.Path, ov.ID, ov.Levels, ov.File, ov.Line = base.Path, base.ID+"!override", base.Levels, base.File, base.Line
		ov.Params.Algorithm, ov.Params.Buckets = base.Params.Algorithm, base.Params.Buckets
	}
	if ov.Params.Validate() != nil {
		ov.Params = fixed // the key names the algorithm: no state is shared with the other
		if ov.Params.Validate() != nil {
			return nil
		}
	}
	return []*descriptors.Limit{&ov}
}

// overridePath names the limit of an override on a descriptor that matched none: '#'
// is escaped in every configured path, so it names no configured limit or key.
const overridePath = "#override"
