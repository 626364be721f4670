package descriptors

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// hasRateLimits says whether f gives rate_limits: not null, and not an empty list (a
// rate_limits that is not a list counts as given; p.list reports it).
func hasRateLimits(f fields) bool {
	rls := f.vals["rate_limits"]
	return rls != nil && !(rls.Kind == yaml.SequenceNode && len(rls.Content) == 0)
}

// descriptorLimits parses rate_limit / rate_limits and the descriptor-level flags and
// replaces of one descriptor entry.
func (p *fileParser) descriptorLimits(f fields, path []Level, pathStr string) []*Limit {
	shadow, _ := p.boolean(f, "shadow_mode")
	quota, _ := p.boolean(f, "quota_mode")
	detailed, _ := p.boolean(f, "detailed_metric")
	meta := p.metadata(f)
	var items []*yaml.Node
	var fieldOf func(i int) string
	listed := hasRateLimits(f)
	switch {
	case f.has("rate_limit") && listed: // a null rate_limit, or a null or empty list, is absent
		p.errorf(f.keyLine("rate_limits"), f.at("rate_limits"), "rate_limit and rate_limits are exclusive; list every limit under rate_limits")
		return nil
	case f.has("rate_limit"):
		items = []*yaml.Node{f.vals["rate_limit"]}
		fieldOf = func(int) string { return f.at("rate_limit") }
	default:
		items = p.list(f, "rate_limits")
		fieldOf = func(i int) string { return fmt.Sprintf("%s[%d]", f.at("rate_limits"), i) }
	}
	limits := make([]*Limit, 0, len(items))
	for i, item := range items {
		l := p.limit(item, fieldOf(i), path, pathStr, i)
		if l == nil {
			continue
		}
		l.Shadow, l.Quota, l.DetailedMetric, l.Metadata = shadow, quota, detailed, meta
		limits = append(limits, l)
	}
	refs := p.replaces(f)
	if len(refs) > 0 && !f.has("rate_limit") && !listed {
		p.errorf(f.keyLine("replaces"), f.at("replaces"), "descriptor has no rate_limit to carry replaces")
	}
	p.addReplaces(refs, limits)
	if len(limits) == 0 {
		return nil // Match returns nil for an entry without limits
	}
	return limits
}

// limit parses one limit mapping. It returns nil only when the limit cannot be counted.
func (p *fileParser) limit(item *yaml.Node, field string, path []Level, pathStr string, index int) *Limit {
	f, ok := p.mapping(item, field, limitFields)
	if !ok {
		return nil
	}
	if !p.spend(&p.budget.limits, 1, f.line, field) {
		return nil
	}
	id := "#" + strconv.Itoa(index)
	if !p.spend(&p.budget.pathBytes, len(pathStr)+len(id), f.line, field) {
		return nil
	}
	l := &Limit{Path: pathStr, ID: pathStr + id, Levels: path, File: p.file, Line: f.line}
	l.ValueToMetric = slices.ContainsFunc(path, func(lv Level) bool { return lv.ValueToMetric })
	if p.dom != nil {
		l.Domain = p.dom.name
		p.dom.limits = append(p.dom.limits, l)
	}
	p.limitName(f, l)
	before := len(p.errs)
	l.Unlimited, _ = p.boolean(f, "unlimited")
	rate := p.rate(f, l.Unlimited)
	p.addReplaces(p.replaces(f), []*Limit{l})
	if l.Unlimited || len(p.errs) > before || f.merged {
		return l // unlimited ignores the rate fields; broken (or merged) fields would only cascade
	}
	l.Unit, l.UnitMultiplier, l.RequestsPerUnit = rate.unit, rate.multiplier, rate.requests
	l.Params = limiter.Params{Algorithm: rate.algo, Limit: rate.requests, PeriodMs: rate.periodMs, Burst: rate.burst, Buckets: rate.buckets}
	if err := l.Params.Validate(); err != nil {
		p.errorf(f.line, field, "%v", err)
	}
	return l
}

// limitName records the limit's name. Several limits of a domain may share one, as in
// envoyproxy/ratelimit: replaces then removes all of them (their counters stay apart,
// as keys are built from descriptor paths, not names).
func (p *fileParser) limitName(f fields, l *Limit) {
	name, line, ok := p.str(f, "name")
	if !ok || name == "" {
		return
	}
	l.Name = name
	if _, seen := p.names[name]; !seen {
		p.names[name] = line
	}
}

