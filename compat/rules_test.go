package compat

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// ruleFile is the rules of one generated file in envoyproxy/ratelimit's format.
type ruleFile struct {
	rules []*rule
}

// rule is one descriptor entry of a file. value is "" (key only), an exact value or a
// prefix ending in `*`, the only pattern envoyproxy/ratelimit has.
type rule struct {
	key, value                             string
	limit                                  *limitSpec // nil: no rate_limit
	shadow, detailed, valueToMetric, share bool
	children                               []*rule
}

type limitSpec struct {
	unlimited bool
	rpu       uint32
	unit      string // "" with unlimited
	name      string
	replaces  []string
}

// The vocabulary of generated rules and requests. Keys and values are the kind Envoy
// sends. No value holds `_` and no key is another key plus `_`: envoyproxy/ratelimit
// joins keys and values with `_` into one lookup key, and the collisions that makes are
// documented differences (docs/migrating.md, "how a descriptor finds its rule"), not
// findings. No key holds `*` and a `*` only ends a value, for the same reason. Not
// generated either: quota_mode, which the pinned commit answers differently
// (docs/migrating.md, "Rules"), and this service's own fields, which
// envoyproxy/ratelimit refuses.
var (
	keyPool     = []string{"generic_key", "remote_address", "path", "method"}
	valuePool   = []string{"GET", "POST", "/api", "/api/v1", "10.0.0.1", "10.0.0.2", "10.1.2.3", "foo", "foobar"}
	patternPool = []string{"10.0.*", "10.*", "/api*", "/api/*", "foo*", "*"}
	suffixPool  = []string{"", "1", "9", "x", "/v2"}
	unitPool    = []string{"second", "minute", "minute", "hour", "hour", "hour", "hour", "day", "day", "week", "month", "year"}
	rpuPool     = []uint32{0, 1, 1, 2, 2, 3, 3, 4, 5, 1000}
)

// unitSeconds is the length of a unit's window, as both services count it (a month
// is 30 days and a year 365 in both).
var unitSeconds = map[string]int64{
	"second": 1, "minute": 60, "hour": 3600, "day": 86400,
	"week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400,
}

const maxDepth = 3

// generator draws rule files and requests from one seeded source.
type generator struct {
	rng   *rand.Rand
	names int  // limit names handed out so far in the current file
	xds   bool // draw no share_threshold nor value_to_metric (a RateLimitConfig has neither)
}

func (g *generator) chance(p float64) bool { return g.rng.Float64() < p }

func pick[T any](g *generator, s []T) T { return s[g.rng.IntN(len(s))] }

// file draws a file's rules, then points some named limits' replaces at others.
func (g *generator) file() *ruleFile {
	g.names = 0
	f := &ruleFile{rules: g.level(1)}
	var names []string
	f.walk(func(r *rule) {
		if r.limit != nil && r.limit.name != "" {
			names = append(names, r.limit.name)
		}
	})
	f.walk(func(r *rule) {
		// envoyproxy/ratelimit refuses a limit that replaces itself.
		if r.limit != nil && len(names) > 0 && g.chance(0.2) {
			if n := pick(g, names); n != r.limit.name {
				r.limit.replaces = []string{n}
			}
		}
	})
	return f
}

