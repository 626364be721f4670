package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// TLSFiles exports the state of the TLS files in r (docs/metrics.md): when each
// certificate in use expires, and whether changed files fail to load, so that a broken
// rotation is seen before the old certificate runs out. Each scrape looks at the files
// (a stat per file; a changed file is loaded then), so a bad rotation shows even where
// long-lived connections make handshakes rare. Series are the process's fixed uses.
func (m *Metrics) TLSFiles(r *tlsfiles.Registry) {
	m.Registry.MustRegister(tlsCollector{r})
}

var (
	tlsExpiry = prometheus.NewDesc(namespace+"_tls_certificate_expiry_timestamp_seconds",
		"When the TLS certificate in use expires (Unix seconds), by the files' use.", []string{"files"}, nil)
	tlsFailing = prometheus.NewDesc(namespace+"_tls_reload_failing",
		"1 while TLS files have changed and do not load, so the previous ones stay in use, by the files' use.", []string{"files"}, nil)
)

type tlsCollector struct{ r *tlsfiles.Registry }

func (c tlsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tlsExpiry
	ch <- tlsFailing
}

func (c tlsCollector) Collect(ch chan<- prometheus.Metric) {
	c.r.Each(func(use string, s tlsfiles.Status) {
		if !s.NotAfter.IsZero() {
			ch <- prometheus.MustNewConstMetric(tlsExpiry, prometheus.GaugeValue, float64(s.NotAfter.Unix()), use)
		}
		failing := 0.0
		if s.Failing {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(tlsFailing, prometheus.GaugeValue, failing, use)
	})
}
