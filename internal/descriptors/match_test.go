package descriptors

import (
	"reflect"
	"testing"
)

var matchConfig = lines(
	"domain: m",
	"descriptors:",
	"  - key: k",
	"    rate_limit: {name: bare, unit: second, requests_per_unit: 1}", // bare first: order must not matter
	"  - key: k",
	"    value: e*",
	"    rate_limit: {name: pat-e, unit: second, requests_per_unit: 1}",
	"  - key: k",
	"    value: exact",
	"    rate_limit: {name: exact, unit: second, requests_per_unit: 1}",
	"  - key: k",
	"    value: ex*",
	"    rate_limit: {name: pat-ex, unit: second, requests_per_unit: 1}",
	"  - key: a",
	"    descriptors:",
	"      - key: b",
	"        rate_limits:",
	"          - {name: b-second, unit: second, requests_per_unit: 10}",
	"          - {name: b-day, unit: day, requests_per_unit: 1000}",
	"  - key: x",
	"    value: '*'",
	"    descriptors:",
	"      - key: y",
	"        value: v",
	"        rate_limit: {name: xy, unit: second, requests_per_unit: 1}",
	"  - key: n",
	"    value: special",
	"    descriptors:",
	"      - key: only-special",
	"        rate_limit: {name: special-child, unit: second, requests_per_unit: 1}",
	"  - key: n",
	"    descriptors:",
	"      - key: z",
	"        rate_limit: {name: bare-child, unit: second, requests_per_unit: 1}",
	"  - key: nolimit",
)

func TestMatch(t *testing.T) {
	rs := mustParse(t, matchConfig)
	tests := []struct {
		name    string
		domain  string
		entries []Entry
		want    []string // limit names
	}{
		{"exact beats patterns and bare", "m", []Entry{{"k", "exact"}}, []string{"exact"}},
		{"patterns in file order: e* before ex*", "m", []Entry{{"k", "exam"}}, []string{"pat-e"}},
		{"pattern beats bare", "m", []Entry{{"k", "eat"}}, []string{"pat-e"}},
		{"bare key for other values", "m", []Entry{{"k", "zzz"}}, []string{"bare"}},
		{"bare key for the empty value", "m", []Entry{{"k", ""}}, []string{"bare"}},
		{"unknown key", "m", []Entry{{"q", "exact"}}, nil},
		{"nested, several limits", "m", []Entry{{"a", "1"}, {"b", "2"}}, []string{"b-second", "b-day"}},
		{"fewer entries than the rule path", "m", []Entry{{"a", "1"}}, nil},
		{"more entries than the rule path", "m", []Entry{{"a", "1"}, {"b", "2"}, {"c", "3"}}, nil},
		{"second level alone", "m", []Entry{{"b", "2"}}, nil},
		{"wrong order", "m", []Entry{{"b", "2"}, {"a", "1"}}, nil},
		{"star pattern then exact", "m", []Entry{{"x", "anything"}, {"y", "v"}}, []string{"xy"}},
		{"star pattern matches empty", "m", []Entry{{"x", ""}, {"y", "v"}}, []string{"xy"}},
		{"star pattern then wrong value", "m", []Entry{{"x", "a"}, {"y", "w"}}, nil},
		{"one child per level, no backtracking", "m", []Entry{{"n", "special"}, {"z", "1"}}, nil},
		{"exact path below the exact entry", "m", []Entry{{"n", "special"}, {"only-special", "1"}}, []string{"special-child"}},
		{"bare path", "m", []Entry{{"n", "other"}, {"z", "1"}}, []string{"bare-child"}},
		{"entry without limits", "m", []Entry{{"nolimit", "1"}}, nil},
		{"unknown domain", "other", []Entry{{"k", "exact"}}, nil},
		{"no entries", "m", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rs.Match(tt.domain, tt.entries)
			var names []string
			for _, l := range got {
				names = append(names, l.Name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("Match(%s, %v) = %q, want %q", tt.domain, tt.entries, names, tt.want)
			}
			if tt.want == nil && got != nil {
				t.Errorf("want nil, got empty non-nil slice")
			}
		})
	}
}

func TestMatchReturnsStoredSlice(t *testing.T) {
	rs := mustParse(t, matchConfig)
	entries := []Entry{{"a", "1"}, {"b", "2"}}
	a, b := rs.Match("m", entries), rs.Match("m", entries)
	if &a[0] != &b[0] {
		t.Error("Match copies the limits; it should return the node's slice")
	}
	if allocs := testing.AllocsPerRun(100, func() { rs.Match("m", entries) }); allocs != 0 {
		t.Errorf("Match allocates %v times per call", allocs)
	}
	pat := []Entry{{"k", "exam"}}
	if allocs := testing.AllocsPerRun(100, func() { rs.Match("m", pat) }); allocs != 0 {
		t.Errorf("pattern Match allocates %v times per call", allocs)
	}
}

func TestMatchConcurrent(t *testing.T) {
	rs := mustParse(t, matchConfig)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 1000; i++ {
				if l := rs.Match("m", []Entry{{"k", "exam"}}); len(l) != 1 || l[0].Name != "pat-e" {
					t.Error("wrong match under concurrency")
					return
				}
				_ = rs.Summary()
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

func BenchmarkMatch(b *testing.B) {
	rs, err := Parse("t.yaml", []byte(matchConfig))
	if err != nil {
		b.Fatal(err)
	}
	cases := map[string][]Entry{
		"exact":   {{"k", "exact"}},
		"pattern": {{"k", "exam"}},
		"bare":    {{"k", "zzz"}},
		"nested":  {{"a", "1"}, {"b", "2"}},
	}
	for name, entries := range cases {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Match("m", entries)
			}
		})
	}
}
