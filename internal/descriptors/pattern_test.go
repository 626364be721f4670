package descriptors

import (
	"strings"
	"testing"
	"time"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, value string
		want           bool
	}{
		{"*", "", true},
		{"*", "anything", true},
		{"**", "", true},
		{"**", "abc", true},
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"a*", "", false},
		{"*a", "a", true},
		{"*a", "bca", true},
		{"*a", "ab", false},
		{"*a", "", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abbbc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "ab", false},
		{"a*b*c", "abcX", false},
		{"a*a", "a", false}, // prefix and suffix must not overlap
		{"a*a", "aa", true},
		{"ab*ba", "aba", false},
		{"ab*ba", "abba", true},
		{"*ab*", "xxaxxabx", true},
		{"*ab*", "xxaxxbx", false},
		{"foo*", "foo", true},
		{"foo*", "foobar", true},
		{"foo*", "fo", false},
		{"10.*", "10.0.0.1", true},
		{"10.*", "110.0.0.1", false},
		{"path_*_v*", "path_users_v2", true},
		{"path_*_v*", "path_users", false},
		{"*a*a*a*a*b", strings.Repeat("a", 100) + "b", true},
		{"exact", "exact", true}, // no '*': exact comparison
		{"exact", "exact2", false},
		{"ü*ß", "üxyzß", true},
	}
	for _, tt := range tests {
		p := compilePattern(tt.pattern)
		if got := p.match(tt.value); got != tt.want {
			t.Errorf("%q.match(%q) = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
		if got := referenceMatch(tt.pattern, tt.value); got != tt.want {
			t.Errorf("referenceMatch(%q, %q) = %v, want %v (bad test case)", tt.pattern, tt.value, got, tt.want)
		}
	}
}

// TestPatternPathological guards against exponential backtracking: a classic naive glob
// matcher needs ages for this input.
func TestPatternPathological(t *testing.T) {
	pats := []string{"*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*b*", "a*a*a*a*a*a*a*a*a*a*a*c"}
	value := strings.Repeat("a", 1<<20)
	start := time.Now()
	for _, s := range pats {
		p := compilePattern(s)
		if p.match(value) {
			t.Errorf("%q matched a string without its last literal", s)
		}
	}
	// A bound against exponential backtracking, which would take years here; the
	// linear matcher takes milliseconds, so the bound leaves a busy machine room.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("pathological matching took %v", d)
	}
}

func TestNormalizePattern(t *testing.T) {
	for in, want := range map[string]string{"a**": "a*", "***": "*", "a*b": "a*b", "**a***b**": "*a*b*", "ab": "ab"} {
		if got := normalizePattern(in); got != want {
			t.Errorf("normalizePattern(%q) = %q, want %q", in, got, want)
		}
	}
}

// referenceMatch is the textbook dynamic-programming glob matcher, O(len(p)·len(v)):
// slow but obviously right, used as the oracle for the fast matcher.
func referenceMatch(p, v string) bool {
	// row[j] reports whether p[:i] matches v[:j].
	row := make([]bool, len(v)+1)
	row[0] = true
	for i := 0; i < len(p); i++ {
		next := make([]bool, len(v)+1)
		if p[i] == '*' {
			next[0] = row[0]
			for j := 1; j <= len(v); j++ {
				next[j] = row[j] || next[j-1]
			}
		} else {
			for j := 1; j <= len(v); j++ {
				next[j] = row[j-1] && p[i] == v[j-1]
			}
		}
		row = next
	}
	return row[len(v)]
}

// Each literal run between '*'s matches its own characters: two middle runs never share
// one occurrence, and a middle run never borrows the suffix's characters.
func TestPatternMiddleRunsDoNotOverlap(t *testing.T) {
	for _, tt := range []struct {
		pattern, value string
		want           bool
	}{
		{"*ab*ab*", "xaby", false}, // one "ab" for two runs
		{"*ab*ab*", "xabab", true},
		{"*aa*aa*", "aaa", false},
		{"*aa*aa*", "aaaa", true},
		{"a*c*c", "abc", false}, // the middle "c" is the suffix's
		{"a*c*c", "acc", true},
		{"x*y*yz", "xyz", false},
		{"x*y*yz", "xyyz", true},
	} {
		p := compilePattern(tt.pattern)
		if got := p.match(tt.value); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.value, got, tt.want)
		}
	}
}
