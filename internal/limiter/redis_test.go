package limiter_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/conformance"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

const (
	throttlekitVectors = "../../../shared/vectors/throttlekit/throttlekit-py.contract.golden-vectors.json"
	projectVectors     = "../../testdata/*.json"
)

// The replay bases of SPEC §8.
var replayBases = []int64{60_000, 1_700_000_040_000}

var runID atomic.Int64

// uniquePrefix gives every replay its own keys in a shared server.
func uniquePrefix(t testing.TB) string {
	return fmt.Sprintf("test:%s:%d:%d", t.Name(), time.Now().UnixNano(), runID.Add(1))
}

// newRedis starts a private server and an engine on it. Timeouts are generous: tests
// assert behaviour, not latency, and run under -race on busy machines.
func newRedis(t testing.TB) (*limiter.RedisEngine, *testredis.Server) {
	t.Helper()
	srv := testredis.Start(t)
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{
		URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, srv
}

func params(t testing.TB, p limiter.Params) *limiter.Params {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return &p
}

func replayFile(t *testing.T, e limiter.Engine, path string, requireSuites bool) {
	t.Helper()
	f, err := conformance.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range replayBases {
		results, err := conformance.Replay(context.Background(), e, f, base, uniquePrefix(t))
		if err != nil {
			t.Fatalf("%s at base %d: %v", filepath.Base(path), base, err)
		}
		checkReplay(t, path, base, results, requireSuites)
	}
}

// checkReplay reports every mismatch of one replay and fails one that replayed nothing
// when suites are required.
func checkReplay(t *testing.T, path string, base int64, results []conformance.Result, requireSuites bool) {
	t.Helper()
	replayed, ops := 0, 0
	for _, r := range results {
		if r.Skipped {
			continue
		}
		replayed++
		ops += r.Ops
		if r.Mismatch != "" {
			t.Errorf("%s base %d: suite %s: %s", filepath.Base(path), base, r.Suite, r.Mismatch)
		}
	}
	if requireSuites && replayed == 0 {
		t.Fatalf("%s: no suite replayed", path)
	}
	t.Logf("%s base %d: %d suites, %d ops replayed", filepath.Base(path), base, replayed, ops)
}

// vectorFiles returns the project's vector files and, when ../shared sits beside the
// repository, throttlekit's. Without them a CI run fails; any other run says so loudly
// and replays the project's only.
func vectorFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(projectVectors)
	if err != nil || len(files) == 0 {
		t.Fatalf("no project vectors at %s: %v", projectVectors, err)
	}
	if _, err := os.Stat(throttlekitVectors); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("THROTTLEKIT VECTORS MISSING under CI: %v", err)
		}
		fmt.Fprintf(os.Stderr, "!!! %s: THROTTLEKIT VECTORS NOT FOUND at %s: replaying the project vectors only\n", t.Name(), throttlekitVectors)
		return files
	}
	return append([]string{throttlekitVectors}, files...)
}

// Every rateLimit and tokenBudget suite of the throttlekit golden vectors replays bit
// for bit through Redis at both bases (its lease suites are out of scope and skipped).
func TestRedisConformanceThrottlekit(t *testing.T) {
	if _, err := os.Stat(throttlekitVectors); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("THROTTLEKIT VECTORS MISSING under CI: %v", err)
		}
		t.Skipf("THROTTLEKIT CONFORMANCE SKIPPED: %v (the shared/ folder must sit beside the repo)", err)
	}
	e, _ := newRedis(t)
	replayFile(t, e, throttlekitVectors, true)
}

// Every project vector file replays bit for bit through Redis at both bases.
func TestRedisConformanceProjectVectors(t *testing.T) {
	paths, err := filepath.Glob(projectVectors)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no project vector files match %s", projectVectors)
	}
	e, _ := newRedis(t)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) { replayFile(t, e, p, true) })
	}
}

// The SHA-1 the engine sends with EVALSHA is the one Redis computes.
func TestRedisScriptSHA(t *testing.T) {
	_, srv := newRedis(t)
	sha, err := srv.Client().ScriptLoad(context.Background(), redislua.Request.Source()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if sha != redislua.Request.SHA1() {
		t.Errorf("Redis computes %s, the engine sends %s", sha, redislua.Request.SHA1())
	}
}

func oneCheck(p *limiter.Params, key string, cost int64) []limiter.LimitCheck {
	return []limiter.LimitCheck{{Key: key, Params: p, Cost: cost}}
}

// After SCRIPT FLUSH the next request still succeeds (NOSCRIPT → EVAL), as it does after
// a Redis restart (a new connection, an empty script cache).
func TestRedisScriptFlushAndRestart(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	checks := oneCheck(p, uniquePrefix(t), 1)
	d := make([]limiter.Decision, 1)
	const now = 1_700_000_000_000
	if _, err := e.Evaluate(ctx, now, checks, d); err != nil {
		t.Fatal(err)
	}
	if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Evaluate(ctx, now, checks, d); err != nil {
		t.Fatalf("after SCRIPT FLUSH: %v", err)
	}
	if d[0].Remaining != 8 {
		t.Errorf("after SCRIPT FLUSH: remaining %d, want 8 (the second call must run exactly once)", d[0].Remaining)
	}

	srv.Restart()
	if _, err := e.Evaluate(ctx, now, checks, d); err != nil {
		t.Fatalf("first request after restart: %v", err)
	}
	if d[0].Remaining != 9 { // a restarted server has no data
		t.Errorf("after restart: remaining %d, want 9", d[0].Remaining)
	}
	if err := e.Ping(ctx); err != nil {
		t.Errorf("Ping after restart: %v", err)
	}
}

// Requests run by EVALSHA (SPEC §9), batched or not. After NOSCRIPT the unbatched
// engine sends the source once (EVAL); the batcher loads the script and sends the
// refused call again by EVALSHA.
func TestRedisRunsByEVALSHA(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			var e *limiter.RedisEngine
			var srv *testredis.Server
			// After a flush, 2 requests: one EVALSHA refused, then the source once, or
			// a SCRIPT LOAD and the refused call again by EVALSHA.
			flushSHA, flushEval, flushLoad := 2, 1, 0
			if batch {
				e, srv = newBatchedRedis(t, 0, 0)
				flushSHA, flushEval, flushLoad = 3, 0, 1
			} else {
				e, srv = newRedis(t)
			}
			ctx := context.Background()
			c := srv.Client()
			calls := func() (sha, src, load int) {
				return commandCalls(t, srv, "evalsha"), commandCalls(t, srv, "eval"), commandCalls(t, srv, "script|load")
			}
			p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 100, PeriodMs: 60_000})
			d := make([]limiter.Decision, 1)
			evaluate := func() {
				if _, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d); err != nil {
					t.Fatal(err)
				}
			}
			evaluate() // loads the script on first use
			c.ConfigResetStat(ctx)
			for range 5 {
				evaluate()
			}
			if sha, src, load := calls(); sha != 5 || src != 0 || load != 0 {
				t.Errorf("5 requests: %d EVALSHA, %d EVAL and %d SCRIPT LOAD, want 5, 0 and 0", sha, src, load)
			}
			c.ScriptFlush(ctx)
			c.ConfigResetStat(ctx)
			evaluate()
			evaluate()
			if sha, src, load := calls(); sha != flushSHA || src != flushEval || load != flushLoad {
				t.Errorf("after SCRIPT FLUSH, 2 requests: %d EVALSHA, %d EVAL and %d SCRIPT LOAD, want %d (one refused), %d and %d",
					sha, src, load, flushSHA, flushEval, flushLoad)
			}
		})
	}
}

