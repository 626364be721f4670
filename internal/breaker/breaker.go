// Package breaker puts a circuit breaker in front of a store-backed engine, so that an
// outage costs at most one store timeout per request in flight when it starts, not one
// per request for as long as it lasts. After Threshold consecutive store failures the
// circuit opens: calls fail at once with limiter.ErrStore (and the store failure policy
// answers them) while a background probe pings the store, firstProbe after opening and
// then every ProbeInterval; the first successful ping closes the circuit. A call counts
// as failed when the store failed it, not when its caller gave up, nor when the circuit
// opened while it was in flight (its failure is the one the opening answered).
//
// A store whose parts fail on their own (the hash slots of a Redis Cluster, each on one
// master) names a part per request (Partitioner): each part has a circuit of its own,
// opened by its own failures and closed by its own probe, so one failed master does
// not stop the requests that go to the others.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// ErrOpen is returned, wrapped with limiter.ErrStore, while the circuit is open.
var ErrOpen = errors.New("circuit open: the store failed recently and is being probed")

// Partitioner splits the store into at most MaxParts parts that fail on their own.
type Partitioner interface {
	// Partition numbers the part a request's checks go to, from 0 (below 0: the whole
	// store), with what PingPartition needs to check it.
	Partition(checks []limiter.LimitCheck) (part int, probe string)
	// PingPartition checks a part, named by its probe.
	PingPartition(ctx context.Context, probe string) error
}

// MaxParts bounds the parts a Partitioner names: Redis Cluster's hash slots.
const MaxParts = 16384

// Options configures an Engine.
type Options struct {
	Threshold     int           // consecutive store failures that open a circuit (default 3)
	ProbeInterval time.Duration // time between probes while open (default 500 ms)
	ProbeTimeout  time.Duration // timeout of one probe (default 250 ms)
	// Partitioner, when set, gives each part of the store a circuit of its own.
	Partitioner Partitioner
	// OnChange, when set, is called on every state change of a circuit (open true or
	// false); part names the part ("" for the whole store).
	OnChange func(open bool, part string, cause error)
}

// Engine wraps a limiter.Engine whose store can fail.
type Engine struct {
	inner   limiter.Engine
	pinger  limiter.Pinger
	opts    Options
	whole   circuit
	parts   []atomic.Pointer[circuit] // MaxParts of them with a Partitioner, made on first use
	nOpen   atomic.Int64
	mu      sync.Mutex // serialises opening and closing, and making parts' circuits
	stop    chan struct{}
	probing sync.WaitGroup
	closed  atomic.Bool
	// after is time.After; tests replace it (before the first call) to see and step
	// the probes' schedule.
	after func(time.Duration) <-chan time.Time
}

// circuit is the state of one part's breaker.
type circuit struct {
	name     string // for logs: "" for the whole store
	probe    string // PingPartition's argument
	open     atomic.Bool
	failures atomic.Int64
	// opened counts the openings. A call counts only if the circuit did not open while
	// it ran: one in flight when it opened is evidence of the failure that opened it,
	// which the probe that closed it found over.
	opened   atomic.Uint64
	closedAt time.Time // when the circuit last closed (under Engine.mu)
}

// The defaults of Options.Threshold and Options.ProbeInterval (the service's flags
// default to them too).
const (
	DefaultThreshold     = 3
	DefaultProbeInterval = 500 * time.Millisecond
)

// New wraps inner; pinger probes the store while the circuit is open.
func New(inner limiter.Engine, pinger limiter.Pinger, o Options) *Engine {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = DefaultProbeInterval
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = 250 * time.Millisecond
	}
	e := &Engine{inner: inner, pinger: pinger, opts: o, stop: make(chan struct{}), after: time.After}
	if o.Partitioner != nil {
		e.parts = make([]atomic.Pointer[circuit], MaxParts)
	}
	return e
}

