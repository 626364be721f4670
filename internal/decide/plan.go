package decide

import (
	"fmt"
	"slices"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// plan matches every descriptor against rules and builds the request's checks in
// request order, into p (zero, with its inline buffers).
func (d *Decider) plan(rules *descriptors.RuleSet, req *Request, p *plan) error {
	cost := int64(req.HitsAddend)
	if cost == 0 {
		cost = 1
	}
	var matchedBuf [inlineChecks][]*descriptors.Limit
	var matched [][]*descriptors.Limit
	if len(req.Descriptors) <= inlineChecks {
		matched = matchedBuf[:len(req.Descriptors)]
	} else {
		matched = make([][]*descriptors.Limit, len(req.Descriptors))
	}
	var replaced map[string]bool
	for i := range req.Descriptors {
		matched[i] = rules.Match(req.Domain, req.Descriptors[i].Entries)
		for _, l := range matched[i] {
			for _, name := range l.Replaces {
				if replaced == nil {
					replaced = make(map[string]bool)
				}
				replaced[name] = true
			}
		}
	}
	p.checks, p.limits, p.owner, p.unlimited = p.checksBuf[:0], p.limitsBuf[:0], p.ownerBuf[:0], p.unlimitedBuf[:0]
	for i := range req.Descriptors {
		desc := &req.Descriptors[i]
		q := cost
		if desc.Cost != nil {
			if *desc.Cost > uint64(limiter.MaxCost) {
				return fmt.Errorf("%w: descriptor %d: hits_addend %d exceeds %d", ErrInvalid, i, *desc.Cost, limiter.MaxCost)
			}
			q = int64(*desc.Cost)
		}
		limits, err := applyOverride(filterReplaced(matched[i], replaced), desc.Override)
		if err != nil {
			return fmt.Errorf("%w: descriptor %d: %v", ErrInvalid, i, err)
		}
		p.override = p.override || desc.Override != nil
		if len(limits) > 0 && !slices.ContainsFunc(limits, func(l *descriptors.Limit) bool { return !l.Unlimited }) {
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
	}
	return nil
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

// applyOverride replaces a descriptor's matched limits by one limit with the request's
// rate and unit, keeping the first matched limit's algorithm, name and flags. An
// override on a descriptor that matches no limit (or only unlimited ones) is ignored:
// requests cannot create limits the operator did not configure.
func applyOverride(limits []*descriptors.Limit, o *Override) ([]*descriptors.Limit, error) {
	if o == nil {
		return limits, nil
	}
	var base *descriptors.Limit
	for _, l := range limits {
		if !l.Unlimited {
			base = l
			break
		}
	}
	if base == nil {
		return limits, nil
	}
	unitMs, ok := descriptors.UnitMillis(o.Unit)
	if !ok {
		return nil, fmt.Errorf("override unit %q is not supported (want second, minute, hour, day, month or year)", o.Unit)
	}
	mult := max(o.UnitMultiplier, 1)
	if mult > limiter.MaxPeriodMs/unitMs { // unitMs*mult would wrap past int64 into a "valid" window
		return nil, fmt.Errorf("override: %d × %s is longer than the longest window (%d ms)", mult, o.Unit, limiter.MaxPeriodMs)
	}
	ov := *base
	ov.ID = base.ID + "!override"
	ov.Unit, ov.UnitMultiplier, ov.RequestsPerUnit = o.Unit, mult, o.RequestsPerUnit
	ov.Params = limiter.Params{
		Algorithm: base.Params.Algorithm,
		Limit:     o.RequestsPerUnit,
		PeriodMs:  unitMs * mult,
		Buckets:   base.Params.Buckets,
	}
	if err := ov.Params.Validate(); err != nil {
		return nil, fmt.Errorf("override: %v", err)
	}
	return []*descriptors.Limit{&ov}, nil
}