// shortReply drops the last value of every script reply, as a script that does not
// match the engine's layout would answer.
type shortReply struct{}

func (shortReply) DialHook(next redis.DialHook) redis.DialHook { return next }

func (shortReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if c, ok := cmd.(*redis.IntSliceCmd); ok && err == nil && len(c.Val()) > 0 {
			c.SetVal(c.Val()[:len(c.Val())-1])
		}
		return err
	}
}

func (shortReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A reply whose length does not fit the request is a store error, batched or not (each
// path checks it once), and says how many values came.
func TestRedisShortReplyIsAStoreError(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			srv := testredis.Start(t)
			opt, err := redis.ParseURL(srv.URL())
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(opt)
			t.Cleanup(func() { _ = c.Close() })
			if err := c.ScriptLoad(context.Background(), redislua.Request.Source()).Err(); err != nil {
				t.Fatal(err) // loaded: the call goes by Process, not the reload's pipeline
			}
			c.AddHook(shortReply{})
			e := limiter.NewRedisEngineFromClient(c)
			if batch {
				e.EnableBatching(0, 0)
			}
			t.Cleanup(func() { _ = e.Close() })
			p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
			checks := oneCheck(p, uniquePrefix(t), 1)
			checks = append(checks, oneCheck(p, uniquePrefix(t), 1)...)
			d := make([]limiter.Decision, len(checks))
			_, err = e.Evaluate(context.Background(), 0, checks, d)
			if !errors.Is(err, limiter.ErrStore) || !strings.Contains(err.Error(), "script reply has 11 values") {
				t.Errorf("a reply one value short: %v, want ErrStore naming 11 values", err)
			}
		})
	}
}

// now = 0 uses the Redis clock: Outcome.Now is Redis TIME and resetAt follows it.
func TestRedisNowZeroUsesRedisTime(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	redisNow := func() int64 {
		tm, err := srv.Client().Time(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixMilli()
	}
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 5, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	before := redisNow()
	out, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d)
	if err != nil {
		t.Fatal(err)
	}
	after := redisNow()
	if out.Now < before || out.Now > after {
		t.Errorf("Outcome.Now %d outside Redis TIME [%d, %d]", out.Now, before, after)
	}
	if d[0].ResetAt <= out.Now || d[0].ResetAt > out.Now+1000 || d[0].ResetAt%1000 != 0 {
		t.Errorf("resetAt %d is not the end of the 1 s window holding %d", d[0].ResetAt, out.Now)
	}
	if d[0].ResetAt-before > 1000 {
		t.Errorf("resetAt %d is more than a second after Redis TIME %d", d[0].ResetAt, before)
	}
	// No checks with now = 0 still reads the Redis clock.
	out, err = e.Evaluate(ctx, 0, nil, nil)
	if err != nil || !out.Allowed || out.Now < before {
		t.Errorf("empty request at now=0: %+v, %v", out, err)
	}
}

type keySnapshot struct {
	dump string
	pttl time.Duration
}

func snapshot(t *testing.T, c *redis.Client, keys []string) []keySnapshot {
	t.Helper()
	ctx := context.Background()
	out := make([]keySnapshot, len(keys))
	for i, k := range keys {
		d, err := c.Dump(ctx, k).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		ttl, err := c.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = keySnapshot{d, ttl}
	}
	return out
}

// allAlgorithms returns one limit of each algorithm with distinct keys, each admitting
// at least 3 units at cost 1.
func allAlgorithms(t testing.TB, prefix string, periodMs int64) []limiter.LimitCheck {
	ps := []limiter.Params{
		{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: periodMs, Burst: 5},
		{Algorithm: limiter.TokenBucket, Limit: 7, PeriodMs: periodMs, Burst: 5},
		{Algorithm: limiter.FixedWindow, Limit: 5, PeriodMs: periodMs},
		{Algorithm: limiter.SlidingWindow, Limit: 5, PeriodMs: periodMs, Buckets: 3},
		{Algorithm: limiter.SlidingWindowLog, Limit: 5, PeriodMs: periodMs},
		{Algorithm: limiter.TokenBudget, Limit: 5, PeriodMs: periodMs},
	}
	checks := make([]limiter.LimitCheck, len(ps))
	for i := range ps {
		checks[i] = limiter.LimitCheck{Key: prefix + ":" + ps[i].Algorithm.String(), Params: params(t, ps[i]), Cost: 1}
	}
	return checks
}

func keysOf(checks []limiter.LimitCheck) []string {
	keys := make([]string, len(checks))
	for i, c := range checks {
		keys[i] = c.Key
	}
	return keys
}

// A denied multi-limit request leaves every key exactly as it was (value and TTL); an
// allowed one writes every key it charged.
func TestRedisDeniedRequestWritesNothing(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	prefix := uniquePrefix(t)
	checks := allAlgorithms(t, prefix, 3_600_000)
	gate := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1, PeriodMs: 3_600_000})
	checks = append(checks, limiter.LimitCheck{Key: prefix + ":gate", Params: gate, Cost: 1})
	keys := keysOf(checks)
	d := make([]limiter.Decision, len(checks))
	// A second into an hour: now+1 below must fall in the gate's window too.
	now := time.Now().UnixMilli()/3_600_000*3_600_000 + 1000

	out, err := e.Evaluate(ctx, now, checks, d)
	if err != nil || !out.Allowed {
		t.Fatalf("first request: %+v %v %+v", out, err, d)
	}
	first := snapshot(t, c, keys)
	for i, s := range first {
		if s.dump == "" || s.pttl <= 0 {
			t.Errorf("allowed request did not write %s with a TTL: %+v", keys[i], s)
		}
	}

	out, err = e.Evaluate(ctx, now+1, checks, d)
	if err != nil {
		t.Fatal(err)
	}
	if out.Allowed || d[len(d)-1].Allowed {
		t.Fatalf("the gate limit should deny: %+v %+v", out, d)
	}
	second := snapshot(t, c, keys)
	for i := range keys {
		if second[i].dump != first[i].dump {
			t.Errorf("denied request changed %s", keys[i])
		}
		if second[i].pttl > first[i].pttl || first[i].pttl-second[i].pttl > 2*time.Second {
			t.Errorf("denied request changed the TTL of %s: %v → %v", keys[i], first[i].pttl, second[i].pttl)
		}
		if i < len(keys)-1 && (!d[i].Allowed || d[i].Remaining == 0) {
			t.Errorf("limit %d should report its uncharged q=0 decision: %+v", i, d[i])
		}
	}

	// Without the gate every limit allows and every key changes.
	checks = checks[:len(checks)-1]
	out, err = e.Evaluate(ctx, now+2, checks, d[:len(checks)])
	if err != nil || !out.Allowed {
		t.Fatalf("third request: %+v %v", out, err)
	}
	third := snapshot(t, c, keys[:len(checks)])
	for i := range checks {
		if third[i].dump == first[i].dump {
			t.Errorf("allowed request did not write %s", keys[i])
		}
	}
}

