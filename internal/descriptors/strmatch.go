package descriptors

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// StringMatcher is a compiled string match of the ext_authz section (Envoy's
// StringMatcher, flattened): exactly one of exact, prefix, suffix, contains, regex
// (RE2, whole value, as Envoy's safe_regex), pattern ('*' globs, as descriptor values)
// or one_of, optionally with ignore_case. Immutable and safe for concurrent use.
type StringMatcher struct {
	kind       string   // the YAML field that defines it
	value      string   // exact, prefix, suffix, contains (lower case under ignoreCase)
	values     []string // one_of
	re         *regexp.Regexp
	pat        pattern
	ignoreCase bool
	text       string // for String
}

// Bounds of the matchers of an ext_authz section. With the section's own bounds they
// keep a file that aliases one huge list everywhere from costing more than a linear
// amount of work to load.
const (
	maxHeaderConditions = 32   // per list of header conditions
	maxOneOf            = 1024 // values of one one_of
	// MaxMatcherBytes bounds the text of all ext_authz string matches of a load,
	// counted at every use: YAML aliases repeat a list of long one_of values at no cost
	// to the file, and each use is copied and compiled (a 71 KB file once took 102 s
	// and 14 GB). Four files full of matches fit.
	MaxMatcherBytes = 16 << 20
)

// stringMatchKinds are the exclusive fields of a string match; ignore_case may go with any.
var stringMatchKinds = []string{"exact", "prefix", "suffix", "contains", "regex", "pattern", "one_of"}

// stringMatchFields are the fields of a string matcher: one kind, and ignore_case.
var stringMatchFields = append(slices.Clip(stringMatchKinds), "ignore_case")

// Match reports whether s matches.
func (m *StringMatcher) Match(s string) bool {
	if m.ignoreCase && m.kind != "regex" {
		s = strings.ToLower(s)
	}
	switch m.kind {
	case "exact":
		return s == m.value
	case "prefix":
		return strings.HasPrefix(s, m.value)
	case "suffix":
		return strings.HasSuffix(s, m.value)
	case "contains":
		return strings.Contains(s, m.value)
	case "regex":
		return m.re.MatchString(s)
	case "pattern":
		return m.pat.match(s)
	case "one_of":
		return slices.Contains(m.values, s)
	}
	return false
}

// String renders the matcher as configured, e.g. `prefix "/api/"`.
func (m *StringMatcher) String() string { return m.text }

// HeaderMatcher is one compiled header condition (Envoy's HeaderMatcher): a string match
// on the header's value, or a presence check, optionally inverted. As in Envoy, a missing
// header never satisfies a value match, inverted or not; test absence with present: false.
type HeaderMatcher struct {
	Name    string         // lower case; pseudo-headers such as :method, :path, :authority allowed
	Value   *StringMatcher // nil for a presence check
	Present bool           // presence check: true = the header must be present, false = absent
	Invert  bool
}

// Match applies the matcher to a header's value; ok says whether the header is present.
func (h *HeaderMatcher) Match(value string, ok bool) bool {
	if !ok {
		if h.Value != nil {
			return false
		}
		return h.Present == h.Invert
	}
	m := h.Present
	if h.Value != nil {
		m = h.Value.Match(value)
	}
	return m != h.Invert
}

// String renders the matcher for messages and /debug/config.
func (h *HeaderMatcher) String() string {
	var s string
	if h.Value != nil {
		s = h.Name + " " + h.Value.String()
	} else if h.Present {
		s = h.Name + " present"
	} else {
		s = h.Name + " absent"
	}
	if h.Invert {
		s = "not(" + s + ")"
	}
	return s
}

// stringMatch parses the string-match fields of f. required says that one of them must
// be present; without it, a mapping with none of them yields (nil, true).
func (p *fileParser) stringMatch(f fields, required bool) (*StringMatcher, bool) {
	var kinds []string
	for _, k := range stringMatchKinds {
		if f.has(k) {
			kinds = append(kinds, k)
		}
	}
	switch {
	case len(kinds) > 1:
		p.errorf(f.keyLine(kinds[1]), f.at(kinds[1]), "%s and %s are exclusive; give one match", kinds[0], kinds[1])
		return nil, false
	case len(kinds) == 0 && required:
		if !f.merged { // else the match may be in the merged mapping, refused already
			p.errorf(f.line, orRoot(f.path), "want one of %s", strings.Join(stringMatchKinds, ", "))
		}
		return nil, false
	case len(kinds) == 0 && f.has("ignore_case"):
		p.errorf(f.keyLine("ignore_case"), f.at("ignore_case"), "ignore_case without a match (want one of %s)", strings.Join(stringMatchKinds, ", "))
		return nil, false
	case len(kinds) == 0:
		return nil, true
	}
	ignoreCase, ok := p.boolean(f, "ignore_case")
	if !ok {
		return nil, false
	}
	m := &StringMatcher{kind: kinds[0], ignoreCase: ignoreCase}
	if m.kind == "one_of" {
		ok = p.oneOf(f, m)
	} else {
		ok = p.singleMatch(f, m)
	}
	if !ok {
		return nil, false
	}
	return m.withCase(), true
}

// fold is s as m compares it: lower-cased when it ignores case.
func (m *StringMatcher) fold(s string) string {
	if m.ignoreCase {
		return strings.ToLower(s)
	}
	return s
}

