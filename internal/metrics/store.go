package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
)

// StoreHealth registers the circuit breaker's state and the store failure policy's
// fallbacks, and returns the hooks that feed them.
func (m *Metrics) StoreHealth() (onCircuit func(open bool, cause error), onFallback func(domain string, p decide.Policy)) {
	open := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "store_circuit_open",
		Help: "Store circuit breakers open (store calls are skipped and the failure policy answers): 0 or 1, or on Redis Cluster one per hash slot in use whose master fails (about one per domain).",
	})
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "store_fallbacks_total",
		Help: "Requests answered by the store failure policy (fail_open, local) instead of the store, by domain and policy.",
	}, []string{"domain", "policy"})
	m.Registry.MustRegister(open, fallbacks)
	onCircuit = func(o bool, _ error) {
		if o {
			open.Inc()
		} else {
			open.Dec()
		}
	}
	onFallback = func(domain string, p decide.Policy) {
		fallbacks.WithLabelValues(domain, p.String()).Inc()
	}
	return onCircuit, onFallback
}

// OverLimitCache exports the local over-limit cache's counters (docs/metrics.md).
func (m *Metrics) OverLimitCache(stats func() overlimit.Stats) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "local_cache_hits_total",
			Help: "Requests answered by the local over-limit cache without a store call.",
		}, func() float64 { return float64(stats().Hits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: "local_cache_stores_total",
			Help: "Denials remembered by the local over-limit cache.",
		}, func() float64 { return float64(stats().Stores) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: "local_cache_entries", Help: "Keys held by the local over-limit cache.",
		}, func() float64 { return float64(stats().Entries) }),
	)
}
