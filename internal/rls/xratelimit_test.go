package rls

import (
	"context"
	"fmt"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// envoyUnitSeconds is Envoy's convertRateLimitUnit: the seconds of a current_limit unit
// (a month 30 days, a year 365), 0 for UNKNOWN.
var envoyUnitSeconds = map[rlsv3.RateLimitResponse_RateLimit_Unit]uint64{
	rlsv3.RateLimitResponse_RateLimit_SECOND: 1, rlsv3.RateLimitResponse_RateLimit_MINUTE: 60,
	rlsv3.RateLimitResponse_RateLimit_HOUR: 3600, rlsv3.RateLimitResponse_RateLimit_DAY: 86400,
	rlsv3.RateLimitResponse_RateLimit_WEEK: 7 * 86400, rlsv3.RateLimitResponse_RateLimit_MONTH: 30 * 86400,
	rlsv3.RateLimitResponse_RateLimit_YEAR: 365 * 86400,
}

// envoyXRateLimit renders X-RateLimit-Limit | -Remaining | -Reset from a ShouldRateLimit
// answer the way Envoy's rate-limit filter does with enable_x_ratelimit_headers:
// DRAFT_VERSION_03 (XRateLimitHeaderUtils): the first status with the lowest
// limit_remaining among those with a current_limit; one "<rpu>;w=<unit s × multiplier>
// [;name="<name>"]" per status with a current_limit whose unit Envoy knows; the reset
// is duration_until_reset's whole seconds. "none" when no status has a current_limit.
func envoyXRateLimit(resp *rlsv3.RateLimitResponse) string {
	var top *rlsv3.RateLimitResponse_DescriptorStatus
	policies := ""
	for _, st := range resp.GetStatuses() {
		cl := st.GetCurrentLimit()
		if cl == nil {
			continue
		}
		if top == nil || st.GetLimitRemaining() < top.GetLimitRemaining() {
			top = st
		}
		mult := uint64(1)
		if m := cl.GetUnitMultiplier(); m != nil {
			mult = uint64(m.GetValue())
		}
		w := envoyUnitSeconds[cl.GetUnit()] * mult
		if w == 0 {
			continue
		}
		policies += fmt.Sprintf(", %d;w=%d", cl.GetRequestsPerUnit(), w)
		if cl.GetName() != "" {
			policies += fmt.Sprintf(";name=%q", cl.GetName())
		}
	}
	if top == nil {
		return "none"
	}
	return fmt.Sprintf("%d%s | %d | %d", top.GetCurrentLimit().GetRequestsPerUnit(), policies,
		top.GetLimitRemaining(), top.GetDurationUntilReset().GetSeconds())
}

// draft03 is ratelimitheaders.Draft03Headers (what the ext_authz door sends) in
// envoyXRateLimit's form.
func draft03(res *decide.Result) string {
	hs := ratelimitheaders.Draft03Headers(res)
	if hs == nil {
		return "none"
	}
	return hs[0].Value + " | " + hs[1].Value + " | " + hs[2].Value
}

// Names without `"` or `\`, which Envoy would copy into the header unescaped and
// Draft03Headers escapes (its one intended difference).
const xRateLimitRules = `
domain: x
descriptors:
  - key: fixed
    rate_limit: {name: fixed, unit: minute, requests_per_unit: 3}
  - key: gcra
    rate_limit: {name: gcra, unit: minute, requests_per_unit: 600, algorithm: gcra, burst: 20}
  - key: bucket
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: token_bucket, burst: 5}
  - key: week
    rate_limit: {name: week, unit: week, requests_per_unit: 3}
  - key: slow
    rate_limit: {name: slow, unit: year, requests_per_unit: 1, algorithm: token_bucket, burst: 3}
  - key: two
    rate_limits:
      - {name: two-second, unit: second, requests_per_unit: 2}
      - {name: two-hours, unit: hour, unit_multiplier: 3, requests_per_unit: 4}
  - key: sliding
    rate_limit: {name: sliding, unit: second, unit_multiplier: 2, requests_per_unit: 4, algorithm: sliding_window, buckets: 4}
  - key: log
    rate_limit: {name: log, unit: minute, requests_per_unit: 2, algorithm: sliding_window_log}
  - key: budget
    rate_limit: {name: budget, unit: minute, requests_per_unit: 10, algorithm: token_budget}
  - key: huge
    rate_limit: {name: huge, unit: hour, requests_per_unit: 4294967296}
  - key: quota
    quota_mode: true
    rate_limit: {name: quota, unit: minute, requests_per_unit: 1}
  - key: shadow
    shadow_mode: true
    rate_limit: {name: shadow, unit: minute, requests_per_unit: 1}
  - key: free
    rate_limit: {unlimited: true}
`

// xdesc is one request descriptor: a key of xRateLimitRules (or none of them), with
// its own hits_addend when hits ≥ 0 and a limit override of perMinute per 2 minutes
// when perMinute > 0.
type xdesc struct {
	key       string
	hits      int64
	perMinute uint32
}

func (x xdesc) proto() *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: x.key, Value: "v"}}}
	if x.hits >= 0 {
		d.HitsAddend = wrapperspb.UInt64(uint64(x.hits))
	}
	if x.perMinute > 0 {
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: x.perMinute,
			Unit: typev3.RateLimitUnit_MINUTE, UnitMultiplier: wrapperspb.UInt32(2)}
	}
	return d
}

