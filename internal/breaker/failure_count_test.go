package breaker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// scriptedStore is a store whose calls and pings fail while failing is set. With hold
// set, each call first says on entered that it has reached the store, then waits for
// hold to close.
type scriptedStore struct {
	failing atomic.Bool
	hold    chan struct{}
	entered chan struct{}
}

func (s *scriptedStore) Evaluate(_ context.Context, now int64, _ []limiter.LimitCheck, _ []limiter.Decision) (limiter.Outcome, error) {
	if s.hold != nil {
		s.entered <- struct{}{}
		<-s.hold
	}
	if s.failing.Load() {
		return limiter.Outcome{}, fmt.Errorf("%w: connection refused", limiter.ErrStore)
	}
	return limiter.Outcome{Now: now, Allowed: true}, nil
}

func (s *scriptedStore) Ping(context.Context) error {
	if s.failing.Load() {
		return fmt.Errorf("%w: connection refused", limiter.ErrStore)
	}
	return nil
}

func (s *scriptedStore) Close() error { return nil }

// changes makes o report every state change on the channel returned.
func changes(o *Options) <-chan bool {
	ch := make(chan bool, 16)
	o.OnChange = func(open bool, _ string, _ error) { ch <- open }
	return ch
}

func nextChange(t *testing.T, ch <-chan bool) bool {
	t.Helper()
	select {
	case open := <-ch:
		return open
	case <-time.After(10 * time.Second):
		t.Fatal("no circuit change within 10 s")
		return false
	}
}

func evaluate(ctx context.Context, e *Engine) error {
	_, err := e.Evaluate(ctx, 1, nil, make([]limiter.Decision, 1))
	return err
}

// Threshold counts consecutive failures: a success in between starts the count again.
func TestOnlyConsecutiveFailuresOpen(t *testing.T) {
	s := &scriptedStore{}
	e := New(s, s, Options{Threshold: 3, ProbeInterval: time.Hour})
	steppedProbes(e)
	defer e.Close()
	ctx := context.Background()
	for i, fail := range []bool{true, false, true, true} {
		s.failing.Store(fail)
		evaluate(ctx, e)
		if e.Open() {
			t.Fatalf("open after call %d of fail, ok, fail, fail: only 2 consecutive failures", i+1)
		}
	}
	s.failing.Store(true)
	evaluate(ctx, e)
	if !e.Open() {
		t.Fatal("3 consecutive failures did not open the circuit")
	}
}

// A circuit the probe closed starts counting from zero: one failure after it closes
// does not reopen it at once, the threshold does.
func TestClosingResetsTheFailureCount(t *testing.T) {
	s := &scriptedStore{}
	o := Options{Threshold: 3, ProbeInterval: time.Hour}
	ch := changes(&o)
	e := New(s, s, o)
	waits := steppedProbes(e)
	defer e.Close()
	ctx := context.Background()
	s.failing.Store(true)
	for range 3 {
		evaluate(ctx, e)
	}
	if !nextChange(t, ch) {
		t.Fatal("3 failures did not open the circuit")
	}
	s.failing.Store(false)
	nextWait(t, waits).fire <- time.Now()
	if nextChange(t, ch) {
		t.Fatal("want the probe to close the circuit")
	}
	s.failing.Store(true)
	for i := range 2 {
		evaluate(ctx, e)
		if e.Open() {
			t.Fatalf("reopened by failure %d after the probe closed it, threshold 3", i+1)
		}
	}
	evaluate(ctx, e)
	if !e.Open() {
		t.Fatal("3 failures after closing did not reopen the circuit")
	}
}

// pastDeadline is a context whose deadline has passed an instant before it says it is
// done: a store call bounded by that deadline can fail in that instant.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A call that fails once its caller's deadline has passed is not counted, even before
// the context reports itself done.
func TestFailureAfterTheCallersDeadlineDoesNotCount(t *testing.T) {
	s := &scriptedStore{}
	s.failing.Store(true)
	e := New(s, s, Options{Threshold: 1, ProbeInterval: time.Hour})
	steppedProbes(e)
	defer e.Close()
	evaluate(pastDeadline{context.Background()}, e)
	if e.Open() {
		t.Fatal("a failure past the caller's deadline opened the circuit")
	}
	evaluate(context.Background(), e)
	if !e.Open() {
		t.Fatal("a failure within the deadline did not open the circuit (threshold 1)")
	}
}

