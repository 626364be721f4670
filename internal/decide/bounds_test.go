package decide

import (
	"context"
	"errors"
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
	d := New(rs, mem, storekey.New("b:", 0), false)
	d.SetBounds(Bounds{MaxDescriptors: 2, MaxEntries: 2, MaxKeyLen: 8, MaxValueLen: 16, MaxDomainLen: 4, MaxCost: 100})
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
		{"request cost", Request{Domain: "b", HitsAddend: 101, Descriptors: []Descriptor{one("k", "v")}}, "hits_addend 101"},
		{"descriptor cost", Request{Domain: "b", Descriptors: []Descriptor{cost(one("k", "v"), 1<<40)}}, "hits_addend 1099511627776"},
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

// A value longer than the bound is not refused (an error lets Envoy pass the request
// past every limit by default) but stands in as its digest: each long value keeps a
// counter of its own, and the same long value shares it.
func TestLongValuesAreLimitedByTheirDigest(t *testing.T) {
	rs, err := descriptors.Parse("b.yaml", []byte("domain: b\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	d := New(rs, mem, storekey.New("b:", 0), false)
	b := DefaultBounds
	b.MaxValueLen = 16
	d.SetBounds(b)
	decide := func(v string) bool {
		t.Helper()
		req := Request{Domain: "b", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: v}}}}}
		res, err := d.Decide(context.Background(), &req)
		if err != nil {
			t.Fatalf("a %d-byte value: %v", len(v), err)
		}
		if got := req.Descriptors[0].Entries[0].Value; len(v) > 16 && got != valueDigest(v) {
			t.Errorf("the request holds %q, want the digest", got)
		}
		return !res.OverLimit
	}
	long1, long2 := strings.Repeat("a", 5000), strings.Repeat("a", 4999)+"b"
	if !decide(long1) || decide(long1) {
		t.Error("a long value was not limited: want allowed once, then denied")
	}
	if !decide(long2) {
		t.Error("a different long value shared the first one's counter")
	}
	if !decide("short") {
		t.Error("a short value shared a long one's counter")
	}
}
