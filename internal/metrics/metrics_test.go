package metrics

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

const rules = `
domain: m
descriptors:
  - key: ip
    rate_limit: {name: per-ip, unit: hour, requests_per_unit: 10}
  - key: user
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: shadow
    shadow_mode: true
    rate_limit: {name: shadowed, unit: hour, requests_per_unit: 1}
`

type fixture struct {
	m       *Metrics
	decider *decide.Decider
	scrape  func() map[string]float64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureFor(t, rules)
}

// newFixtureFor serves the rules of one file, domain m.
func newFixtureFor(t *testing.T, rules string) *fixture {
	t.Helper()
	rs, err := descriptors.Parse("m.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	m.ConfigLoaded(rs, nil)
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	m.MemoryEngine(mem)
	d := decide.New(rs, m.Engine("memory", mem), decide.Options{Keys: storekey.New("m:", 0)})
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return &fixture{m: m, decider: d, scrape: func() map[string]float64 { return scrape(t, srv.URL) }}
}

// scrape reads the text exposition into series → value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		var v float64
		fmt.Sscan(line[i+1:], &v)
		out[line[:i]] = v
	}
	return out
}

// wantSeries reports every series of want whose scraped value differs; a series the
// scrape lacks reads 0.
func wantSeries(t *testing.T, got, want map[string]float64) {
	t.Helper()
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}
}

func (f *fixture) decide(t *testing.T, kv ...string) {
	t.Helper()
	req := &decide.Request{Domain: "m", Descriptors: []decide.Descriptor{{}}}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Descriptors[0].Entries = append(req.Descriptors[0].Entries, descriptors.Entry{Key: kv[i], Value: kv[i+1]})
	}
	start := time.Now()
	res, err := f.decider.Decide(context.Background(), req)
	f.m.Observe("rls", start, req, res, err)
	if err != nil {
		t.Fatal(err)
	}
}

func TestExactCountsPerLimitAndResult(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 12; i++ { // 10 allowed (8 ok, then 2 leave < 20% of 10), 2 denied
		f.decide(t, "ip", "10.0.0.1")
	}
	for i := 0; i < 3; i++ { // shadow: 1 allowed (near: 0 left), 2 would-deny
		f.decide(t, "shadow", "x")
	}
	got := f.scrape()
	want := map[string]float64{
		`ratelimit_ext_decisions_total{domain="m",limit="per-ip",result="ok"}`:                  8,
		`ratelimit_ext_decisions_total{domain="m",limit="per-ip",result="near_limit"}`:          2,
		`ratelimit_ext_decisions_total{domain="m",limit="per-ip",result="over_limit"}`:          2,
		`ratelimit_ext_decisions_total{domain="m",limit="shadowed",result="near_limit"}`:        1,
		`ratelimit_ext_decisions_total{domain="m",limit="shadowed",result="shadow_over_limit"}`: 2,
		`ratelimit_ext_requests_total{api="rls",outcome="ok"}`:                                  13,
		`ratelimit_ext_requests_total{api="rls",outcome="over_limit"}`:                          2,
		`ratelimit_ext_request_duration_seconds_count{api="rls"}`:                               15,
		`ratelimit_ext_store_duration_seconds_count{engine="memory"}`:                           15,
		`ratelimit_ext_config_loads_total{result="success"}`:                                    1,
		`ratelimit_ext_config_limits`:                                                           3,
		`ratelimit_ext_memory_keys`:                                                             2,
	}
	wantSeries(t, got, want)
}

// The xDS link's gauge follows what the subscriber reports.
func TestXDSConnected(t *testing.T) {
	f := newFixture(t)
	onStream := f.m.XDS()
	const series = "ratelimit_ext_xds_connected"
	if v, ok := f.scrape()[series]; !ok || v != 0 {
		t.Fatalf("%s = %v (present %v) before any stream, want 0", series, v, ok)
	}
	onStream(true)
	if v := f.scrape()[series]; v != 1 {
		t.Fatalf("%s = %v with a stream up, want 1", series, v)
	}
	onStream(false)
	if v := f.scrape()[series]; v != 0 {
		t.Fatalf("%s = %v after the stream ended, want 0", series, v)
	}
}