// Every written key has a TTL, and once the longest state has gone cold (plus the 1 s
// floor) nothing is left: every key under the prefix, whatever the script wrote, has a
// TTL no longer than that. (Watching Redis expire them would test Redis.)
func TestRedisTTLs(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	prefix := uniquePrefix(t)
	checks := allAlgorithms(t, prefix, 300)
	d := make([]limiter.Decision, len(checks))
	for i := range checks {
		// One algorithm at a time, then all together, with the Redis clock and with an
		// explicit now.
		if _, err := e.Evaluate(ctx, 0, checks[i:i+1], d[:1]); err != nil {
			t.Fatal(err)
		}
		ttl, err := c.PTTL(ctx, checks[i].Key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 {
			t.Errorf("%s: PTTL %v after a write, want > 0", checks[i].Key, ttl)
		}
	}
	if _, err := e.Evaluate(ctx, time.Now().UnixMilli(), checks, d); err != nil {
		t.Fatal(err)
	}
	for _, k := range keysOf(checks) {
		if ttl := c.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 1100*time.Millisecond {
			t.Errorf("%s: PTTL %v, want the 1 s floor", k, ttl)
		}
	}
	written, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range written {
		// PTTL answers -1 for a key without a TTL, -2 for one that expired since KEYS.
		ms, err := c.Do(ctx, "PTTL", k).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if ms == -1 || ms > 1100 {
			t.Errorf("%s: PTTL %d ms: it would outlive every window going idle (the 1 s floor)", k, ms)
		}
	}
}

// TTLs follow the state: a long window keeps its key for that window.
func TestRedisTTLFollowsState(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	p := params(t, limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: 3, PeriodMs: 3_600_000})
	key := uniquePrefix(t)
	d := make([]limiter.Decision, 1)
	if _, err := e.Evaluate(ctx, 0, oneCheck(p, key, 1), d); err != nil {
		t.Fatal(err)
	}
	ttl := srv.Client().PTTL(ctx, key).Val()
	if ttl < 3_590*time.Second || ttl > 3_600*time.Second {
		t.Errorf("log key PTTL %v, want about one hour", ttl)
	}
}

// With the server down, Evaluate fails fast with ErrStore (default timeouts).
func TestRedisDown(t *testing.T) {
	srv := testredis.Start(t)
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	checks := oneCheck(p, uniquePrefix(t), 1)
	d := make([]limiter.Decision, 1)
	// Warm the pool (retrying: the default 8 ms timeouts may trip on a busy machine).
	for i := 0; ; i++ {
		if _, err = e.Evaluate(ctx, 0, checks, d); err == nil || i == 20 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	for range 3 {
		// Fast: the refused connection itself ends the call, not a timeout run out.
		_, err := e.Evaluate(ctx, 0, checks, d)
		if !errors.Is(err, limiter.ErrStore) || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("with Redis down: err %v, want ErrStore from the refused connection", err)
		}
	}
	if err := e.Ping(ctx); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("Ping with Redis down: %v", err)
	}
}

// A Redis that answers PING but refuses writes, out of memory under noeviction or a
// replica, refuses every script call: with a ProbeKey, Ping fails too (readiness and the
// breaker's probe see the outage), naming the refusal; without one it passes.
func TestRedisPingChecksWrites(t *testing.T) {
	srv := testredis.Start(t)
	c, ctx := srv.Client(), context.Background()
	probing, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ProbeKey: "rlx:probe",
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer probing.Close()
	plain, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := probing.Ping(ctx); err != nil {
		t.Fatalf("a healthy Redis: %v", err)
	}
	if ttl := c.PTTL(ctx, "rlx:probe").Val(); ttl <= 0 || ttl > time.Second {
		t.Errorf("the probe key's TTL is %v, want at most 1 s", ttl)
	}
	checks := oneCheck(params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000}), uniquePrefix(t), 1)
	for _, tc := range []struct {
		name          string
		breaks, mends [][]any
		refusal       string
	}{
		{"out of memory", [][]any{{"CONFIG", "SET", "maxmemory-policy", "noeviction"}, {"CONFIG", "SET", "maxmemory", "1"}},
			[][]any{{"CONFIG", "SET", "maxmemory", "0"}}, "OOM"},
		{"a replica", [][]any{{"REPLICAOF", "127.0.0.1", "1"}}, [][]any{{"REPLICAOF", "NO", "ONE"}}, "READONLY"},
	} {
		for _, cmd := range tc.breaks {
			if err := c.Do(ctx, cmd...).Err(); err != nil {
				t.Fatal(tc.name, cmd, err)
			}
		}
		if _, err := probing.Evaluate(ctx, 0, checks, make([]limiter.Decision, 1)); err == nil || !strings.Contains(err.Error(), tc.refusal) {
			t.Errorf("%s: a script call: %v, want the %s refusal", tc.name, err, tc.refusal)
		}
		if err := probing.Ping(ctx); !errors.Is(err, limiter.ErrStore) || !strings.Contains(err.Error(), tc.refusal) {
			t.Errorf("%s: Ping with a ProbeKey: %v, want ErrStore naming %s", tc.name, err, tc.refusal)
		}
		if err := plain.Ping(ctx); err != nil {
			t.Errorf("%s: Ping without a ProbeKey: %v, want nil (PING answers)", tc.name, err)
		}
		for _, cmd := range tc.mends {
			if err := c.Do(ctx, cmd...).Err(); err != nil {
				t.Fatal(tc.name, cmd, err)
			}
		}
		if err := probing.Ping(ctx); err != nil {
			t.Errorf("%s mended: %v", tc.name, err)
		}
	}
}

