package decide

import (
	"context"
	"errors"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

const fuzzRules = `
domain: f
descriptors:
  - key: a
    rate_limits:
      - {unit: second, requests_per_unit: 3, algorithm: gcra}
      - {unit: minute, requests_per_unit: 10, algorithm: sliding_window_log}
  - key: b
    value: "x*y"
    rate_limit: {unit: second, requests_per_unit: 7, algorithm: token_bucket, burst: 9}
  - key: c
    descriptors:
      - key: d
        rate_limit: {unit: hour, requests_per_unit: 5, algorithm: token_budget}
  - key: e
    rate_limit: {unit: second, requests_per_unit: 4, algorithm: sliding_window, buckets: 4}
`

// FuzzDecide feeds arbitrary requests through matching, bounds, keys and the memory
// engine: every answer is a decision or an ErrInvalid, never a panic, and every decision
// keeps the Decision invariants of SPEC §1.
func FuzzDecide(f *testing.F) {
	rs, err := descriptors.Parse("f.yaml", []byte(fuzzRules))
	if err != nil {
		f.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, MaxKeys: 10_000})
	d := New(rs, mem, Options{Keys: storekey.New("f:", 128)})
	f.Add("f", "a", "1", "b", "xzy", uint64(1), uint64(2), int64(1_700_000_000_000), true)
	f.Add("f", "c", "1", "d", "2", uint64(0), uint64(0), int64(60_000), false)
	f.Add("f", "e", "\xff", "e", "", uint64(1<<40), uint64(3), int64(0), true)
	f.Fuzz(func(t *testing.T, domain, k1, v1, k2, v2 string, hits, cost uint64, now int64, nested bool) {
		desc := Descriptor{Entries: []descriptors.Entry{{Key: k1, Value: v1}}}
		if nested {
			desc.Entries = append(desc.Entries, descriptors.Entry{Key: k2, Value: v2})
		}
		other := Descriptor{Entries: []descriptors.Entry{{Key: k2, Value: v2}}, Cost: &cost}
		req := &Request{Domain: domain, HitsAddend: hits, Now: now, Descriptors: []Descriptor{desc, other}}
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("memory engine failed with a non-input error: %v", err)
			}
			return
		}
		if len(res.Statuses) != 2 {
			t.Fatalf("%d statuses for 2 descriptors", len(res.Statuses))
		}
		var longest int64 // the longest wait of an enforced denial
		for _, st := range res.Statuses {
			for _, c := range st.Checked {
				dec := c.Decision
				if dec.Remaining < 0 || (dec.RetryAfterMs == 0) != dec.Allowed || dec.RetryAfterMs < 0 {
					t.Fatalf("broken decision %+v", dec)
				}
				if !c.Shadow {
					longest = max(longest, dec.RetryAfterMs)
				}
			}
		}
		// A denial waits for the enforced limit with the longest wait, and names it.
		switch {
		case res.OverLimit != (res.WaitFor != nil):
			t.Fatalf("over limit %v, waits for %v", res.OverLimit, res.WaitFor)
		case res.WaitFor != nil && (res.RetryAfterMs() != longest || res.WaitFor.Decision.RetryAfterMs != longest):
			t.Fatalf("retry after %d, waits for %+v; the longest wait is %d", res.RetryAfterMs(), res.WaitFor, longest)
		case res.WaitFor == nil && res.RetryAfterMs() != 0:
			t.Fatalf("allowed with retry after %d", res.RetryAfterMs())
		}
	})
}
