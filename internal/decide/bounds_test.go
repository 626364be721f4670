package decide

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

func TestBoundsRejectHostileRequests(t *testing.T) {
	rs, err := descriptors.Parse("b.yaml", []byte("domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	d := New(rs, mem, Options{Keys: storekey.New("b:", 0),
		Bounds: Bounds{MaxDescriptors: 2, MaxEntries: 2, MaxKeyLen: 8, MaxDomainLen: 4, MaxCost: 100}})
	one := func(kv ...string) Descriptor {
		var ds Descriptor
		for i := 0; i+1 < len(kv); i += 2 {
			ds.Entries = append(ds.Entries, descriptors.Entry{Key: kv[i], Value: kv[i+1]})
		}
		return ds
	}
	cost := func(ds Descriptor, c uint64) Descriptor { ds.Cost = &c; return ds }
	cases := []struct {
		name string
		req  Request
		want string // substring of the error; "" = accepted
	}{
		{"within bounds", Request{Domain: "b", Descriptors: []Descriptor{one("k", "v")}}, ""},
		{"long domain", Request{Domain: "bbbbb", Descriptors: []Descriptor{one("k", "v")}}, "domain is 5 bytes"},
		{"too many descriptors", Request{Domain: "b", Descriptors: []Descriptor{one("k", "1"), one("k", "2"), one("k", "3")}}, "3 descriptors"},
		{"too many entries", Request{Domain: "b", Descriptors: []Descriptor{one("a", "1", "b", "2", "c", "3")}}, "3 entries"},
		{"long key", Request{Domain: "b", Descriptors: []Descriptor{one("kkkkkkkkk", "v")}}, "key is 9 bytes"},
		{"empty key", Request{Domain: "b", Descriptors: []Descriptor{one("", "v")}}, "empty key"},
		{"invalid UTF-8 value", Request{Domain: "b", Descriptors: []Descriptor{one("k", "\xff\xfe")}}, "UTF-8"},
		{"invalid UTF-8 domain", Request{Domain: "\xc3", Descriptors: []Descriptor{one("k", "v")}}, "UTF-8"},
		{"request cost: counted as the bound, not refused", Request{Domain: "b", HitsAddend: 101, Descriptors: []Descriptor{one("k", "v")}}, ""},
		{"descriptor cost: counted as the bound, not refused", Request{Domain: "b", Descriptors: []Descriptor{cost(one("k", "v"), 1<<40)}}, ""},
	}
	for _, c := range cases {
		_, err := d.Decide(context.Background(), &c.req)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want an ErrInvalid naming %q", c.name, err, c.want)
		}
	}
}

