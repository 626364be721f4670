package breaker

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

const readTimeout = 20 * time.Millisecond

func newEngine(t *testing.T, srv *testredis.Server, onChange func(bool, error)) *Engine {
	t.Helper()
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: readTimeout, WriteTimeout: readTimeout, DialTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return New(re, re, Options{Threshold: 3, ProbeInterval: 100 * time.Millisecond, OnChange: onChange})
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
	if p99 > readTimeout+5*time.Millisecond {
		t.Errorf("p99 during the outage %v exceeds the store timeout %v + 5 ms", p99, readTimeout)
	}
	if fastFails.Load() == 0 || storeErrors.Load() > fastFails.Load() {
		t.Errorf("the circuit did not spare the store: %d timeouts, %d fast answers", storeErrors.Load(), fastFails.Load())
	}
	if resumedAt.Load() == 0 {
		t.Fatal("decisions did not resume after Redis returned")
	}
	if took := time.Unix(0, resumedAt.Load()).Sub(back); took > time.Second {
		t.Errorf("decisions resumed %v after Redis returned, want < 1 s", took)
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
