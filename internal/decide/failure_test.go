package decide

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// downEngine is a store that is down: every call fails with ErrStore. (The Redis suites
// test real outages; this pins the policy logic.)
type downEngine struct{ calls int }

func (e *downEngine) Evaluate(context.Context, int64, []limiter.LimitCheck, []limiter.Decision) (limiter.Outcome, error) {
	e.calls++
	return limiter.Outcome{}, limiter.ErrStore
}
func (e *downEngine) Close() error { return nil }

func TestStoreFailurePolicies(t *testing.T) {
	rs, err := descriptors.Parse("p.yaml", []byte("domain: p\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	local := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer local.Close()
	req := func() *Request {
		return &Request{Domain: "p", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
	}
	var fallbacks []Policy
	for _, c := range []struct {
		policy Policy
		// per request: error wanted, over limit wanted
		wantErr  bool
		wantOver []bool
	}{
		{FailClosed, true, nil},
		{FailOpen, false, []bool{false, false, false}},
		{Local, false, []bool{false, true, true}}, // the local engine enforces the limit of 1
	} {
		d := New(rs, &downEngine{}, Options{Keys: storekey.New("p:", 0), Failure: FailurePolicy{Default: c.policy, Local: local,
			OnFallback: func(_ string, p Policy) { fallbacks = append(fallbacks, p) }}})
		for i := 0; i < 3; i++ {
			res, err := d.Decide(context.Background(), req())
			if c.wantErr {
				if !errors.Is(err, limiter.ErrStore) {
					t.Fatalf("%s: want the store error, got %v", c.policy, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", c.policy, err)
			}
			if res.OverLimit != c.wantOver[i] || res.FailedOpen != (c.policy == FailOpen) {
				t.Fatalf("%s request %d: over=%v failedOpen=%v", c.policy, i, res.OverLimit, res.FailedOpen)
			}
		}
	}
	if len(fallbacks) != 6 {
		t.Fatalf("%d fallbacks counted, want 6 (fail_closed is not a fallback)", len(fallbacks))
	}
	// A domain override wins over the default.
	d := New(rs, &downEngine{}, Options{Keys: storekey.New("p:", 0),
		Failure: FailurePolicy{Default: FailClosed, PerDomain: map[string]Policy{"p": FailOpen}}})
	if res, err := d.Decide(context.Background(), req()); err != nil || !res.FailedOpen {
		t.Fatalf("per-domain fail_open: %v %v", res, err)
	}
	if err := (&FailurePolicy{Default: Local}).Validate(); err == nil {
		t.Fatal("local policy without an engine validated")
	}
	if _, err := ParsePolicy("fail_maybe"); err == nil {
		t.Fatal("unknown policy parsed")
	}
}

// givingUpEngine fails with ErrStore after its caller gave up (its context was
// canceled during the call), as a Redis call does whose reply came too late.
type givingUpEngine struct{ cancel context.CancelFunc }

func (e givingUpEngine) Evaluate(context.Context, int64, []limiter.LimitCheck, []limiter.Decision) (limiter.Outcome, error) {
	e.cancel()
	return limiter.Outcome{}, limiter.ErrStore
}
func (givingUpEngine) Close() error { return nil }

// A caller that gave up while its store call failed gets the store's error, not the
// failure policy's answer: nobody reads it, and the store may have charged (a reply
// that came too late), so the local policy would charge a second time and a fallback
// would be counted for a request no policy answered.
func TestNoFailurePolicyForACallerThatGaveUp(t *testing.T) {
	rs, err := descriptors.Parse("p.yaml", []byte("domain: p\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	local := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer local.Close()
	ctx, cancel := context.WithCancel(context.Background())
	fallbacks := 0
	d := New(rs, givingUpEngine{cancel}, Options{Keys: storekey.New("p:", 0),
		Failure: FailurePolicy{Default: Local, Local: local, OnFallback: func(string, Policy) { fallbacks++ }}})
	req := &Request{Domain: "p", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
	if _, err := d.Decide(ctx, req); !errors.Is(err, limiter.ErrStore) {
		t.Fatalf("a caller that gave up: %v, want the store error", err)
	}
	if fallbacks != 0 || local.Keys() != 0 {
		t.Errorf("%d fallbacks counted and %d keys charged on the local engine, want none", fallbacks, local.Keys())
	}
}

// deadlinePassed is a caller's context at the instant after its deadline, before the
// context's timer has marked it done: Deadline lies in the past, Err is still nil.
// A store call whose socket deadline that deadline set fails in exactly this window.
type deadlinePassed struct{ context.Context }

func (deadlinePassed) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// A caller whose deadline has passed has given up, even in the instant before its
// context says so: a Redis call that the deadline cut short (its reply may still come,
// the script may have charged) gets the store's error, not the failure policy's answer,
// as the circuit breaker does not count it (limiter.CallerGaveUp). Before, the local policy
// charged such a request a second time and a fallback was counted.
func TestNoFailurePolicyAfterTheCallersDeadline(t *testing.T) {
	srv := testredis.Start(t)
	store, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rs, err := descriptors.Parse("p.yaml", []byte("domain: p\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	local := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer local.Close()
	fallbacks := 0
	d := New(rs, store, Options{Keys: storekey.New("p:", 0),
		Failure: FailurePolicy{Default: Local, Local: local, OnFallback: func(string, Policy) { fallbacks++ }}})
	req := &Request{Domain: "p", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
	if _, err := d.Decide(deadlinePassed{context.Background()}, req); !errors.Is(err, limiter.ErrStore) {
		t.Fatalf("a caller past its deadline: %v, want the store error", err)
	}
	if fallbacks != 0 || local.Keys() != 0 {
		t.Errorf("%d fallbacks counted and %d keys charged on the local engine, want none", fallbacks, local.Keys())
	}
}