// A store that answers PING and takes writes but cannot run the script (an ACL user
// without EVALSHA, a renamed command), or a command inside it, fails every call; Ping
// must say so, or readiness says ready and the circuit breaker closes on every probe,
// only to open again.
func TestRedisPingChecksTheScriptRuns(t *testing.T) {
	srv := testredis.Start(t)
	c, ctx := srv.Client(), context.Background()
	if err := c.Do(ctx, "ACL", "SETUSER", "noscript", "on", ">pw", "~*", "+@read", "+@write", "+@connection").Err(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("noscript", "pw")
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: u.String(), ProbeKey: "rlx:probe", ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	checks := oneCheck(params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000}), uniquePrefix(t), 1)
	if _, err := e.Evaluate(ctx, 0, checks, make([]limiter.Decision, 1)); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("a script call as the user: %v, want NOPERM", err)
	}
	if err := e.Ping(ctx); !errors.Is(err, limiter.ErrStore) || !strings.Contains(err.Error(), "script does not run") {
		t.Errorf("Ping: %v, want ErrStore saying the script does not run", err)
	}
	// Allowed to run the script but not TIME, which the script calls for the store's
	// clock: every decision fails, and so must Ping (a script call without a request
	// would not reach TIME).
	if err := c.Do(ctx, "ACL", "SETUSER", "noscript", "+evalsha", "+eval").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Evaluate(ctx, 0, checks, make([]limiter.Decision, 1)); err == nil {
		t.Fatal("a decision by a user without TIME succeeded")
	}
	if err := e.Ping(ctx); !errors.Is(err, limiter.ErrStore) || !strings.Contains(err.Error(), "script does not run") {
		t.Errorf("Ping by a user without TIME: %v, want ErrStore saying the script does not run", err)
	}
	if err := c.Do(ctx, "ACL", "SETUSER", "noscript", "+time").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Evaluate(ctx, 0, checks, make([]limiter.Decision, 1)); err != nil {
		t.Errorf("a decision once the user may run scripts and TIME: %v", err)
	}
	if err := e.Ping(ctx); err != nil {
		t.Errorf("Ping once the user may run scripts and TIME: %v", err)
	}
}

// A key of another Redis type, or state written by another algorithm, reads as cold
// and is overwritten.
func TestRedisForeignState(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	prefix := uniquePrefix(t)
	const now = 1_700_000_000_000
	for _, check := range allAlgorithms(t, prefix, 60_000) {
		setups := []func(k string) error{
			func(k string) error { return c.Set(ctx, k, "junk", 0).Err() },
			func(k string) error { return c.Set(ctx, k, "9:99999999999999:1:2", 0).Err() },                 // no such algorithm
			func(k string) error { return c.Set(ctx, k, "1:99999999999999:1.5e3:2", 0).Err() },             // not an integer
			func(k string) error { return c.Set(ctx, k, "1:99999999999999:1:99999999999999999", 0).Err() }, // above 2^53
			func(k string) error { return c.Set(ctx, k, "0:99999999999999:0:100", 0).Err() },               // fixed_window's, spent
			func(k string) error { return c.Set(ctx, k, "5:99999999999999:0:100", 0).Err() },               // token_budget's, spent
			func(k string) error { return c.ZAdd(ctx, k, redis.Z{Score: 1, Member: "x"}).Err() },
			func(k string) error { return c.HSet(ctx, k, "k", "99", "A", "1", "B", "2", "X", "0").Err() },
			func(k string) error { return c.HSet(ctx, k, "k", "1", "A", "1.5e3").Err() },
			func(k string) error { return c.HSet(ctx, k, "zzz", "1", "12", "x").Err() },
			func(k string) error { return c.HSet(ctx, k, "zzz", "1").Err() },
		}
		// Another string algorithm's state that denies everything now under its own
		// algorithm (a rule whose algorithm changed keeps its key): cold for every other.
		for code, v := range map[limiter.Algorithm]string{
			limiter.FixedWindow: "0:1700000040000:1699999980000:1000000", // this window, far over
			limiter.TokenBudget: "5:1700000040000:1699999980000:1000000",
			limiter.GCRA:        "1:1700000100000:1700000100000:0", // TAT 100 s ahead
			limiter.TokenBucket: "2:1700000100000:1700000000000:0", // empty now
		} {
			if code != check.Params.Algorithm {
				setups = append(setups, func(k string) error { return c.Set(ctx, k, v, 0).Err() })
				continue
			}
			// Control: under its own algorithm the same state is live and denies.
			c.Set(ctx, check.Key, v, 0)
			d := make([]limiter.Decision, 1)
			if _, err := e.Evaluate(ctx, now, []limiter.LimitCheck{check}, d); err != nil {
				t.Fatal(err)
			}
			if d[0].Allowed {
				t.Errorf("%s: its own algorithm's spent state %q allowed: %+v", check.Key, v, d[0])
			}
		}
		for _, setup := range setups {
			c.Del(ctx, check.Key)
			if err := setup(check.Key); err != nil {
				t.Fatal(err)
			}
			d := make([]limiter.Decision, 1)
			if _, err := e.Evaluate(ctx, now, []limiter.LimitCheck{check}, d); err != nil {
				t.Fatalf("%s: %v", check.Key, err)
			}
			cold := make([]limiter.Decision, 1)
			m := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
			if _, err := m.Evaluate(ctx, now, []limiter.LimitCheck{check}, cold); err != nil {
				t.Fatal(err)
			}
			m.Close()
			if d[0] != cold[0] {
				t.Errorf("%s over foreign state: %+v, want the cold-key decision %+v", check.Key, d[0], cold[0])
			}
			if check.Params.Algorithm == limiter.SlidingWindowLog {
				if typ := c.Type(ctx, check.Key).Val(); typ != "zset" {
					t.Errorf("%s: type %s after a write, want zset", check.Key, typ)
				}
				if members := c.ZRange(ctx, check.Key, 0, -1).Val(); len(members) != 2 || members[0] != "X" {
					t.Errorf("%s: members %v after one unit on a cold key", check.Key, members)
				}
				continue
			}
			code := fmt.Sprint(int(check.Params.Algorithm))
			if check.Params.Algorithm != limiter.SlidingWindow {
				if typ := c.Type(ctx, check.Key).Val(); typ != "string" {
					t.Errorf("%s: type %s after a write, want string", check.Key, typ)
				}
				if v := c.Get(ctx, check.Key).Val(); !strings.HasPrefix(v, code+":") || strings.Count(v, ":") != 3 {
					t.Errorf("%s: state %q after a write, want k:X:A:B with k = %s", check.Key, v, code)
				}
				continue
			}
			if typ := c.Type(ctx, check.Key).Val(); typ != "hash" {
				t.Errorf("%s: type %s after a write, want hash", check.Key, typ)
			}
			fields := c.HGetAll(ctx, check.Key).Val()
			for f := range fields { // k, X and sub-bucket indexes only: another writer's fields go
				if _, err := strconv.Atoi(f); err != nil && f != "k" && f != "X" {
					t.Errorf("%s: field %q kept: %v", check.Key, f, fields)
				}
			}
			if fields["k"] != code {
				t.Errorf("%s: algorithm tag %q", check.Key, fields["k"])
			}
		}
	}
}

