package descriptors

import (
	"strconv"
	"testing"
)

// Matching benchmarks (docs/performance.md lists their budgets; BenchmarkMatch in
// match_test.go covers the kinds on a small rule set): Match allocates
// nothing, whatever the kind of entry it walks.
const benchRules = `
domain: b
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: path
    value: "/api/*"
    rate_limit: {unit: second, requests_per_unit: 10}
  - key: path
    value: "/health"
    rate_limit: {unit: second, unlimited: true}
  - key: tenant
    descriptors:
      - key: plan
        value: gold
        descriptors:
          - key: user
            rate_limits:
              - {unit: second, requests_per_unit: 100}
              - {unit: day, requests_per_unit: 100000}
`

func benchRuleSet(b *testing.B) *RuleSet {
	b.Helper()
	rs, err := Parse("b.yaml", []byte(benchRules))
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

func BenchmarkMatchKinds(b *testing.B) {
	rs := benchRuleSet(b)
	values := make([]string, 1024)
	for i := range values {
		values[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	for _, bc := range []struct {
		name    string
		entries func(i int) []Entry
		want    int
	}{
		{"bare-key", func(i int) []Entry { return []Entry{{"remote_address", values[i%len(values)]}} }, 1},
		{"exact", func(int) []Entry { return []Entry{{"path", "/health"}} }, 1},
		{"pattern", func(int) []Entry { return []Entry{{"path", "/api/v1/orders"}} }, 1},
		{"nested-3", func(i int) []Entry {
			return []Entry{{"tenant", "t1"}, {"plan", "gold"}, {"user", values[i%len(values)]}}
		}, 2},
		{"no-match", func(int) []Entry { return []Entry{{"other", "x"}} }, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := make([][]Entry, 1024)
			for i := range in {
				in[i] = bc.entries(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if got := rs.Match("b", in[i%len(in)]); len(got) != bc.want {
					b.Fatalf("%d limits, want %d", len(got), bc.want)
				}
				i++
			}
		})
	}
}
