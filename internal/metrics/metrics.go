// Package metrics exposes the service's Prometheus metrics (docs/metrics.md).
//
// Cardinality is bounded by construction: decision labels are the configured domain and
// limit (its name, else its descriptor path), never runtime values, so a flood of
// distinct client addresses creates no series. A rule with `detailed_metric: true`, or
// with `value_to_metric: true` on a level of its path, is also counted per runtime
// descriptor value (descriptorLabel), capped at DetailedSeriesCap series across the
// process; past the cap, new values are counted under the value "_overflow_".
package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

const (
	namespace = "ratelimit_ext"
	// DetailedSeriesCap bounds the series that detailed_metric rules can create.
	DetailedSeriesCap = 10_000
	// overflowValue labels detailed series past the cap.
	overflowValue = "_overflow_"
	// nearLimitPercent: an allowed decision that leaves less than this percentage of
	// the ceiling is counted as near_limit.
	nearLimitPercent = 20
)

// Results of one limit's decision, as counted in decisions_total.
const (
	ResultOK              = "ok"
	ResultNearLimit       = "near_limit"
	ResultOverLimit       = "over_limit"
	ResultShadowOverLimit = "shadow_over_limit"
)

// latencyBuckets resolve sub-millisecond answers: Envoy waits on every request. The
// thresholds of the latency alerts (2 ms, 5 ms; deploy/prometheus) are boundaries:
// between two, histogram_quantile only interpolates. So is a Redis call's default bound (the read +
// write timeouts, 16 ms), which the calls it ends exceed and the ones that answer do
// not; and Envoy's default filter timeout, 20 ms.
var latencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.005, 0.01, 0.016, 0.02, 0.05, 0.1, 0.25, 1,
}

// Metrics holds every collector of the service.
type Metrics struct {
	Registry    *prometheus.Registry
	decisions   *prometheus.CounterVec
	detailed    *prometheus.CounterVec
	requests    *prometheus.CounterVec
	refunds     prometheus.Counter
	unknown     *prometheus.CounterVec
	clamped     prometheus.Counter
	latency     *prometheus.HistogramVec
	storeTime   *prometheus.HistogramVec
	storeErrors *prometheus.CounterVec
	loads       *prometheus.CounterVec
	configInfo  *prometheus.GaugeVec
	configRules prometheus.Gauge
	lastLoadOK  prometheus.Gauge
	lastLoadAt  prometheus.Gauge
	ready       prometheus.Gauge

	mu          sync.Mutex
	detailedSet map[string]struct{}
}

// New registers the service's collectors plus the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry(), detailedSet: map[string]struct{}{}}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "decisions_total",
		Help: "Limit decisions by domain, limit (name, else descriptor path) and result (ok, near_limit, over_limit, shadow_over_limit).",
	}, []string{"domain", "limit", "result"})
	m.detailed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "detailed_decisions_total",
		Help: "Decisions of detailed_metric and value_to_metric limits per runtime descriptor value (capped; see docs/metrics.md).",
	}, []string{"domain", "limit", "descriptor", "result"})
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "requests_total",
		Help: "Requests by API (rls, ext_authz, decide) and outcome (ok, over_limit, invalid, unavailable).",
	}, []string{"api", "outcome"})
	m.refunds = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "refunds_ignored_total",
		Help: "Descriptors with Envoy's is_negative_hits (a refund), answered OK without changing any state: refunds are not supported.",
	})
	m.unknown = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "unknown_domain_requests_total",
		Help: "Requests for a domain the rules do not define, answered OK without a decision: a domain misspelt in Envoy's filter, or rules not mounted.",
	}, []string{"api"})
	m.clamped = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "costs_clamped_total",
		Help: "Descriptors whose cost (hits_addend) was above --max-hits-addend and whose limits were decided and charged as --max-hits-addend.",
	})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help: "Time to answer one request, by API.", Buckets: latencyBuckets,
	}, []string{"api"})
	m.storeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "store_duration_seconds",
		Help: "Time of one engine call per request (on the redis engine its script call, or its share of a batched one, waiting included).", Buckets: latencyBuckets,
	}, []string{"engine"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_errors_total",
		Help: "Failed engine calls by kind (timeout, unreachable, canceled, other).",
	}, []string{"engine", "kind"})
	m.loads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "config_loads_total",
		Help: "Rule loads by result (success, failure).",
	}, []string{"result"})
	m.configInfo = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_info",
		Help: "1 for the loaded rule set, labelled with its hash.",
	}, []string{"hash"})
	m.configRules = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_limits", Help: "Limits in the loaded rule set.",
	})
	m.lastLoadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_load_success",
		Help: "0 if the last rule load failed (the previous rules keep serving), else 1 (also before the first load).",
	})
	m.lastLoadAt = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "config_last_success_timestamp_seconds",
		Help: "Unix time of the last successful rule load.",
	})
	m.ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "ready",
		Help: "1 while the service is ready (rules loaded, store reachable), as /readyz and grpc.health.v1 report.",
	})
	// No load has failed yet: an xDS start waiting for its first rules must not read as
	// a rejected edit (the alert on 0); ready says whether rules are loaded.
	m.lastLoadOK.Set(1)
	m.Registry.MustRegister(m.decisions, m.detailed, m.requests, m.refunds, m.unknown, m.clamped, m.latency, m.storeTime, m.storeErrors,
		m.loads, m.configInfo, m.configRules, m.lastLoadOK, m.lastLoadAt, m.ready,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// XDS adds the xDS link's gauge and returns what the subscriber reports it through.
func (m *Metrics) XDS() (onStream func(up bool)) {
	connected := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "xds_connected",
		Help: "1 while a stream to the xDS server is up and has answered, else 0: the rules in place serve on, but no longer follow the server.",
	})
	m.Registry.MustRegister(connected)
	return func(up bool) {
		if up {
			connected.Set(1)
		} else {
			connected.Set(0)
		}
	}
}

