package metrics

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// metricsDoc is docs/metrics.md.
func metricsDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The buckets docs/metrics.md lists are the ones exported. (That the alerts' latency
// thresholds are bucket boundaries is checked with the rules file, in package deploy.)
func TestDocumentedBucketsAreExported(t *testing.T) {
	doc := metricsDoc(t)
	listed := regexp.MustCompile(`Latency buckets \(both histograms\), in seconds: ([0-9.,\s]+)\.`).FindStringSubmatch(doc)
	if listed == nil {
		t.Fatal("docs/metrics.md lists no latency buckets")
	}
	var documented []float64
	for _, s := range strings.Split(listed[1], ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			t.Fatalf("bucket %q: %v", s, err)
		}
		documented = append(documented, v)
	}
	if !slices.Equal(documented, latencyBuckets) {
		t.Errorf("docs/metrics.md lists buckets %v, the histograms have %v", documented, latencyBuckets)
	}
}

// A Redis call's whole bound (the read + write timeouts, 16 ms by default) is a bucket
// boundary: a call that has to dial and runs out takes at least that long, and the
// histogram shows it apart from calls that answered in 10 to 16 ms. (On an open
// connection the read timeout, 8 ms, ends a call first: docs/metrics.md counts those
// with store_errors_total.)
func TestStoreHistogramSeparatesTheDefaultCallBudget(t *testing.T) {
	budget := (limiter.DefaultRedisReadTimeout + limiter.DefaultRedisWriteTimeout).Seconds()
	m := New()
	scrapeNow := serveMetrics(t, m)
	m.storeTime.WithLabelValues("redis").Observe(budget - 0.003)  // slow, but answered
	m.storeTime.WithLabelValues("redis").Observe(budget + 0.0002) // ended by the bound
	got := scrapeNow()
	le := strconv.FormatFloat(budget, 'g', -1, 64)
	if n, ok := got[`ratelimit_ext_store_duration_seconds_bucket{engine="redis",le="`+le+`"}`]; !ok || n != 1 {
		t.Errorf("bucket le=%s: %v (present %v), want 1: the call the %v budget ended counted apart from the one that answered (buckets %v)",
			le, n, ok, budget, latencyBuckets)
	}
}