// A long sliding_window_log (the 1,000 cap, hundreds of distinct stamps) agrees with
// the memory engine, and its expired stamps are dropped from the ZSET.
func TestRedisSlidingLogLarge(t *testing.T) {
	e, srv := newRedis(t)
	ctx := context.Background()
	p := params(t, limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: limiter.MaxLogLimit, PeriodMs: 2_500}) // ~500 units/s fill it in 2 s
	key := uniquePrefix(t)
	m := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer m.Close()
	const base = 1_700_000_000_000
	d, want := make([]limiter.Decision, 1), make([]limiter.Decision, 1)
	var slowest time.Duration
	denied := 0
	for i := int64(0); i < 4000; i++ {
		now := base + 10*i
		checks := oneCheck(p, key, 1+i%9)
		start := time.Now()
		out, err := e.Evaluate(ctx, now, checks, d)
		if took := time.Since(start); took > slowest {
			slowest = took
		}
		if err != nil {
			t.Fatal(err)
		}
		wantOut, _ := m.Evaluate(ctx, now, checks, want)
		if out != wantOut || d[0] != want[0] {
			t.Fatalf("op %d: redis %+v %+v, memory %+v %+v", i, out, d[0], wantOut, want[0])
		}
		if !out.Allowed {
			denied++
		}
	}
	n := srv.Client().ZCard(ctx, key).Val()
	if n > limiter.MaxLogLimit+1 || n < limiter.MaxLogLimit/2 {
		t.Errorf("log has %d members, want at most the limit plus X", n)
	}
	if denied == 0 {
		t.Error("the log never reached its limit")
	}
	t.Logf("4,000 requests (%d denied) on a log of up to %d units; slowest call %v", denied, limiter.MaxLogLimit, slowest)
}

func TestNewRedisEngineOptions(t *testing.T) {
	bad := []limiter.RedisOptions{
		{},
		{URL: "http://localhost:6379"},
		{URL: "redis://localhost:6379", TLSCAFile: "/nonexistent"},
		{URL: "rediss://localhost:6379", TLSCAFile: "/nonexistent"},
		{URL: "rediss://localhost:6379", TLSCertFile: "a.pem"},
		{URL: "redis://localhost:6379", PoolSize: -1},
		{URL: "redis://localhost:6379?max_retries=2"}, // a retried script call could charge twice
		{URL: "redis://localhost:6379?addr=localhost:6380&max_retries=2", Mode: limiter.RedisCluster},
	}
	for _, o := range bad {
		if e, err := limiter.NewRedisEngine(o); err == nil {
			e.Close()
			t.Errorf("%+v: no error", o)
		}
	}
	for _, u := range []string{"redis://localhost:6379", "redis://user:pass@localhost:6379/2", "rediss://localhost:6380/0?read_timeout=20ms"} {
		e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: u, TLSInsecureSkipVerify: strings.HasPrefix(u, "rediss")})
		if err != nil {
			t.Errorf("%s: %v", u, err)
			continue
		}
		e.Close()
	}
}

// A malformed URL is refused without repeating it: it may carry a password, and the
// error is logged.
func TestRedisURLErrorsHideTheURL(t *testing.T) {
	for _, o := range []limiter.RedisOptions{
		{URL: "redis://user:TOPSECRET@h%:6379"},
		{URL: "redis://user:TOPSECRET@h%:6379", Mode: limiter.RedisCluster},
		{URL: "redis://s1 :26379?password=TOPSECRET", Mode: limiter.RedisSentinel, SentinelMaster: "m"},
	} {
		e, err := limiter.NewRedisEngine(o)
		if err == nil {
			e.Close()
			t.Errorf("%s (%s): no error", o.URL, o.Mode)
			continue
		}
		if strings.Contains(err.Error(), "TOPSECRET") {
			t.Errorf("%s mode: the error shows the password: %v", o.Mode, err)
		}
	}
}

// A URL go-redis refuses is reported with one "redis: " and go-redis's reason, not
// "redis: URL: redis: invalid URL scheme: http".
func TestRedisURLErrorsSayRedisOnce(t *testing.T) {
	for _, tc := range []struct {
		o    limiter.RedisOptions
		want string
	}{
		{limiter.RedisOptions{URL: "http://h:6379"}, "redis: URL: invalid URL scheme: http"},
		{limiter.RedisOptions{URL: "redis://h:6379?bogus=1"}, "redis: URL: unexpected option: bogus"},
		{limiter.RedisOptions{URL: "redis://h:6379/x"}, `redis: URL: invalid database number: "x"`},
		{limiter.RedisOptions{URL: "redis://user:TOPSECRET@h:x"}, `redis: URL: invalid port ":x" after host`},
		{limiter.RedisOptions{URL: "http://h:1", Mode: limiter.RedisCluster}, "redis: cluster URL: invalid URL scheme: http"},
		{limiter.RedisOptions{URL: "redis://h:1?bogus=1", Mode: limiter.RedisCluster}, "redis: cluster URL: unexpected option: bogus"},
		{limiter.RedisOptions{URL: "http://h:26379?master_name=m", Mode: limiter.RedisSentinel}, "redis: sentinel URL: invalid URL scheme: http"},
		{limiter.RedisOptions{URL: "redis://h:26379?master_name=m&bogus=1", Mode: limiter.RedisSentinel}, "redis: sentinel URL: unexpected option: bogus"},
	} {
		e, err := limiter.NewRedisEngine(tc.o)
		if err == nil {
			e.Close()
			t.Errorf("%s (%s): no error", tc.o.URL, tc.o.Mode)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s (%s): error %q, want %q", tc.o.URL, tc.o.Mode, err, tc.want)
		}
	}
}

