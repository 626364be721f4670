package descriptors

import (
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// The window algorithms report their own unit and multiplier (Limit.ReportedWindow),
// not the largest unit that divides the period.
func TestReportedWindowKeepsTheRulesUnit(t *testing.T) {
	for _, tc := range []struct {
		unit string
		mult int64
		want Window
	}{
		{"week", 1, Window{Unit: "week", Multiplier: 1, Seconds: 604_800}},
		{"minute", 60, Window{Unit: "minute", Multiplier: 60, Seconds: 3600}},
		{"day", 30, Window{Unit: "day", Multiplier: 30, Seconds: 2_592_000}},
	} {
		ms := unitMs[tc.unit] * tc.mult
		l := &Limit{Unit: tc.unit, UnitMultiplier: tc.mult, RequestsPerUnit: 5,
			Params: limiter.Params{Algorithm: limiter.FixedWindow, Limit: 5, PeriodMs: ms}}
		if err := l.Params.Validate(); err != nil {
			t.Fatal(err)
		}
		if got := l.ReportedWindow(); got != tc.want {
			t.Errorf("%s × %d: %+v, want %+v", tc.unit, tc.mult, got, tc.want)
		}
	}
}

// A refill window of exactly 2^32 − 1 seconds still fits current_limit's uint32
// multiplier: it is reported as SECOND × 4294967295, not rounded to years.
func TestReportedWindowAtTheUint32Bound(t *testing.T) {
	l := &Limit{Unit: "second", UnitMultiplier: 286_331_153, RequestsPerUnit: 1,
		Params: limiter.Params{Algorithm: limiter.TokenBucket, Limit: 1, PeriodMs: 286_331_153_000, Burst: 15}}
	if err := l.Params.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Window{Unit: "second", Multiplier: 4_294_967_295, Seconds: 4_294_967_295}
	if got := l.ReportedWindow(); got != want {
		t.Errorf("15 × 286,331,153 s: %+v, want %+v", got, want)
	}
}
