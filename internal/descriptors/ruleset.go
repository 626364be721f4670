package descriptors

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Entry is one entry of a request descriptor.
type Entry struct{ Key, Value string }

// ValueKind says how a configured descriptor entry matches a request value.
type ValueKind uint8

const (
	BareKey      ValueKind = iota // no value: any value, one counter per distinct runtime value
	ExactValue                    // value without '*': equal values only
	PatternValue                  // value with '*': values the pattern matches
)

func (k ValueKind) String() string {
	switch k {
	case BareKey:
		return "bare"
	case ExactValue:
		return "exact"
	case PatternValue:
		return "pattern"
	}
	return fmt.Sprintf("ValueKind(%d)", k)
}

// Level is one configured entry on the path from the domain to a limit, with the flags
// that entry sets for every limit at or below it.
type Level struct {
	Key   string
	Value string // as configured; "" for a bare key
	Kind  ValueKind
	// Shared is the entry's share_threshold (patterns only): every value the pattern
	// matches counts as the pattern itself, so they share one counter (storekey).
	Shared bool
	// ValueToMetric is the entry's value_to_metric: per-value metrics show the request's
	// value at this level instead of the entry as configured (package metrics).
	ValueToMetric bool
}

// Limit is one compiled limit. Limits are shared by every caller of a RuleSet: treat
// them, and the slices they hold, as read-only.
type Limit struct {
	Domain string
	Name   string // limit name, may be ""
	// Path is the descriptor path in the config: one part per level, "key" for a bare
	// key and "key=value" otherwise, joined by "/". '%', '/', '=', '#' and control bytes
	// in keys and values are %XX-escaped, so Path is unambiguous. For metrics and logs.
	Path string
	// ID is Path + "#" + the limit's index in its descriptor's rate_limits list
	// ("#0" for rate_limit): unique within the domain and stable across reloads
	// while the file keeps its shape. Used in storage keys.
	ID              string
	Levels          []Level // the configured entries from the domain down to this limit
	Unit            string  // "second".."year", lower case; "" for an unlimited limit
	UnitMultiplier  int64
	RequestsPerUnit int64
	Params          limiter.Params // validated; the zero value for an unlimited limit
	Unlimited       bool
	Shadow          bool // the descriptor's shadow_mode
	// Quota is the descriptor's quota_mode: a soft limit that denies a request only
	// together with every other quota-mode descriptor of the request (package decide).
	Quota          bool
	DetailedMetric bool
	ValueToMetric  bool     // some level of Levels has value_to_metric
	Replaces       []string // names of limits this one replaces (descriptor and limit level merged)
	// Metadata is the descriptor's metadata (shared by its limits; nil without), JSON-ready.
	// It is shown by Dump and has no effect on decisions.
	Metadata map[string]any
	Line     int
	File     string
}

// Window is the period a limit's ceiling (limiter.Params.Ceiling, SPEC §1) is reported
// over: a unit ("second".."year") times a multiplier, and the same in whole seconds.
type Window struct {
	Unit       string
	Multiplier int64 // at least 1
	Seconds    int64
}

// ReportedWindow is the window clients are told the ceiling stands for (current_limit's
// unit, the quota policies' w=): the rule's own unit and multiplier when the ceiling is
// the quota of its period (the window algorithms, and gcra or token_bucket with the
// burst equal to the rate), else the time the burst or capacity takes to refill at the
// rule's rate, in seconds rounded up, so that a client pacing itself at the reported
// quota is never faster than the rule: 600 per minute with a burst of 20 is 20 per 2
// seconds, where 20 per minute would understate it 30 times.
//
// The time is written in the largest unit that divides it (3 hours as HOUR × 3, not
// SECOND × 10800), so that an Envoy that ignores unit_multiplier misreads it the least;
// past 2^32 − 1 of any unit, in years rounded up.
func (l *Limit) ReportedWindow() Window {
	ms := l.Params.CeilingWindowMs()
	if ms == l.Params.PeriodMs { // the window algorithms, and a burst that refills in the period
		return Window{Unit: l.Unit, Multiplier: max(1, l.UnitMultiplier), Seconds: max(1, (l.Params.PeriodMs+999)/1000)}
	}
	s := max(1, (ms+999)/1000)
	for _, u := range reportUnits {
		if s%u.seconds == 0 && s/u.seconds <= math.MaxUint32 {
			return Window{Unit: u.name, Multiplier: s / u.seconds, Seconds: s}
		}
	}
	const year = 365 * 86400
	n := (s + year - 1) / year
	return Window{Unit: "year", Multiplier: n, Seconds: n * year}
}