// A cost above the bound (a descriptor's own, else the request's) counts as the bound:
// not refused (Envoy would let the request past every limit), not free (a client that
// sets its cost could skip the limit). The bound itself is a cost like any other.
func TestCostAboveTheBoundCountsAsTheBound(t *testing.T) {
	d := fieldsDecider(t, "domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 150}\n")
	d = reconfigured(d, func(o *Options) {
		o.Bounds = Bounds{MaxDescriptors: 4, MaxEntries: 2, MaxKeyLen: 8, MaxDomainLen: 4, MaxCost: 100}
	})
	desc := func(v string, c uint64) Descriptor {
		return Descriptor{Entries: []descriptors.Entry{{Key: "k", Value: v}}, Cost: &c}
	}
	decide := func(req *Request) *Result {
		t.Helper()
		req.Domain = "b"
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := decide(&Request{Descriptors: []Descriptor{desc("x", 101), desc("y", 100)}})
	if st := res.Statuses[0]; !st.CostClamped || st.Decision.Remaining != 50 {
		t.Fatalf("cost 101 over a bound of 100: %+v, want charged 100, 50 left", st)
	}
	if st := res.Statuses[1]; st.CostClamped || st.Decision.Remaining != 50 {
		t.Fatalf("cost 100 at the bound: %+v, want charged 100 unclamped", st)
	}
	// x has 50 left: any cost above the bound is denied, and charges nothing.
	if res := decide(&Request{Descriptors: []Descriptor{desc("x", 1<<40)}}); !res.OverLimit || res.Statuses[0].Decision.Remaining != 50 {
		t.Errorf("cost 2^40 with 50 left: %+v, want OVER_LIMIT", res.Statuses[0])
	}
	// A request-wide cost above the bound counts as the bound for the descriptors
	// without a cost of their own; y's own cost of 1 is its own.
	res = decide(&Request{HitsAddend: 1 << 63, Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "w"}}}, desc("y", 1)}})
	if st := res.Statuses[0]; !st.CostClamped || st.Decision.Remaining != 50 || res.Statuses[1].CostClamped || res.Statuses[1].Decision.Remaining != 49 {
		t.Errorf("request-wide cost 2^63 over a bound of 100: %+v, want w charged 100, y charged 1", res.Statuses)
	}
	// A descriptor that matches no limit is charged nothing, so nothing was clamped.
	c := uint64(1 << 40)
	if res := decide(&Request{Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "other", Value: "v"}}, Cost: &c}}}); res.Statuses[0].CostClamped {
		t.Errorf("a cost above the bound on an unmatched descriptor: %+v, want not marked clamped", res.Statuses[0])
	}
	// A cost no limit can take counts as 2^32-1 at the default bound.
	d = reconfigured(d, func(o *Options) { o.Bounds = DefaultBounds })
	if res := decide(&Request{Descriptors: []Descriptor{desc("z", 1<<32)}}); !res.Statuses[0].CostClamped || !res.OverLimit {
		t.Errorf("cost 2^32 at the default bound: %+v, want clamped and denied", res.Statuses[0])
	}
}

// A long value (a client's header) is neither refused (an error lets Envoy pass the
// request past every limit by default) nor altered: it matches a pattern rule as it is,
// each long value keeps a counter of its own, and the same long value shares it.
func TestLongValuesAreMatchedAndLimited(t *testing.T) {
	rs, err := descriptors.Parse("b.yaml", []byte(`domain: b
descriptors:
  - key: path
    value: "/api/*"
    rate_limit: {unit: hour, requests_per_unit: 1}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	d := New(rs, mem, Options{Keys: storekey.New("b:", 0)})
	allowed := func(key, v string) bool {
		t.Helper()
		req := Request{Domain: "b", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: key, Value: v}}}}}
		res, err := d.Decide(context.Background(), &req)
		if err != nil {
			t.Fatalf("a %d-byte value: %v", len(v), err)
		}
		if len(res.Statuses[0].Checked) != 1 {
			t.Fatalf("a %d-byte %s value matched %d limits, want 1", len(v), key, len(res.Statuses[0].Checked))
		}
		return !res.OverLimit
	}
	tail := strings.Repeat("x", 20_000)
	if !allowed("path", "/api/a?"+tail) || allowed("path", "/api/a?"+tail) {
		t.Error("a long path was not limited by the pattern rule: want allowed once, then denied")
	}
	long1, long2 := strings.Repeat("a", 20_000), strings.Repeat("a", 19_999)+"b"
	if !allowed("user", long1) || allowed("user", long1) {
		t.Error("a long value was not limited: want allowed once, then denied")
	}
	if !allowed("user", long2) {
		t.Error("a different long value shared the first one's counter")
	}
}

// The descriptor bound is inclusive: a request of exactly MaxDescriptors descriptors is
// decided, one more is refused.
func TestDescriptorBoundIsInclusive(t *testing.T) {
	d := fieldsDecider(t, shadowRules)
	req := &Request{Domain: "d"}
	for i := range DefaultBounds.MaxDescriptors {
		req.Descriptors = append(req.Descriptors, Descriptor{Entries: []descriptors.Entry{{Key: "k", Value: fmt.Sprint(i)}}})
	}
	if _, err := d.Decide(context.Background(), req); err != nil {
		t.Fatalf("%d descriptors: %v", len(req.Descriptors), err)
	}
	req.Descriptors = append(req.Descriptors, req.Descriptors[0])
	if _, err := d.Decide(context.Background(), req); err == nil {
		t.Fatalf("%d descriptors accepted", len(req.Descriptors))
	}
}