// ConfigLoaded records a load attempt and, on success, the rule set now served.
func (m *Metrics) ConfigLoaded(rs *descriptors.RuleSet, err error) {
	if err != nil {
		m.loads.WithLabelValues("failure").Inc()
		m.lastLoadOK.Set(0)
		return
	}
	// The rule set's gauges first, the counter last: a scrape that sees the new load
	// count also sees the new hash.
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(rs.Hash()).Set(1)
	m.configRules.Set(float64(rs.LimitCount()))
	m.lastLoadOK.Set(1)
	m.lastLoadAt.SetToCurrentTime()
	m.loads.WithLabelValues("success").Inc()
}

// SetReady records the readiness state (nil = ready); use as a readiness callback.
func (m *Metrics) SetReady(err error) {
	if err != nil {
		m.ready.Set(0)
		return
	}
	m.ready.Set(1)
}

// Observe records one request: its outcome, latency and every limit's decision.
func (m *Metrics) Observe(api string, start time.Time, req *decide.Request, res *decide.Result, err error) {
	m.latency.WithLabelValues(api).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(api, outcome(res, err)).Inc()
	if res == nil {
		return
	}
	if res.UnknownDomain {
		m.unknown.WithLabelValues(api).Inc()
	}
	for i := range res.Statuses {
		if req.Descriptors[i].Refund {
			m.refunds.Inc()
		}
		if res.Statuses[i].CostClamped {
			m.clamped.Inc()
		}
		for _, c := range res.Statuses[i].Checked {
			result := Result(c)
			m.decisions.WithLabelValues(c.Limit.Domain, c.Limit.Label(), result).Inc()
			if c.Limit.DetailedMetric || c.Limit.ValueToMetric {
				m.countDetailed(c.Limit, req.Descriptors[i].Entries, result)
			}
		}
	}
}

func outcome(res *decide.Result, err error) string {
	switch {
	case errors.Is(err, decide.ErrInvalid):
		return "invalid"
	case err != nil:
		return "unavailable"
	case res.OverLimit:
		return "over_limit"
	}
	return "ok"
}

// Result classifies one limit's decision.
func Result(c decide.Checked) string {
	switch {
	case !c.Decision.Allowed && c.Shadow:
		return ResultShadowOverLimit
	case !c.Decision.Allowed:
		return ResultOverLimit
	case c.Decision.Remaining*100 < c.Decision.Limit*nearLimitPercent:
		return ResultNearLimit
	}
	return ResultOK
}

