package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/breaker"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
)

// The store's metrics count the calls that reached the store: while the circuit is
// open, requests are answered without a store call and add neither a store error nor
// a store duration.
func TestOpenCircuitAddsNoStoreCalls(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every call is refused at once
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: "redis://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	var opened int
	e := guardStore(re, "redis", m, &storeConfig{breakerThreshold: 3, probeInterval: time.Hour},
		func(open bool, _ error) {
			if open {
				opened++
			}
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer e.Close()

	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	checks, out := []limiter.LimitCheck{{Key: "k", Params: p, Cost: 1}}, make([]limiter.Decision, 1)
	var fast int
	for range 10 {
		_, err := e.Evaluate(context.Background(), 0, checks, out)
		if !errors.Is(err, limiter.ErrStore) {
			t.Fatalf("want a store error, got %v", err)
		}
		if errors.Is(err, breaker.ErrOpen) {
			fast++
		}
	}
	if opened != 1 || fast != 7 {
		t.Fatalf("circuit opened %d times, %d of 10 calls answered by it; want 1 and 7", opened, fast)
	}
	if errs, calls := storeCounts(t, m); errs != 3 || calls != 3 {
		t.Errorf("store_errors_total %v, store_duration_seconds count %v; want the 3 calls that reached the store", errs, calls)
	}
}

// storeCounts sums ratelimit_ext_store_errors_total and the count of
// ratelimit_ext_store_duration_seconds over their labels.
func storeCounts(t *testing.T, m *metrics.Metrics) (errs, calls float64) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			switch f.GetName() {
			case "ratelimit_ext_store_errors_total":
				errs += s.GetCounter().GetValue()
			case "ratelimit_ext_store_duration_seconds":
				calls += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return errs, calls
}
