package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// ReadinessOptions configures a Readiness.
type ReadinessOptions struct {
	Interval time.Duration // between background checks (default 1 s)
	Timeout  time.Duration // of one store ping (default 500 ms)
	// MaxAge is how long an observation answers Check without a new probe (default 0:
	// every Check probes, unless another is running). It bounds the probes a flood of
	// /readyz requests sends the store.
	MaxAge time.Duration
	Log    *slog.Logger // one line per change of state (default slog.Default())
	// OnChange, when set, is called with the new state (nil = ready) on every change
	// (of readiness, or of the reason for not being ready), and once with the first
	// state: grpc.health.v1 and the ready metric follow it.
	OnChange func(err error)
}

// Readiness is the one readiness state the service reports everywhere (/readyz,
// grpc.health.v1, the ready metric): rules are loaded and the store answers a ping.
// Check observes it now; Run observes it every Interval in the background, so the state
// follows a store that goes away and comes back even when nobody asks. Each change is
// logged once: an unreachable store is a warning, its return an info line with how long
// it was gone.
type Readiness struct {
	decider *decide.Decider
	opts    ReadinessOptions

	mu           sync.Mutex // guards the fields below
	known        bool
	err          error
	observed     time.Time // when the probe that found err started
	unreadySince time.Time // when the service last went from ready (or unknown) to not ready
	running      *probeRun // the probe under way, whose result every Check meanwhile shares
}

// probeRun is one probe, shared by the Checks made while it runs.
type probeRun struct {
	done chan struct{} // closed when err is set
	err  error
}

// NewReadiness returns the readiness of d's rules and engine.
func NewReadiness(d *decide.Decider, o ReadinessOptions) *Readiness {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Readiness{decider: d, opts: o}
}

// errNoRules is the state before any rule set is in place.
var errNoRules = errors.New("no rules loaded")

// Check observes readiness now, records it and returns it (nil = ready). Checks made
// while a probe runs share its result instead of queueing probes of their own, and an
// observation younger than MaxAge is returned as is: a flood of /readyz requests cannot
// line probes up until they time out, which would report a healthy store as failed and,
// across a fleet, take every replica out of service (Envoy then lets requests past every
// limit). Only one probe runs at a time, so states are recorded in the order observed.
// The caller's cancellation does not count as the store failing: a caller that gives up
// gets its context's error, and the probe carries on for the others.
func (r *Readiness) Check(ctx context.Context) error {
	r.mu.Lock()
	if r.known && r.opts.MaxAge > 0 && time.Since(r.observed) < r.opts.MaxAge {
		err := r.err
		r.mu.Unlock()
		return err
	}
	run := r.running
	if run == nil {
		run = &probeRun{done: make(chan struct{})}
		r.running = run
		r.mu.Unlock()
		started := time.Now()
		run.err = r.probeSafely(ctx)
		r.mu.Lock()
		r.record(run.err)
		r.observed, r.running = started, nil
		r.mu.Unlock()
		close(run.done)
		return run.err
	}
	r.mu.Unlock()
	select {
	case <-run.done:
		return run.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// probeSafely is probe with a panic (a bug in an engine's Ping) turned into the state
// it reports: a probe that never finished would leave every later Check waiting on it.
func (r *Readiness) probeSafely(ctx context.Context) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("the store check panicked: %v", v)
		}
	}()
	return r.probe(ctx)
}

func (r *Readiness) probe(ctx context.Context) error {
	if r.decider.Rules() == nil {
		return errNoRules
	}
	p, ok := r.decider.Engine().(limiter.Pinger)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
	defer cancel()
	return p.Ping(ctx)
}

// record stores a state and reports it when it changed. Called with mu held.
func (r *Readiness) record(err error) {
	was, wasKnown := r.err, r.known
	r.err, r.known = err, true
	if wasKnown && reasonOf(was) == reasonOf(err) {
		return // the same state (a different error text is still the same state)
	}
	if err != nil && was == nil {
		r.unreadySince = time.Now()
	}
	since := time.Since(r.unreadySince) // all of the time unready, whatever the reasons
	switch {
	case errors.Is(err, errNoRules):
		r.opts.Log.Warn("not ready: no rules loaded")
	case err != nil:
		r.opts.Log.Warn("not ready: the store check failed", "error", err)
	case !wasKnown:
	case errors.Is(was, errNoRules):
		r.opts.Log.Info("ready: rules loaded", "unready_for", since.Round(time.Millisecond))
	default:
		r.opts.Log.Info("ready: the store answers again", "unready_for", since.Round(time.Millisecond))
	}
	if r.opts.OnChange != nil {
		r.opts.OnChange(err)
	}
}

// reason is why the service is not ready, or that it is.
type reason uint8

const (
	isReady reason = iota
	noRules
	storeFailed
)

// reasonOf classifies a state: a change of reason is logged (rules gone while the store
// was failing, or the other way round), a change of error text within one is not.
func reasonOf(err error) reason {
	switch {
	case err == nil:
		return isReady
	case errors.Is(err, errNoRules):
		return noRules
	default:
		return storeFailed
	}
}

// Err is the last observed state (nil = ready); before the first check it checks.
func (r *Readiness) Err() error {
	r.mu.Lock()
	known, err := r.known, r.err
	r.mu.Unlock()
	if !known {
		return r.Check(context.Background())
	}
	return err
}

// Run checks every Interval until ctx ends.
func (r *Readiness) Run(ctx context.Context) {
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Check(ctx)
		}
	}
}
