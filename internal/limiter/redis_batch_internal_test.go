package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
	"github.com/redis/go-redis/v9"
)

// A batch takes waiting requests in order while the call's sliding_window_log entries
// stay within what one limit may admit; the first request always goes, and requests
// without log entries are not held back by the bound when they come first.
func TestBatchKeepsLogEntriesWithinABound(t *testing.T) {
	max := MaxLogLimit
	for _, tc := range []struct {
		name    string
		first   int64
		pending []int64
		want    int // requests in the batch, first included
	}{
		{"no log entries", 0, []int64{0, 0, 0}, 4},
		{"up to the bound", 100, []int64{max - 300, 200, 1, 0}, 3},
		{"a first request at the bound", max, []int64{0, 0, 1}, 3},
		{"a first request past the bound still takes requests without log entries", 2 * max, []int64{0, 0, 1, 0}, 3},
		{"stops at the first that does not fit, in order", 0, []int64{max, 1, 0}, 2},
		{"the batch size still bounds", 0, []int64{0, 0, 0, 0, 0}, 3},
	} {
		b := &batcher{max: 3}
		if tc.name != "the batch size still bounds" {
			b.max = 64
		}
		for _, l := range tc.pending {
			b.pending = append(b.pending, &batchCall{logs: l})
		}
		first := &batchCall{logs: tc.first}
		batch := b.takeLocked(first)
		var logs int64
		for _, c := range batch {
			logs += c.logs
		}
		if len(batch) != tc.want || batch[0] != first || len(b.pending) != len(tc.pending)-(tc.want-1) {
			t.Errorf("%s: took %d (left %d), want %d", tc.name, len(batch), len(b.pending), tc.want)
		}
		if logs > max && logs != batch[0].logs {
			t.Errorf("%s: %d log entries in one call", tc.name, logs)
		}
	}
}

// A request that spent its whole budget waiting for a lane fails as a timeout without
// being sent, and does not cut short the call of the fresher requests of its batch.
func TestBatchSendsFreshRequestsPastAnExpiredOne(t *testing.T) {
	srv := testredis.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	b := newBatcher(c, redislua.Request, 1, 64, time.Second)
	p := &Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 60_000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	call := func(key string, due time.Time) *batchCall {
		return &batchCall{ctx: context.Background(), now: 1_700_000_000_000, due: due,
			checks: []LimitCheck{{Key: key, Params: p, Cost: 1}}, done: make(chan struct{}, 1)}
	}
	expired, fresh := call("expired", time.Now().Add(-time.Millisecond)), call("fresh", time.Now().Add(time.Second))
	b.send([]*batchCall{expired, fresh})
	if !errors.Is(expired.err, context.DeadlineExceeded) {
		t.Errorf("the expired request: %v, want a timeout", expired.err)
	}
	if fresh.err != nil || len(fresh.reply) == 0 || fresh.reply[1] != 1 {
		t.Errorf("the fresh request: reply %v, error %v; want it decided (allowed)", fresh.reply, fresh.err)
	}
	if n := c.Exists(context.Background(), "expired").Val(); n != 0 {
		t.Error("the expired request was sent (its key was written)")
	}
}