// reportUnits are the units a reported window is written in, largest first, in the
// seconds Envoy counts them (a month is 30 days, a year 365). Not WEEK, which Envoy's
// rate-limit response gained later than the others: a derived seven days are DAY × 7.
// A rule written in weeks keeps its own unit (the branch above), as
// envoyproxy/ratelimit reports it: its operator chose WEEK, and their Envoy reads it.
var reportUnits = [...]struct {
	name    string
	seconds int64
}{{"year", 365 * 86400}, {"month", 30 * 86400}, {"day", 86400}, {"hour", 3600}, {"minute", 60}, {"second", 1}}

// node is one configured descriptor entry (or a domain's root) with its children
// indexed for Match.
type node struct {
	keys   map[string]*branch
	limits []*Limit
}

// branch holds the children of a node that share one key.
type branch struct {
	exact    map[string]*node
	patterns []patternChild // file order
	bare     *node
}

type patternChild struct {
	pat  pattern
	node *node
}

func (n *node) attach(l Level, child *node) {
	if n.keys == nil {
		n.keys = make(map[string]*branch)
	}
	b := n.keys[l.Key]
	if b == nil {
		b = &branch{}
		n.keys[l.Key] = b
	}
	switch l.Kind {
	case BareKey:
		b.bare = child
	case ExactValue:
		if b.exact == nil {
			b.exact = make(map[string]*node)
		}
		b.exact[l.Value] = child
	case PatternValue:
		b.patterns = append(b.patterns, patternChild{compilePattern(l.Value), child})
	}
}

// child picks the one child for a request entry: exact value, else the first matching
// pattern in file order, else the bare key.
func (n *node) child(e Entry) *node {
	b := n.keys[e.Key]
	if b == nil {
		return nil
	}
	if c := b.exact[e.Value]; c != nil {
		return c
	}
	for i := range b.patterns {
		if b.patterns[i].pat.match(e.Value) {
			return b.patterns[i].node
		}
	}
	return b.bare
}

type domain struct {
	name   string
	file   string
	line   int
	root   *node
	limits []*Limit // file order
	// extAuthz is the domain's ext_authz section, nil without one.
	extAuthz *ExtAuthz
	// files are the files the domain was merged from (nil for one file). While files
	// are merged (Options.MergeDomains), top are a file's top-level entries in file
	// order and unresolved its replaces that name no limit of the file: what merging
	// needs (merge.go), dropped once it is done.
	top        []topEntry
	files      []string
	unresolved []replaceRef
}

// topEntry is one top-level descriptor entry of a file, where it is written.
type topEntry struct {
	level Level
	node  *node
	at    Ref
}

// RuleSet is a compiled configuration. It is immutable and safe for concurrent use;
// the methods accept a nil *RuleSet as an empty configuration.
type RuleSet struct {
	domains  map[string]*domain
	names    []string // sorted
	count    int
	hash     string
	skipped  capped[string]      // files LoadDir passed over (SkippedFiles)
	hidden   capped[string]      // dot-files named like rule files that LoadDir passed over (HiddenFiles)
	warnings capped[ConfigError] // what loaded but most likely is not what was meant (Warnings)
}

// capped keeps the first items added, up to a bound, and counts them all.
type capped[T any] struct {
	items []T
	total int
}

func (c *capped[T]) add(v T, most int) {
	if c.total < most {
		c.items = append(c.items, v)
	}
	c.total++
}

// maxWarnings bounds the warnings a RuleSet keeps, maxSkippedNames the skipped files.
const (
	maxWarnings     = 10
	maxSkippedNames = 10
)

// Warnings returns what the rules hold that loads, as in envoyproxy/ratelimit, but is
// most likely a mistake (a replaces naming no limit): at most maxWarnings of them, in
// load order, and how many there were in all.
func (rs *RuleSet) Warnings() (warnings []ConfigError, total int) {
	if rs == nil {
		return nil, 0
	}
	return rs.warnings.items, rs.warnings.total
}

