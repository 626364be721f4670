package decide

import (
	"context"
	"errors"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// Before any rule set is in place a request is an error (not an allow-all answer) and
// touches no store; the first SetRules makes the same request decidable.
func TestNoRulesUntilSet(t *testing.T) {
	engine := &countingEngine{Engine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})}
	defer engine.Close()
	d := New(nil, engine, Options{Keys: storekey.New("t:", 0)})
	req := &Request{Domain: "p", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
	if _, err := d.Decide(context.Background(), req); !errors.Is(err, ErrNoRules) {
		t.Fatalf("Decide without rules: %v, want ErrNoRules", err)
	}
	if engine.n != 0 {
		t.Fatalf("the store was called %d times without rules", engine.n)
	}
	rs, err := descriptors.Parse("p.yaml", []byte("domain: p\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	d.SetRules(rs)
	for i, wantOver := range []bool{false, true} {
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if res.OverLimit != wantOver {
			t.Fatalf("request %d: over limit %v, want %v", i, res.OverLimit, wantOver)
		}
	}
}

// An invalid request is still reported as invalid when no rules are loaded: the
// caller's mistake is not hidden behind the service's state.
func TestNoRulesKeepsInvalidRequestsInvalid(t *testing.T) {
	d := New(nil, &countingEngine{}, Options{Keys: storekey.New("t:", 0)})
	if _, err := d.Decide(context.Background(), &Request{Domain: "p"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a request without descriptors: %v, want ErrInvalid", err)
	}
}
