package limiter

import (
	"context"
	"fmt"
	"os"
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
	names := make([]string, len(variants))
	srcs := make([]string, len(variants))
	for i, v := range variants {
		names[i], srcs[i] = v.name, v.src
	}
	p := &Params{Algorithm: FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	interleaveScripts(b, testredis.Start(b).Client(), names, srcs, []*Params{p})
}

// BenchmarkScriptCompare measures Redis's time per call of the embedded request.lua
// against other versions of it, interleaved as in BenchmarkScriptParts, for calls of
// requests with one limit and with three (fixed_window, gcra, token_bucket on three
// keys). RATELIMIT_BENCH_SCRIPTS names the other versions' files, comma-separated;
// without it only the embedded script runs. To compare a change with the committed
// script:
//
//	git show HEAD:internal/redislua/request.lua > /tmp/before.lua
//	RATELIMIT_BENCH_SCRIPTS=/tmp/before.lua go test -run XXX -bench ScriptCompare \
//	    -benchtime 30x -count 5 ./internal/limiter/
func BenchmarkScriptCompare(b *testing.B) {
	names, srcs := []string{"embedded"}, []string{redislua.Request.Source()}
	if env := os.Getenv("RATELIMIT_BENCH_SCRIPTS"); env != "" {
		for i, path := range strings.Split(env, ",") {
			src, err := os.ReadFile(path)
			if err != nil {
				b.Fatal(err)
			}
			names, srcs = append(names, fmt.Sprintf("file%d", i+1)), append(srcs, string(src))
		}
	}
	var params []*Params
	for _, alg := range []Algorithm{FixedWindow, GCRA, TokenBucket} {
		p := &Params{Algorithm: alg, Limit: 1 << 20, PeriodMs: 1000}
		if err := p.Validate(); err != nil {
			b.Fatal(err)
		}
		params = append(params, p)
	}
	for _, limits := range []int{1, 3} {
		b.Run(fmt.Sprintf("limits=%d", limits), func(b *testing.B) {
			srv := testredis.Start(b)
			interleaveScripts(b, srv.Client(), names, srcs, params[:limits])
		})
	}
}

// interleaveScripts runs each script in turn for scriptPartsCalls calls of
// scriptPartsRequests requests, every round, so that the machine's drift hits every
// script alike, and reports Redis's own time per call of each (INFO commandstats).
// Every request has one limit per params, cost 1, on keys cycling through 100,000.
func interleaveScripts(b *testing.B, c *redis.Client, names, srcs []string, params []*Params) {
	ctx := context.Background()
	scripts := make([]*redislua.Script, len(srcs))
	for i, src := range srcs {
		scripts[i] = redislua.NewScript(src)
		if err := c.ScriptLoad(ctx, src).Err(); err != nil {
			b.Fatal(names[i], err)
		}
	}
	checks := make([][]LimitCheck, scriptPartsRequests)
	usec := make([]float64, len(scripts))
	next, round := 0, 0
	for b.Loop() {
		round++
		for k := range scripts {
			// Each round starts with the next script: the first of a round runs a
			// few percent slower, and no script may always be first.
			i := (k + round) % len(scripts)
			s := scripts[i]
			before := evalshaMicros(b, c)
			for range scriptPartsCalls {
				for j := range checks {
					next++
					cs := make([]LimitCheck, len(params))
					for l, p := range params {
						cs[l] = LimitCheck{Key: fmt.Sprintf("parts:%d:%d", l, next%100_000), Params: p, Cost: 1}
					}
					checks[j] = cs
				}
				args := scriptArgs(len(checks), func(j int) (int64, []LimitCheck) { return 0, checks[j] })
				if err := c.Process(ctx, s.Command(ctx, args, false)); err != nil {
					b.Fatal(names[i], err)
				}
			}
			usec[i] += evalshaMicros(b, c) - before
		}
	}
	calls := float64(b.N * scriptPartsCalls)
	for i, name := range names {
		b.ReportMetric(usec[i]/calls, name+"-µs/call")
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
