// Package breaker puts a circuit breaker in front of a store-backed engine, so that an
// outage costs at most one store timeout per request in flight when it starts, not one
// per request for as long as it lasts. After Threshold consecutive store failures the
// circuit opens: calls fail at once with limiter.ErrStore (and the store failure policy
// answers them) while a background probe pings the store, firstProbe after opening and
// then every ProbeInterval; the first successful ping closes the circuit. A call counts
// as failed when the store failed it, not when its caller gave up.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// ErrOpen is returned, wrapped with limiter.ErrStore, while the circuit is open.
var ErrOpen = errors.New("circuit open: the store failed recently and is being probed")

// Pinger is the store's health check (the Redis engine has one).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Options configures an Engine.
type Options struct {
	Threshold     int           // consecutive store failures that open the circuit (default 3)
	ProbeInterval time.Duration // time between probes while open (default 500 ms)
	ProbeTimeout  time.Duration // timeout of one probe (default 250 ms)
	// OnChange, when set, is called on every state change (open true/false).
	OnChange func(open bool, cause error)
}

// Engine wraps a limiter.Engine whose store can fail.
type Engine struct {
	inner    limiter.Engine
	pinger   Pinger
	opts     Options
	open     atomic.Bool
	failures atomic.Int64
	closedAt time.Time  // when the circuit last closed (under mu)
	mu       sync.Mutex // serialises opening and closing
	stop     chan struct{}
	probing  sync.WaitGroup
	closed   atomic.Bool
}

// New wraps inner; pinger probes the store while the circuit is open.
func New(inner limiter.Engine, pinger Pinger, o Options) *Engine {
	if o.Threshold <= 0 {
		o.Threshold = 3
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 500 * time.Millisecond
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 250 * time.Millisecond
	}
	return &Engine{inner: inner, pinger: pinger, opts: o, stop: make(chan struct{})}
}

// Evaluate implements limiter.Engine.
func (e *Engine) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	if e.open.Load() {
		return limiter.Outcome{}, fmt.Errorf("%w: %w", limiter.ErrStore, ErrOpen)
	}
	o, err := e.inner.Evaluate(ctx, now, checks, out)
	switch {
	case err == nil:
		if e.failures.Load() != 0 { // a read, not a write, on every healthy call
			e.failures.Store(0)
		}
	case errors.Is(err, limiter.ErrStore) && !gaveUp(ctx):
		// A caller that gave up is not the store's fault (the store's own timeouts,
		// shorter than Envoy's deadline, fail a call first); anything else counts,
		// a batched call once, not once per request it carried.
		if call, ok := limiter.FailedCall(err); ok && !call.CountOnce() {
			break
		}
		if e.failures.Add(1) >= int64(e.opts.Threshold) {
			e.trip(err)
		}
	}
	return o, err
}

// gaveUp says whether ctx's caller has given up: cancelled, or its deadline passed. (A
// call whose socket deadlines the caller's deadline set may fail an instant before ctx
// says it is done.)
func gaveUp(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// Open reports whether the circuit is open.
func (e *Engine) Open() bool { return e.open.Load() }

// Ping checks the store directly (readiness), whatever the circuit's state.
func (e *Engine) Ping(ctx context.Context) error { return e.pinger.Ping(ctx) }

func (e *Engine) trip(cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.open.Load() || e.closed.Load() {
		return
	}
	e.open.Store(true)
	if e.opts.OnChange != nil {
		e.opts.OnChange(true, cause)
	}
	// The first probe comes soon, unless the circuit reopens within ProbeInterval of
	// closing: a store that answers the probe but fails calls would otherwise make
	// the circuit flap every firstProbe.
	first := min(firstProbe, e.opts.ProbeInterval)
	if !e.closedAt.IsZero() && time.Since(e.closedAt) < e.opts.ProbeInterval {
		first = e.opts.ProbeInterval
	}
	e.probing.Add(1)
	go e.probe(first)
}

// firstProbe is how soon after opening the circuit the store is probed the first time
// (at most ProbeInterval); later probes follow every ProbeInterval. A stall of a few
// tens of milliseconds (a slow fork, a long command) opens the circuit too, and should
// not cost a whole interval of answers from the failure policy.
const firstProbe = 50 * time.Millisecond

// probe pings the store, first after first and then every ProbeInterval, until it
// answers; then it closes the circuit.
func (e *Engine) probe(first time.Duration) {
	defer e.probing.Done()
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			t.Reset(e.opts.ProbeInterval)
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.ProbeTimeout)
		err := e.pinger.Ping(ctx)
		cancel()
		if err == nil {
			e.mu.Lock()
			e.failures.Store(0)
			e.open.Store(false)
			e.closedAt = time.Now()
			if e.opts.OnChange != nil {
				e.opts.OnChange(false, nil)
			}
			e.mu.Unlock()
			return
		}
	}
}

// Close stops probing and closes the wrapped engine.
func (e *Engine) Close() error {
	e.mu.Lock()
	if !e.closed.Swap(true) {
		close(e.stop)
	}
	e.mu.Unlock()
	e.probing.Wait()
	return e.inner.Close()
}

// Unwrap returns the wrapped engine.
func (e *Engine) Unwrap() limiter.Engine { return e.inner }
