package limiter

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// The script call for a batch carries each rule's parameters once: limits that share
// a *Params and a shadow flag share a group, a shadow limit of the same rule gets its
// own, and every limit names its group in ARGV next to its own cost.
func TestScriptArgsSharesParameterGroups(t *testing.T) {
	fw := &Params{Algorithm: FixedWindow, Limit: 100, PeriodMs: 60_000}
	tb := &Params{Algorithm: TokenBucket, Limit: 5, PeriodMs: 1000, Burst: 5, num: 1, den: 200}
	reqs := []struct {
		now    int64
		checks []LimitCheck
	}{
		{0, []LimitCheck{{Key: "a", Params: fw, Cost: 1}}},
		{7, []LimitCheck{{Key: "b", Params: tb, Cost: 2}, {Key: "c", Params: fw, Cost: 3}}},
		{0, []LimitCheck{{Key: "d", Params: fw, Cost: 4, Shadow: true}}},
	}
	args := scriptArgs(len(reqs), func(i int) (int64, []LimitCheck) { return reqs[i].now, reqs[i].checks })
	if want := []any{nil, nil, 4, "a", "b", "c", "d"}; len(args) != len(want)+1 || !slices.Equal(args[:len(want)], want) {
		t.Fatalf("scriptArgs: %v, want %v and ARGV", args, want)
	}
	argv, ok := args[len(args)-1].([]byte)
	if !ok || len(argv)%8 != 0 {
		t.Fatalf("ARGV %T of %d bytes, want 8-byte values", args[len(args)-1], len(argv))
	}
	var got []int64
	for i := 0; i < len(argv); i += 8 {
		f := math.Float64frombits(binary.LittleEndian.Uint64(argv[i:]))
		got = append(got, int64(f))
	}
	want := []int64{
		3, 3, // r, g
		int64(FixedWindow), 0, 100, 60_000, 0, 0, 0, 0, 0,
		int64(TokenBucket), 0, 5, 1000, 5, 1, 200, 0, 0,
		int64(FixedWindow), 1, 100, 60_000, 0, 0, 0, 0, 0,
		0, 1, 1, 1,
		7, 2, 2, 2, 1, 3,
		0, 1, 3, 4,
	}
	if !slices.Equal(got, want) {
		t.Errorf("ARGV values:\n got %v\nwant %v", got, want)
	}
}

// Past linearGroups distinct groups the index switches to a map; the numbers it gave
// out before stay the same and new ones continue the count.
func TestGroupIndexKeepsNumbersAcrossTheSwitchToAMap(t *testing.T) {
	var x groupIndex
	ps := make([]*Params, 3*linearGroups)
	for i := range ps {
		ps[i] = &Params{Algorithm: FixedWindow, Limit: int64(i + 1), PeriodMs: 1000}
	}
	for round := range 2 {
		for i, p := range ps {
			for _, shadow := range []bool{false, true} {
				want := 2*i + 1
				if shadow {
					want++
				}
				if got := x.of(&LimitCheck{Params: p, Shadow: shadow}); got != want {
					t.Fatalf("round %d: group of limit %d (shadow %v) = %d, want %d", round, i, shadow, got, want)
				}
			}
		}
	}
	if got, want := x.n, 2*len(ps); got != want {
		t.Errorf("%d groups, want %d", got, want)
	}
	for i := 1; i <= x.n; i++ {
		if g := x.group(i); x.of(&LimitCheck{Params: g.params, Shadow: g.shadow}) != i {
			t.Errorf("group(%d) is not the group numbered %d", i, i)
		}
	}
	if x.byKey == nil {
		t.Errorf("no map after %d groups", x.n)
	}
}

// A rule's parameters cost no allocation per call, whatever their size: a call with
// large limits and periods allocates no more than one with values below 256 (which Go
// boxes without allocating). Boxing each int64 made it 10 more for these three rules.
func TestScriptArgsParametersDoNotAllocate(t *testing.T) {
	rules := func(scale int64) []LimitCheck {
		ps := []*Params{
			{Algorithm: GCRA, Limit: 10 * scale, PeriodMs: 10},
			{Algorithm: SlidingWindow, Limit: 10 * scale, PeriodMs: 10 * scale},
			{Algorithm: FixedWindow, Limit: 10 * scale, PeriodMs: 10 * scale},
		}
		checks := make([]LimitCheck, len(ps))
		for i, p := range ps {
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			checks[i] = LimitCheck{Key: "k", Params: p, Cost: 1}
		}
		return checks
	}
	allocs := func(checks []LimitCheck) float64 {
		return testing.AllocsPerRun(100, func() {
			scriptArgs(1, func(int) (int64, []LimitCheck) { return 0, checks })
		})
	}
	small, large := allocs(rules(1)), allocs(rules(100_000))
	if large != small {
		t.Errorf("a call with large parameters makes %v allocations, with small ones %v", large, small)
	}
}