// countDetailed counts a decision under its descriptor label, within the process-wide
// series cap.
func (m *Metrics) countDetailed(l *descriptors.Limit, entries []descriptors.Entry, result string) {
	value := boundLabel(descriptorLabel(l, entries))
	series := l.Domain + "\x00" + l.Label() + "\x00" + value + "\x00" + result
	m.mu.Lock()
	if _, ok := m.detailedSet[series]; !ok {
		if len(m.detailedSet) >= DetailedSeriesCap {
			value = overflowValue
		} else {
			m.detailedSet[series] = struct{}{}
		}
	}
	m.mu.Unlock()
	m.detailed.WithLabelValues(l.Domain, l.Label(), value, result).Inc()
}

// descriptorLabel renders a request descriptor as "key=value/key=value", level by level,
// the way envoyproxy/ratelimit builds its metric keys: detailed_metric shows the
// request's value at every level; value_to_metric shows it at its own levels and the
// entry as configured at the others ("key" for a key without value, "key=value" or
// "key=pattern"). A share_threshold level always shows its pattern: its values share one
// counter, so they share one series.
func descriptorLabel(l *descriptors.Limit, entries []descriptors.Entry) string {
	var b strings.Builder
	for i, e := range entries {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(e.Key)
		var lv descriptors.Level // Match returns limits whose Levels line up with entries
		if i < len(l.Levels) {
			lv = l.Levels[i]
		}
		switch {
		case lv.Shared:
			b.WriteByte('=')
			b.WriteString(lv.Value)
		case l.DetailedMetric || lv.ValueToMetric:
			b.WriteByte('=')
			b.WriteString(e.Value)
		case lv.Kind != descriptors.BareKey:
			b.WriteByte('=')
			b.WriteString(lv.Value)
		}
	}
	return b.String()
}

// maxDescriptorLabel bounds the bytes of one descriptor label: values come from
// clients, and the series cap alone would let 10,000 series of 4 KB values each (with
// several levels) take hundreds of megabytes and as much per scrape.
const maxDescriptorLabel = 256

// boundLabel returns s, or, when it is longer than maxDescriptorLabel, its start and a
// digest of the whole: still one series per distinct label, in bounded bytes.
func boundLabel(s string) string {
	if len(s) <= maxDescriptorLabel {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	suffix := "…sha256:" + hex.EncodeToString(sum[:8])
	cut := maxDescriptorLabel - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) { // a label must stay valid UTF-8
		cut--
	}
	return s[:cut] + suffix
}

// Engine wraps an engine to time its calls and count its errors.
func (m *Metrics) Engine(name string, e limiter.Engine) limiter.Engine {
	return &instrumented{Engine: e, name: name, m: m}
}

type instrumented struct {
	limiter.Engine
	name string
	m    *Metrics
}

func (i *instrumented) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	start := time.Now()
	o, err := i.Engine.Evaluate(ctx, now, checks, out)
	i.m.storeTime.WithLabelValues(i.name).Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, limiter.ErrBadRequest) {
		kind := errorKind(err)
		if kind == "timeout" && limiter.CallerGaveUp(ctx) { // the caller's deadline, not the store's: as the breaker sees it
			kind = "canceled"
		}
		i.m.storeErrors.WithLabelValues(i.name, kind).Inc()
	}
	return o, err
}

// Ping forwards readiness checks to engines that have a store.
func (i *instrumented) Ping(ctx context.Context) error {
	if p, ok := i.Engine.(limiter.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout(),
		errors.Is(err, redis.ErrPoolTimeout): // every connection busy dialing or waiting
		return "timeout"
	case errors.As(err, new(*net.OpError)), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "unreachable"
	}
	return "other"
}

// MemoryEngine adds the memory engine's key count, bytes and evictions.
func (m *Metrics) MemoryEngine(e *limiter.MemoryEngine) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "memory_keys", Help: "Keys held by the in-memory engine.",
		}, func() float64 { return float64(e.Keys()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "memory_bytes",
			Help: "Approximate memory of the in-memory engine's state, which --memory-max-mib bounds.",
		}, func() float64 { return float64(e.Bytes()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "memory_evictions_total",
			Help: "Live keys evicted to keep the in-memory engine within --memory-max-keys and --memory-max-mib.",
		}, func() float64 { return float64(e.Evictions()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "memory_evicted_units_total",
			Help: "Units the evicted live keys held when last written: what eviction forgave, at most.",
		}, func() float64 { return float64(e.EvictedUnits()) }),
	)
}