// A request for a domain the rules do not define is counted as such (it is allowed
// without a decision); one in the rules' domain that matches nothing is not.
func TestUnknownDomainIsCounted(t *testing.T) {
	f := newFixture(t)
	for _, domain := range []string{"edge", "edge", "m"} {
		req := &decide.Request{Domain: domain, Descriptors: []decide.Descriptor{{Entries: []descriptors.Entry{{Key: "nomatch", Value: "x"}}}}}
		res, err := f.decider.Decide(context.Background(), req)
		f.m.Observe("rls", time.Now(), req, res, err)
		if err != nil || res.OverLimit {
			t.Fatalf("domain %s: %+v, %v; want allowed", domain, res, err)
		}
	}
	f.decide(t, "ip", "10.0.0.1")
	got := f.scrape()
	if v := got[`ratelimit_ext_unknown_domain_requests_total{api="rls"}`]; v != 2 {
		t.Errorf("unknown_domain_requests_total = %v, want 2 (the two requests for edge)", v)
	}
	if v := got[`ratelimit_ext_requests_total{api="rls",outcome="ok"}`]; v != 4 {
		t.Errorf("requests_total ok = %v, want 4", v)
	}
}

// 10,000 distinct runtime values create no new series without detailed_metric; with it,
// series stop growing at the cap.
func TestCardinalityIsBounded(t *testing.T) {
	f := newFixture(t)
	f.decide(t, "ip", "warm-up")
	before := len(f.scrape())
	for i := 0; i < 10_000; i++ {
		f.decide(t, "ip", fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	if after := len(f.scrape()); after != before {
		t.Fatalf("10,000 client addresses changed the series count from %d to %d", before, after)
	}

	for i := 0; i < DetailedSeriesCap+500; i++ {
		f.decide(t, "user", fmt.Sprintf("u%d", i))
	}
	detailed, overflow := 0, 0.0
	for series, v := range f.scrape() {
		if strings.HasPrefix(series, "ratelimit_ext_detailed_decisions_total") {
			detailed++
			if strings.Contains(series, `descriptor="_overflow_"`) {
				overflow += v
			}
		}
	}
	if detailed > DetailedSeriesCap+4 { // + one overflow series per result
		t.Fatalf("%d detailed series, cap %d", detailed, DetailedSeriesCap)
	}
	if overflow != 500 {
		t.Fatalf("%v decisions counted as overflow, want 500", overflow)
	}
}

func TestConfigLoadFailureIsCounted(t *testing.T) {
	f := newFixture(t)
	f.m.ConfigLoaded(nil, fmt.Errorf("broken"))
	if got := f.scrape()[`ratelimit_ext_config_loads_total{result="failure"}`]; got != 1 {
		t.Fatalf("failures = %v", got)
	}
}

// Before the first load (an xDS start waiting for its server) no load has failed: the
// alert on config_last_load_success == 0 ("a rules edit was rejected") stays quiet, and
// no success time is claimed.
func TestNoLoadYetIsNotAFailedLoad(t *testing.T) {
	m := New()
	var out strings.Builder
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(&out, resp.Body); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\nratelimit_ext_config_last_load_success 1\n", "\nratelimit_ext_config_last_success_timestamp_seconds 0\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("before any load, want %q in:\n%.2000s", strings.TrimSpace(want), out.String())
		}
	}
}

