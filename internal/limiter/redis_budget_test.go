package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// A call that the engine's own bound ended (its read + write timeouts: here a dial to a
// host that drops connection attempts) says so: "context deadline exceeded" alone reads
// as the caller's deadline (Envoy's), and the log line of the circuit that opens would
// send an operator to the wrong place. It is still a deadline (errors.Is), for the
// metrics' kind "timeout". A caller whose own deadline ended the call first is not
// told about the engine's bound. Batched or not.
func TestRedisCallBudgetErrorSaysSo(t *testing.T) {
	addr := testredis.DeadHost(t)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: "redis://" + addr, Batch: batch,
				ReadTimeout: 20 * time.Millisecond, WriteTimeout: 20 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			d := make([]limiter.Decision, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err = e.Evaluate(ctx, 0, oneCheck(p, "k", 1), d)
			cancel()
			if !errors.Is(err, limiter.ErrStore) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a dial that hangs: %v, want ErrStore and the deadline", err)
			}
			if want := "read + write timeouts (40ms)"; !strings.Contains(err.Error(), want) {
				t.Errorf("a call the engine's bound ended: %q, want it to name the %s", err, want)
			}
			if batch {
				return // the batch's call keeps to the engine's bound, not to its callers' deadlines
			}
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Millisecond)
			_, err = e.Evaluate(ctx, 0, oneCheck(p, "k", 1), d)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "read + write timeouts") {
				t.Errorf("a call its caller's deadline ended: %q, want the deadline without the engine's bound", err)
			}
		})
	}
}