// oneOf reads a one_of list into m.
func (p *fileParser) oneOf(f fields, m *StringMatcher) bool {
	kind := m.kind
	items := p.list(f, kind)
	if f.vals[kind].Kind != yaml.SequenceNode {
		return false // reported by list
	}
	if len(items) == 0 {
		p.errorf(f.keyLine(kind), f.at(kind), "empty list; want at least one value")
		return false
	}
	if len(items) > maxOneOf {
		p.errorf(f.keyLine(kind), f.at(kind), "%d values; at most %d (use a pattern or regex)", len(items), maxOneOf)
		return false
	}
	quoted := make([]string, 0, len(items))
	for i, it := range items {
		if it.Kind != yaml.ScalarNode || isNull(it) {
			p.errorf(it.Line, fmt.Sprintf("%s[%d]", f.at(kind), i), "want a string, got %s", kindName(it))
			return false
		}
		if !p.spend(&p.budget.matcherBytes, len(it.Value), it.Line, f.at(kind)) {
			return false
		}
		m.values = append(m.values, m.fold(it.Value))
		quoted = append(quoted, fmt.Sprintf("%q", it.Value))
	}
	m.text = "one_of [" + strings.Join(quoted, ", ") + "]"
	return true
}

// singleMatch reads an exact, prefix, suffix, contains, regex or pattern match into m.
func (p *fileParser) singleMatch(f fields, m *StringMatcher) bool {
	kind := m.kind
	s, line, ok := p.str(f, kind)
	if !ok || !p.spend(&p.budget.matcherBytes, len(s), line, f.at(kind)) {
		return false
	}
	m.text = fmt.Sprintf("%s %q", kind, s)
	switch kind {
	case "regex":
		expr := "^(?:" + s + ")$"
		if m.ignoreCase {
			expr = "(?i)" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			if _, own := regexp.Compile(s); own != nil {
				err = own // quote the pattern as written, not our anchored copy
			}
			p.errorf(line, f.at(kind), "bad regular expression: %s", strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			return false
		}
		m.re = re
	case "pattern":
		if s == "" {
			p.errorf(line, f.at(kind), "empty pattern")
			return false
		}
		m.pat = compilePattern(normalizePattern(m.fold(s)))
	default:
		if s == "" && kind != "exact" {
			p.errorf(line, f.at(kind), "empty %s matches everything; drop the condition instead", kind)
			return false
		}
		m.value = m.fold(s)
	}
	return true
}

func (m *StringMatcher) withCase() *StringMatcher {
	if m.ignoreCase {
		m.text += " ignore_case"
	}
	return m
}

// headerMatcherFields are the fields of one header condition.
var headerMatcherFields = append([]string{"name", "present", "invert"}, stringMatchFields...)

// headerMatchers parses a list of header conditions (Envoy's HeaderMatcher list). An
// absent list is fine unless required.
func (p *fileParser) headerMatchers(f fields, name string, required bool) ([]HeaderMatcher, bool) {
	v := f.vals[name]
	if v == nil {
		if required {
			p.errorf(f.keyLine(name), f.at(name), "missing; want at least one header condition")
		}
		return nil, !required
	}
	items := p.list(f, name)
	if v.Kind != yaml.SequenceNode {
		return nil, false // reported by list
	}
	if len(items) == 0 && required {
		p.errorf(f.keyLine(name), f.at(name), "empty list; want at least one header condition")
		return nil, false
	}
	if len(items) > maxHeaderConditions {
		p.errorf(f.keyLine(name), f.at(name), "%d header conditions; at most %d", len(items), maxHeaderConditions)
		return nil, false
	}
	out := make([]HeaderMatcher, 0, len(items))
	ok := true
	for i, it := range items {
		hf, fine := p.mapping(it, fmt.Sprintf("%s[%d]", f.at(name), i), headerMatcherFields)
		if !fine {
			ok = false
			continue
		}
		h, fine := p.headerMatcher(hf)
		if !fine {
			ok = false
			continue
		}
		out = append(out, h)
	}
	return out, ok
}

func (p *fileParser) headerMatcher(f fields) (HeaderMatcher, bool) {
	var h HeaderMatcher
	name, ok := p.headerName(f, "name")
	if !ok {
		return h, false
	}
	h.Name = name
	inv, ok := p.boolean(f, "invert")
	if !ok {
		return h, false
	}
	h.Invert = inv
	if f.has("present") {
		for _, k := range stringMatchFields {
			if f.has(k) {
				p.errorf(f.keyLine(k), f.at(k), "present and %s are exclusive", k)
				return h, false
			}
		}
		h.Present, ok = p.boolean(f, "present")
		return h, ok
	}
	m, ok := p.stringMatch(f, false)
	if !ok {
		return h, false
	}
	if m == nil {
		if f.merged { // the match may be in the merged mapping, refused already
			return h, false
		}
		p.errorf(f.line, orRoot(f.path), "want a match (one of %s) or present", strings.Join(stringMatchKinds, ", "))
		return h, false
	}
	h.Value = m
	return h, true
}

// headerName reads a header name: an RFC 9110 token, or a pseudo-header (":" + token),
// returned in lower case as Envoy sends header names to the authorization service.
func (p *fileParser) headerName(f fields, field string) (string, bool) {
	s, line, ok := p.str(f, field)
	if !ok {
		if !f.has(field) {
			p.errorf(line, f.at(field), "missing")
		}
		return "", false
	}
	token := strings.TrimPrefix(s, ":")
	if token == "" {
		p.errorf(line, f.at(field), "empty header name")
		return "", false
	}
	for i := 0; i < len(token); i++ {
		if !isTokenChar(token[i]) {
			p.errorf(line, f.at(field), "%q is not a header name (byte %q is not allowed)", s, token[i])
			return "", false
		}
	}
	return strings.ToLower(s), true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
