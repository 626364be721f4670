package deploy

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/extauthz"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// family is one metric family as the service exports it.
type family struct {
	histogram bool
	// labels holds each label's values where the service decides them (result, kind,
	// outcome, ...); for inputLabels only the values the service puts there itself.
	labels  map[string]map[string]bool
	buckets []float64 // a histogram's upper bounds
}

// inputLabels take their values from the rules, the requests or the TLS flags in use:
// a rule shipped for every deployment cannot match on them, except on a value the
// service itself substitutes (descriptor="_overflow_" past the series cap).
var inputLabels = set("domain", "limit", "descriptor", "hash", "files")

// engineNames are the engine label's values: --engine's (cmd/ratelimit-ext's chooseEngine).
var engineNames = []string{"memory", "redis"}

// exporter drives a registry built by metrics.New through the code that feeds it, so
// that every family has series and every label the values the service gives it.
type exporter struct {
	m     *metrics.Metrics
	rules *descriptors.RuleSet
	apis  []string                   // apiNames
	fed   map[string]map[string]bool // input label -> values the test put in
}

// The rules the exporter decides with: a detailed limit (ok, near_limit, over_limit and,
// with many values, the overflow series) and a shadow one (shadow_over_limit).
const exporterRules = `domain: fed
descriptors:
  - key: k
    detailed_metric: true
    rate_limit: {unit: hour, requests_per_unit: 5}
  - key: s
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1}
`

// exportedFamilies returns the service's ratelimit_ext_ families, each gathered with series.
func exportedFamilies(t *testing.T) map[string]*family {
	t.Helper()
	rs, err := descriptors.Parse("fed.yaml", []byte(exporterRules))
	if err != nil {
		t.Fatal(err)
	}
	e := &exporter{m: metrics.New(), rules: rs, apis: apiNames(t), fed: map[string]map[string]bool{
		"domain": set("fed", "unknown"), "hash": set(rs.Hash()), "limit": set("k", "s"), "files": set("grpc_server"),
		"descriptor": {},
	}}
	e.decisions(t)
	e.storeErrors(t)
	e.health(t)
	return e.gather(t)
}

// decisions decides requests on the memory engine through every door: each outcome and
// result, an unknown domain, and past the detailed series cap.
func (e *exporter) decisions(t *testing.T) {
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	e.m.MemoryEngine(mem)
	d := decide.New(e.rules, e.m.Engine(engineNames[0], mem), decide.Options{Keys: storekey.New("t:", 0)})
	one := func(api, domain, key, value string) {
		req := &decide.Request{Domain: domain, Descriptors: []decide.Descriptor{{Entries: []descriptors.Entry{{Key: key, Value: value}}}}}
		start := time.Now()
		res, err := d.Decide(context.Background(), req)
		e.m.Observe(api, start, req, res, err)
		if key == "k" {
			e.fed["descriptor"]["k="+value] = true
		}
	}
	for _, api := range e.apis {
		one(api, "", "k", "v")        // invalid: no domain
		one(api, "unknown", "k", "v") // ok, unknown domain
	}
	for range 6 { // 5 an hour: ok, near_limit, over_limit
		one(e.apis[0], "fed", "k", "v")
	}
	for range 2 { // 1 an hour in shadow mode: near_limit, shadow_over_limit
		one(e.apis[0], "fed", "s", "v")
	}
	for i := range metrics.DetailedSeriesCap {
		one(e.apis[0], "fed", "k", fmt.Sprint(i))
	}
}

// storeErrors fails Redis calls with each kind of error, through a decider so that the
// requests are answered unavailable as in service.
func (e *exporter) storeErrors(t *testing.T) {
	for _, err := range []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")},
		context.DeadlineExceeded, context.Canceled, errors.New("OOM command not allowed"),
	} {
		store := fmt.Errorf("%w: %w", limiter.ErrStore, err)
		d := decide.New(e.rules, e.m.Engine(engineNames[1], failingEngine{err: store}), decide.Options{Keys: storekey.New("t:", 0)})
		req := &decide.Request{Domain: "fed", Descriptors: []decide.Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
		res, derr := d.Decide(context.Background(), req)
		if derr == nil {
			t.Fatalf("a store failing with %v answered", err)
		}
		e.m.Observe(e.apis[0], time.Now(), req, res, derr)
	}
}