// A refused URL's reason never quotes its password, even when an unescaped / # ? or @
// in the password splits the URL at the wrong place and the parser's own reason
// would quote part of it; the engine's error and CheckURL's say the same.
func TestRedisURLErrorsHoldNoSecret(t *testing.T) {
	const encode = "the user information does not parse: percent-encode / # ? @ : and % in the user name and password"
	for _, tc := range []struct {
		url, mode, want string
	}{
		{"redis://app:Xy9/Qk7+SECRET@redis:6379", "", encode},
		{"redis://app:ab#SECRET@redis:6379", "", encode},
		{"redis://app:p@ss/SECRET@redis:6379", "", encode},
		{"redis://app:pa%zzSECRET@redis:6379", "", encode},
		{"redis://SECRET/x@redis:6379", "", encode},
		{"redis://app:SECRET@redis:x", "", `invalid port ":x" after host`},
		{"redis://app:SECRET@redis:6379/x", "", `invalid database number: "x"`},
		{"redis://a:1?addr=b:2&password=SE/CRET&bogus=1", "cluster", "unexpected option: bogus, password"},
		{"redis://s:1?master_name=m&password=SECRET&sentinel_password=SECRET2&bogus=1", "sentinel", "unexpected option: bogus, sentinel_password"},
	} {
		mode := limiter.RedisMode(tc.mode)
		err := limiter.CheckURL(tc.url, mode)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.url, err, tc.want)
		}
		if !limiter.HasSecret(tc.url) {
			t.Errorf("%s: no secret seen", tc.url)
		}
		e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: tc.url, Mode: mode})
		if err == nil {
			e.Close()
			t.Errorf("%s: the engine accepts it", tc.url)
		} else if strings.Contains(err.Error(), "SE") {
			t.Errorf("%s: the engine's error %q holds the secret", tc.url, err)
		}
	}
	if limiter.HasSecret("redis://h:6379/0") || limiter.CheckURL("rediss://u:p%2Fw@h:6379/1", "") != nil {
		t.Error("a URL without a secret seen as one, or a percent-encoded password refused")
	}
}

func TestRedisBadRequest(t *testing.T) {
	e, _ := newRedis(t)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	for _, tc := range []struct {
		now   int64
		check limiter.LimitCheck
	}{
		{-1, limiter.LimitCheck{Key: "k", Params: p, Cost: 1}},
		{limiter.MaxNowMs + 1, limiter.LimitCheck{Key: "k", Params: p, Cost: 1}},
		{1, limiter.LimitCheck{Key: "k", Params: p, Cost: -1}},
		{1, limiter.LimitCheck{Key: "k", Params: p, Cost: limiter.MaxCost + 1}},
		{1, limiter.LimitCheck{Key: "k", Cost: 1}},
	} {
		if _, err := e.Evaluate(context.Background(), tc.now, []limiter.LimitCheck{tc.check}, d); !errors.Is(err, limiter.ErrBadRequest) {
			t.Errorf("now %d %+v: err %v, want ErrBadRequest", tc.now, tc.check, err)
		}
	}
}

// Concurrent requests on one key admit exactly the limit, and a request denied by its
// hot key charges none of its other keys, however the calls interleave.
func TestRedisConcurrentExactness(t *testing.T) {
	e, srv := newRedis(t)
	concurrentExactness(t, e, srv, 8, 60, 300)
}

// concurrentExactness has workers goroutines send each requests of two limits: a
// sliding_window_log side key of their own and one fixed_window hot key of the given
// limit. Exactly limit requests are admitted, and the side keys hold exactly limit
// units: a request denied by the hot key charged nothing.
func concurrentExactness(t *testing.T, e *limiter.RedisEngine, srv *testredis.Server, workers, each int, limit int64) {
	t.Helper()
	ctx := context.Background()
	prefix := uniquePrefix(t)
	hot := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: limit, PeriodMs: 3_600_000})
	wide := params(t, limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: limiter.MaxLogLimit, PeriodMs: 3_600_000})
	const now = 1_700_000_000_000
	var admitted atomic.Int64
	errs := make(chan error, workers)
	for g := range workers {
		go func() {
			checks := []limiter.LimitCheck{
				{Key: fmt.Sprintf("%s:side:%d", prefix, g), Params: wide, Cost: 1},
				{Key: prefix + ":hot", Params: hot, Cost: 1},
			}
			d := make([]limiter.Decision, 2)
			for range each {
				out, err := e.Evaluate(ctx, now, checks, d)
				if err != nil {
					errs <- err
					return
				}
				if out.Allowed {
					admitted.Add(1)
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := admitted.Load(); got != limit {
		t.Errorf("admitted %d, want exactly %d", got, limit)
	}
	var side int64
	for g := range workers {
		side += srv.Client().ZCard(ctx, fmt.Sprintf("%s:side:%d", prefix, g)).Val() - 1 // minus X
	}
	if side != limit {
		t.Errorf("side keys hold %d units, want %d (denied requests must charge nothing)", side, limit)
	}
}

func BenchmarkRedisEvaluate(b *testing.B) {
	e, _ := newRedis(b)
	ctx := context.Background()
	prefix := uniquePrefix(b)
	checks := []limiter.LimitCheck{
		{Key: prefix + ":a", Params: params(b, limiter.Params{Algorithm: limiter.GCRA, Limit: 1_000_000, PeriodMs: 1000}), Cost: 1},
		{Key: prefix + ":b", Params: params(b, limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 1 << 30, PeriodMs: 60_000}), Cost: 1},
		{Key: prefix + ":c", Params: params(b, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 60_000}), Cost: 1},
	}
	d := make([]limiter.Decision, len(checks))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Evaluate(ctx, 0, checks, d); err != nil {
			b.Fatal(err)
		}
	}
}

