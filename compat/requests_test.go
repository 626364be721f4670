package compat

import (
	"strings"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// descriptor draws one request descriptor by walking f's rules: each entry aims at a
// rule of its level (its exact value, a value its pattern matches, any value for a
// key-only rule) and the walk goes on into that rule's children. Along the way it
// misses (an unknown key or value), stops short of the rules' depth, or goes one entry
// past it, so that hits, misses and partial matches all occur. Which rule an entry
// really matches is for the services to decide: an exact value wins over a pattern.
func (g *generator) descriptor(f *ruleFile) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	add := func(k, v string) {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: k, Value: v})
	}
	level := f.rules
	for len(level) > 0 {
		if g.chance(0.07) {
			add("user", pick(g, valuePool)) // a key no rule has
			break
		}
		r := pick(g, level)
		add(r.key, g.valueFor(r))
		level = r.children
		if g.chance(0.1) {
			break // short of the rules' depth
		}
	}
	if g.chance(0.12) {
		add(pick(g, keyPool), pick(g, valuePool)) // one past it
	}
	if g.chance(0.04) {
		// Envoy's limit override: the descriptor's limit whatever it matched.
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{
			RequestsPerUnit: uint32(g.rng.IntN(4)), // 0 blocks, as in a rule
			Unit:            pick(g, overrideUnits),
		}
	}
	return d
}

// valueFor is a request value aimed at r.
func (g *generator) valueFor(r *rule) string {
	switch {
	case g.chance(0.04):
		return "" // an empty header value reaches the service as an empty value
	case g.chance(0.1):
		return pick(g, valuePool) // most often another rule's, or none's
	case strings.HasSuffix(r.value, "*"):
		return strings.TrimSuffix(r.value, "*") + pick(g, suffixPool)
	case r.value != "":
		return r.value
	default:
		return pick(g, valuePool)
	}
}

// overrideUnits are the units of Envoy's override (it has no week); HOUR most often.
var overrideUnits = []typev3.RateLimitUnit{
	typev3.RateLimitUnit_SECOND, typev3.RateLimitUnit_MINUTE, typev3.RateLimitUnit_HOUR, typev3.RateLimitUnit_HOUR,
	typev3.RateLimitUnit_HOUR, typev3.RateLimitUnit_DAY, typev3.RateLimitUnit_MONTH, typev3.RateLimitUnit_YEAR,
}

// overrideSeconds is the window of an override's unit (0 for none).
func overrideSeconds(d *ratelimitv3.RateLimitDescriptor) int64 {
	if d.GetLimit() == nil {
		return 0
	}
	return unitSeconds[strings.ToLower(d.GetLimit().GetUnit().String())]
}

// request wraps descriptors into a request for domain.
func request(domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
}
