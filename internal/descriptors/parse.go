package descriptors

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

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

// warnf records something that loads, as in envoyproxy/ratelimit, but most likely is
// not what was meant. Past maxWarnings a file's warnings are only counted.
func (p *fileParser) warnf(line int, field, format string, args ...any) {
	p.addWarning(ConfigError{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// refWarning is warnf for a warning that points at ref, as refError.
func (p *fileParser) refWarning(line int, field string, ref Ref, before, after string) {
	p.addWarning(ConfigError{File: p.file, Line: line, Field: field, Msg: before, Ref: &ref, MsgEnd: after})
}

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
func parseFile(f File, b *budget) (*domain, *fileParser) {
	p := &fileParser{file: f.Name, budget: b, names: map[string]int{}}
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

func (p *fileParser) yamlError(err error, data []byte) {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if yamlParserMessages[msg] {
			// yaml.v3 numbers its parser's lines from 0 (its scanner's from 1); past the
			// last line (the end of the file) means the last line.
			line = min(line+1, lineCount(data))
		}
	} else if yamlParserMessages[msg] || yamlScannerMessage(msg) {
		line = 1 // yaml.v3 leaves the line out when it is its line 0, the first
	}
	if line > 0 {
		switch {
		case msg == tabIndentMessage:
			line = tabIndentLine(data, line)
		case msg == noTokenMessage && tabIsTheCause(data, line, err):
			msg += ": a tab in the indentation; YAML indents with spaces"
		}
		p.errorf(line, "yaml", "%s", msg)
		return
	}
	if utf8Messages[msg] {
		if line, col, b, ok := firstInvalidUTF8(data); ok {
			// yaml.v3 names no position for these either: find the byte.
			p.errorf(line, "yaml", "byte 0x%02X at column %d starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)", b, col)
			return
		}
	}
	if line, ok := unknownAnchorLine(data, msg); ok {
		p.errorf(line, "yaml", "%s", msg)
		return
	}
	if msg == controlMessage {
		if line, col, r, ok := firstControl(data); ok {
			// yaml.v3 names no position for this one: find it.
			p.errorf(line, "yaml", "control character %U at column %d; YAML allows only tabs, line breaks and printable characters", r, col)
			return
		}
	}
	p.errorf(0, "yaml", "%s", msg)
}

// yaml.v3's errors for a character no token starts with (a tab at the start of a
// line, among others), and for a control character, which it reports without a line.
const (
	noTokenMessage = "found character that cannot start any token"
	controlMessage = "control characters are not allowed"
)

// yamlParserMessages are the errors of yaml.v3's parser (v3.0.1, parserc.go), as
// opposed to its scanner's: their line is the 0-based line of the collection that
// holds the mistake (or of the mistake itself), one less than the line people count.
var yamlParserMessages = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
}

// yamlScannerMessage says whether msg is an error of yaml.v3's scanner (v3.0.1,
// scannerc.go). Its errors come with a line, unless the line is the first.
func yamlScannerMessage(msg string) bool {
	switch msg {
	case "block sequence entries are not allowed in this context",
		"could not find expected ':'",
		"could not find expected directive name",
		"did not find URI escaped octet",
		"did not find expected '!'",
		"did not find expected alphabetic or numeric character",
		"did not find expected comment or line break",
		"did not find expected digit or '.' character",
		"did not find expected hexdecimal number",
		"did not find expected tag URI",
		"did not find expected version number",
		"did not find expected whitespace",
		"did not find expected whitespace or line break",
		"did not find the expected '>'",
		tabIndentMessage,
		"found a tab character where an indentation space is expected",
		"found an incorrect leading UTF-8 octet",
		"found an incorrect trailing UTF-8 octet",
		"found an indentation indicator equal to 0",
		noTokenMessage,
		"found extremely long version number",
		"found invalid Unicode character escape code",
		"found unexpected document indicator",
		"found unexpected end of stream",
		"found unexpected non-alphabetical character",
		"found unknown directive name",
		"found unknown escape character",
		"mapping keys are not allowed in this context",
		"mapping values are not allowed in this context":
		return true
	}
	return strings.HasPrefix(msg, "exceeded max depth of ")
}

// unknownAnchor is yaml.v3's error for an alias whose anchor is not (yet) defined,
// which it reports without a line. Its anchor names are [0-9A-Za-z_-]+.
var unknownAnchor = regexp.MustCompile(`^unknown anchor '([0-9A-Za-z_-]+)' referenced$`)

// unknownAnchorLine finds the line of the alias an unknown-anchor error (msg) is
// about, with one more parse: every "*name" in data is renamed to a name of its own
// ("*<probe>3" for the fourth), and the error then names the first real alias, the one
// that failed (an anchor, once defined, stays defined, so the first alias of the name
// in the document is the failing one). The same text in a comment or a quoted string
// is renamed too, which changes nothing there.
func unknownAnchorLine(data []byte, msg string) (int, bool) {
	m := unknownAnchor.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	alias := []byte("*" + m[1])
	probe := "ratelimit-ext-probe"
	for bytes.Contains(data, []byte(probe)) {
		probe += "-"
	}
	var at []int // the offsets of the candidates, renamed in order
	trial := make([]byte, 0, len(data)+64)
	for from := 0; ; {
		i := bytes.Index(data[from:], alias)
		if i < 0 {
			trial = append(trial, data[from:]...)
			break
		}
		end := from + i + len(alias)
		if end < len(data) && isAnchorChar(data[end]) { // a longer name ("*r" in "*rate")
			trial = append(trial, data[from:end]...)
		} else {
			trial = append(trial, data[from:from+i]...)
			trial = append(trial, "*"+probe+strconv.Itoa(len(at))...)
			at = append(at, from+i)
		}
		from = end
	}
	err := firstYAMLError(trial)
	if err == nil || len(at) == 0 {
		return 0, false
	}
	got := unknownAnchor.FindStringSubmatch(strings.TrimPrefix(err.Error(), "yaml: "))
	if got == nil || !strings.HasPrefix(got[1], probe) {
		return 0, false
	}
	k, convErr := strconv.Atoi(strings.TrimPrefix(got[1], probe))
	if convErr != nil || k < 0 || k >= len(at) {
		return 0, false
	}
	return lineAt(data, at[k]), true
}

func isAnchorChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '-'
}

// firstYAMLError decodes every document of data and returns the first error.
func firstYAMLError(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// isLineBreak says whether data[i] ends a line as YAML counts them: LF, or a CR that no
// LF follows (CR LF ends one line, at its LF).
func isLineBreak(data []byte, i int) bool {
	return data[i] == '\n' || data[i] == '\r' && (i+1 == len(data) || data[i+1] != '\n')
}

// lineAt is the 1-based line of data's byte at offset.
func lineAt(data []byte, offset int) int {
	n := 1
	for i := range offset {
		if isLineBreak(data, i) {
			n++
		}
	}
	return n
}

// lineCount is the number of lines in data; a final line break starts no line of its
// own.
func lineCount(data []byte) int {
	n := lineAt(data, len(data))
	if len(data) > 0 && isLineBreak(data, len(data)-1) {
		n--
	}
	return n
}

// tabIsTheCause says whether err, yaml.v3's noTokenMessage at line, is a tab in that
// line's indentation: the line is indented with a tab, and with spaces in its place the
// file parses, or fails elsewhere. (A tab may indent a line inside a flow collection,
// where the error is another character's.)
func tabIsTheCause(data []byte, line int, err error) bool {
	lines := bytes.Split(data, []byte("\n"))
	if line < 1 || line > len(lines) {
		return false
	}
	l := lines[line-1]
	in := indentation(l)
	if bytes.IndexByte(in, '\t') < 0 {
		return false
	}
	fixed := slices.Clone(lines)
	fixed[line-1] = append(bytes.ReplaceAll(in, []byte("\t"), []byte(" ")), l[len(in):]...)
	var doc yaml.Node
	again := yaml.Unmarshal(bytes.Join(fixed, []byte("\n")), &doc)
	return again == nil || again.Error() != err.Error()
}

// utf8Messages are yaml.v3's errors for bytes that are not UTF-8 (a file saved as
// Latin-1, say), which it reports without a position.
var utf8Messages = map[string]bool{
	"invalid leading UTF-8 octet":        true,
	"incomplete UTF-8 octet sequence":    true,
	"invalid trailing UTF-8 octet":       true,
	"invalid length of a UTF-8 sequence": true,
	"invalid Unicode character":          true,
}

// scanText walks data's characters, counting positions as the error messages give
// them (1-based lines and columns, columns in characters, a leading byte-order mark not
// counted, CR LF, LF and a lone CR each ending a line), and stops at the first for which
// stop says true (size 1 and utf8.RuneError: a byte that is not UTF-8): its line,
// column and offset in data. A UTF-16 file (yaml.v3 reads those too) gets no position:
// ok is false.
func scanText(data []byte, stop func(r rune, size int) bool) (line, col, at int, ok bool) {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return 0, 0, 0, false
	}
	i := 0
	if bytes.HasPrefix(data, []byte("\ufeff")) {
		i = len("\ufeff")
	}
	line = 1
	for i < len(data) {
		r, size := utf8.DecodeRune(data[i:])
		col++
		if stop(r, size) {
			return line, col, i, true
		}
		if isLineBreak(data, i) {
			line, col = line+1, 0
		}
		i += size
	}
	return 0, 0, 0, false
}

// firstInvalidUTF8 finds the first byte of data that does not start a valid UTF-8
// character: its position (scanText) and itself.
func firstInvalidUTF8(data []byte) (line, col int, b byte, ok bool) {
	line, col, at, ok := scanText(data, func(r rune, size int) bool { return r == utf8.RuneError && size == 1 })
	if !ok {
		return 0, 0, 0, false
	}
	return line, col, data[at], true
}

// firstControl finds the first character YAML does not allow (YAML 1.2's c-printable,
// as yaml.v3 checks it): its position (scanText) and itself.
func firstControl(data []byte) (line, col int, char rune, ok bool) {
	line, col, at, ok := scanText(data, func(r rune, _ int) bool {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == 0x85 || r == 0xFEFF || r == utf8.RuneError:
			return false
		default:
			return r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff
		}
	})
	if !ok {
		return 0, 0, 0, false
	}
	char, _ = utf8.DecodeRune(data[at:])
	return line, col, char, true
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
	all, written := star.Ref, star.value // written: "*", or "**" as the file spells it
	hide := func(hidden Ref, what string) {
		p.refWarning(hidden.Line, hidden.Field, all, fmt.Sprintf("%s never matches: the value pattern %q", what, written), " matches every value first")
	}
	switch {
	case l.Kind == PatternValue && normalizePattern(l.Value) == "*":
		if bare, ok := seen[siblingKey{l.Key, BareKey, ""}]; ok {
			all, written = at, l.Value
			hide(bare.Ref, describeLevel(Level{Key: l.Key, Kind: BareKey}))
		}
	case !hasAll:
	case l.Kind == BareKey, l.Kind == PatternValue:
		hide(at, describeLevel(l))
	}
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

// tabIndentMessage is yaml.v3's error for a tab in indentation. It names the line of
// the key before the tab (where its scanner's context starts), not the tab's own line.
const tabIndentMessage = "found a tab character that violates indentation"

// indentation is the spaces and tabs that begin a line.
func indentation(line []byte) []byte {
	return line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
}

// tabIndentLine is the first line from line on whose indentation holds a tab, so the
// error points at the line to fix; line itself when none does.
func tabIndentLine(data []byte, line int) int {
	lines := bytes.Split(data, []byte("\n"))
	for i := line - 1; i >= 0 && i < len(lines); i++ {
		if bytes.IndexByte(indentation(lines[i]), '\t') >= 0 {
			return i + 1
		}
	}
	return line
}

// emptyDocument says whether a decoded document holds nothing (a trailing "---").
func emptyDocument(doc *yaml.Node) bool {
	return len(doc.Content) == 0 || isNull(doc.Content[0])
}