// A script call whose layout does not add up is refused before anything runs: a first
// request that is well formed is not charged when a later one is broken.
func TestRedisScriptRefusesBadLayout(t *testing.T) {
	_, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	key := uniquePrefix(t) + ":k"
	keys := []string{key, key + "2"}
	group := []float64{0, 0, 100, 60000, 100, 0, 0, 0, 0} // fixed_window, enforced, limit 100 per minute (burst = limit)
	cat := func(parts ...[]float64) []float64 {
		var out []float64
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	req := []float64{0, 1, 1, 1} // now 0, one limit: group 1, cost 1
	callRaw := func(keys []string, argv ...any) error {
		args := []any{nil, nil, len(keys)}
		for _, k := range keys {
			args = append(args, k)
		}
		_, err := redislua.Request.Run(ctx, c, append(args, argv...))
		return err
	}
	call := func(keys []string, values ...float64) error { return callRaw(keys, packArgv(values...)) }
	if err := call(keys, cat([]float64{2, 1}, group, req, req)...); err != nil {
		t.Fatalf("a well-formed call: %v", err)
	}
	c.Del(ctx, keys...)
	nan, inf := math.NaN(), math.Inf(1)
	refused := func(name string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "bad KEYS/ARGV layout") {
			t.Errorf("%s: %v, want the layout refused", name, err)
		}
		if n := c.Exists(ctx, keys...).Val(); n != 0 {
			t.Fatalf("%s: a key was written before the layout was refused", name)
		}
	}
	for name, tc := range map[string]struct {
		keys []string
		argv []float64
	}{
		"second request missing":       {keys, cat([]float64{2, 1}, group, req)},
		"one limit short":              {keys[:1], cat([]float64{1, 1}, group, req[:3])},
		"more keys than limits":        {keys[:1], cat([]float64{1, 1}, group, []float64{0, 0})},
		"no requests":                  {nil, []float64{0, 0}},
		"no values":                    {nil, nil},
		"request count not a number":   {keys[:1], cat([]float64{nan, 1}, group, req)},
		"limit count not an integer":   {keys[:1], cat([]float64{1, 1}, group, []float64{0, 1.5, 1, 1})},
		"second request's now broken":  {keys, cat([]float64{2, 1}, group, req, []float64{inf, 1, 1, 1})},
		"group beyond g":               {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 2, 1})},
		"group 0":                      {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 0, 1})},
		"group fraction":               {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1.5, 1})},
		"fewer groups than g":          {keys, cat([]float64{2, 2}, group, req, req)},
		"group value not a number":     {keys[:1], cat([]float64{1, 1}, group[:8], []float64{nan}, req)},
		"group value negative":         {keys[:1], cat([]float64{1, 1}, group[:2], []float64{-100}, group[3:], req)},
		"unknown algorithm":            {keys, cat([]float64{2, 2}, group, []float64{6}, group[1:], req, []float64{0, 1, 2, 1})},
		"second request's cost gone":   {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1, nan})},
		"second request's cost 1.5":    {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1, 1.5})},
		"second request's cost inf":    {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1, inf})},
		"second request's cost 2^53":   {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1, 1 << 53})},
		"second request's now nan":     {keys, cat([]float64{2, 1}, group, req, []float64{nan, 1, 1, 1})},
		"second request's now < 0":     {keys, cat([]float64{2, 1}, group, req, []float64{-5, 1, 1, 1})},
		"second request's now too far": {keys, cat([]float64{2, 1}, group, req, []float64{7258118400001, 1, 1, 1})},
		"second request's cost 2^32":   {keys, cat([]float64{2, 1}, group, req, []float64{0, 1, 1, 1 << 32})},
		"shadow flag 7":                {keys[:1], cat([]float64{1, 1}, group[:1], []float64{7}, group[2:], req)},
		"gcra limit 0":                 {keys[:1], cat([]float64{1, 1}, []float64{1, 0, 0, 1000, 1, 1, 1, 0, 0}, req)},
		"token_bucket limit 0":         {keys[:1], cat([]float64{1, 1}, []float64{2, 0, 0, 1000, 1, 1, 1, 0, 0}, req)},
		"limit above 2^32":             {keys[:1], cat([]float64{1, 1}, group[:2], []float64{1<<32 + 1}, group[3:], req)},
		"period 0":                     {keys[:1], cat([]float64{1, 1}, group[:3], []float64{0}, group[4:], req)},
		"burst 0":                      {keys[:1], cat([]float64{1, 1}, group[:4], []float64{0}, group[5:], req)},
		"gcra without a rate":          {keys[:1], cat([]float64{1, 1}, []float64{1, 0, 10, 1000, 10, 0, 100, 0, 0}, req)},
		"token_bucket without a rate":  {keys[:1], cat([]float64{1, 1}, []float64{2, 0, 10, 1000, 10, 1, 0, 0, 0}, req)},
		"sliding_window of width 0":    {keys[:1], cat([]float64{1, 1}, []float64{3, 0, 10, 1000, 10, 0, 0, 0, 10}, req)},
		"sliding_window_log over cap":  {keys[:1], cat([]float64{1, 1}, []float64{4, 0, 1001, 1000, 1001, 0, 0, 0, 0}, req)},
		"sliding_window over buckets":  {keys[:1], cat([]float64{1, 1}, []float64{3, 0, 10, 101, 10, 0, 0, 1, 101}, req)},
	} {
		refused(name, call(tc.keys, tc.argv...))
	}
	good := packArgv(cat([]float64{2, 1}, group, req, req)...)
	refused("a value cut short", callRaw(keys, good[:len(good)-3]))
	refused("two ARGV strings", callRaw(keys, good[:16], good[16:]))
	refused("decimal arguments (contract 3)", callRaw(keys, "2", "1", "0", "0", "100", "60000", "0", "0", "0", "0", "0", "0", "1", "1", "1", "0", "1", "1", "1"))
	refused("no ARGV", callRaw(keys))
}

// A call with more values than struct.unpack returns at once (4,000 a chunk) reads
// every value in its place: each request's own cost comes back in its remaining. The
// calls hold 4,000 values (one chunk), 4,001 (one value over), 7,997 (the most one
// unpack can return) and 8,411 (three chunks).
func TestRedisScriptReadsLongCallsInChunks(t *testing.T) {
	_, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	const limit = 1 << 20
	for _, tc := range []struct{ groups, requests int }{{2, 995}, {3, 993}, {3, 1992}, {1, 2100}} {
		prefix := fmt.Sprintf("%s:%d", uniquePrefix(t), tc.requests)
		args := []any{nil, nil, tc.requests}
		values := []float64{float64(tc.requests), float64(tc.groups)}
		for range tc.groups {
			values = append(values, 0, 0, limit, 60000, limit, 0, 0, 0, 0)
		}
		for i := range tc.requests {
			args = append(args, fmt.Sprintf("%s:%d", prefix, i))
			values = append(values, 0, 1, float64(1+i%tc.groups), float64(i+1)) // cost i+1: every value differs
		}
		n := len(values)
		reply, err := redislua.Request.Run(ctx, c, append(args, packArgv(values...)))
		if err != nil {
			t.Fatalf("%d values: %v", n, err)
		}
		if len(reply) != tc.requests*7 {
			t.Fatalf("%d values: %d reply values, want %d", n, len(reply), tc.requests*7)
		}
		for i := range tc.requests {
			d := reply[7*i:]
			if d[1] != 1 || d[2] != 1 || d[3] != limit || d[4] != int64(limit-i-1) {
				t.Fatalf("%d values: request %d (cost %d): %v, want allowed with %d remaining", n, i, i+1, d[:7], limit-i-1)
			}
		}
	}
}

