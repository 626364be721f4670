package breaker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

const readTimeout = 20 * time.Millisecond

func newEngine(t *testing.T, srv *testredis.Server, onChange func(bool, error)) *Engine {
	t.Helper()
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: readTimeout, WriteTimeout: readTimeout, DialTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Threshold: 3, ProbeInterval: 100 * time.Millisecond}
	if onChange != nil {
		o.OnChange = func(open bool, _ string, cause error) { onChange(open, cause) }
	}
	return New(re, re, o)
}

// Redis made unreachable under load: every call is answered within the store timeout
// plus 5 ms (p99), calls stop reaching Redis once the circuit opens, decisions resume
// within a second of Redis returning, and no goroutine is left behind.
func TestOutageUnderLoad(t *testing.T) {
	srv := testredis.Start(t)
	goroutinesBefore := runtime.NumGoroutine()
	var opened, closed atomic.Int32
	e := newEngine(t, srv, func(open bool, _ error) {
		if open {
			opened.Add(1)
		} else {
			closed.Add(1)
		}
	})
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var outageLatencies []time.Duration
	var outage, recovered atomic.Bool
	var resumedAt atomic.Int64
	var storeErrors, fastFails atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			out := make([]limiter.Decision, 1)
			checks := []limiter.LimitCheck{{Key: fmt.Sprintf("breaker:%d", w), Params: p, Cost: 1}}
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				_, err := e.Evaluate(context.Background(), 0, checks, out)
				took := time.Since(start)
				if outage.Load() {
					mu.Lock()
					outageLatencies = append(outageLatencies, took)
					mu.Unlock()
				}
				switch {
				case errors.Is(err, ErrOpen):
					fastFails.Add(1)
				case err != nil:
					if !errors.Is(err, limiter.ErrStore) {
						t.Errorf("error not wrapping ErrStore: %v", err)
					}
					storeErrors.Add(1)
				case recovered.Load():
					resumedAt.CompareAndSwap(0, time.Now().UnixNano())
				}
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	time.Sleep(200 * time.Millisecond)
	outage.Store(true)
	srv.Pause()
	time.Sleep(700 * time.Millisecond)
	outage.Store(false)
	back := time.Now()
	recovered.Store(true)
	srv.Resume()
	deadline := time.Now().Add(3 * time.Second)
	for resumedAt.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	sort.Slice(outageLatencies, func(i, j int) bool { return outageLatencies[i] < outageLatencies[j] })
	if len(outageLatencies) == 0 {
		t.Fatal("no calls during the outage")
	}
	p99 := outageLatencies[len(outageLatencies)*99/100]
	t.Logf("outage: %d calls, p99 %v, max %v; %d store timeouts, %d answered by the open circuit",
		len(outageLatencies), p99, outageLatencies[len(outageLatencies)-1], storeErrors.Load(), fastFails.Load())
	// A bound against calls hanging for the outage (700 ms), not a latency target: the
	// slack absorbs a descheduled test on a busy machine.
	if p99 > readTimeout+100*time.Millisecond {
		t.Errorf("p99 during the outage %v: calls wait past the store timeout %v (+ 100 ms)", p99, readTimeout)
	}
	if fastFails.Load() == 0 || storeErrors.Load() > fastFails.Load() {
		t.Errorf("the circuit did not spare the store: %d timeouts, %d fast answers", storeErrors.Load(), fastFails.Load())
	}
	if resumedAt.Load() == 0 {
		t.Fatal("decisions did not resume after Redis returned")
	}
	if took := time.Unix(0, resumedAt.Load()).Sub(back); took > 2*time.Second {
		t.Errorf("decisions resumed %v after Redis returned, want within a few probe intervals (< 2 s)", took)
	}
	if opened.Load() < 1 || closed.Load() < 1 {
		t.Errorf("state changes: opened %d, closed %d", opened.Load(), closed.Load())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > goroutinesBefore+2 {
		t.Errorf("goroutines: %d before, %d after", goroutinesBefore, after)
	}
}

// Errors that are not the store's (a bad request) never open the circuit.
func TestBadRequestsDoNotTrip(t *testing.T) {
	srv := testredis.Start(t)
	e := newEngine(t, srv, nil)
	defer e.Close()
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1, PeriodMs: 1000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	out := make([]limiter.Decision, 1)
	for i := 0; i < 10; i++ {
		if _, err := e.Evaluate(context.Background(), -1, []limiter.LimitCheck{{Key: "k", Params: p, Cost: 1}}, out); !errors.Is(err, limiter.ErrBadRequest) {
			t.Fatalf("want ErrBadRequest, got %v", err)
		}
	}
	if e.Open() {
		t.Fatal("bad requests opened the circuit")
	}
}

// A Redis host that drops connection attempts, with callers whose deadline (Envoy's is
// 20 ms) is shorter than the 1 s dial timeout: each call fails at the engine's budget
// (its read and write timeouts, 5 + 5 ms here), before its caller gives up, so the
// failures count, the circuit opens after the threshold and later calls fail at once
// instead of each waiting for its deadline. Batched or not.
func TestDeadHostOpensTheCircuit(t *testing.T) {
	addr := testredis.DeadHost(t)
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: "redis://" + addr, Batch: batch,
				ReadTimeout: 5 * time.Millisecond, WriteTimeout: 5 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			e := New(re, re, Options{Threshold: 3, ProbeInterval: time.Hour})
			defer e.Close()
			checks, out := oneCheck(t), make([]limiter.Decision, 1)
			var kinds []string
			for range 6 {
				// Any caller deadline between the budget and the dial timeout; a roomy
				// one, so that a busy machine cannot end the call before the budget.
				ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				_, err := e.Evaluate(ctx, 0, checks, out)
				cancel()
				switch {
				case errors.Is(err, ErrOpen):
					kinds = append(kinds, "open")
				case errors.Is(err, limiter.ErrStore) && errors.Is(err, context.DeadlineExceeded):
					kinds = append(kinds, "store")
				default:
					t.Fatalf("want the budget's deadline, got %v", err)
				}
			}
			if want := "store store store open open open"; strings.Join(kinds, " ") != want {
				t.Errorf("calls: %s, want %s", strings.Join(kinds, " "), want)
			}
		})
	}
}

