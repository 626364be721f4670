package descriptors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Bounds on what one load accepts. They keep a hostile or broken file (including YAML
// alias bombs, which expand without costing file size) from exhausting memory or time.
const (
	MaxFileSize = 4 << 20 // bytes per file read from disk (LoadDir, LoadFiles); data handed to Compile is the caller's to bound
	MaxDepth    = 32      // descriptor nesting levels: Envoy Gateway renders one per match, and 16 header matches are allowed per rule
	MaxLimits   = 100_000 // limits in all files together
	MaxEntries  = 200_000 // descriptor entries in all files together
	// MaxPathBytes bounds the descriptor paths a load builds (each entry's and each
	// limit's id): counts alone do not bound them, since aliases can repeat a tree of
	// long keys at every level (a 31 KB file once took 2.5 GB). 128 MiB leaves room for
	// the largest configurations the counts allow, with paths of several hundred bytes.
	MaxPathBytes = 128 << 20
	// MaxReplaces bounds the names limits replace, summed over the limits that carry
	// them: a replaces list an alias repeats on thousands of limits is cheap to write.
	MaxReplaces = 100_000
)

var (
	// `name` at the top of a file and on a descriptor entry is accepted and ignored, as
	// envoyproxy/ratelimit does (it checks known keys without regard to level); Envoy
	// Gateway's rendered rules carry one at the top. A limit's own name is in limitFields.
	fileFields       = []string{"domain", "algorithm", "descriptors", "ext_authz", "name"}
	descriptorFields = []string{"key", "value", "rate_limit", "rate_limits", "shadow_mode", "quota_mode", "detailed_metric", "share_threshold", "value_to_metric", "metadata", "replaces", "descriptors", "name"}
	limitFields      = []string{"name", "unit", "unit_multiplier", "requests_per_unit", "algorithm", "burst", "buckets", "unlimited", "replaces"}
	replaceFields    = []string{"name"}
)

const (
	second = int64(1000)
	day    = 86400 * second
)

var unitMs = map[string]int64{
	"second": second, "minute": 60 * second, "hour": 3600 * second, "day": day,
	"week": 7 * day, "month": 30 * day, "year": 365 * day,
}

const (
	unitList      = "second|minute|hour|day|week|month|year"
	algorithmList = "gcra|token_bucket|fixed_window|sliding_window|sliding_window_log|token_budget"
)

// budget counts what all files of one load have used of the global bounds.
type budget struct {
	limits, entries, pathBytes, metadata, metadataBytes, matcherBytes, replaces allowance
}

// allowance is one per-load bound: what the load has used of it, and whether it went
// over (reported once, with msg).
type allowance struct {
	used, bound int
	over        bool
	msg         string
}

func newBudget() budget {
	return budget{
		limits:        allowance{bound: MaxLimits, msg: fmt.Sprintf("more than %d limits in total", MaxLimits)},
		entries:       allowance{bound: MaxEntries, msg: fmt.Sprintf("more than %d descriptor entries in total", MaxEntries)},
		pathBytes:     allowance{bound: MaxPathBytes, msg: fmt.Sprintf("the descriptor paths (every entry's keys and values from the top) add up to more than %d MiB; YAML aliases repeating a tree of long keys multiply them", MaxPathBytes>>20)},
		metadata:      allowance{bound: MaxMetadataValues, msg: fmt.Sprintf("more than %d metadata values in total", MaxMetadataValues)},
		metadataBytes: allowance{bound: MaxMetadataBytes, msg: fmt.Sprintf("the metadata text adds up to more than %d MiB in total (YAML aliases count at every use)", MaxMetadataBytes>>20)},
		matcherBytes:  allowance{bound: MaxMatcherBytes, msg: fmt.Sprintf("the ext_authz string matches add up to more than %d MiB in total (YAML aliases count at every use)", MaxMatcherBytes>>20)},
		replaces:      allowance{bound: MaxReplaces, msg: fmt.Sprintf("more than %d replaced names in total, counted per limit that carries them (YAML aliases count at every use)", MaxReplaces)},
	}
}

// spend counts n against a; false once the load is over it, which the first time is
// reported at line and field.
func (p *fileParser) spend(a *allowance, n, line int, field string) bool {
	if a.used+n > a.bound {
		if !a.over {
			a.over = true
			p.errorf(line, field, "%s", a.msg)
		}
		return false
	}
	a.used += n
	return true
}

// fileParser turns one file into a domain, collecting every problem it finds.
type fileParser struct {
	file    string
	errs    []ConfigError
	warns   capped[ConfigError] // accepted, but worth telling (RuleSet.Warnings)
	omitted int                 // problems beyond maxErrors
	budget  *budget
	algo    limiter.Algorithm // the file's default algorithm
	algoOK  bool              // false when the file names an unknown algorithm
	dom     *domain
	names   map[string]int // limit name -> line of first use
	refs    []replaceRef
	// merging: other files may add to the domain (Options.MergeDomains), so the checks
	// that need the whole domain are left to the merge (compiler.checkDomain).
	merging bool
}

// replaceRef is one `replaces` entry, checked once the whole domain is known.
type replaceRef struct {
	name   string
	line   int
	field  string
	owners []*Limit // the limits that carry it
}

func (p *fileParser) errorf(line int, field, format string, args ...any) {
	p.addError(ConfigError{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// refError records a problem that points at ref, another definition in the file: its
// message is before, the reference ("at line N" in a file), then after.
func (p *fileParser) refError(line int, field string, ref Ref, before, after string) {
	p.addError(ConfigError{File: p.file, Line: line, Field: field, Msg: before, Ref: &ref, MsgEnd: after})
}

func (p *fileParser) addError(ce ConfigError) {
	if len(p.errs) >= maxErrors {
		p.omitted++ // keeps memory bounded however broken the file
		return
	}
	p.errs = append(p.errs, ce)
}

// refWarning records a warning that points at ref, as refError does an error.
func (p *fileParser) refWarning(line int, field string, ref Ref, before, after string) {
	p.addWarning(ConfigError{File: p.file, Line: line, Field: field, Msg: before, Ref: &ref, MsgEnd: after})
}

// addWarning records something that loads, as in envoyproxy/ratelimit, but most likely
// is not what was meant. Past maxWarnings a file's warnings are only counted.
func (p *fileParser) addWarning(w ConfigError) {
	if p.warns.total >= maxWarnings {
		p.warns.total++ // counted only: keeps memory bounded, as addError does
		return
	}
	p.warns.add(w, maxWarnings)
}

// parseFile parses one file. It returns the domain when the file names one (even if
// the file has errors, so duplicate domains are still found) and the file's parser,
// whose errs are sorted by line.
func parseFile(f File, b *budget, merging bool) (*domain, *fileParser) {
	p := &fileParser{file: f.Name, budget: b, names: map[string]int{}, merging: merging}
	if root := p.decode(f.Data); root != nil {
		p.parseRoot(root)
		p.checkReplaces()
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
	sort.SliceStable(p.warns.items, func(i, j int) bool { return p.warns.items[i].Line < p.warns.items[j].Line })
	return p.dom, p
}

// decode parses the YAML into a node tree: exactly one document.
func (p *fileParser) decode(data []byte) (root *yaml.Node) {
	// The YAML library has panicked on hostile input in the past; a config file must
	// never take the service down, so a panic becomes a load error.
	defer func() {
		if r := recover(); r != nil {
			p.errorf(0, "yaml", "parser failure: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "file", "empty; want a mapping with domain and descriptors")
		} else {
			p.yamlError(err, data)
		}
		return nil
	}
	// A trailing "---" starts an empty document, which is no second domain.
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.yamlError(err, data)
			return nil
		}
		if !emptyDocument(&extra) {
			p.errorf(extra.Line, "file", "more than one YAML document; one domain per file")
			return nil
		}
	}
	if len(doc.Content) == 0 {
		p.errorf(0, "file", "empty; want a mapping with domain and descriptors")
		return nil
	}
	return doc.Content[0]
}

func (p *fileParser) parseRoot(root *yaml.Node) {
	f, ok := p.mapping(root, "", fileFields)
	if !ok {
		return
	}
	name, line, ok := p.str(f, "domain")
	switch {
	case !ok && f.missing("domain"):
		p.errorf(line, "domain", "missing; every file needs a domain")
	case ok && name == "":
		p.errorf(line, "domain", "empty")
	case ok && !p.printable(name, line, "domain"): // the request's domain is as printable
	case ok:
		p.dom = &domain{name: name, file: p.file, line: line, root: &node{}}
	}
	p.algoOK = true
	if s, line, ok := p.str(f, "algorithm"); ok {
		p.algo, p.algoOK = p.algorithm(s, line, "algorithm")
	}
	top := &node{} // without a valid domain the descriptors are still checked
	if p.dom != nil {
		top = p.dom.root
	}
	p.descriptorList(top, f, "descriptors", 1, nil, "")
	p.parseExtAuthz(f)
}

func tooLarge(size int64) string {
	return fmt.Sprintf("larger than %d MiB (%d bytes)", MaxFileSize>>20, size)
}

func (p *fileParser) algorithm(s string, line int, field string) (limiter.Algorithm, bool) {
	a, ok := limiter.ParseAlgorithm(strings.ToLower(s))
	if !ok {
		p.errorf(line, field, "unknown algorithm %q (want %s)", s, algorithmList)
	}
	return a, ok
}

// siblingKey identifies an entry among its siblings: two entries with the same key
// and the same (normalized) value would be ambiguous.
type siblingKey struct {
	key   string
	kind  ValueKind
	value string
}

// descriptorList parses the list in field name of f as children of parent, at the
// given depth (1 for top-level descriptors) below the levels in path.
func (p *fileParser) descriptorList(parent *node, f fields, name string, depth int, path []Level, pathStr string) {
	items := p.list(f, name)
	if len(items) > 0 && depth > MaxDepth {
		p.errorf(f.keyLine(name), f.at(name), "descriptors nested deeper than %d levels", MaxDepth)
		return
	}
	seen := map[siblingKey]sibling{}
	for i, item := range items {
		if !p.spend(&p.budget.entries, 1, item.Line, f.at(name)) {
			return
		}
		// An entry repeated through an alias is told of where the alias is written.
		at := Ref{Line: f.itemLine(name, i), Field: fmt.Sprintf("%s[%d]", f.at(name), i)}
		p.descriptor(parent, item, at, depth, path, pathStr, seen)
	}
}

// descriptor parses one descriptor entry, written at at, and everything below it.
func (p *fileParser) descriptor(parent *node, item *yaml.Node, at Ref, depth int, path []Level, pathStr string, seen map[siblingKey]sibling) {
	field := at.Field
	f, ok := p.mapping(item, field, descriptorFields)
	if !ok {
		return
	}
	level, levelOK := p.level(f)
	p.levelFlags(f, &level, levelOK)
	child := &node{}
	if levelOK {
		sk := siblingKey{level.Key, level.Kind, normalizePattern(level.Value)}
		if first, dup := seen[sk]; dup {
			p.duplicate(level, at, first)
		} else {
			seen[sk] = sibling{at, level.Value}
			parent.attach(level, child)
			p.warnHidden(level, at, seen)
			if depth == 1 && p.merging && p.dom != nil {
				p.dom.top = append(p.dom.top, topEntry{level, child, at})
			}
		}
	}
	part := pathPart(level)
	if !p.spend(&p.budget.pathBytes, len(pathStr)+1+len(part), at.Line, field) {
		return
	}
	path = append(path[:len(path):len(path)], level)
	if pathStr != "" {
		pathStr += "/"
	}
	pathStr += part
	child.limits = p.descriptorLimits(f, path, pathStr)
	p.descriptorList(child, f, "descriptors", depth+1, path, pathStr)
}

// sibling is an entry as the siblings after it see it: where it is, and its value as
// written ("a**", which matches what "a*" does).
type sibling struct {
	Ref
	value string
}

// duplicate reports the entry l at at, which repeats its sibling first: the same key
// and value, or a value pattern that differs only in runs of '*'.
func (p *fileParser) duplicate(l Level, at Ref, first sibling) {
	if first.value != l.Value {
		p.refError(at.Line, at.Field, first.Ref,
			fmt.Sprintf("duplicate entry %s: it matches the same values as %q", describeLevel(l), first.value),
			" (a run of '*' matches what one '*' does)")
		return
	}
	p.refError(at.Line, at.Field, first.Ref, fmt.Sprintf("duplicate entry %s (first", describeLevel(l)), ")")
}

// warnHidden warns of an entry that can never match because a sibling "*" pattern
// matches every value before it: Match tries patterns in file order, then the bare key,
// so the "*" hides the bare key wherever it is and every pattern after it. Such rules
// load (they do in envoyproxy/ratelimit) but most likely do not do what was meant.
func (p *fileParser) warnHidden(l Level, at Ref, seen map[siblingKey]sibling) {
	star, hasAll := seen[siblingKey{l.Key, PatternValue, "*"}]
	bare, hasBare := seen[siblingKey{l.Key, BareKey, ""}]
	all, written := star.Ref, star.value // written: "*", or "**" as the file spells it
	hide := func(hidden Ref, what string) {
		p.refWarning(hidden.Line, hidden.Field, all, fmt.Sprintf("%s never matches: the value pattern %q", what, written), " matches every value first")
	}
	switch hidesBare, hidden := starHides(l, hasAll, hasBare); {
	case hidesBare:
		all, written = at, l.Value
		hide(bare.Ref, describeLevel(Level{Key: l.Key, Kind: BareKey}))
	case hidden:
		hide(at, describeLevel(l))
	}
}

// starHides says what a value pattern "*" hides when l joins the entries of its key at
// one level, which are tried in order (patterns first, the bare key last): when l is
// the "*", the bare key before it (hidesBare, given bareBefore); otherwise l itself, a
// pattern or the bare key, when a "*" came before it (hidden, given starBefore).
func starHides(l Level, starBefore, bareBefore bool) (hidesBare, hidden bool) {
	if l.Kind == PatternValue && normalizePattern(l.Value) == "*" {
		return bareBefore, false
	}
	return false, starBefore && (l.Kind == BareKey || l.Kind == PatternValue)
}

func describeLevel(l Level) string {
	if l.Kind == BareKey {
		return fmt.Sprintf("key %q without value", l.Key)
	}
	return fmt.Sprintf("key %q value %q", l.Key, l.Value)
}

// level parses key and value of a descriptor entry.
func (p *fileParser) level(f fields) (Level, bool) {
	key, line, ok := p.str(f, "key")
	switch {
	case !ok && f.missing("key"):
		p.errorf(line, f.at("key"), "missing")
		return Level{}, false
	case !ok:
		return Level{}, false
	case key == "":
		p.errorf(line, f.at("key"), "empty")
		return Level{}, false
	case !p.printable(key, line, f.at("key")):
		return Level{}, false
	}
	l := Level{Key: key}
	value, line, ok := p.str(f, "value")
	switch {
	case !ok:
		return l, !f.has("value")
	case value == "":
		return l, true // no value, as envoyproxy/ratelimit reads it (Envoy Gateway writes value: "")
	case !p.printableValue(value, line, f.at("value")):
		return l, false
	}
	l.Value, l.Kind = value, ExactValue
	if strings.Contains(value, "*") {
		l.Kind = PatternValue
	}
	return l, true
}

// levelFlags reads the flags an entry sets for every limit at or below it.
func (p *fileParser) levelFlags(f fields, l *Level, levelOK bool) {
	shared, _ := p.boolean(f, "share_threshold")
	if shared && levelOK && l.Kind != PatternValue {
		// As envoyproxy/ratelimit: there is nothing to share without a pattern.
		p.errorf(f.keyLine("share_threshold"), f.at("share_threshold"),
			"needs a value pattern (with '*'): an exact value already has one counter, and a key without value counts each value on its own")
	}
	l.Shared = shared && l.Kind == PatternValue
	l.ValueToMetric, _ = p.boolean(f, "value_to_metric")
}

// printable rejects control characters in a domain or a descriptor key: Envoy's
// configuration names them, so one in the rules is a mistake (often a block scalar's
// trailing newline).
func (p *fileParser) printable(s string, line int, field string) bool {
	return p.withoutControls(s, "", line, field)
}

// printableValue is printable for a descriptor value, which may hold a tab: Envoy
// takes values from request headers, and HTTP allows a tab inside a header value.
func (p *fileParser) printableValue(s string, line int, field string) bool {
	return p.withoutControls(s, "\t", line, field)
}

// withoutControls reports the first control character of s that is not in allowed.
func (p *fileParser) withoutControls(s, allowed string, line int, field string) bool {
	for _, r := range s {
		if (r < 0x20 || r == 0x7f) && !strings.ContainsRune(allowed, r) {
			p.errorf(line, field, "contains control character %U", r)
			return false
		}
	}
	return true
}

// pathPart renders one level for Limit.Path.
func pathPart(l Level) string {
	if l.Kind == BareKey {
		return escapePart(l.Key)
	}
	return escapePart(l.Key) + "=" + escapePart(l.Value)
}

// escapePart %XX-escapes the bytes that structure Path and ID, so distinct
// configurations never share an ID.
func escapePart(s string) string {
	if !strings.ContainsFunc(s, needsEscape) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; needsEscape(rune(c)) {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r == '%' || r == '/' || r == '=' || r == '#' || r < 0x20 || r == 0x7f
}

// emptyDocument says whether a decoded document holds nothing (a trailing "---").
func emptyDocument(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || isNull(doc.Content[0])
}
