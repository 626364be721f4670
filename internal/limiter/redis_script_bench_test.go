package limiter

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// BenchmarkScriptParts splits the Redis time of one script call into its parts, as
// Redis itself measures it (INFO commandstats, the EVALSHA's microseconds): a call
// deciding scriptPartsRequests one-limit fixed_window requests, run through the whole
// script and through truncated copies of it, interleaved so that the machine's drift
// hits every variant alike (docs/performance.md, "Where the script's time goes"):
//
//   - empty: `return {}` with the same KEYS and ARGV (Redis's own cost of a call);
//   - functions: the script up to its main part (making its local functions);
//   - +arguments: also converting ARGV and the layout check;
//   - get+set: a script that only runs one GET and one SET ... PX per request;
//   - script: the whole script.
func BenchmarkScriptParts(b *testing.B) {
	srv := testredis.Start(b)
	c := srv.Client()
	ctx := context.Background()
	src := redislua.Request.Source()
	cut := func(marker string) string {
		i := strings.Index(src, marker)
		if i < 0 {
			b.Fatalf("request.lua has no %q", marker)
		}
		return src[:i] + "\nreturn {}\n"
	}
	variants := []struct{ name, src string }{
		{"empty", "return {}"},
		{"functions", cut("\n-- main\n")},
		{"+arguments", cut("\nlocal groups = {}")},
		{"get+set", `local reply = {}
for i = 1, #KEYS do
  redis.call('GET', KEYS[i])
  redis.call('SET', KEYS[i], '0:1800000000000:1700000000000:1', 'PX', 3600000)
  reply[#reply + 1] = 1
end
return reply`},
		{"script", src},
	}
	scripts := make([]*redislua.Script, len(variants))
	for i, v := range variants {
		scripts[i] = redislua.NewScript(v.src)
		if err := c.ScriptLoad(ctx, v.src).Err(); err != nil {
			b.Fatal(v.name, err)
		}
	}
	p := &Params{Algorithm: FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	checks := make([][]LimitCheck, scriptPartsRequests)
	usec := make([]float64, len(variants))
	next := 0
	for b.Loop() {
		for i, s := range scripts {
			before := evalshaMicros(b, c)
			for range scriptPartsCalls {
				for j := range checks {
					next++
					checks[j] = []LimitCheck{{Key: fmt.Sprintf("parts:%d", next%100_000), Params: p, Cost: 1}}
				}
				args := scriptArgs(len(checks), func(j int) (int64, []LimitCheck) { return 0, checks[j] })
				if err := c.Process(ctx, s.Command(ctx, args, false)); err != nil {
					b.Fatal(variants[i].name, err)
				}
			}
			usec[i] += evalshaMicros(b, c) - before
		}
	}
	calls := float64(b.N * scriptPartsCalls)
	for i, v := range variants {
		b.ReportMetric(usec[i]/calls, v.name+"-µs/call")
	}
}

const (
	scriptPartsRequests = 10  // requests per call
	scriptPartsCalls    = 100 // calls per variant per round
)

// evalshaMicros is the total time Redis has spent in EVALSHA (INFO commandstats).
func evalshaMicros(tb testing.TB, c *redis.Client) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatal(err)
				}
				return x
			}
		}
	}
	return 0
}