// FromGeneratedDocuments readies a rule set compiled from generated documents (rules
// from xDS), whose line numbers the operator never sees: its limits lose their lines
// (Limit.Line 0: messages that name a limit give its file alone), and so do its
// warnings (ConfigError.WithoutLines). Call it before the rule set is shared.
func (rs *RuleSet) FromGeneratedDocuments() {
	for _, d := range rs.domains {
		for _, l := range d.limits {
			l.Line = 0
		}
	}
	for i, w := range rs.warnings.items {
		rs.warnings.items[i] = w.WithoutLines()
	}
}

// SkippedFiles returns files under LoadDir's directory that it did not read because
// their names do not end in .yaml or .yml (dot-files aside), at most ten of them, and
// how many there were in all. envoyproxy/ratelimit reads every file of its directory,
// so a rule file named without the extension is a migration trap worth a warning.
func (rs *RuleSet) SkippedFiles() (names []string, total int) {
	if rs == nil {
		return nil, 0
	}
	return rs.skipped.items, rs.skipped.total
}

// HiddenFiles returns the dot-files under LoadDir's directory named like rule files
// (".edge.yaml"), which it did not read, at most ten of them, and how many there were
// in all: dot-files are skipped so that a ConfigMap's "..data" and editors' files are
// not loaded, but a rule file hidden by mistake is worth a warning.
func (rs *RuleSet) HiddenFiles() (names []string, total int) {
	if rs == nil {
		return nil, 0
	}
	return rs.hidden.items, rs.hidden.total
}

// Match returns the limits that apply to one request descriptor, or nil. It walks the
// entries level by level from the domain's top-level descriptors, picking one child per
// entry (SPEC §7), and returns the limits of the entry reached by the last request entry.
// The returned slice belongs to the RuleSet: callers must not modify it.
// Match does not apply replaces (it needs the whole request).
func (rs *RuleSet) Match(domainName string, entries []Entry) []*Limit {
	if rs == nil || len(entries) == 0 {
		return nil
	}
	d := rs.domains[domainName]
	if d == nil {
		return nil
	}
	n := d.root
	for _, e := range entries {
		if n = n.child(e); n == nil {
			return nil
		}
	}
	return n.limits
}

// Label names the limit to people (metrics, RateLimit fields, problem bodies): its
// name, else its descriptor path.
func (l *Limit) Label() string {
	if l.Name != "" {
		return l.Name
	}
	return l.Path
}

// HasDomain says whether the rules define the domain (with or without limits).
func (rs *RuleSet) HasDomain(name string) bool {
	return rs != nil && rs.domains[name] != nil
}

// Domains returns the configured domains, sorted.
func (rs *RuleSet) Domains() []string {
	if rs == nil {
		return nil
	}
	return append([]string(nil), rs.names...)
}

// Limits returns one domain's limits in file order (nil for an unknown domain). The
// slice belongs to the RuleSet: callers must not modify it.
func (rs *RuleSet) Limits(domainName string) []*Limit {
	if rs == nil || rs.domains[domainName] == nil {
		return nil
	}
	return rs.domains[domainName].limits
}

// LimitCount is the number of limits in all domains, unlimited ones included.
func (rs *RuleSet) LimitCount() int {
	if rs == nil {
		return 0
	}
	return rs.count
}

// Hash is the hex SHA-256 over the loaded files' names and contents, in load order.
func (rs *RuleSet) Hash() string {
	if rs == nil {
		return ""
	}
	return rs.hash
}

// summaryDomains bounds how many domains Summary names, to keep it one readable line.
const summaryDomains = 10

// Summary is one line for logs: "3 domains, 17 limits (edge: 9, api: 5, admin: 3)",
// the domains with most limits first.
func (rs *RuleSet) Summary() string {
	names := rs.Domains()
	s := fmt.Sprintf("%s, %s", plural(len(names), "domain"), plural(rs.LimitCount(), "limit"))
	if len(names) == 0 {
		return s
	}
	sort.SliceStable(names, func(i, j int) bool {
		return len(rs.domains[names[i]].limits) > len(rs.domains[names[j]].limits)
	})
	parts := make([]string, 0, summaryDomains+1)
	for i, n := range names {
		if i == summaryDomains {
			parts = append(parts, fmt.Sprintf("+%d more", len(names)-i))
			break
		}
		parts = append(parts, fmt.Sprintf("%s: %d", n, len(rs.domains[n].limits)))
	}
	return s + " (" + strings.Join(parts, ", ") + ")"
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
