package rls_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"
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
// expects), not the caller's deadline; the caller's deadline ending is DEADLINE_EXCEEDED.
func TestStoreTimeoutIsUnavailable(t *testing.T) {
	rs, err := descriptors.Parse("test.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		store    timingOutStore
		deadline time.Duration
		want     codes.Code
	}{
		{timingOutStore{}, time.Minute, codes.Unavailable},
		{timingOutStore{waitForCaller: true}, 50 * time.Millisecond, codes.DeadlineExceeded},
	} {
		d := decide.New(rs, tc.store, storekey.New("t:", 0), false)
		conn := testgrpc.Serve(t, func(gs *grpc.Server) {
			rlsv3.RegisterRateLimitServiceServer(gs, rls.New(d, rls.Options{}, nil))
		})
		ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
		_, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
			Domain: "test", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("burst", "x")}})
		cancel()
		if got := status.Code(err); got != tc.want {
			t.Errorf("waitForCaller %v: %v (%v), want %v", tc.store.waitForCaller, got, err, tc.want)
		}
	}
}
