package limiter

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
)

// Batching of concurrent script calls (RedisOptions.Batch).
//
// Each request is still its own EVALSHA of request.lua, atomic on its own; batching only
// lets calls that arrive together share one round trip as a pipeline. At most `lanes`
// pipelines are in flight. A call that finds a free lane sends at once, from its own
// goroutine: a lone request pays no hand-off, no timer and no added wait. A call that
// finds every lane busy queues; when a pipeline comes back, its sender hands the whole
// queue (up to BatchMax calls) to the oldest queued caller, which sends it as the next
// pipeline, and then wakes the callers of its own batch. The batch size therefore
// follows the load by itself: one at low load, many while Redis round trips are the
// bottleneck.
//
// A pipeline is not a transaction: Redis runs each script of the batch atomically, one
// after the other, interleaved with other clients' commands as usual. NOSCRIPT (after a
// Redis restart or SCRIPT FLUSH) fails every EVALSHA of a batch without running it; the
// failed calls are sent again behind a SCRIPT LOAD in one more pipeline, and any that
// still fail (a flush in between) as EVAL with the source. A call whose caller gave up
// before its pipeline was sent is not sent.

// Defaults of the batcher.
const (
	DefaultRedisBatchMax   = 64 // calls per pipeline
	DefaultRedisBatchLanes = 4  // pipelines in flight
)

type batchCall struct {
	ctx   context.Context
	args  []any // the whole EVALSHA command: "evalsha", sha, numkeys, keys..., argv...
	reply []any
	err   error
	// lead, when set as done is signaled, makes this call's goroutine the sender of
	// that batch (which holds the call itself).
	lead []*batchCall
	done chan struct{} // signaled once: the result is in, or lead is set
}

var callPool = sync.Pool{New: func() any { return &batchCall{done: make(chan struct{}, 1)} }}

type batcher struct {
	client redis.UniversalClient
	script *redislua.Script
	max    int
	lanes  int

	mu       sync.Mutex
	pending  []*batchCall // waiting for a lane, oldest first
	inflight int          // lanes in use
	closed   bool

	pipelines atomic.Uint64 // round trips sent (retries included)
	calls     atomic.Uint64 // script calls sent (retries included)
}

func newBatcher(c redis.UniversalClient, s *redislua.Script, lanes, maxBatch int) *batcher {
	return &batcher{client: c, script: s, max: maxBatch, lanes: lanes}
}

var errEngineClosed = errors.New("engine closed")

// do runs one EVALSHA command (args as built by evalArgs) in the next pipeline.
func (b *batcher) do(ctx context.Context, args []any) ([]any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := callPool.Get().(*batchCall)
	c.ctx, c.args = ctx, args
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		b.recycle(c)
		return nil, errEngineClosed
	}
	if b.inflight < b.lanes {
		b.inflight++
		batch := b.takeLocked(c)
		b.mu.Unlock()
		b.lead(batch, c)
		return b.result(c)
	}
	b.pending = append(b.pending, c)
	b.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.pending, c); i >= 0 { // not sent: withdraw it
			b.pending = slices.Delete(b.pending, i, i+1)
			b.mu.Unlock()
			b.recycle(c)
			return nil, ctx.Err()
		}
		b.mu.Unlock()
		<-c.done // taken into a batch: its sender signals soon (socket timeouts bound it)
	}
	if c.lead != nil {
		batch := c.lead
		c.lead = nil
		b.lead(batch, c)
	}
	if err := ctx.Err(); err != nil {
		b.recycle(c)
		return nil, err
	}
	return b.result(c)
}

func (b *batcher) result(c *batchCall) ([]any, error) {
	reply, err := c.reply, c.err
	b.recycle(c)
	return reply, err
}

func (b *batcher) recycle(c *batchCall) {
	c.ctx, c.args, c.reply, c.err, c.lead = nil, nil, nil, nil, nil
	callPool.Put(c)
}