// packArgv is request.lua's ARGV string holding values (redislua.AppendArg, but any
// double: broken calls too).
func packArgv(values ...float64) []byte {
	b := make([]byte, 0, 8*len(values))
	for _, v := range values {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// Within one call, a request reads what an earlier request of the call wrote, even
// when that write changed the key's type: a fixed_window count left under a key that a
// sliding_window limit then rewrote as a hash must not be read back (a script that
// reads keys ahead, or caches what it read, would).
func TestRedisScriptReadsWritesOfTheSameCall(t *testing.T) {
	_, srv := newRedis(t)
	ctx := context.Background()
	c := srv.Client()
	key := uniquePrefix(t) + ":k"
	const now, period = int64(1_700_000_040_000), int64(60_000)
	ws := now / period * period
	if err := c.Set(ctx, key, fmt.Sprintf("0:%d:%d:5", ws+period, ws), 0).Err(); err != nil { // fixed_window, count 5
		t.Fatal(err)
	}
	const fnow, fperiod = float64(now), float64(period)
	sliding := []float64{3, 0, 100, fperiod, 100, 0, 0, fperiod / 10, 10}
	fixed := []float64{0, 0, 5, fperiod, 5, 0, 0, 0, 0}
	values := append(append(append([]float64{2, 2}, sliding...), fixed...), fnow, 1, 1, 1, fnow, 1, 2, 1)
	reply, err := redislua.Request.Run(ctx, c, []any{nil, nil, 2, key, key, packArgv(values...)})
	if err != nil {
		t.Fatal(err)
	}
	if len(reply) != 14 {
		t.Fatalf("reply %v, want 14 values", reply)
	}
	if reply[1] != 1 {
		t.Fatalf("the sliding_window request was denied: %v", reply)
	}
	// The hash replaced the string, so the fixed_window limit finds no count of its own
	// and admits (a stale read of count 5 against limit 5 would deny).
	if reply[8] != 1 || reply[11] != 4 {
		t.Errorf("fixed_window after the hash write: allowed %d remaining %d, want 1 and 4 (reply %v)", reply[8], reply[11], reply)
	}
	if typ := c.Type(ctx, key).Val(); typ != "string" {
		t.Errorf("key type %s after the call, want string (the later SET replaces the hash)", typ)
	}
}

// Requests whose limits all keep string states take the script's scalar path
// (decide_strings). Over foreign or expired state it must agree with the memory engine
// (read as cold, replaced when written; SPEC §5, §9), and with two algorithms sharing
// one key in a request it must agree with the script's general path, which a request
// takes when it also has a sliding_window limit (there the later limit reads the
// earlier one's state as another algorithm's: cold). The memory engine does not tag a
// state with its algorithm, so it differs there; storage keys name the algorithm, so no
// rule set can make two algorithms share a key.
func TestRedisStringPathAgreesWithMemory(t *testing.T) {
	e, srv := newRedis(t)
	ctx, c := context.Background(), srv.Client()
	const now = 1_700_000_000_000
	var strs []limiter.LimitCheck
	for _, ch := range allAlgorithms(t, uniquePrefix(t), 60_000) {
		if a := ch.Params.Algorithm; a != limiter.SlidingWindow && a != limiter.SlidingWindowLog {
			strs = append(strs, ch)
		}
	}
	compare := func(name string, steps [][]limiter.LimitCheck, nows []int64) {
		t.Helper()
		m := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
		defer m.Close()
		for i, checks := range steps {
			got, want := make([]limiter.Decision, len(checks)), make([]limiter.Decision, len(checks))
			gotOut, err := e.Evaluate(ctx, nows[i], checks, got)
			if err != nil {
				t.Fatal(name, err)
			}
			wantOut, err := m.Evaluate(ctx, nows[i], checks, want)
			if err != nil {
				t.Fatal(name, err)
			}
			if gotOut != wantOut || !slices.Equal(got, want) {
				t.Errorf("%s, request %d: redis %+v %+v, memory %+v %+v", name, i, gotOut, got, wantOut, want)
			}
		}
	}
	// Foreign state under the first limit of a two-limit request.
	for _, ch := range strs {
		other := ch
		other.Key = ch.Key + ":other"
		for i, setup := range []func(k string) error{
			func(k string) error { return c.Set(ctx, k, "junk", 0).Err() },
			func(k string) error { return c.HSet(ctx, k, "k", "1").Err() },
			func(k string) error { return c.ZAdd(ctx, k, redis.Z{Score: 1, Member: "x"}).Err() },
			func(k string) error { return c.Set(ctx, k, "9:99999999999999:1:2", 0).Err() },
			func(k string) error {
				return c.Set(ctx, k, fmt.Sprintf("%d:%d:0:0", ch.Params.Algorithm, now), 0).Err()
			}, // expired at now
		} {
			c.Del(ctx, ch.Key, other.Key)
			if err := setup(ch.Key); err != nil {
				t.Fatal(err)
			}
			compare(fmt.Sprintf("%s over foreign state %d", ch.Key, i), [][]limiter.LimitCheck{{ch, other}}, []int64{now})
			if v := c.Get(ctx, ch.Key).Val(); !strings.HasPrefix(v, fmt.Sprintf("%d:", ch.Params.Algorithm)) {
				t.Errorf("%s over foreign state %d: %q after the write, want its own state", ch.Key, i, v)
			}
		}
	}
	// Two string algorithms on one key, in either order, and one algorithm twice: the
	// scalar path (on keys under "s") against the general path (under "g", each request
	// with a sliding_window limit that always allows).
	sw := limiter.LimitCheck{Key: uniquePrefix(t) + ":sw", Cost: 1,
		Params: params(t, limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 1 << 20, PeriodMs: 60_000, Buckets: 3})}
	for i, a := range strs {
		for _, b := range strs[i:] {
			steps := [][]int{{0, 1}, {1, 0}, {0, 1}, {0, 0}, {1, 1, 0}, {0, 1}, {1, 0}}
			nows := []int64{now, now, now + 1, now + 1, now + 2, now + 30_000, now + 30_001}
			for s, step := range steps {
				var scalar, general []limiter.LimitCheck
				for _, w := range step {
					ch := []limiter.LimitCheck{a, b}[w]
					ch.Key = fmt.Sprintf("%s:%s:shared", a.Key, b.Params.Algorithm)
					scalar = append(scalar, ch)
					ch.Key += ":g"
					general = append(general, ch)
				}
				general = append(general, sw)
				got, want := make([]limiter.Decision, len(scalar)), make([]limiter.Decision, len(general))
				gotOut, err := e.Evaluate(ctx, nows[s], scalar, got)
				if err != nil {
					t.Fatal(err)
				}
				wantOut, err := e.Evaluate(ctx, nows[s], general, want)
				if err != nil {
					t.Fatal(err)
				}
				if gotOut != wantOut || !slices.Equal(got, want[:len(got)]) {
					t.Errorf("%s and %s on one key, request %d: scalar path %+v %+v, general path %+v %+v",
						a.Params.Algorithm, b.Params.Algorithm, s, gotOut, got, wantOut, want[:len(got)])
				}
			}
		}
	}
}