// The last load's outcome and the readiness state are gauges an alert can test directly.
func TestLastLoadAndReadyGauges(t *testing.T) {
	f := newFixture(t)
	got := f.scrape()
	if got[`ratelimit_ext_config_last_load_success`] != 1 || got[`ratelimit_ext_config_last_success_timestamp_seconds`] < 1e9 {
		t.Fatalf("after a good load: %v / %v", got[`ratelimit_ext_config_last_load_success`], got[`ratelimit_ext_config_last_success_timestamp_seconds`])
	}
	stamp := got[`ratelimit_ext_config_last_success_timestamp_seconds`]
	f.m.ConfigLoaded(nil, fmt.Errorf("broken"))
	got = f.scrape()
	if got[`ratelimit_ext_config_last_load_success`] != 0 || got[`ratelimit_ext_config_last_success_timestamp_seconds`] != stamp {
		t.Fatalf("after a failed load: success %v, timestamp %v (was %v)", got[`ratelimit_ext_config_last_load_success`],
			got[`ratelimit_ext_config_last_success_timestamp_seconds`], stamp)
	}
	if got[`ratelimit_ext_ready`] != 0 {
		t.Fatal("ready before any readiness report")
	}
	f.m.SetReady(nil)
	if f.scrape()[`ratelimit_ext_ready`] != 1 {
		t.Fatal("not 1 when ready")
	}
	f.m.SetReady(fmt.Errorf("store unreachable"))
	if f.scrape()[`ratelimit_ext_ready`] != 0 {
		t.Fatal("not 0 when unready")
	}
}

func TestOverLimitCacheMetrics(t *testing.T) {
	f := newFixture(t)
	stats := overlimit.Stats{Hits: 7, Stores: 3, Entries: 2}
	f.m.OverLimitCache(func() overlimit.Stats { return stats })
	got := f.scrape()
	wantSeries(t, got, map[string]float64{
		"ratelimit_ext_local_cache_hits_total":   7,
		"ratelimit_ext_local_cache_stores_total": 3,
		"ratelimit_ext_local_cache_entries":      2,
	})
}

// The descriptor label of the per-value series follows envoyproxy/ratelimit's metric
// keys: value_to_metric shows the request's value at its levels only, a share_threshold
// level shows its pattern, detailed_metric shows every value. Rules with neither flag
// create no per-value series.
func TestValueToMetricSeries(t *testing.T) {
	f := newFixtureFor(t, `
domain: m
descriptors:
  - key: route
    value_to_metric: true
    descriptors:
      - key: http_method
        value_to_metric: true
        descriptors:
          - key: subject_id
            rate_limit: {name: per-subject, unit: hour, requests_per_unit: 10}
  - key: tenant
    value: "t-*"
    descriptors:
      - key: path
        value_to_metric: true
        rate_limit: {unit: hour, requests_per_unit: 10}
  - key: files
    value: "files/*"
    share_threshold: true
    value_to_metric: true
    rate_limit: {name: files, unit: hour, requests_per_unit: 10}
  - key: svc
    value: "svc/*"
    share_threshold: true
    descriptors:
      - key: endpoint
        detailed_metric: true
        rate_limit: {name: endpoints, unit: hour, requests_per_unit: 10}
  - key: plain
    rate_limit: {name: plain, unit: hour, requests_per_unit: 10}
`)
	f.decide(t, "route", "api", "http_method", "GET", "subject_id", "123")
	f.decide(t, "route", "api", "http_method", "GET", "subject_id", "456")
	f.decide(t, "route", "web", "http_method", "POST", "subject_id", "123")
	f.decide(t, "tenant", "t-1", "path", "/a")
	f.decide(t, "files", "files/a.pdf")
	f.decide(t, "files", "files/b.csv")
	f.decide(t, "svc", "svc/x", "endpoint", "/e1")
	f.decide(t, "svc", "svc/y", "endpoint", "/e1")
	f.decide(t, "plain", "v1")
	got := map[string]float64{}
	for series, v := range f.scrape() {
		if strings.HasPrefix(series, "ratelimit_ext_detailed_decisions_total") {
			got[series] = v
		}
	}
	series := func(descriptor, limit string) string {
		return fmt.Sprintf(`ratelimit_ext_detailed_decisions_total{descriptor=%q,domain="m",limit=%q,result="ok"}`, descriptor, limit)
	}
	want := map[string]float64{
		series("route=api/http_method=GET/subject_id", "per-subject"):  2,
		series("route=web/http_method=POST/subject_id", "per-subject"): 1,
		series("tenant=t-*/path=/a", "tenant=t-*/path"):                1,
		series("files=files/*", "files"):                               2,
		series("svc=svc/*/endpoint=/e1", "endpoints"):                  2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("per-value series:\n got %v\nwant %v", got, want)
	}
}