// health registers and feeds the collectors of the store's health, the caches, xDS,
// rule loads, readiness and TLS files.
func (e *exporter) health(t *testing.T) {
	onCircuit, onFallback := e.m.StoreHealth()
	onCircuit(true, nil)
	for _, p := range []decide.Policy{decide.FailOpen, decide.Local} {
		onFallback("fed", p)
	}
	e.m.OverLimitCache(func() overlimit.Stats { return overlimit.Stats{} })
	e.m.XDS()(true)
	e.m.ConfigLoaded(nil, errors.New("broken"))
	e.m.ConfigLoaded(e.rules, nil)
	e.m.SetReady(nil)

	ca := testpki.New(t)
	c := ca.Issue(t, "server", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	kp, err := tlsfiles.LoadKeyPair(c.CertFile, c.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	var inUse tlsfiles.Registry
	inUse.Add("grpc_server", kp)
	e.m.TLSFiles(&inUse)
}

// gather reads the registry: each family's labels and values, and its buckets.
func (e *exporter) gather(t *testing.T) map[string]*family {
	gathered, err := e.m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*family{}
	for _, mf := range gathered {
		if !strings.HasPrefix(mf.GetName(), "ratelimit_ext_") {
			continue
		}
		f := &family{histogram: mf.GetType().String() == "HISTOGRAM", labels: map[string]map[string]bool{}}
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if f.labels[lp.GetName()] == nil {
					f.labels[lp.GetName()] = map[string]bool{}
				}
				if !e.fed[lp.GetName()][lp.GetValue()] {
					f.labels[lp.GetName()][lp.GetValue()] = true
				}
			}
			if f.buckets == nil && f.histogram {
				for _, b := range s.GetHistogram().GetBucket() {
					f.buckets = append(f.buckets, b.GetUpperBound())
				}
			}
		}
		out[mf.GetName()] = f
	}
	return out
}

// apiNames are the api label's values: the literal names internal packages observe
// requests under, and the ext_authz door's constant.
func apiNames(t *testing.T) []string {
	t.Helper()
	names := sourceMatches(t, filepath.Join("internal", "*", "*.go"), regexp.MustCompile(`\.Observe\("(\w+)"`))
	names[extauthz.APIName] = true
	if len(names) < 3 {
		t.Fatalf("api names %v: want the three doors", names)
	}
	return slices.Sorted(maps.Keys(names))
}

// failingEngine fails every call with err.
type failingEngine struct {
	limiter.Engine
	err error
}

func (f failingEngine) Evaluate(context.Context, int64, []limiter.LimitCheck, []limiter.Decision) (limiter.Outcome, error) {
	return limiter.Outcome{}, f.err
}

// Every family the source defines is gathered by the exporter with series, so that the
// rules' checks see its labels; and the closed labels the alerts use have their values.
func TestExportedFamilies(t *testing.T) {
	fams := exportedFamilies(t)
	for name := range knownMetrics(t) {
		if fams[name] == nil {
			t.Errorf("%s is not gathered: have exportedFamilies give it series", name)
		}
	}
	for _, c := range []struct{ family, label, want string }{
		{"ratelimit_ext_requests_total", "outcome", "invalid ok over_limit unavailable"},
		{"ratelimit_ext_requests_total", "api", "decide ext_authz rls"},
		{"ratelimit_ext_decisions_total", "result", "near_limit ok over_limit shadow_over_limit"},
		{"ratelimit_ext_store_errors_total", "kind", "canceled other timeout unreachable"},
		{"ratelimit_ext_store_duration_seconds", "engine", "memory redis"},
		{"ratelimit_ext_detailed_decisions_total", "descriptor", "_overflow_"},
		{"ratelimit_ext_config_info", "hash", ""}, // input labels: none of the test's values
		{"ratelimit_ext_decisions_total", "domain", ""},
		{"ratelimit_ext_decisions_total", "limit", ""},
		{"ratelimit_ext_tls_reload_failing", "files", ""},
	} {
		values, ok := fams[c.family].labels[c.label]
		if got := slices.Sorted(maps.Keys(values)); !ok || strings.Join(got, " ") != c.want {
			t.Errorf("%s %s: values %q, want %q", c.family, c.label, got, c.want)
		}
	}
}
