package storekey

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// Key encoding benchmarks (docs/performance.md lists their budgets): one allocation,
// the key string itself, unless the key is over-long and hashed.
func BenchmarkKey(b *testing.B) {
	gcra := &limiter.Params{Algorithm: limiter.GCRA, Limit: 100, PeriodMs: 1000}
	if err := gcra.Validate(); err != nil {
		b.Fatal(err)
	}
	values := make([]string, 1024)
	for i := range values {
		values[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	long := strings.Repeat("x", 600)
	for _, bc := range []struct {
		name    string
		b       *Builder
		p       *limiter.Params
		entries func(i int) []descriptors.Entry
	}{
		{"one-entry", New("rlx:", 0), fixed, func(i int) []descriptors.Entry { return entries("remote_address", values[i%1024]) }},
		{"gcra-identity", New("rlx:", 0), gcra, func(i int) []descriptors.Entry { return entries("remote_address", values[i%1024]) }},
		{"three-entries", New("rlx:", 0), fixed, func(i int) []descriptors.Entry {
			return entries("tenant", "t1", "plan", "gold", "user", values[i%1024])
		}},
		{"cluster-tag", &Builder{prefix: "rlx:", maxLen: DefaultMaxLen, ClusterTag: true}, fixed, func(i int) []descriptors.Entry {
			return entries("remote_address", values[i%1024])
		}},
		{"hashed-long", New("rlx:", 0), fixed, func(i int) []descriptors.Entry { return entries("path", long+values[i%1024]) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := make([][]descriptors.Entry, 1024)
			for i := range in {
				in[i] = bc.entries(i)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if k := bc.b.Key("edge", "remote_address#0", bc.p, in[i%len(in)]); len(k) == 0 {
					b.Fatal("empty key")
				}
				i++
			}
		})
	}
}