// takeLocked returns a batch: first (if not nil), then the oldest pending calls, up to max.
func (b *batcher) takeLocked(first *batchCall) []*batchCall {
	n := min(len(b.pending), b.max)
	if first != nil {
		n = min(len(b.pending), b.max-1)
	}
	batch := make([]*batchCall, 0, n+1)
	if first != nil {
		batch = append(batch, first)
	}
	batch = append(batch, b.pending[:n]...)
	clear(b.pending[:n])
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = b.pending[:0:0] // let the backing array go
	}
	return batch
}

// lead sends batch as one pipeline from the calling goroutine (self's), hands the lane
// to the oldest waiting call with the next batch, or frees it, and wakes the batch's
// other callers.
func (b *batcher) lead(batch []*batchCall, self *batchCall) {
	b.send(batch)
	b.mu.Lock()
	var next []*batchCall
	if len(b.pending) > 0 && !b.closed {
		next = b.takeLocked(nil)
	} else {
		b.inflight--
	}
	b.mu.Unlock()
	if next != nil {
		next[0].lead = next
		next[0].done <- struct{}{}
	}
	for _, c := range batch {
		if c != self {
			c.done <- struct{}{}
		}
	}
}

// close fails the calls still waiting for a lane; pipelines in flight finish.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	waiting := b.pending
	b.pending = nil
	b.mu.Unlock()
	for _, c := range waiting {
		c.err = errEngineClosed
		c.done <- struct{}{}
	}
}

// send runs one batch as a pipeline and stores each call's reply or error.
func (b *batcher) send(batch []*batchCall) {
	pipe := b.client.Pipeline()
	sent := make([]*batchCall, 0, len(batch))
	cmds := make([]*redis.Cmd, 0, len(batch))
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil { // its caller gave up: do not charge it
			c.err = err
			continue
		}
		cmd := redis.NewCmd(context.Background(), c.args...)
		cmd.SetFirstKeyPos(3)
		_ = pipe.Process(context.Background(), cmd)
		cmds = append(cmds, cmd)
		sent = append(sent, c)
	}
	if len(sent) == 0 {
		return
	}
	b.pipelines.Add(1)
	b.calls.Add(uint64(len(sent)))
	_, _ = pipe.Exec(context.Background())
	var retry []int
	for i, cmd := range cmds {
		if err := cmd.Err(); err != nil && isNoScript(err) {
			retry = append(retry, i)
			continue
		}
		sent[i].reply, sent[i].err = cmd.Slice()
	}
	if len(retry) > 0 {
		b.reload(sent, cmds, retry)
	}
}

// reload sends the calls that failed with NOSCRIPT again, behind a SCRIPT LOAD in the
// same pipeline; a call that still meets NOSCRIPT (a flush in between) runs as EVAL.
// NOSCRIPT means the script did not run, so none of them is applied twice.
func (b *batcher) reload(batch []*batchCall, cmds []*redis.Cmd, retry []int) {
	pipe := b.client.Pipeline()
	pipe.ScriptLoad(context.Background(), b.script.Source())
	again := make([]*redis.Cmd, len(retry))
	for j, i := range retry {
		again[j] = redis.NewCmd(context.Background(), batch[i].args...)
		again[j].SetFirstKeyPos(3)
		_ = pipe.Process(context.Background(), again[j])
	}
	b.pipelines.Add(1)
	b.calls.Add(uint64(len(retry)))
	_, _ = pipe.Exec(context.Background())
	for j, i := range retry {
		c, cmd := batch[i], again[j]
		if err := cmd.Err(); err != nil && isNoScript(err) {
			args := append([]any{"eval", b.script.Source()}, c.args[2:]...)
			cmd = redis.NewCmd(context.Background(), args...)
			cmd.SetFirstKeyPos(3)
			b.pipelines.Add(1)
			b.calls.Add(1)
			_ = b.client.Process(context.Background(), cmd)
		}
		cmds[i] = cmd
		c.reply, c.err = cmd.Slice()
	}
}

func isNoScript(err error) bool {
	return errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT")
}

// BatchStats reports what batching did: round trips (pipelines) and script calls sent,
// retries after NOSCRIPT included. Both are 0 when batching is off.
type BatchStats struct {
	Pipelines, Calls uint64
}

func (b *batcher) stats() BatchStats {
	return BatchStats{Pipelines: b.pipelines.Load(), Calls: b.calls.Load()}
}
