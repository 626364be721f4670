package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// serveMetrics serves m's registry and returns its scrape.
func serveMetrics(t *testing.T, m *Metrics) func() map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return func() map[string]float64 { return scrape(t, srv.URL) }
}

// observed decides req on d and has m observe it as api does.
func observed(m *Metrics, d *decide.Decider, api string, req *decide.Request) error {
	start := time.Now()
	res, err := d.Decide(context.Background(), req)
	m.Observe(api, start, req, res, err)
	return err
}

// A refunded descriptor (Envoy's is_negative_hits) and a cost above --max-hits-addend
// are each counted once per descriptor.
func TestRefundsAndClampedCostsAreCounted(t *testing.T) {
	f := newFixture(t)
	b := decide.DefaultBounds
	b.MaxCost = 3
	rs, err := descriptors.Parse("m.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	d := decide.New(rs, f.m.Engine("memory", mem), decide.Options{Keys: storekey.New("m:", 0), Bounds: b})
	big := uint64(5)
	req := &decide.Request{Domain: "m", Descriptors: []decide.Descriptor{
		{Entries: []descriptors.Entry{{Key: "ip", Value: "10.0.0.1"}}, Refund: true},
		{Entries: []descriptors.Entry{{Key: "ip", Value: "10.0.0.2"}}, Cost: &big},
	}}
	if err := observed(f.m, d, "rls", req); err != nil {
		t.Fatal(err)
	}
	got := f.scrape()
	if got["ratelimit_ext_refunds_ignored_total"] != 1 || got["ratelimit_ext_costs_clamped_total"] != 1 {
		t.Errorf("refunds_ignored_total %v, costs_clamped_total %v; want 1 and 1",
			got["ratelimit_ext_refunds_ignored_total"], got["ratelimit_ext_costs_clamped_total"])
	}
}

// A request refused as invalid is counted as invalid, not as the store being
// unavailable; a store failure is counted as unavailable.
func TestRequestOutcomesOnErrors(t *testing.T) {
	rs, err := descriptors.Parse("m.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	scrapeNow := serveMetrics(t, m)
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	good := decide.New(rs, m.Engine("memory", mem), decide.Options{Keys: storekey.New("m:", 0)})
	down := decide.New(rs, m.Engine("redis", failingEngine{err: fmt.Errorf("%w: down", limiter.ErrStore)}), decide.Options{Keys: storekey.New("m:", 0)})
	ip := []decide.Descriptor{{Entries: []descriptors.Entry{{Key: "ip", Value: "10.0.0.1"}}}}
	if err := observed(m, good, "rls", &decide.Request{Descriptors: ip}); !errors.Is(err, decide.ErrInvalid) { // no domain
		t.Fatalf("a request without a domain: %v, want ErrInvalid", err)
	}
	if err := observed(m, down, "rls", &decide.Request{Domain: "m", Descriptors: ip}); err == nil {
		t.Fatal("a failing store answered")
	}
	got := scrapeNow()
	wantSeries(t, got, map[string]float64{
		`ratelimit_ext_requests_total{api="rls",outcome="invalid"}`:     1,
		`ratelimit_ext_requests_total{api="rls",outcome="unavailable"}`: 1,
		`ratelimit_ext_requests_total{api="rls",outcome="ok"}`:          0,
	})
}

// The detailed series cap counts series, and a value seen with several results is a
// series per result: 6,000 users each allowed once and then denied make 12,000
// candidate series, of which only the cap (plus an overflow series per result) exist.
func TestDetailedCapCountsEachResultsSeries(t *testing.T) {
	f := newFixture(t) // user: detailed_metric, 1 an hour
	for i := 0; i < 6_000; i++ {
		for range 2 {
			f.decide(t, "user", fmt.Sprintf("u%d", i))
		}
	}
	series, overflow := 0, 0.0
	for s, v := range f.scrape() {
		if strings.HasPrefix(s, "ratelimit_ext_detailed_decisions_total") {
			series++
			if strings.Contains(s, `descriptor="_overflow_"`) {
				overflow += v
			}
		}
	}
	if series > DetailedSeriesCap+4 || overflow != 2_000 {
		t.Fatalf("%d detailed series with %v decisions in overflow; want at most %d and 2000", series, overflow, DetailedSeriesCap+4)
	}
}

// config_info shows the rule set in use only: a reload replaces the old hash's series.
func TestConfigInfoShowsOnlyTheServedRules(t *testing.T) {
	m := New()
	scrapeNow := serveMetrics(t, m)
	var last *descriptors.RuleSet
	for _, name := range []string{"a", "b"} {
		rs, err := descriptors.Parse("m.yaml", []byte("domain: m\ndescriptors:\n  - key: k\n    rate_limit: {name: "+name+", unit: hour, requests_per_unit: 1}\n"))
		if err != nil {
			t.Fatal(err)
		}
		m.ConfigLoaded(rs, nil)
		last = rs
	}
	var infos []string
	for s := range scrapeNow() {
		if strings.HasPrefix(s, "ratelimit_ext_config_info") {
			infos = append(infos, s)
		}
	}
	if want := `ratelimit_ext_config_info{hash="` + last.Hash() + `"}`; len(infos) != 1 || infos[0] != want {
		t.Errorf("config_info series %q, want only %s", infos, want)
	}
}

// Request latency is recorded under the API that answered.
func TestLatencyIsPerAPI(t *testing.T) {
	f := newFixture(t)
	req := &decide.Request{Domain: "m", Descriptors: []decide.Descriptor{{Entries: []descriptors.Entry{{Key: "ip", Value: "10.0.0.1"}}}}}
	if err := observed(f.m, f.decider, "decide", req); err != nil {
		t.Fatal(err)
	}
	got := f.scrape()
	if got[`ratelimit_ext_request_duration_seconds_count{api="decide"}`] != 1 || got[`ratelimit_ext_request_duration_seconds_count{api="rls"}`] != 0 {
		t.Errorf("request_duration_seconds_count decide %v, rls %v; want 1 and 0",
			got[`ratelimit_ext_request_duration_seconds_count{api="decide"}`], got[`ratelimit_ext_request_duration_seconds_count{api="rls"}`])
	}
}

// store_circuit_open counts the breakers open now (one opens, another opens, the first
// closes: 1), and each fallback is counted under its domain and policy.
func TestStoreHealthMetrics(t *testing.T) {
	m := New()
	scrapeNow := serveMetrics(t, m)
	onCircuit, onFallback := m.StoreHealth()
	onCircuit(true, errors.New("down"))
	onCircuit(true, errors.New("down"))
	onCircuit(false, nil)
	onFallback("m", decide.FailOpen)
	onFallback("m", decide.Local)
	onFallback("m", decide.Local)
	got := scrapeNow()
	wantSeries(t, got, map[string]float64{
		"ratelimit_ext_store_circuit_open":                                   1,
		`ratelimit_ext_store_fallbacks_total{domain="m",policy="fail_open"}`: 1,
		`ratelimit_ext_store_fallbacks_total{domain="m",policy="local"}`:     2,
	})
}

// pingEngine is an engine whose store answers a ping with err.
type pingEngine struct {
	limiter.Engine
	err error
}

func (p pingEngine) Ping(context.Context) error { return p.err }

// The timed engine forwards readiness pings to its store: a store that fails its ping
// is not ready behind the wrapper either; an engine without a store always answers.
func TestInstrumentedEngineForwardsPings(t *testing.T) {
	m := New()
	down := errors.New("store down")
	if err := m.Engine("redis", pingEngine{err: down}).(limiter.Pinger).Ping(context.Background()); !errors.Is(err, down) {
		t.Errorf("ping through the wrapper: %v, want %v", err, down)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	if err := m.Engine("memory", mem).(limiter.Pinger).Ping(context.Background()); err != nil {
		t.Errorf("ping of the memory engine: %v, want nil", err)
	}
}

// deadlineEngine fails a call when its caller's context ends, as a Redis call does
// whose caller's deadline (Envoy's timeout) passes before Redis answers.
type deadlineEngine struct{ limiter.Engine }

func (deadlineEngine) Evaluate(ctx context.Context, _ int64, _ []limiter.LimitCheck, _ []limiter.Decision) (limiter.Outcome, error) {
	<-ctx.Done()
	return limiter.Outcome{}, fmt.Errorf("%w: redis: %w", limiter.ErrStore, ctx.Err())
}

// A call whose caller gave up, cancelled or past its own deadline (Envoy's timeout
// shorter than the wait), is kind="canceled", as docs/metrics.md says ("the caller gave
// up") and as the circuit breaker sees it (such a call does not count toward opening
// it): not a store timeout. A deadline of the engine's own (the call's bound) under a
// caller that is still waiting stays kind="timeout" (TestStoreErrorsAreCounted).
func TestCallerDeadlineIsNotAStoreTimeout(t *testing.T) {
	m := New()
	scrapeNow := serveMetrics(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := m.Engine("redis", deadlineEngine{}).Evaluate(ctx, 0, nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the caller's deadline", err)
	}
	got := scrapeNow()
	if n := got[`ratelimit_ext_store_errors_total{engine="redis",kind="canceled"}`]; n != 1 {
		t.Errorf("kind=canceled: %v, want 1 (kind=timeout: %v)", n, got[`ratelimit_ext_store_errors_total{engine="redis",kind="timeout"}`])
	}
}
