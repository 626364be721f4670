package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// newBatchedRedis is newRedis with pipelined batching on (the serving default).
func newBatchedRedis(t testing.TB, lanes, maxBatch int) (*limiter.RedisEngine, *testredis.Server) {
	t.Helper()
	srv := testredis.Start(t)
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{
		URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		Batch: true, BatchLanes: lanes, BatchMax: maxBatch,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, srv
}

// The golden vectors replay bit for bit through the batched engine too.
func TestRedisBatchConformance(t *testing.T) {
	e, _ := newBatchedRedis(t, 0, 0)
	for _, p := range vectorFiles(t) {
		t.Run(filepath.Base(p), func(t *testing.T) { replayFile(t, e, p, true) })
	}
	if s := e.BatchStats(); s.Calls == 0 {
		t.Errorf("batching was not used: %+v", s)
	}
}

// The differential test against the in-memory engine, through the batched engine.
func TestRedisBatchDifferential(t *testing.T) {
	e, _ := newBatchedRedis(t, 0, 0)
	for _, sc := range diffScenarios {
		t.Run(sc.name, func(t *testing.T) { runDifferential(t, e, sc, 400) })
	}
}

// Concurrent requests on a hot key admit exactly its limit through shared script calls,
// a denied request charges none of its other keys, and calls really are batched.
func TestRedisBatchConcurrentExactness(t *testing.T) {
	e, srv := newBatchedRedis(t, 2, 16)
	ctx := context.Background()
	// Load the script first, so that no call meets NOSCRIPT and is sent twice.
	if err := srv.Client().ScriptLoad(ctx, redislua.Request.Source()).Err(); err != nil {
		t.Fatal(err)
	}
	const workers, each = 32, 40
	concurrentExactness(t, e, srv, workers, each, 500)
	s := e.BatchStats()
	if s.Requests != workers*each {
		t.Errorf("%d requests sent, want %d (each exactly once)", s.Requests, workers*each)
	}
	if s.Calls >= s.Requests {
		t.Errorf("no batching under 32 concurrent callers: %d requests in %d script calls", s.Requests, s.Calls)
	}
	if s.Pipelines != s.Calls {
		t.Errorf("%d script calls in %d round trips: a single Redis gets one call per round trip", s.Calls, s.Pipelines)
	}
	t.Logf("%d requests in %d script calls (%.1f per call)", s.Requests, s.Calls, float64(s.Requests)/float64(s.Calls))
}

// After SCRIPT FLUSH, every call of the batches that meet NOSCRIPT is reloaded and run
// exactly once: the counts stay exact.
func TestRedisBatchScriptFlush(t *testing.T) {
	e, srv := newBatchedRedis(t, 2, 32)
	ctx := context.Background()
	prefix := uniquePrefix(t)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1_000_000, PeriodMs: 3_600_000})
	const now = 1_700_000_000_000
	const workers, rounds = 16, 5
	for round := range rounds {
		if err := srv.Client().ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var failed atomic.Int64
		for g := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := make([]limiter.Decision, 1)
				if _, err := e.Evaluate(ctx, now, oneCheck(p, fmt.Sprintf("%s:%d", prefix, g), 1), d); err != nil {
					t.Errorf("round %d: %v", round, err)
					failed.Add(1)
				}
			}()
		}
		wg.Wait()
		if failed.Load() > 0 {
			return
		}
	}
	for g := range workers {
		d := make([]limiter.Decision, 1)
		if _, err := e.Evaluate(ctx, now, oneCheck(p, fmt.Sprintf("%s:%d", prefix, g), 0), d); err != nil {
			t.Fatal(err)
		}
		if used := p.Limit - d[0].Remaining; used != rounds {
			t.Errorf("key %d charged %d times in %d rounds", g, used, rounds)
		}
	}
}

// A caller whose context ends while its call waits gets the context's error, wrapped as
// a store error; a canceled context is never sent.
func TestRedisBatchContext(t *testing.T) {
	e, _ := newBatchedRedis(t, 1, 8)
	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	d := make([]limiter.Decision, 1)
	_, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d)
	if !errors.Is(err, limiter.ErrStore) || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: %v", err)
	}
	if s := e.BatchStats(); s.Calls != 0 {
		t.Errorf("a canceled call was sent: %+v", s)
	}
}

// With Redis down, batched calls fail fast with ErrStore, and Close fails queued calls.
func TestRedisBatchDown(t *testing.T) {
	srv := testredis.Start(t)
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), Batch: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	for i := 0; ; i++ { // warm the pool (the default 8 ms timeouts may trip on a busy machine)
		if _, err = e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d); err == nil || i == 20 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := make([]limiter.Decision, 1)
			// Fast: the refused connection itself ends the call, not a timeout run out.
			_, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d)
			if !errors.Is(err, limiter.ErrStore) || !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("with Redis down: %v, want ErrStore from the refused connection", err)
			}
		}()
	}
	wg.Wait()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("after Close: %v, want ErrStore", err)
	}
}

func BenchmarkRedisRoundTrip(b *testing.B) {
	for _, batch := range []bool{false, true} {
		b.Run(fmt.Sprintf("batch=%v", batch), func(b *testing.B) {
			var e *limiter.RedisEngine
			if batch {
				e, _ = newBatchedRedis(b, 0, 0)
			} else {
				e, _ = newRedis(b)
			}
			ctx := context.Background()
			checks := oneCheck(params(b, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}), uniquePrefix(b), 1)
			d := make([]limiter.Decision, 1)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Evaluate(ctx, 0, checks, d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedisConcurrent is the engine under 32 concurrent callers on distinct keys,
// as the service sees it under load: one op is one request. It reports how many
// requests shared a script call.
func BenchmarkRedisConcurrent(b *testing.B) {
	for _, lanes := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("lanes=%d", lanes), func(b *testing.B) {
			e, srv := newBatchedRedis(b, lanes, 0)
			p := params(b, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000})
			prefix := uniquePrefix(b)
			var next atomic.Int64
			b.SetParallelism(16) // 32 callers on 2 CPUs
			b.ReportAllocs()
			redis0, self0 := redisCPU(b, srv), selfCPU()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				d := make([]limiter.Decision, 1)
				for pb.Next() {
					checks := oneCheck(p, fmt.Sprintf("%s:%d", prefix, next.Add(1)%100_000), 1)
					if _, err := e.Evaluate(ctx, 0, checks, d); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			s := e.BatchStats()
			b.ReportMetric(float64(s.Requests)/float64(max(s.Calls, 1)), "requests/call")
			n := float64(b.N)
			b.ReportMetric((redisCPU(b, srv)-redis0).Seconds()*1e6/n, "redis-µs/op")
			b.ReportMetric((selfCPU()-self0).Seconds()*1e6/n, "go-µs/op")
		})
	}
}

// redisCPU is the CPU time redis-server has used (INFO cpu, user + system).
func redisCPU(tb testing.TB, srv *testredis.Server) time.Duration {
	info, err := srv.Client().Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatal(err)
				}
				total += x
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
