package httpapi_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// heldPinger is a memory engine whose Ping says it started (entered), waits until
// release is closed, and then answers as a store client does: the context's error if
// its context ended, else err.
type heldPinger struct {
	*limiter.MemoryEngine
	entered chan struct{}
	release chan struct{}
	err     error
}

func (p *heldPinger) Ping(ctx context.Context) error {
	p.entered <- struct{}{}
	<-p.release
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.err
}

// heldReadiness is a Readiness on a heldPinger answering err.
func heldReadiness(t *testing.T, err error) (*httpapi.Readiness, *heldPinger) {
	t.Helper()
	rs, perr := descriptors.Parse("web.yaml", []byte(rules))
	if perr != nil {
		t.Fatal(perr)
	}
	engine := &heldPinger{MemoryEngine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1}),
		entered: make(chan struct{}, 1), release: make(chan struct{}), err: err}
	t.Cleanup(func() { engine.Close() })
	d := decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)})
	return httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: quiet(), Timeout: time.Minute}), engine
}

// checkAsync runs ready.Check(ctx) and delivers its answer.
func checkAsync(ready *httpapi.Readiness, ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() { done <- ready.Check(ctx) }()
	return done
}

var errStoreDown = errors.New("store down")

// A check that joins a probe under way shares its answer, a failure included: it does
// not report ready while the store check it waited on failed. The probe is let go
// only once the second check has blocked (synctest.Wait) without probing itself.
func TestAJoinedCheckSharesTheProbesFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready, engine := heldReadiness(t, errStoreDown)
		first := checkAsync(ready, context.Background())
		<-engine.entered
		second := checkAsync(ready, context.Background())
		synctest.Wait()
		select {
		case <-engine.entered:
			t.Error("the second check probed the store instead of joining the probe under way")
		default:
		}
		close(engine.release)
		for i, done := range []<-chan error{first, second} {
			if err := <-done; !errors.Is(err, errStoreDown) {
				t.Errorf("check %d: %v, want the probe's %v", i+1, err, errStoreDown)
			}
		}
	})
}

// A check that gives up while waiting on another's probe gets its context's error, not
// a "ready" the probe never found; the probe carries on and its answer is recorded.
func TestACheckThatGivesUpGetsItsContextsError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready, engine := heldReadiness(t, errStoreDown)
		first := checkAsync(ready, context.Background())
		<-engine.entered
		ctx, cancel := context.WithCancel(context.Background())
		second := checkAsync(ready, ctx)
		synctest.Wait() // the second check waits on the first's probe
		cancel()
		if err := <-second; !errors.Is(err, context.Canceled) {
			t.Errorf("a check whose caller gave up: %v, want %v", err, context.Canceled)
		}
		close(engine.release)
		if err := <-first; !errors.Is(err, errStoreDown) {
			t.Errorf("the probing check: %v, want %v", err, errStoreDown)
		}
		if err := ready.Err(); !errors.Is(err, errStoreDown) {
			t.Errorf("recorded state %v, want %v", err, errStoreDown)
		}
	})
}

// The probing caller's cancellation does not count as the store failing: the store
// check runs on without the caller's context, and a store that answers is ready.
func TestTheProbingCallersCancellationIsNotAStoreFailure(t *testing.T) {
	ready, engine := heldReadiness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := checkAsync(ready, ctx)
	<-engine.entered
	cancel()
	close(engine.release)
	if err := <-first; err != nil {
		t.Errorf("a probe whose caller gave up, on a store that answered: %v, want ready", err)
	}
	if err := ready.Err(); err != nil {
		t.Errorf("recorded state %v, want ready", err)
	}
}

// Err before any check observes the state rather than calling an unknown state ready:
// without rules it is "no rules loaded".
func TestErrBeforeTheFirstCheckObserves(t *testing.T) {
	memory := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { memory.Close() })
	ready := httpapi.NewReadiness(decide.New(nil, memory, decide.Options{Keys: storekey.New("h:", 0)}),
		httpapi.ReadinessOptions{Log: quiet()})
	if err := ready.Err(); err == nil || err.Error() != "no rules loaded" {
		t.Errorf("Err before any check, without rules: %v, want no rules loaded", err)
	}
}