// rate is the parsed rate fields of one limit.
type rate struct {
	unit                 string
	multiplier, requests int64
	periodMs             int64
	burst, buckets       int64
	algo                 limiter.Algorithm
}

// rate parses the rate fields. With unlimited: true they are all optional, still
// type-checked (a typo stays an error) and then ignored.
func (p *fileParser) rate(f fields, unlimited bool) rate {
	r := rate{algo: p.algo, multiplier: 1}
	var unitLen int64
	r.unit, unitLen = p.unit(f, unlimited)
	if m, ok := p.integer(f, "unit_multiplier", 1); ok {
		r.multiplier = m
	}
	var requestsOK bool
	r.requests, requestsOK = p.requests(f, unlimited)
	algoOK := p.algoOK
	if s, line, ok := p.str(f, "algorithm"); ok {
		r.algo, algoOK = p.algorithm(s, line, f.at("algorithm"))
	}
	r.burst, _ = p.integer(f, "burst", 1)
	if r.burst > limiter.MaxLimit && !unlimited && (r.algo == limiter.GCRA || r.algo == limiter.TokenBucket) {
		p.errorf(f.keyLine("burst"), f.at("burst"), "%d is above the largest burst, %d (2^32)", r.burst, limiter.MaxLimit)
	}
	r.buckets, _ = p.integer(f, "buckets", 1)
	switch {
	case unlimited:
	case requestsOK && r.requests == 0:
		p.checkBlockingFields(f) // runs as fixed_window whatever the algorithm (limiter.Params.Validate)
	case algoOK: // with an unknown algorithm the check would only cascade
		p.checkAlgorithmFields(f, r.algo)
	}
	if !unlimited {
		r.periodMs = p.period(f, unitLen, r.multiplier)
	}
	return r
}

// unit returns the lower-case unit and its length in ms (0 if absent or unknown).
func (p *fileParser) unit(f fields, unlimited bool) (string, int64) {
	unit, line, ok := p.str(f, "unit")
	if !ok {
		if f.missing("unit") && !unlimited {
			p.errorf(line, f.at("unit"), "missing (want %s)", unitList)
		}
		return "", 0
	}
	lower := strings.ToLower(unit)
	ms := unitMs[lower]
	switch {
	case unit == "" && unlimited:
		// No unit, as generators write it beside unlimited; envoyproxy/ratelimit loads
		// it. A misspelt unit is still refused: it suggests a limit was meant.
		return "", 0
	case ms == 0:
		p.errorf(line, f.at("unit"), "unknown unit %q (want %s)", unit, unitList)
	}
	return lower, ms
}

// requests returns requests_per_unit: any non-negative number (0 blocks every request,
// as in envoyproxy/ratelimit; ignored when unlimited), and whether it was a whole
// number at all.
func (p *fileParser) requests(f fields, unlimited bool) (int64, bool) {
	n, ok := p.integer(f, "requests_per_unit", math.MinInt64)
	switch {
	case !ok:
		if f.missing("requests_per_unit") && !unlimited {
			// envoyproxy/ratelimit reads a missing value as 0, which blocks: too easy
			// to get by mistake to take silently.
			p.errorf(f.line, f.at("requests_per_unit"), "missing (to block every request write 0; for no limit, unlimited: true)")
		}
	case n < 0:
		p.errorf(f.vals["requests_per_unit"].Line, f.at("requests_per_unit"), "must not be negative, got %d", n)
	case n > limiter.MaxLimit && !unlimited:
		p.errorf(f.vals["requests_per_unit"].Line, f.at("requests_per_unit"), "%d is above the largest limit, %d (2^32)", n, limiter.MaxLimit)
	}
	return n, ok
}

// checkAlgorithmFields rejects burst and buckets where the algorithm has no use for
// them: silently ignoring them would hide a misconfiguration.
func (p *fileParser) checkAlgorithmFields(f fields, a limiter.Algorithm) {
	if f.has("burst") && a != limiter.GCRA && a != limiter.TokenBucket {
		p.errorf(f.keyLine("burst"), f.at("burst"), "applies only to gcra and token_bucket, not %s", a)
	}
	if f.has("buckets") && a != limiter.SlidingWindow {
		p.errorf(f.keyLine("buckets"), f.at("buckets"), "applies only to sliding_window, not %s", a)
	}
}

