package decide

import (
	"context"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// fieldsDecider's clock, 1_700_000_000_000, is 20 s into its minute and on a second.
// slow's denial would wait 40 s, to the end of its minute; fast's 1 s.
const shadowRules = `
domain: d
descriptors:
  - key: slow
    shadow_mode: true
    rate_limit: {name: slow, unit: minute, requests_per_unit: 1}
  - key: fast
    rate_limit: {name: fast, unit: second, requests_per_unit: 1}
`

// A shadow-mode limit never denies (SPEC §5.4): neither does it show in a status nor
// does a request wait for it, even when it denies with a longer wait than the enforced
// limit that denied; and the global switch makes every limit so.
func TestShadowLimitsAreNeverReported(t *testing.T) {
	both := [][]string{kv("slow", "x"), kv("fast", "x")}
	for _, tc := range []struct {
		name         string
		global       bool
		descs        [][]string
		denied       bool
		waitFor      string // "" = none
		retryAfterMs int64
	}{
		// second request: fast denies (1 s to the next second), slow (shadow) would
		// deny too, with 40 s to the end of its minute
		{"descriptor shadow_mode", false, both, true, "fast", 1000},
		{"global shadow mode", true, [][]string{kv("fast", "x")}, false, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := reconfigured(fieldsDecider(t, shadowRules), func(o *Options) { o.Shadow = tc.global })
			res := runSteps(t, d, []step{{descs: tc.descs}, {descs: tc.descs, denied: tc.denied}})[1]
			for i, st := range res.Statuses {
				if shadow := tc.global || tc.descs[i][0] == "slow"; shadow && (st.OverLimit || st.Limit != nil) {
					t.Errorf("shadow descriptor %v reported: over %v, limit %+v", tc.descs[i], st.OverLimit, st.Limit)
				}
			}
			switch {
			case tc.waitFor == "" && res.WaitFor != nil:
				t.Errorf("waits for %s, want nothing", res.WaitFor.Limit.Name)
			case tc.waitFor != "" && (res.WaitFor == nil || res.WaitFor.Limit.Name != tc.waitFor):
				t.Errorf("waits for %+v, want %s", res.WaitFor, tc.waitFor)
			}
			if got := res.RetryAfterMs(); got != tc.retryAfterMs {
				t.Errorf("retry after %d ms, want %d", got, tc.retryAfterMs)
			}
		})
	}
}

// A request override keeps the matched limit's algorithm (applyOverride), and a window
// of exactly the longest period, 10 years, is applied, not ignored.
func TestOverrideKeepsAlgorithmAndTakesTheLongestWindow(t *testing.T) {
	d := fieldsDecider(t, `
domain: d
descriptors:
  - key: smooth
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: gcra}
  - key: wide
    rate_limit: {unit: second, requests_per_unit: 100}
`)
	for _, tc := range []struct {
		name  string
		key   string
		o     Override
		algo  limiter.Algorithm
		third limiter.Decision // the third request at the same ms
	}{
		// gcra at 2 per second: T = 500 ms, burst 2; the third waits one T. (As a fixed
		// window it would wait the full second.)
		{"gcra stays gcra", "smooth", Override{RequestsPerUnit: 2, Unit: "second"}, limiter.GCRA,
			limiter.Decision{Limit: 2, Remaining: 0, ResetAt: 1_700_000_001_000, RetryAfterMs: 500}},
		// 2 per 10 years (315,360,000,000 ms, limiter.MaxPeriodMs): the third is denied.
		{"10 years", "wide", Override{RequestsPerUnit: 2, Unit: "year", UnitMultiplier: 10}, limiter.FixedWindow,
			limiter.Decision{Limit: 2, Remaining: 0, ResetAt: 1_892_160_000_000, RetryAfterMs: 192_160_000_000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res *Result
			for i := range 3 {
				var err error
				res, err = d.Decide(context.Background(), &Request{Domain: "d", Descriptors: []Descriptor{
					{Entries: []descriptors.Entry{{Key: tc.key, Value: "x"}}, Override: &tc.o},
				}})
				if err != nil {
					t.Fatal(err)
				}
				if i < 2 && res.OverLimit {
					t.Fatalf("request %d denied: %+v", i+1, res.Statuses[0].Decision)
				}
			}
			st := res.Statuses[0]
			if !res.OverLimit || st.Limit == nil || st.Limit.Params.Algorithm != tc.algo || st.Decision != tc.third {
				t.Fatalf("third request: denied %v, limit %+v, decision %+v; want %s, %+v", res.OverLimit, st.Limit, st.Decision, tc.algo, tc.third)
			}
		})
	}
}
