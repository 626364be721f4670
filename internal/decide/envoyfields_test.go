package decide

import (
	"context"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// fieldsDecider serves one file at a fixed clock on the memory engine.
func fieldsDecider(t *testing.T, yaml string) *Decider {
	t.Helper()
	rs, err := descriptors.Parse("fields.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return 1_700_000_000_000 }})
	t.Cleanup(func() { mem.Close() })
	return New(rs, mem, storekey.New("fields:", 0), false)
}

// step is one request of a scenario: its descriptors as key/value lists, and what is
// expected of it.
type step struct {
	descs   [][]string
	denied  bool   // the request's overall answer
	overLim []bool // per descriptor status; nil = not checked
	comment string
}

func runSteps(t *testing.T, d *Decider, steps []step) []*Result {
	t.Helper()
	var out []*Result
	for i, s := range steps {
		req := &Request{Domain: "d"}
		for _, kv := range s.descs {
			var ds Descriptor
			for j := 0; j+1 < len(kv); j += 2 {
				ds.Entries = append(ds.Entries, descriptors.Entry{Key: kv[j], Value: kv[j+1]})
			}
			req.Descriptors = append(req.Descriptors, ds)
		}
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, s.comment, err)
		}
		if res.OverLimit != s.denied {
			t.Fatalf("step %d (%s) %v: denied = %v, want %v", i, s.comment, s.descs, res.OverLimit, s.denied)
		}
		for j, want := range s.overLim {
			if res.Statuses[j].OverLimit != want {
				t.Fatalf("step %d (%s) %v: descriptor %d over limit = %v, want %v", i, s.comment, s.descs, j, res.Statuses[j].OverLimit, want)
			}
		}
		out = append(out, res)
	}
	return out
}

func kv(pairs ...string) []string { return pairs }

// share_threshold: every value a shared pattern matches draws on one counter; the same
// pattern without it gives each value its own. Nested under a shared level, the levels
// below still count per value.
func TestShareThresholdSharesOneCounter(t *testing.T) {
	d := fieldsDecider(t, `
domain: d
descriptors:
  - key: files
    value: "files/*"
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: own
    value: "files/*"
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: tenant
    value: "t-*"
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 1}
`)
	runSteps(t, d, []step{
		{descs: [][]string{kv("files", "files/a.pdf")}, comment: "shared: 1st"},
		{descs: [][]string{kv("files", "files/b.csv")}, comment: "shared: 2nd, another value"},
		{descs: [][]string{kv("files", "files/c.txt")}, denied: true, comment: "shared: a third value finds the counter spent"},
		{descs: [][]string{kv("own", "files/a.pdf")}, comment: "unshared: a.pdf 1st"},
		{descs: [][]string{kv("own", "files/b.csv")}, comment: "unshared: b.csv has its own counter"},
		{descs: [][]string{kv("own", "files/c.txt")}, comment: "unshared: c.txt too"},
		{descs: [][]string{kv("own", "files/a.pdf")}, comment: "unshared: a.pdf 2nd"},
		{descs: [][]string{kv("own", "files/a.pdf")}, denied: true, comment: "unshared: a.pdf 3rd"},
		{descs: [][]string{kv("tenant", "t-1", "user", "u1")}, comment: "nested: t-1/u1"},
		{descs: [][]string{kv("tenant", "t-2", "user", "u1")}, denied: true, comment: "nested: t-2/u1 shares t-1/u1's counter"},
		{descs: [][]string{kv("tenant", "t-2", "user", "u2")}, comment: "nested: u2 has its own"},
	})
}