// level draws the entries of one level: 1 to 3 keys, each with exact values, patterns
// (their order in the file matters: the first that matches wins) and a key-only entry.
func (g *generator) level(depth int) []*rule {
	var out []*rule
	for _, i := range g.rng.Perm(len(keyPool))[:1+g.rng.IntN(3)] {
		key := keyPool[i]
		var values []string
		for _, j := range g.rng.Perm(len(valuePool))[:g.rng.IntN(3)] {
			values = append(values, valuePool[j])
		}
		for _, j := range g.rng.Perm(len(patternPool))[:g.rng.IntN(3)] {
			values = append(values, patternPool[j])
		}
		if len(values) == 0 || g.chance(0.5) {
			values = append(values, "")
		}
		for _, v := range values {
			out = append(out, g.rule(key, v, depth))
		}
	}
	g.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func (g *generator) rule(key, value string, depth int) *rule {
	r := &rule{key: key, value: value}
	if depth < maxDepth && g.chance(0.4) {
		r.children = g.level(depth + 1)
	}
	if g.chance(0.6) || r.children == nil && g.chance(0.7) {
		r.limit = g.limit()
	}
	// A shadow_mode limit is named shadowN: envoyproxy/ratelimit reports it in the
	// status, this service never does (docs/migrating.md), so the comparison needs to
	// know it from the name.
	if r.limit != nil && g.chance(0.15) {
		r.shadow = true
		g.names++
		r.limit.name = "shadow" + strconv.Itoa(g.names)
	}
	r.detailed = g.chance(0.1)
	// Drawn over xDS too, so that a seed draws the same files, less these fields.
	r.valueToMetric = g.chance(0.1) && !g.xds
	r.share = strings.HasSuffix(value, "*") && g.chance(0.4) && !g.xds
	return r
}

func (g *generator) limit() *limitSpec {
	l := &limitSpec{}
	if g.chance(0.08) {
		l.unlimited = true // envoyproxy/ratelimit refuses a unit beside unlimited
	} else {
		l.rpu, l.unit = pick(g, rpuPool), pick(g, unitPool)
	}
	if g.chance(0.35) {
		g.names++
		l.name = "lim" + strconv.Itoa(g.names)
	}
	return l
}

// walk calls fn on every rule of the file, depth first.
func (f *ruleFile) walk(fn func(*rule)) {
	var rec func([]*rule)
	rec = func(rs []*rule) {
		for _, r := range rs {
			fn(r)
			rec(r.children)
		}
	}
	rec(f.rules)
}

// smallestUnit is the shortest window any limit of the file counts over (0: none).
func (f *ruleFile) smallestUnit() int64 {
	var s int64
	f.walk(func(r *rule) {
		if r.limit != nil && !r.limit.unlimited {
			if u := unitSeconds[r.limit.unit]; s == 0 || u < s {
				s = u
			}
		}
	})
	return s
}

// yaml renders the file in envoyproxy/ratelimit's format, using only the keys its
// loader knows (it refuses any other), for domain.
func (f *ruleFile) yaml(domain string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "domain: %s\ndescriptors:\n", domain)
	writeRules(&b, f.rules, "  ")
	return b.String()
}

func writeRules(b *strings.Builder, rules []*rule, indent string) {
	for _, r := range rules {
		fmt.Fprintf(b, "%s- key: %s\n", indent, r.key)
		in := indent + "  "
		if r.value != "" {
			fmt.Fprintf(b, "%svalue: %q\n", in, r.value)
		}
		writeFlags(b, r, in)
		if l := r.limit; l != nil {
			writeLimit(b, l, in)
		}
		if len(r.children) > 0 {
			fmt.Fprintf(b, "%sdescriptors:\n", in)
			writeRules(b, r.children, in+"  ")
		}
	}
}

func writeFlags(b *strings.Builder, r *rule, in string) {
	for _, f := range []struct {
		name string
		on   bool
	}{{"shadow_mode", r.shadow}, {"detailed_metric", r.detailed}, {"value_to_metric", r.valueToMetric}, {"share_threshold", r.share}} {
		if f.on {
			fmt.Fprintf(b, "%s%s: true\n", in, f.name)
		}
	}
}

func writeLimit(b *strings.Builder, l *limitSpec, in string) {
	fmt.Fprintf(b, "%srate_limit:\n", in)
	if l.unlimited {
		fmt.Fprintf(b, "%s  unlimited: true\n", in)
	} else {
		fmt.Fprintf(b, "%s  unit: %s\n%s  requests_per_unit: %d\n", in, l.unit, in, l.rpu)
	}
	if l.name != "" {
		fmt.Fprintf(b, "%s  name: %s\n", in, l.name)
	}
	if len(l.replaces) > 0 {
		fmt.Fprintf(b, "%s  replaces:\n", in)
		for _, n := range l.replaces {
			fmt.Fprintf(b, "%s    - name: %s\n", in, n)
		}
	}
}