// Callers that give up before the store's own timeouts do not open the circuit: a
// store that was not given the time to answer is not known to be failing.
func TestImpatientCallersDoNotTrip(t *testing.T) {
	srv := testredis.Start(t)
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := New(re, re, Options{Threshold: 3, ProbeInterval: time.Hour})
	defer e.Close()
	checks, out := oneCheck(t), make([]limiter.Decision, 1)
	if _, err := e.Evaluate(context.Background(), 0, checks, out); err != nil {
		t.Fatal(err) // a pooled connection, so that the calls below wait on Redis, not on a dial
	}
	srv.Pause()
	defer srv.Resume()
	for range 6 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		_, err := e.Evaluate(ctx, 0, checks, out)
		cancel()
		if !errors.Is(err, limiter.ErrStore) || errors.Is(err, ErrOpen) {
			t.Fatalf("want a store error from the call, got %v", err)
		}
	}
	if e.Open() {
		t.Fatal("callers that gave up after 10 ms opened the circuit (store timeouts 1 s)")
	}
}

func oneCheck(t *testing.T) []limiter.LimitCheck {
	t.Helper()
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return []limiter.LimitCheck{{Key: "breaker:slow", Params: p, Cost: 1}}
}

// A short stall opens the circuit, and the first probe, firstProbe after it opened,
// closes it again: with an hour between later probes the circuit would otherwise stay
// open for the hour.
func TestFirstProbeComesSoon(t *testing.T) {
	srv := testredis.Start(t)
	// Timeouts a busy machine cannot trip by accident: only the frozen Redis fails a call.
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := New(re, re, Options{Threshold: 1, ProbeInterval: time.Hour, ProbeTimeout: time.Second})
	defer e.Close()
	checks, out := oneCheck(t), make([]limiter.Decision, 1)
	srv.Pause()
	_, err = e.Evaluate(context.Background(), 0, checks, out)
	srv.Resume()
	if !e.Open() {
		t.Fatalf("a call to a frozen Redis (%v) did not open the circuit", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Open() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.Open() {
		t.Fatal("the circuit is still open 5 s after Redis resumed: no early probe")
	}
}

// A store that answers the probe but fails every call (here an ACL that lets the user
// run scripts but touch no key the calls use) must not make the circuit flap every
// firstProbe: after a reopen within ProbeInterval of closing, the next probe waits the
// whole interval.
func TestNoFlappingWhenProbesPassAndCallsFail(t *testing.T) {
	srv := testredis.Start(t)
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var closes atomic.Int32
	e := New(re, re, Options{Threshold: 1, ProbeInterval: 2 * time.Second, OnChange: func(open bool, _ string, _ error) {
		if !open {
			closes.Add(1)
		}
	}})
	defer e.Close()
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "default", "resetkeys", "~nothing:*").Err(); err != nil {
		t.Fatal(err)
	}
	checks, out := oneCheck(t), make([]limiter.Decision, 1)
	if _, err := e.Evaluate(ctx, 0, checks, out); err == nil || !e.Open() {
		t.Fatalf("a forbidden script call: %v, circuit open %v", err, e.Open())
	}
	deadline := time.Now().Add(time.Second)
	for e.Open() && time.Now().Before(deadline) { // the first probe, firstProbe after opening
		time.Sleep(5 * time.Millisecond)
	}
	if e.Open() {
		t.Fatal("the first probe did not close the circuit")
	}
	if _, err := e.Evaluate(ctx, 0, checks, out); err == nil || !e.Open() {
		t.Fatalf("again: %v, circuit open %v", err, e.Open())
	}
	time.Sleep(500 * time.Millisecond) // well past firstProbe, well before ProbeInterval
	if !e.Open() || closes.Load() != 1 {
		t.Fatalf("reopened within ProbeInterval of closing, the circuit closed again after %d ms (closes: %d): it flaps", 500, closes.Load())
	}
}

// A batched call that fails fails every request it carried; the breaker counts it once,
// so --store-breaker-threshold counts failed store calls, not the requests that
// happened to share one, also when the callers of two failed calls wake interleaved
// (two lanes). With Redis frozen, 20 concurrent requests make at most 2 calls per lane
// (one alone, then the ones that queued meanwhile): below a threshold of 2 × lanes + 1,
// which one more failed call then reaches.
func TestBatchedCallCountsOnce(t *testing.T) {
	for _, lanes := range []int{1, 2} {
		t.Run(fmt.Sprintf("lanes=%d", lanes), func(t *testing.T) {
			srv := testredis.Start(t)
			re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), Batch: true, BatchLanes: lanes,
				ReadTimeout: 150 * time.Millisecond, WriteTimeout: 150 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			threshold := 2*lanes + 1
			e := New(re, re, Options{Threshold: threshold, ProbeInterval: time.Hour})
			defer e.Close()
			checks := oneCheck(t)
			// The script loaded and pooled connections: the calls below wait on Redis, not
			// on a dial or a NOSCRIPT round. A warm-up call that a loaded machine times
			// out is tried again; the success after it resets the breaker's count.
			if err := srv.Client().ScriptLoad(context.Background(), redislua.Request.Source()).Err(); err != nil {
				t.Fatal(err)
			}
			for range lanes {
				var err error
				for try := 0; try < 20; try++ {
					if _, err = e.Evaluate(context.Background(), 0, checks, make([]limiter.Decision, 1)); err == nil {
						break
					}
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			srv.Pause()
			defer srv.Resume()
			before := re.BatchStats()
			var wg sync.WaitGroup
			var failed atomic.Int32
			for range 20 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := e.Evaluate(context.Background(), 0, checks, make([]limiter.Decision, 1))
					if errors.Is(err, limiter.ErrStore) && !errors.Is(err, ErrOpen) {
						failed.Add(1)
					}
				}()
			}
			wg.Wait()
			calls := int(re.BatchStats().Calls - before.Calls)
			if failed.Load() != 20 || calls >= threshold {
				t.Fatalf("%d of 20 requests failed in %d calls, want 20 in fewer than %d", failed.Load(), calls, threshold)
			}
			if e.Open() {
				t.Fatalf("%d failed calls of 20 requests opened the circuit (threshold %d calls)", calls, threshold)
			}
			for range threshold - calls {
				e.Evaluate(context.Background(), 0, checks, make([]limiter.Decision, 1))
			}
			if !e.Open() {
				t.Fatalf("%d failed calls did not open the circuit", threshold)
			}
		})
	}
}
