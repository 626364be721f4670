package rls_test

import (
	"context"
	"strconv"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// The whole request path below gRPC (proto in, match, keys, memory engine, report,
// metrics, proto out), as `make bench` drives it: docs/performance.md lists the
// allocation budgets.
func BenchmarkShouldRateLimit(b *testing.B) {
	const benchRules = `
domain: bench
descriptors:
  - key: fw
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
`
	rs, err := descriptors.Parse("b.yaml", []byte(benchRules))
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 3} {
		b.Run(strconv.Itoa(n)+"-descriptors", func(b *testing.B) {
			engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
			defer engine.Close()
			m := metrics.New()
			d := decide.New(rs, m.Engine("memory", engine), decide.Options{Keys: storekey.New("rlx:", 0)})
			s := rls.New(d, ratelimitheaders.Options{RetryAfter: true}, m)
			reqs := make([]*rlsv3.RateLimitRequest, 1024)
			for i := range reqs {
				r := &rlsv3.RateLimitRequest{Domain: "bench"}
				for j := range n {
					r.Descriptors = append(r.Descriptors, &ratelimitv3.RateLimitDescriptor{
						Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "fw", Value: strconv.Itoa(i*n + j)}},
					})
				}
				reqs[i] = r
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				resp, err := s.ShouldRateLimit(ctx, reqs[i%len(reqs)])
				if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK {
					b.Fatal(err, resp)
				}
				i++
			}
		})
	}
}
