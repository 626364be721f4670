package breaker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// countingEngine counts the calls that reach the engine it wraps: the store's.
type countingEngine struct {
	limiter.Engine
	calls atomic.Int64
}

func (c *countingEngine) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	c.calls.Add(1)
	return c.Engine.Evaluate(ctx, now, checks, out)
}

// waitFor polls cond until it holds; the deadline only keeps a broken breaker from
// hanging the test (each condition takes milliseconds when the breaker works).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Redis made unreachable under load: once the circuit opens, calls stop reaching the
// store (they fail at once with ErrOpen instead of each waiting for the store's
// timeout), decisions resume once Redis returns, and no goroutine is left behind. The
// outage lasts until the open circuit has answered 200 calls, not for a set time; the
// store calls are counted, not timed.
func TestOutageUnderLoad(t *testing.T) {
	srv := testredis.Start(t)
	goroutinesBefore := runtime.NumGoroutine()
	// Store timeouts a busy machine cannot trip by accident: only the frozen Redis fails
	// calls (nothing here is timed, so they cost the test only the outage's first calls).
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := &countingEngine{Engine: re}
	var opened, closed atomic.Int32
	var storeCallsAtOpen atomic.Int64
	e := New(store, re, Options{Threshold: 3, ProbeInterval: 100 * time.Millisecond, OnChange: func(open bool, _ string, _ error) {
		if open {
			storeCallsAtOpen.Store(store.calls.Load()) // called once the circuit is open
			opened.Add(1)
		} else {
			closed.Add(1)
		}
	}})
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	const workers = 8
	var recovered, resumed atomic.Bool
	var closesAtResume atomic.Int32
	var decisions, storeErrors, fastFails atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
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
				// A decision counts as resumed when the call began after a probe closed
				// the circuit once Redis was back: a call sent to the frozen Redis before
				// the circuit opened may answer late, with the circuit still open.
				closes := closed.Load()
				_, err := e.Evaluate(context.Background(), 0, checks, out)
				switch {
				case err != nil && !errors.Is(err, limiter.ErrStore):
					t.Errorf("error not wrapping ErrStore: %v", err)
				case errors.Is(err, ErrOpen):
					fastFails.Add(1)
				case err != nil:
					storeErrors.Add(1)
				case recovered.Load() && closes > closesAtResume.Load():
					resumed.Store(true)
					fallthrough
				default:
					decisions.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}(w)
	}
	waitFor(t, "decisions before the outage", func() bool { return decisions.Load() >= 100 })
	srv.Pause()
	waitFor(t, "open circuit", func() bool { return opened.Load() > 0 })
	waitFor(t, "200 calls answered by the open circuit", func() bool { return fastFails.Load() >= 200 })
	// Only a call that passed the circuit's check just before it opened can still reach
	// the store: at most one per worker but the one that opened it.
	storeCallsWhileOpen := store.calls.Load() - storeCallsAtOpen.Load()
	openDuringOutage := e.Open()
	closesAtResume.Store(closed.Load())
	recovered.Store(true)
	srv.Resume()
	waitFor(t, "decision after Redis returned and the probe closed the circuit", resumed.Load)
	close(stop)
	wg.Wait()

	t.Logf("outage: %d store errors, %d calls answered by the open circuit, %d store calls while open",
		storeErrors.Load(), fastFails.Load(), storeCallsWhileOpen)
	if storeCallsWhileOpen > workers-1 {
		t.Errorf("%d calls reached the store while the circuit was open (%d answered by it); want at most %d, the calls already past its check when it opened",
			storeCallsWhileOpen, fastFails.Load(), workers-1)
	}
	if !openDuringOutage || storeErrors.Load() < 3 {
		t.Errorf("during the outage: circuit open %v after %d store errors, want open after at least the threshold (3)", openDuringOutage, storeErrors.Load())
	}
	if opened.Load() < 1 || closed.Load() < 1 {
		t.Errorf("state changes: opened %d, closed %d", opened.Load(), closed.Load())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "return to the goroutines before the test (+2)", func() bool { return runtime.NumGoroutine() <= goroutinesBefore+2 })
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

// probeWait is one wait the probe schedule asked for: how long, and the channel that
// ends it.
type probeWait struct {
	d    time.Duration
	fire chan time.Time
}

// steppedProbes makes e's probe schedule the test's: every wait it asks for is sent on
// the channel returned, and ends when the test sends on its fire.
func steppedProbes(e *Engine) <-chan probeWait {
	waits := make(chan probeWait, 16)
	e.after = func(d time.Duration) <-chan time.Time {
		w := probeWait{d: d, fire: make(chan time.Time, 1)}
		waits <- w
		return w.fire
	}
	return waits
}

func nextWait(t *testing.T, waits <-chan probeWait) probeWait {
	t.Helper()
	select {
	case w := <-waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("no probe scheduled within 10 s")
		return probeWait{}
	}
}

// A store that answers the probe but fails every call (here an ACL that lets the user
// run scripts but touch no key the calls use) must not make the circuit flap every
// firstProbe: after a reopen within ProbeInterval of closing, the next probe waits the
// whole interval. The probe schedule is read, and stepped, through Engine.after.
func TestNoFlappingWhenProbesPassAndCallsFail(t *testing.T) {
	srv := testredis.Start(t)
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: time.Second, WriteTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var closes atomic.Int32
	e := New(re, re, Options{Threshold: 1, ProbeInterval: time.Hour, OnChange: func(open bool, _ string, _ error) {
		if !open {
			closes.Add(1)
		}
	}})
	waits := steppedProbes(e)
	defer e.Close()
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "default", "resetkeys", "~nothing:*").Err(); err != nil {
		t.Fatal(err)
	}
	checks, out := oneCheck(t), make([]limiter.Decision, 1)
	if _, err := e.Evaluate(ctx, 0, checks, out); err == nil || !e.Open() {
		t.Fatalf("a forbidden script call: %v, circuit open %v", err, e.Open())
	}
	first := nextWait(t, waits)
	if first.d != firstProbe {
		t.Fatalf("the first probe after opening waits %v, want firstProbe (%v)", first.d, firstProbe)
	}
	first.fire <- time.Now()
	if next := nextWait(t, waits); next.d != time.Hour { // scheduled as the probe starts
		t.Errorf("the probe after the first waits %v, want ProbeInterval", next.d)
	}
	waitFor(t, "close by the first probe", func() bool { return !e.Open() })
	if _, err := e.Evaluate(ctx, 0, checks, out); err == nil || !e.Open() {
		t.Fatalf("again: %v, circuit open %v", err, e.Open())
	}
	if again := nextWait(t, waits); again.d != time.Hour {
		t.Fatalf("reopened within ProbeInterval of closing, the next probe waits %v, want the whole ProbeInterval (%v): the circuit flaps", again.d, time.Hour)
	}
	if !e.Open() || closes.Load() != 1 {
		t.Fatalf("circuit open %v, closes %d; want open, 1", e.Open(), closes.Load())
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
