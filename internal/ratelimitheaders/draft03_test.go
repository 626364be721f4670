package ratelimitheaders

import (
	"fmt"
	"math"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// unitSeconds is the window of each unit, as the rule compiler makes it (SPEC §7).
var unitSeconds = map[string]int64{"second": 1, "minute": 60, "hour": 3600, "day": 86400,
	"week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}

func mkStatus(name, unit string, mult, limit, remaining, resetAt int64) decide.Status {
	return decide.Status{
		Limit: &descriptors.Limit{Name: name, Unit: unit, UnitMultiplier: mult,
			Params: limiter.Params{PeriodMs: unitSeconds[unit] * mult * 1000}},
		Decision: limiter.Decision{Allowed: true, Limit: limit, Remaining: remaining, ResetAt: resetAt},
	}
}

func TestDraft03Headers(t *testing.T) {
	const now = 1_000_000
	cases := []struct {
		name     string
		statuses []decide.Status
		want     string // limit | remaining | reset, or "none"
	}{
		{"no status", nil, "none"},
		{"no limit applied", []decide.Status{{}, {}}, "none"},
		{"one", []decide.Status{mkStatus("per-ip", "minute", 1, 5, 4, now+59_999)},
			`5, 5;w=60;name="per-ip" | 4 | 59`},
		{"unnamed, multiplier", []decide.Status{mkStatus("", "second", 2, 4, 0, now+1500)},
			`4, 4;w=2 | 0 | 1`},
		{"first of the lowest wins; statuses without limit skipped", []decide.Status{
			mkStatus("a", "second", 1, 10, 3, now+1000), {}, mkStatus("b", "hour", 1, 20, 3, now+2000), mkStatus("c", "day", 1, 30, 5, now+3000)},
			`10, 10;w=1;name="a", 20;w=3600;name="b", 30;w=86400;name="c" | 3 | 1`},
		{"long units", []decide.Status{mkStatus("w", "week", 1, 1, 1, now), mkStatus("m", "month", 1, 1, 1, now), mkStatus("y", "year", 2, 1, 1, now)},
			`1, 1;w=604800;name="w", 1;w=2592000;name="m", 1;w=63072000;name="y" | 1 | 0`},
		{"reset in the past is 0", []decide.Status{mkStatus("p", "second", 1, 1, 1, now-5000)}, `1, 1;w=1;name="p" | 1 | 0`},
		{"clamped to 32 bits like the RLS proto", []decide.Status{mkStatus("big", "second", 1, math.MaxInt64, 1<<40, now)},
			`4294967295, 4294967295;w=1;name="big" | 4294967295 | 0`},
		{"odd names stay valid header values", []decide.Status{mkStatus("a\"b\\c\nd", "second", 1, 1, 0, now)},
			`1, 1;w=1;name="a\"b\\c?d" | 0 | 0`},
		{"unicode name", []decide.Status{mkStatus("débit-☃", "second", 1, 1, 0, now)}, `1, 1;w=1;name="débit-☃" | 0 | 0`},
	}
	for _, tc := range cases {
		hs := Draft03Headers(&decide.Result{Now: now, Statuses: tc.statuses})
		got := "none"
		if hs != nil {
			if len(hs) != 3 || hs[0].Name != "x-ratelimit-limit" || hs[1].Name != "x-ratelimit-remaining" || hs[2].Name != "x-ratelimit-reset" {
				t.Fatalf("%s: header names %v", tc.name, hs)
			}
			got = fmt.Sprintf("%s | %s | %s", hs[0].Value, hs[1].Value, hs[2].Value)
		}
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}