// perUserValueRules count each user's decisions in a series of its own.
const perUserValueRules = `
domain: m
descriptors:
  - key: user
    value_to_metric: true
    rate_limit: {unit: hour, requests_per_unit: 1}
`

// value_to_metric series share detailed_metric's cap.
func TestValueToMetricIsCapped(t *testing.T) {
	f := newFixtureFor(t, perUserValueRules)
	for i := 0; i < DetailedSeriesCap+300; i++ {
		f.decide(t, "user", fmt.Sprintf("u%d", i))
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
	if series != DetailedSeriesCap+1 || overflow != 300 {
		t.Fatalf("%d series, %v decisions in overflow; want %d and 300", series, overflow, DetailedSeriesCap+1)
	}
}

// Client values are long at will: a descriptor label is bounded in bytes, and long
// labels that differ only past the cut stay distinct series.
func TestDescriptorLabelsAreBoundedInBytes(t *testing.T) {
	f := newFixtureFor(t, perUserValueRules)
	long := strings.Repeat("é", 2000) // 2-byte runes: the cut must keep UTF-8 whole
	f.decide(t, "user", long+"1")
	f.decide(t, "user", long+"2")
	labels := map[string]bool{}
	for s := range f.scrape() {
		if !strings.HasPrefix(s, "ratelimit_ext_detailed_decisions_total") {
			continue
		}
		_, rest, _ := strings.Cut(s, `descriptor="`)
		label, _, _ := strings.Cut(rest, `"`)
		labels[label] = true
		if len(label) > maxDescriptorLabel || !utf8.ValidString(label) || !strings.HasPrefix(label, "user=éé") {
			t.Errorf("label of %d bytes (valid UTF-8: %v): %.40q…", len(label), utf8.ValidString(label), label)
		}
	}
	if len(labels) != 2 {
		t.Errorf("%d distinct labels for two distinct long values, want 2", len(labels))
	}
}

// A quota_mode limit over its limit counts over_limit whether or not the request was
// denied (its quota descriptors decide that together); the request's outcome says.
func TestQuotaModeCounts(t *testing.T) {
	f := newFixtureFor(t, `
domain: m
descriptors:
  - key: backend
    quota_mode: true
    rate_limit: {name: per-backend, unit: hour, requests_per_unit: 1}
`)
	two := func() {
		req := &decide.Request{Domain: "m", Descriptors: []decide.Descriptor{
			{Entries: []descriptors.Entry{{Key: "backend", Value: "a"}}},
			{Entries: []descriptors.Entry{{Key: "backend", Value: "b"}}},
		}}
		start := time.Now()
		res, err := f.decider.Decide(context.Background(), req)
		f.m.Observe("rls", start, req, res, err)
		if err != nil {
			t.Fatal(err)
		}
	}
	f.decide(t, "backend", "a") // a: 1 of 1 used
	two()                       // a over, b within: allowed
	two()                       // both over: denied
	got := f.scrape()
	wantSeries(t, got, map[string]float64{
		`ratelimit_ext_decisions_total{domain="m",limit="per-backend",result="near_limit"}`: 2,
		`ratelimit_ext_decisions_total{domain="m",limit="per-backend",result="over_limit"}`: 3,
		`ratelimit_ext_requests_total{api="rls",outcome="ok"}`:                              2,
		`ratelimit_ext_requests_total{api="rls",outcome="over_limit"}`:                      1,
	})
}

// failingEngine fails every call with err.
type failingEngine struct {
	limiter.Engine
	err error
}

func (f failingEngine) Evaluate(context.Context, int64, []limiter.LimitCheck, []limiter.Decision) (limiter.Outcome, error) {
	return limiter.Outcome{}, f.err
}

// Every store failure is counted by kind, whatever the failure policy answers (SPEC §6):
// under fail_closed the request fails, under fail_open and local it is answered, and
// the counter rises alike. A malformed request is not a store failure.
func TestStoreErrorsAreCounted(t *testing.T) {
	rs, err := descriptors.Parse("m.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	m := New()
	srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	local := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { local.Close() })
	series := func(kind string) string {
		return `ratelimit_ext_store_errors_total{engine="redis",kind="` + kind + `"}`
	}

	refused := fmt.Errorf("%w: %w", limiter.ErrStore, &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	for i, p := range []decide.Policy{decide.FailClosed, decide.FailOpen, decide.Local} {
		d := decide.New(rs, m.Engine("redis", failingEngine{err: refused}), decide.Options{Keys: storekey.New("m:", 0),
			Failure: decide.FailurePolicy{Default: p, Local: local}})
		req := &decide.Request{Domain: "m", Descriptors: []decide.Descriptor{{Entries: []descriptors.Entry{{Key: "ip", Value: "10.0.0.1"}}}}}
		_, err := d.Decide(context.Background(), req)
		if (err != nil) != (p == decide.FailClosed) {
			t.Errorf("%v: error %v", p, err)
		}
		if got := scrape(t, srv.URL)[series("unreachable")]; got != float64(i+1) {
			t.Errorf("after %v: %s = %v, want %d", p, series("unreachable"), got, i+1)
		}
	}

	for kind, err := range map[string]error{
		"timeout":  fmt.Errorf("%w: %w", limiter.ErrStore, context.DeadlineExceeded),
		"canceled": fmt.Errorf("%w: %w", limiter.ErrStore, context.Canceled),
		"other":    fmt.Errorf("%w: NOSCRIPT twice", limiter.ErrStore),
	} {
		e := m.Engine("redis", failingEngine{err: err})
		e.Evaluate(context.Background(), 0, nil, nil)
		if got := scrape(t, srv.URL)[series(kind)]; got != 1 {
			t.Errorf("%s = %v, want 1", series(kind), got)
		}
	}
	// Every pooled connection stuck (dialing a host that drops packets): a timeout too.
	before := scrape(t, srv.URL)[series("timeout")]
	m.Engine("redis", failingEngine{err: fmt.Errorf("%w: redis: %w", limiter.ErrStore, redis.ErrPoolTimeout)}).Evaluate(context.Background(), 0, nil, nil)
	if got := scrape(t, srv.URL)[series("timeout")]; got != before+1 {
		t.Errorf("a pool timeout: %s = %v, want %v", series("timeout"), got, before+1)
	}
	// A pooled connection that Redis closed (a restart, CLIENT KILL) ends in EOF.
	before = scrape(t, srv.URL)[series("unreachable")]
	m.Engine("redis", failingEngine{err: fmt.Errorf("%w: redis: %w", limiter.ErrStore, io.EOF)}).Evaluate(context.Background(), 0, nil, nil)
	if got := scrape(t, srv.URL)[series("unreachable")]; got != before+1 {
		t.Errorf("a closed connection (EOF): %s = %v, want %v", series("unreachable"), got, before+1)
	}
	m.Engine("redis", failingEngine{err: fmt.Errorf("%w: cost too large", limiter.ErrBadRequest)}).Evaluate(context.Background(), 0, nil, nil)
	if got := scrape(t, srv.URL)[series("other")]; got != 1 {
		t.Errorf("a bad request was counted as a store error: %s = %v", series("other"), got)
	}
}