// Calls that reached the store before the circuit opened and fail after it opened do not
// open it again: one change reported, one circuit counted, so one probe closes it.
func TestConcurrentFailuresOpenTheCircuitOnce(t *testing.T) {
	s := &scriptedStore{hold: make(chan struct{}), entered: make(chan struct{}, 2)}
	s.failing.Store(true)
	o := Options{Threshold: 1, ProbeInterval: time.Hour}
	ch := changes(&o)
	e := New(s, s, o)
	waits := steppedProbes(e)
	defer e.Close()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evaluate(context.Background(), e)
		}()
	}
	<-s.entered
	<-s.entered
	close(s.hold)
	wg.Wait()
	if !nextChange(t, ch) {
		t.Fatal("want the circuit opened")
	}
	if n := len(ch); n != 0 {
		t.Fatalf("%d more circuit changes after it opened, want none", n)
	}
	s.failing.Store(false)
	nextWait(t, waits).fire <- time.Now()
	if nextChange(t, ch) {
		t.Fatal("want the probe to close the circuit")
	}
	if e.Open() {
		t.Fatal("the probe closed the circuit, yet Open reports one open")
	}
}

// A store call that fails after Close opens no circuit and reports no change.
func TestFailureAfterCloseOpensNothing(t *testing.T) {
	s := &scriptedStore{hold: make(chan struct{}), entered: make(chan struct{}, 1)}
	s.failing.Store(true)
	o := Options{Threshold: 1, ProbeInterval: time.Hour}
	ch := changes(&o)
	e := New(s, s, o)
	steppedProbes(e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		evaluate(context.Background(), e)
	}()
	<-s.entered
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	close(s.hold)
	<-done
	if e.Open() || len(ch) != 0 {
		t.Fatalf("after Close: open %v, %d circuit changes; want closed, none", e.Open(), len(ch))
	}
}

// stalledStore answers each call when the test sends it an answer, and every ping at
// once: a store that stalled and is back, with calls still in flight from the stall.
type stalledStore struct {
	entered chan struct{}
	answer  chan error
}

func (s *stalledStore) Evaluate(_ context.Context, now int64, _ []limiter.LimitCheck, _ []limiter.Decision) (limiter.Outcome, error) {
	s.entered <- struct{}{}
	if err := <-s.answer; err != nil {
		return limiter.Outcome{}, err
	}
	return limiter.Outcome{Now: now, Allowed: true}, nil
}

func (s *stalledStore) Ping(context.Context) error { return nil }
func (s *stalledStore) Close() error               { return nil }

// Calls in flight when a stall opened the circuit, and failing only after the probe
// closed it, are evidence of the stall the probe found over: they do not reopen the
// circuit (which, within ProbeInterval of closing, would stay open a whole interval).
// Calls made after the close still count.
func TestFailuresOfCallsFromBeforeTheOpeningDoNotReopen(t *testing.T) {
	s := &stalledStore{entered: make(chan struct{}, 6), answer: make(chan error)}
	o := Options{Threshold: 3, ProbeInterval: time.Hour}
	ch := changes(&o)
	e := New(s, s, o)
	waits := steppedProbes(e)
	defer e.Close()
	stalled := fmt.Errorf("%w: i/o timeout", limiter.ErrStore)
	call := func(n int) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				evaluate(context.Background(), e)
			}()
		}
		for range n {
			<-s.entered
		}
		return &wg
	}
	inFlight := call(6)
	for range 3 {
		s.answer <- stalled
	}
	if !nextChange(t, ch) {
		t.Fatal("3 failures did not open the circuit")
	}
	nextWait(t, waits).fire <- time.Now()
	if nextChange(t, ch) {
		t.Fatal("want the probe to close the circuit")
	}
	for range 3 {
		s.answer <- stalled
	}
	inFlight.Wait()
	if e.Open() {
		t.Fatal("failures of calls made before the circuit opened reopened it after the probe closed it")
	}
	after := call(3)
	for range 3 {
		s.answer <- stalled
	}
	after.Wait()
	if !e.Open() {
		t.Fatal("3 failures of calls made after the close did not reopen the circuit")
	}
}
