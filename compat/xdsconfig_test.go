package compat

import (
	"fmt"
	"slices"
	"strings"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"gopkg.in/yaml.v3"
)

// The rule documents in envoyproxy/ratelimit's file format, read back for conversion
// into the RateLimitConfig resources that carry the same rules over xDS (the reverse
// of internal/xdsrules' ToYAML). Only the fields a RateLimitConfig has: the decoder
// refuses any other (share_threshold, value_to_metric, quota_mode, ...), which,
// dropped without a word, would have the xDS test compare other rules than it says.
type (
	docYAML struct {
		Domain      string     `yaml:"domain"`
		Descriptors []descYAML `yaml:"descriptors"`
	}
	descYAML struct {
		Key            string     `yaml:"key"`
		Value          string     `yaml:"value"`
		RateLimit      *limitYAML `yaml:"rate_limit"`
		ShadowMode     bool       `yaml:"shadow_mode"`
		DetailedMetric bool       `yaml:"detailed_metric"`
		Descriptors    []descYAML `yaml:"descriptors"`
	}
	limitYAML struct {
		Unit            string        `yaml:"unit"`
		RequestsPerUnit uint32        `yaml:"requests_per_unit"`
		Unlimited       bool          `yaml:"unlimited"`
		Name            string        `yaml:"name"`
		Replaces        []replaceYAML `yaml:"replaces"`
	}
	replaceYAML struct {
		Name string `yaml:"name"`
	}
)

// protoUnits are RateLimitUnit's numbers by unit name. The proto module at hand
// (go-control-plane/ratelimit v0.1.0) stops at DAY; MONTH, YEAR and WEEK are numbered
// as in the current proto, which the pinned envoyproxy/ratelimit and Envoy Gateway use.
var protoUnits = map[string]rlsconfv3.RateLimitUnit{
	"second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6, "week": 7,
}

// rateLimitConfig converts one rule document into the RateLimitConfig named after its
// domain, as Envoy Gateway names its resources.
func rateLimitConfig(doc string) (*rlsconfv3.RateLimitConfig, error) {
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	var d docYAML
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("a field a RateLimitConfig cannot carry, or not YAML: %w", err)
	}
	ds, err := protoDescriptors(d.Descriptors)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", d.Domain, err)
	}
	return &rlsconfv3.RateLimitConfig{Name: d.Domain, Domain: d.Domain, Descriptors: ds}, nil
}

func protoDescriptors(in []descYAML) ([]*rlsconfv3.RateLimitDescriptor, error) {
	var out []*rlsconfv3.RateLimitDescriptor
	for _, d := range in {
		children, err := protoDescriptors(d.Descriptors)
		if err != nil {
			return nil, err
		}
		limit, err := protoLimit(d.RateLimit)
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", d.Key, err)
		}
		out = append(out, &rlsconfv3.RateLimitDescriptor{
			Key: d.Key, Value: d.Value, RateLimit: limit, Descriptors: children,
			ShadowMode: d.ShadowMode, DetailedMetric: d.DetailedMetric,
		})
	}
	return out, nil
}

func protoLimit(l *limitYAML) (*rlsconfv3.RateLimitPolicy, error) {
	if l == nil {
		return nil, nil
	}
	p := &rlsconfv3.RateLimitPolicy{RequestsPerUnit: l.RequestsPerUnit, Unlimited: l.Unlimited, Name: l.Name}
	if l.Unit != "" {
		u, ok := protoUnits[strings.ToLower(l.Unit)]
		if !ok {
			return nil, fmt.Errorf("unit %q has no RateLimitUnit", l.Unit)
		}
		p.Unit = u
	}
	for _, r := range l.Replaces {
		p.Replaces = append(p.Replaces, &rlsconfv3.RateLimitReplace{Name: r.Name})
	}
	return p, nil
}

// mutate returns a copy of f updated as a control plane updates a config: one rule
// removed, from a level that keeps others (so that no rule is left with neither a limit
// nor rules below it), then one remaining limit's requests_per_unit changed.
func (g *generator) mutate(f *ruleFile) *ruleFile {
	m := &ruleFile{rules: cloneRules(f.rules)}
	var levels []*[]*rule
	if len(m.rules) > 1 {
		levels = append(levels, &m.rules)
	}
	m.walk(func(r *rule) {
		if len(r.children) > 1 {
			levels = append(levels, &r.children)
		}
	})
	if len(levels) > 0 {
		lv := pick(g, levels)
		i := g.rng.IntN(len(*lv))
		*lv = slices.Delete(*lv, i, i+1)
	}
	var limits []*limitSpec
	m.walk(func(r *rule) {
		if r.limit != nil && !r.limit.unlimited {
			limits = append(limits, r.limit)
		}
	})
	if len(limits) > 0 {
		l := pick(g, limits)
		old := l.rpu
		for l.rpu == old {
			l.rpu = pick(g, rpuPool)
		}
	}
	return m
}

// cloneRules copies rules deeply: mutate changes the copy only.
func cloneRules(rules []*rule) []*rule {
	if rules == nil {
		return nil
	}
	out := make([]*rule, len(rules))
	for i, r := range rules {
		c := *r
		if r.limit != nil {
			l := *r.limit
			l.replaces = slices.Clone(r.limit.replaces)
			c.limit = &l
		}
		c.children = cloneRules(r.children)
		out[i] = &c
	}
	return out
}
