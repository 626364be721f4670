package descriptors

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse must never panic, and must return either a RuleSet or a *LoadError
// whose every entry names the file.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("domain: d\ndescriptors:\n  - key: k\n    value: \"a*b\"\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	f.Add([]byte("domain: d\ndescriptors: &a\n  - key: k\n    descriptors: *a\n"))
	f.Add([]byte("domain: d\ndescriptors:\n  - &l {key: k, rate_limit: {unlimited: true, name: x}}\n  - *l\n"))
	f.Add([]byte("- a\n- b\n"))
	f.Add([]byte("{domain: [1], descriptors: {a: b}}"))
	f.Add([]byte("domain: d\n---\ndomain: e\n"))
	if edge, err := os.ReadFile("../../config/edge.yaml"); err == nil { // has an ext_authz section
		f.Add(edge)
	}
	f.Add([]byte("domain: d\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1}}]\next_authz:\n  descriptors:\n" +
		"    - when: {path: {regex: 'a(b'}, headers: [{name: ':x', one_of: [a, [b]]}]}\n      entries: [{request_headers: {header_name: x, descriptor_key: k}}, {masked_remote_address: {v4_prefix_mask_len: 40}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := Parse("fuzz.yaml", data)
		if err == nil {
			if rs == nil {
				t.Fatal("nil RuleSet without error")
			}
			_ = rs.Summary()
			_ = rs.Dump()
			for _, d := range rs.Domains() {
				for _, l := range rs.Limits(d) {
					rs.Match(d, levelsToEntries(l.Levels))
				}
			}
			return
		}
		var le *LoadError
		if !errors.As(err, &le) || le.empty() {
			t.Fatalf("error %v is not a non-empty *LoadError", err)
		}
		for _, e := range le.Errors {
			if e.File != "fuzz.yaml" || e.Field == "" || e.Msg == "" {
				t.Fatalf("malformed error %#v", e)
			}
		}
	})
}

// FuzzPattern checks the fast matcher against the dynamic-programming reference.
func FuzzPattern(f *testing.F) {
	f.Add("*", "")
	f.Add("a*b*c", "aXbYc")
	f.Add("**", "x")
	f.Add("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
	f.Add("ab*ba", "aba")
	f.Add("a*a", "a")
	f.Fuzz(func(t *testing.T, pat, value string) {
		if len(pat) > 64 || len(value) > 256 {
			return // the reference is quadratic
		}
		p := compilePattern(pat)
		if got, want := p.match(value), referenceMatch(pat, value); got != want {
			t.Fatalf("%q.match(%q) = %v, reference says %v", pat, value, got, want)
		}
		n := compilePattern(normalizePattern(pat))
		if got, want := n.match(value), referenceMatch(pat, value); got != want {
			t.Fatalf("normalized %q.match(%q) = %v, reference says %v", pat, value, got, want)
		}
	})
}

// levelsToEntries builds a request that reaches the limit's entry: exact values as
// they are, any value for bare keys, and the pattern text itself for patterns (a
// pattern always matches its own text).
func levelsToEntries(levels []Level) []Entry {
	entries := make([]Entry, len(levels))
	for i, l := range levels {
		entries[i] = Entry{Key: l.Key, Value: l.Value}
		if l.Kind == BareKey {
			entries[i].Value = "any"
		}
	}
	return entries
}