// checkBlockingFields rejects burst and buckets on a limit of 0, which blocks every
// request: a burst there would read as an allowance that it never grants.
func (p *fileParser) checkBlockingFields(f fields) {
	for _, name := range []string{"burst", "buckets"} {
		if f.has(name) {
			p.errorf(f.keyLine(name), f.at(name), "has no meaning on requests_per_unit: 0, which blocks every request")
		}
	}
}

// period is unit × multiplier in ms, at most limiter.MaxPeriodMs (10 years).
func (p *fileParser) period(f fields, unitLen, multiplier int64) int64 {
	if unitLen == 0 {
		return 0
	}
	if multiplier > limiter.MaxPeriodMs/unitLen {
		p.errorf(f.keyLine("unit_multiplier"), f.at("unit_multiplier"), "%d × %s is longer than the longest window, 10 years (%d ms)",
			multiplier, f.vals["unit"].Value, limiter.MaxPeriodMs)
		return 0
	}
	return unitLen * multiplier
}

// replaces parses a `replaces: [{name: X}, ...]` field.
func (p *fileParser) replaces(f fields) []replaceRef {
	if p.budget.replaces.over {
		return nil // the load is refused already: reading more names would only cost time
	}
	var refs []replaceRef
	for i, item := range p.list(f, "replaces") {
		field := fmt.Sprintf("%s[%d]", f.at("replaces"), i)
		rf, ok := p.mapping(item, field, replaceFields)
		if !ok {
			continue
		}
		name, line, ok := p.str(rf, "name")
		switch {
		case !ok && rf.missing("name"):
			p.errorf(line, rf.at("name"), "missing")
		case ok && name == "":
			p.errorf(line, rf.at("name"), "empty")
		case ok:
			refs = append(refs, replaceRef{name: name, line: line, field: rf.at("name")})
		}
	}
	return refs
}

// addReplaces gives each owner the names and keeps the references for checkReplaces.
// Without owners (no limit, or limits that failed to parse) the problem is already
// reported, and checking the names would only add noise.
func (p *fileParser) addReplaces(refs []replaceRef, owners []*Limit) {
	if len(owners) == 0 || len(refs) == 0 {
		return
	}
	if !p.spend(&p.budget.replaces, len(refs)*len(owners), refs[0].line, refs[0].field) {
		return
	}
	for _, l := range owners {
		have := make(map[string]bool, len(l.Replaces)+len(refs))
		for _, n := range l.Replaces {
			have[n] = true
		}
		for _, r := range refs {
			if !have[r.name] {
				have[r.name] = true
				l.Replaces = append(l.Replaces, r.name)
			}
		}
	}
	for _, r := range refs {
		r.owners = owners
		p.refs = append(p.refs, r)
	}
}

// checkReplaces runs once the whole domain is parsed: a replaced name that no limit
// has gets a warning, and one that is the replacing limit's own an error.
func (p *fileParser) checkReplaces() {
	if p.dom == nil {
		return
	}
	for _, r := range p.refs {
		if _, ok := p.names[r.name]; !ok {
			if p.merging { // another file of the domain may have it: the merge warns
				p.dom.unresolved = append(p.dom.unresolved, r)
				continue
			}
			p.addWarning(replacesNothing(p.file, r, p.dom.name))
			continue
		}
		for _, l := range r.owners {
			if l.Name == r.name {
				p.errorf(r.line, r.field, "names this limit's own name %q: it would replace itself (replaces removes every limit of that name)", r.name)
				break
			}
		}
	}
}

// replacesNothing is the warning for a replaces, in file, that names no limit of its
// domain: envoyproxy/ratelimit loads it; it removes nothing, so the replaced limit
// (renamed, or deleted meanwhile) would apply unless it is gone too.
func replacesNothing(file string, r replaceRef, domain string) ConfigError {
	return ConfigError{File: file, Line: r.line, Field: r.field,
		Msg: fmt.Sprintf("no limit named %q in domain %q: this replaces nothing", r.name, domain)}
}