// circuitFor returns the circuit of the part checks go to.
func (e *Engine) circuitFor(checks []limiter.LimitCheck) *circuit {
	if e.opts.Partitioner == nil {
		return &e.whole
	}
	part, probe := e.opts.Partitioner.Partition(checks)
	if part < 0 || part >= MaxParts {
		return &e.whole
	}
	if c := e.parts[part].Load(); c != nil {
		return c
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.parts[part].Load(); c != nil {
		return c
	}
	c := &circuit{name: fmt.Sprintf("slot %d (hash tag %s)", part, probe), probe: strings.Clone(probe)}
	e.parts[part].Store(c)
	return c
}

// Evaluate implements limiter.Engine.
func (e *Engine) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	c := e.circuitFor(checks)
	opened := c.opened.Load() // before open: an opening after this read is seen below
	if c.open.Load() {
		return limiter.Outcome{}, fmt.Errorf("%w: %w", limiter.ErrStore, ErrOpen)
	}
	o, err := e.inner.Evaluate(ctx, now, checks, out)
	switch {
	case err == nil:
		if c.failures.Load() != 0 { // a read, not a write, on every healthy call
			c.failures.Store(0)
		}
	case errors.Is(err, limiter.ErrStore) && !limiter.CallerGaveUp(ctx) && c.opened.Load() == opened:
		// A caller that gave up is not the store's fault (the store's own timeouts,
		// shorter than Envoy's deadline, fail a call first), nor is a call the circuit
		// opened during (see circuit.opened); anything else counts, a batched call
		// once, not once per request it carried.
		if call, ok := limiter.FailedCall(err); ok && !call.CountOnce() {
			break
		}
		if c.failures.Add(1) >= int64(e.opts.Threshold) {
			e.trip(c, err)
		}
	}
	return o, err
}

// Open reports whether a circuit is open (the whole store's, or a part's).
func (e *Engine) Open() bool { return e.nOpen.Load() > 0 }

// Ping checks the store directly (readiness), whatever the circuit's state.
func (e *Engine) Ping(ctx context.Context) error { return e.pinger.Ping(ctx) }

func (e *Engine) trip(c *circuit, cause error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.open.Load() || e.closed.Load() {
		return
	}
	c.opened.Add(1)
	c.open.Store(true)
	e.nOpen.Add(1)
	if e.opts.OnChange != nil {
		e.opts.OnChange(true, c.name, cause)
	}
	// The first probe comes soon, unless the circuit reopens within ProbeInterval of
	// closing: a store that answers the probe but fails calls would otherwise make
	// the circuit flap every firstProbe.
	first := min(firstProbe, e.opts.ProbeInterval)
	if !c.closedAt.IsZero() && time.Since(c.closedAt) < e.opts.ProbeInterval {
		first = e.opts.ProbeInterval
	}
	e.probing.Add(1)
	go e.probe(c, first)
}

// firstProbe is how soon after opening the circuit the store is probed the first time
// (at most ProbeInterval); later probes follow every ProbeInterval. A stall of a few
// tens of milliseconds (a slow fork, a long command) opens the circuit too, and should
// not cost a whole interval of answers from the failure policy.
const firstProbe = 50 * time.Millisecond

// probe pings the store, first after first and then every ProbeInterval, until it
// answers; then it closes the circuit.
func (e *Engine) probe(c *circuit, first time.Duration) {
	defer e.probing.Done()
	tick := e.after(first)
	for {
		select {
		case <-e.stop:
			return
		case <-tick:
			tick = e.after(e.opts.ProbeInterval)
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.opts.ProbeTimeout)
		err := e.ping(ctx, c)
		cancel()
		if err == nil {
			e.mu.Lock()
			c.failures.Store(0)
			c.open.Store(false)
			e.nOpen.Add(-1)
			c.closedAt = time.Now()
			if e.opts.OnChange != nil {
				e.opts.OnChange(false, c.name, nil)
			}
			e.mu.Unlock()
			return
		}
	}
}

// ping checks the store behind c: its part, or the whole store.
func (e *Engine) ping(ctx context.Context, c *circuit) error {
	if c != &e.whole {
		return e.opts.Partitioner.PingPartition(ctx, c.probe)
	}
	return e.pinger.Ping(ctx)
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
