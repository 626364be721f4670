package rls_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// timingOutStore fails every call the way the Redis engine does when its own time
// budget runs out (a context deadline inside the engine), or, with waitForCaller, waits
// for the caller's context to end.
type timingOutStore struct{ waitForCaller bool }

func (s timingOutStore) Evaluate(ctx context.Context, _ int64, _ []limiter.LimitCheck, _ []limiter.Decision) (limiter.Outcome, error) {
	if s.waitForCaller {
		<-ctx.Done()
		return limiter.Outcome{}, fmt.Errorf("%w: redis: %w", limiter.ErrStore, ctx.Err())
	}
	return limiter.Outcome{}, fmt.Errorf("%w: redis: %w", limiter.ErrStore, context.DeadlineExceeded)
}

func (timingOutStore) Close() error { return nil }

// The store's own timeout is the store failing (UNAVAILABLE, what Envoy's failure mode
// expects), not the caller's deadline; the caller's deadline ending is DEADLINE_EXCEEDED
// and its cancelling CANCELED. The server is called in process: over gRPC the client
// reports its own deadline whatever the server answers, which would hide the mapping.
func TestStoreTimeoutIsUnavailable(t *testing.T) {
	rs, err := descriptors.Parse("test.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	req := &rlsv3.RateLimitRequest{Domain: "test", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("burst", "x")}}
	for _, tc := range []struct {
		name  string
		store timingOutStore
		ctx   func() (context.Context, context.CancelFunc)
		want  codes.Code
	}{
		{"store timeout", timingOutStore{}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), time.Minute)
		}, codes.Unavailable},
		{"caller deadline", timingOutStore{waitForCaller: true}, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, codes.DeadlineExceeded},
		{"caller cancelled", timingOutStore{waitForCaller: true}, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, codes.Canceled},
	} {
		srv := rls.New(decide.New(rs, tc.store, decide.Options{Keys: storekey.New("t:", 0)}), ratelimitheaders.Options{}, nil)
		ctx, cancel := tc.ctx()
		_, err := srv.ShouldRateLimit(ctx, req)
		cancel()
		if got := status.Code(err); got != tc.want {
			t.Errorf("%s: %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}
}
