package limiter

import (
	"regexp"
	"strconv"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
)

// request.lua cannot import the limiter's bounds, so it repeats them as constants. A
// bound changed on one side only would let the script refuse calls the engine makes
// (or accept ones Validate never lets through), so each copy is compared with its
// source here.
func TestScriptBoundsMatchTheLimiter(t *testing.T) {
	want := map[string]int64{
		"RETRY_CAP":     RetryCapMs,
		"MAX_AHEAD":     maxAheadMs,
		"MAX_LIMIT":     MaxLimit,
		"MAX_COST":      MaxCost,
		"MAX_PERIOD":    MaxPeriodMs,
		"MAX_LOG_LIMIT": MaxLogLimit,
		"MAX_BUCKETS":   MaxBuckets,
		"MAX_NOW":       MaxNowMs,
		"GROUP":         redislua.ArgsPerGroup,
	}
	defined := regexp.MustCompile(`(?m)^local ([A-Z_]+) = (\d+)\b`)
	got := map[string]int64{}
	for _, m := range defined.FindAllStringSubmatch(redislua.Request.Source(), -1) {
		v, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			t.Fatalf("request.lua: %s = %s: %v", m[1], m[2], err)
		}
		got[m[1]] = v
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("request.lua does not define %s (= %d) as a number", name, w)
		} else if g != w {
			t.Errorf("request.lua: %s = %d, the limiter's bound is %d", name, g, w)
		}
	}
}