// The ext_authz door's X-RateLimit-* (ratelimitheaders.Draft03Headers) are what Envoy
// renders from ShouldRateLimit's answer to the same decision, whatever the answer
// holds: every algorithm, derived and multiplied windows, weeks, several limits and
// descriptors (ties go to the first), denials, costs, overrides, quota mode, shadow
// mode, unlimited and unmatched descriptors, limits past 32 bits, sub-second resets.
func TestDraft03HeadersAreEnvoysRendering(t *testing.T) {
	const own = -1 // no hits_addend of its own
	for _, tc := range []struct {
		name  string
		hits  uint32 // the request's hits_addend
		descs []xdesc
		times int // sent this many times, 250 ms apart
	}{
		{"fixed window, to the denial", 0, []xdesc{{"fixed", own, 0}}, 5},
		{"gcra with a burst: a derived window", 0, []xdesc{{"gcra", own, 0}}, 3},
		{"token bucket, unnamed, sub-second resets", 2, []xdesc{{"bucket", own, 0}}, 4},
		{"a rule in weeks", 0, []xdesc{{"week", own, 0}}, 2},
		{"a derived window of years", 0, []xdesc{{"slow", own, 0}}, 4},
		{"two limits on one descriptor", 0, []xdesc{{"two", own, 0}}, 5},
		{"sliding window over 2 s", 1, []xdesc{{"sliding", own, 0}}, 6},
		{"sliding log and budget side by side", 0, []xdesc{{"log", own, 0}, {"budget", 4, 0}}, 4},
		{"ties go to the first", 0, []xdesc{{"fixed", own, 0}, {"week", own, 0}}, 4},
		{"limits past 32 bits", 0, []xdesc{{"huge", 0, 0}, {"huge", 2, 0}}, 2},
		{"unmatched, unlimited and shadow beside a limit", 0,
			[]xdesc{{"none", own, 0}, {"free", own, 0}, {"shadow", own, 0}, {"fixed", own, 0}}, 4},
		{"nothing reported", 0, []xdesc{{"none", own, 0}, {"free", own, 0}, {"shadow", own, 0}}, 2},
		{"quota mode over its limit", 0, []xdesc{{"quota", own, 0}, {"fixed", own, 0}}, 3},
		{"check-only peeks", 0, []xdesc{{"fixed", 0, 0}, {"gcra", 0, 0}}, 2},
		{"overrides with a multiplier, matched and unmatched", 0,
			[]xdesc{{"gcra", own, 2}, {"none", own, 3}, {"fixed", own, 0}}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := descriptors.Parse("x.yaml", []byte(xRateLimitRules))
			if err != nil {
				t.Fatal(err)
			}
			clock := int64(1_700_000_000_123) // not on a second: resets have a fraction
			engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return clock }})
			t.Cleanup(func() { engine.Close() })
			d := decide.New(rs, engine, decide.Options{Keys: storekey.New("x:", 0)})
			s := New(d, ratelimitheaders.Options{}, nil)
			in := &rlsv3.RateLimitRequest{Domain: "x", HitsAddend: tc.hits}
			for _, x := range tc.descs {
				in.Descriptors = append(in.Descriptors, x.proto())
			}
			for i := range tc.times {
				res, err := d.Decide(context.Background(), fromProto(in))
				if err != nil {
					t.Fatal(err)
				}
				envoy, ours := envoyXRateLimit(s.toProto(in, res)), draft03(res)
				if ours != envoy {
					t.Errorf("request %d: Draft03Headers %q, Envoy renders %q", i+1, ours, envoy)
				}
				clock += 250
			}
		})
	}
}
