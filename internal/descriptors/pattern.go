package descriptors

import "strings"

// pattern is a compiled descriptor value in which '*' matches any run of characters
// (including none). Matching anchors the literal prefix and suffix, then finds each
// middle run at its leftmost position: for '*'-only globs the leftmost choice is always
// safe, so there is no backtracking and a match costs at most one scan per middle run,
// whatever the input.
type pattern struct {
	wild   bool     // false: the value has no '*' and must equal prefix
	prefix string   // literal text before the first '*'
	middle []string // non-empty literal runs between '*'s, in order
	suffix string   // literal text after the last '*'
	minLen int      // total literal length: shorter values cannot match
}

func compilePattern(s string) pattern {
	parts := strings.Split(s, "*")
	if len(parts) == 1 {
		return pattern{prefix: s, minLen: len(s)}
	}
	p := pattern{wild: true, prefix: parts[0], suffix: parts[len(parts)-1]}
	p.minLen = len(p.prefix) + len(p.suffix)
	for _, m := range parts[1 : len(parts)-1] {
		if m != "" { // "**" is the same as "*"
			p.middle = append(p.middle, m)
			p.minLen += len(m)
		}
	}
	return p
}

func (p *pattern) match(v string) bool {
	if !p.wild {
		return v == p.prefix
	}
	// The length check also keeps prefix and suffix from overlapping in v.
	if len(v) < p.minLen || !strings.HasPrefix(v, p.prefix) || !strings.HasSuffix(v, p.suffix) {
		return false
	}
	v = v[len(p.prefix) : len(v)-len(p.suffix)]
	for _, m := range p.middle {
		i := strings.Index(v, m)
		if i < 0 {
			return false
		}
		v = v[i+len(m):]
	}
	return true
}

// normalizePattern collapses runs of '*', so that "a**" and "a*" are recognised as the
// same sibling entry.
func normalizePattern(s string) string {
	for strings.Contains(s, "**") {
		s = strings.ReplaceAll(s, "**", "*")
	}
	return s
}
