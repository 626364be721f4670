package rls_test

import (
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A request's limit override is enforced in the unit it names, for every unit Envoy can
// send (SPEC §6: the override replaces the configured limit): current_limit reports
// that unit and multiplier, and the window it resets with is that unit's length (an
// override on an unmatched descriptor is a fixed window, aligned to the epoch).
func TestLimitOverrideKeepsItsUnit(t *testing.T) {
	f := start(t, false)
	const day = int64(86_400_000)
	for _, c := range []struct {
		unit   typev3.RateLimitUnit
		want   rlsv3.RateLimitResponse_RateLimit_Unit
		unitMs int64
	}{
		{typev3.RateLimitUnit_SECOND, rlsv3.RateLimitResponse_RateLimit_SECOND, 1000},
		{typev3.RateLimitUnit_MINUTE, rlsv3.RateLimitResponse_RateLimit_MINUTE, 60_000},
		{typev3.RateLimitUnit_HOUR, rlsv3.RateLimitResponse_RateLimit_HOUR, 3_600_000},
		{typev3.RateLimitUnit_DAY, rlsv3.RateLimitResponse_RateLimit_DAY, day},
		{typev3.RateLimitUnit_MONTH, rlsv3.RateLimitResponse_RateLimit_MONTH, 30 * day},
		{typev3.RateLimitUnit_YEAR, rlsv3.RateLimitResponse_RateLimit_YEAR, 365 * day},
	} {
		d := desc("unknown", c.unit.String()) // a descriptor no rule matches: its own state per unit
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 7, Unit: c.unit,
			UnitMultiplier: wrapperspb.UInt32(2)}
		r := f.call(t, "test", 0, d)
		st := r.Statuses[0]
		cl := st.GetCurrentLimit()
		if st.Code != ok || cl.GetUnit() != c.want || cl.GetUnitMultiplier().GetValue() != 2 ||
			cl.GetRequestsPerUnit() != 7 || st.LimitRemaining != 6 {
			t.Errorf("an override of 7 per 2 × %v: %v, want OK with 6 left of 7 per %v × 2", c.unit, st, c.want)
			continue
		}
		window := 2 * c.unitMs
		wantReset := (now/window)*window + window - now
		if got := st.GetDurationUntilReset().AsDuration().Milliseconds(); got != wantReset {
			t.Errorf("an override of 7 per 2 × %v resets in %d ms, want %d (a window of %d ms)", c.unit, got, wantReset, window)
		}
	}
}
