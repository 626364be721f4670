package limiter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
)

// Batching of concurrent script calls (RedisOptions.Batch).
//
// request.lua decides one or more requests per call, in order, each atomically and all
// or nothing on its own (a later request sees an earlier one's charge). Batching lets
// requests that arrive together share one script call: one command and one round trip
// for many requests, which saves Redis the per-command and per-script overhead and the
// service one encoded command, one reply and one write per request.
//
// At most `lanes` calls are in flight. A request that finds a free lane sends at once,
// from its own goroutine: a lone request pays no hand-off, no timer and no added wait.
// A request that finds every lane busy queues; when a call comes back, its sender hands
// the lane to the oldest queued caller and then wakes the callers of its own batch. The
// new sender takes the queue (up to BatchMax requests, MaxBatchLimits limits and
// MaxLogLimit log entries; see takeLocked) when it runs, so requests that
// queue in between still make this call: in BenchmarkRedisConcurrent that is 6–9% more
// requests per call and 15% less Go CPU per request than taking the queue at hand-off.
// The batch size therefore follows the load by itself: one at low load, many while
// Redis is the bottleneck.
//
// On Redis Cluster a script's keys must share a slot. Keys carry their domain as a hash
// tag (storekey.Builder.ClusterTag), so a batch is split by hash tag into one script
// call per tag, all sent at once, each its own command (go-redis routes each to its
// node; see exec).
//
// NOSCRIPT (after a Redis restart, SCRIPT FLUSH or a failover) means a call did not run;
// the calls that met it are sent again in one more pipeline, behind a SCRIPT LOAD on a
// single server, while on a cluster the script is first loaded on every master (a
// pipelined SCRIPT LOAD reaches one node); any that still fail (a flush in between) go
// as EVAL with the source. A request whose caller gave up before its call was sent is
// not sent. A batch's calls, the NOSCRIPT retry included, take at most the engine's
// budget (callBudget), whatever its callers' deadlines. A call that fails (a timeout, a
// script error) fails every request in it.

// Defaults of the batcher.
const (
	DefaultRedisBatchMax   = 64 // requests per script call
	DefaultRedisBatchLanes = 2  // script calls in flight (see docs/performance.md#batching)
)

// MaxBatchLimits bounds the limits (KEYS) of one batched script call, whatever BatchMax:
// requests join a call only while its limits stay within it (a request alone may have
// more). A call's Redis time grows with its limits, a few microseconds each, and Redis
// serves nobody else meanwhile: 64 requests of 64 limits each in one call took Redis
// about 10 ms, past the 8 ms read timeout, so every request of the call failed after
// the script had charged it. 256 limits keep a call around a millisecond, and 64
// requests of up to 4 limits still share one.
const MaxBatchLimits = 256

type batchCall struct {
	ctx    context.Context
	now    int64
	checks []LimitCheck // the caller's: it waits until the call is done
	logs   int64        // logEntries(checks): the log entries it may write
	reply  []int64      // this request's part of the script's reply
	err    error
	// leads, when set as done is signaled, hands this call's goroutine a lane: it takes
	// the next batch (itself first) and sends it.
	leads bool
	done  chan struct{} // signaled once: the result is in, or leads is set
}

var callPool = sync.Pool{New: func() any { return &batchCall{done: make(chan struct{}, 1)} }}

type batcher struct {
	client redis.UniversalClient
	cc     *redis.ClusterClient // client on Redis Cluster (split batches by hash tag), else nil
	script *redislua.Script
	max    int
	lanes  int
	budget time.Duration // how long one batch's calls may take in all (callBudget; 0: no bound)

	mu       sync.Mutex
	pending  []*batchCall // waiting for a lane, oldest first
	inflight int          // lanes in use
	closed   bool

	pipelines atomic.Uint64 // round trips sent (retries included)
	calls     atomic.Uint64 // script calls sent (retries included)
	requests  atomic.Uint64 // requests sent (retries included)
}

func newBatcher(c redis.UniversalClient, s *redislua.Script, lanes, maxBatch int, budget time.Duration) *batcher {
	cc, _ := c.(*redis.ClusterClient)
	return &batcher{client: c, cc: cc, script: s, max: maxBatch, lanes: lanes, budget: budget}
}

var errEngineClosed = errors.New("engine closed")

// do decides one request in the next script call and returns its part of the reply.
func (b *batcher) do(ctx context.Context, now int64, checks []LimitCheck) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := callPool.Get().(*batchCall)
	c.ctx, c.now, c.checks, c.logs = ctx, now, checks, logEntries(checks)
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
		<-c.done // taken into a batch or handed a lane: signaled soon (the call budget bounds it)
	}
	if c.leads {
		c.leads = false
		b.mu.Lock()
		batch := b.takeLocked(c)
		b.mu.Unlock()
		b.lead(batch, c)
	}
	// A caller that gave up while its call was out still gets a reply that came: the
	// script charged, and an error would have the failure policy answer (the local one
	// charging again) for a request the store decided.
	if err := ctx.Err(); err != nil && c.reply == nil {
		b.recycle(c)
		return nil, err
	}
	return b.result(c)
}

func (b *batcher) result(c *batchCall) ([]int64, error) {
	reply, err := c.reply, c.err
	b.recycle(c)
	return reply, err
}

func (b *batcher) recycle(c *batchCall) {
	c.ctx, c.checks, c.reply, c.err, c.leads, c.logs = nil, nil, nil, nil, false, 0
	callPool.Put(c)
}

// logEntries is the most log entries checks can write: the sum of the costs of its
// sliding_window_log limits, leaving out costs above a limit (never admitted, so never
// written).
func logEntries(checks []LimitCheck) int64 {
	var n int64
	for i := range checks {
		if p := checks[i].Params; p != nil && p.Algorithm == SlidingWindowLog && checks[i].Cost <= p.Limit {
			n += checks[i].Cost // each at most MaxLogLimit: no overflow
		}
	}
	return n
}

// takeLocked returns a batch: first, then the oldest pending calls, up to max in all,
// and, in order, only as many as keep the call's limits within MaxBatchLimits and its
// sliding_window_log entries within what one limit may admit (MaxLogLimit; requests
// without limits, or without log entries, always fit that bound): each limit costs
// Redis a few microseconds and each entry about one, and Redis runs a call without
// serving anyone else.
func (b *batcher) takeLocked(first *batchCall) []*batchCall {
	n, logs, limits := 0, first.logs, len(first.checks)
	for n < min(len(b.pending), b.max-1) &&
		(len(b.pending[n].checks) == 0 || limits+len(b.pending[n].checks) <= MaxBatchLimits) &&
		(b.pending[n].logs == 0 || logs+b.pending[n].logs <= MaxLogLimit) {
		logs += b.pending[n].logs
		limits += len(b.pending[n].checks)
		n++
	}
	batch := make([]*batchCall, 0, n+1)
	batch = append(batch, first)
	batch = append(batch, b.pending[:n]...)
	clear(b.pending[:n])
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = b.pending[:0:0] // let the backing array go
	}
	return batch
}

// lead sends batch as one script call from the calling goroutine (self's), hands the lane
// to the oldest waiting call (which takes the next batch when it runs), or frees it, and
// wakes the batch's other callers.
func (b *batcher) lead(batch []*batchCall, self *batchCall) {
	b.send(batch)
	b.mu.Lock()
	var next *batchCall
	if len(b.pending) > 0 && !b.closed {
		next = b.pending[0]
		b.pending[0] = nil
		b.pending = b.pending[1:]
	} else {
		b.inflight--
	}
	b.mu.Unlock()
	if next != nil {
		next.leads = true
		next.done <- struct{}{}
	}
	for _, c := range batch {
		if c != self {
			c.done <- struct{}{}
		}
	}
}

// close fails the requests still waiting for a lane; calls in flight finish.
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

// group is one script call: requests whose keys share a slot.
type group struct {
	tag   string // the hash tag its keys share (cluster only)
	calls []*batchCall
	cmd   *redis.IntSliceCmd
}

// BatchCallError is the error of one batched script call, one value shared by every
// request in the call, so that the circuit breaker counts the call once, however many
// requests it carried (CountOnce).
type BatchCallError struct {
	Err     error
	counted atomic.Bool // set by the first CountOnce
}

// CountOnce reports true to the first of the call's requests that asks, and false to
// the others, however their callers interleave.
func (e *BatchCallError) CountOnce() bool { return e.counted.CompareAndSwap(false, true) }

func (e *BatchCallError) Error() string { return e.Err.Error() }
func (e *BatchCallError) Unwrap() error { return e.Err }

// FailedCall returns the batched script call whose failure err is, if it is one.
func FailedCall(err error) (*BatchCallError, bool) {
	var ce *BatchCallError
	return ce, errors.As(err, &ce)
}

// send decides one batch: one script call (per hash tag on a cluster), and stores each
// request's part of the reply or the call's error.
func (b *batcher) send(batch []*batchCall) {
	groups := b.group(batch)
	if len(groups) == 0 {
		return
	}
	// The batch's callers may have deadlines of their own; the call keeps to the
	// engine's budget, which is shorter than Envoy's deadline by default.
	ctx := context.Background()
	if b.budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, b.budget, errCallBudget)
		defer cancel()
	}
	for i := range groups {
		groups[i].cmd = b.command(ctx, groups[i].calls, false)
	}
	b.exec(ctx, groups)
	var retry []*group
	for i := range groups {
		if err := groups[i].cmd.Err(); err != nil && redislua.IsNoScript(err) {
			retry = append(retry, &groups[i])
			continue
		}
		groups[i].split(ctx, b.budget)
	}
	if len(retry) > 0 {
		b.reload(ctx, retry)
	}
}

// group drops the requests whose callers gave up (they are not charged) and splits the
// rest into script calls: one, or on a cluster one per hash tag, in arrival order.
func (b *batcher) group(batch []*batchCall) []group {
	var groups []group
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.err = err
			continue
		}
		var tag string
		if b.cc != nil {
			tag = hashTag(firstKey(c.checks))
		}
		i := 0
		for i < len(groups) && groups[i].tag != tag {
			i++
		}
		if i == len(groups) {
			groups = append(groups, group{tag: tag, calls: make([]*batchCall, 0, len(batch))})
		}
		groups[i].calls = append(groups[i].calls, c)
	}
	return groups
}

func firstKey(checks []LimitCheck) string {
	if len(checks) == 0 {
		return ""
	}
	return checks[0].Key
}

// hashTag is the part of key Redis Cluster hashes: the text between the first '{' and
// the next '}' when that is not empty, else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

// command builds one script call (EVALSHA, or EVAL with the source) deciding calls'
// requests in order, in request.lua's layout (manifest.json).
func (b *batcher) command(ctx context.Context, calls []*batchCall, withSource bool) *redis.IntSliceCmd {
	args := scriptArgs(len(calls), func(i int) (int64, []LimitCheck) { return calls[i].now, calls[i].checks })
	return b.script.Command(ctx, args, withSource)
}

// exec sends the groups' commands: one round trip on a single server; on a cluster one
// command per hash tag, all at once (sendEach).
func (b *batcher) exec(ctx context.Context, groups []group) {
	b.calls.Add(uint64(len(groups)))
	for i := range groups {
		b.requests.Add(uint64(len(groups[i].calls)))
	}
	if len(groups) == 1 {
		b.pipelines.Add(1)
		_ = b.client.Process(ctx, groups[0].cmd)
		return
	}
	cmds := make([]redis.Cmder, len(groups))
	for i := range groups {
		cmds[i] = groups[i].cmd
	}
	b.sendEach(ctx, cmds)
}

// sendEach sends the commands at once, each on its own (a goroutine each but the
// first), not as a go-redis cluster pipeline: that waits a backoff before following
// MOVED or ASK, and sets a failure it meets then (the budget running out) on every
// command in it, although the others ran and charged.
func (b *batcher) sendEach(ctx context.Context, cmds []redis.Cmder) {
	b.pipelines.Add(uint64(len(cmds)))
	var wg sync.WaitGroup
	for _, cmd := range cmds[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = b.client.Process(ctx, cmd)
		}()
	}
	_ = b.client.Process(ctx, cmds[0])
	wg.Wait()
}

// split hands each request of the group its part of the reply, or the call's error (a
// reply whose length does not add up is an error for all; one that the batch's budget,
// ctx, ended says so: budgetSpent).
func (g *group) split(ctx context.Context, budget time.Duration) {
	reply, err := g.cmd.Result()
	if err != nil {
		err = budgetSpent(ctx, budget, err)
	}
	want := 0
	for _, c := range g.calls {
		want += redislua.ReplyPerRequest + redislua.ReplyPerLimit*len(c.checks)
	}
	if err == nil && len(reply) != want {
		err = fmt.Errorf("script reply has %d values for %d requests, want %d", len(reply), len(g.calls), want)
	}
	if err != nil {
		err = &BatchCallError{Err: err}
	}
	off := 0
	for _, c := range g.calls {
		if err != nil {
			c.err = err
			continue
		}
		n := redislua.ReplyPerRequest + redislua.ReplyPerLimit*len(c.checks)
		c.reply = reply[off : off+n : off+n]
		off += n
	}
}

// reload sends the calls that failed with NOSCRIPT again, behind a SCRIPT LOAD in the
// same pipeline on a single server; on a cluster (where a pipelined SCRIPT LOAD reaches
// one node) after loading the script on every master (loadOnMasters), each call on its
// own as exec sends them. A call that still meets NOSCRIPT (a flush in between) runs as
// EVAL. NOSCRIPT means the script did not run, so no request is applied twice.
func (b *batcher) reload(ctx context.Context, retry []*group) {
	cmds := make([]redis.Cmder, len(retry))
	for i, g := range retry {
		g.cmd = b.command(ctx, g.calls, false)
		cmds[i] = g.cmd
		b.calls.Add(1)
		b.requests.Add(uint64(len(g.calls)))
	}
	if b.cc != nil {
		b.loadOnMasters(ctx)
		b.sendEach(ctx, cmds)
	} else {
		pipe := b.client.Pipeline()
		pipe.ScriptLoad(ctx, b.script.Source())
		for _, cmd := range cmds {
			_ = pipe.Process(ctx, cmd)
		}
		b.pipelines.Add(1)
		_, _ = pipe.Exec(ctx)
	}
	var again []redis.Cmder // a flush in between: EVAL with the source
	for _, g := range retry {
		if err := g.cmd.Err(); err != nil && redislua.IsNoScript(err) {
			g.cmd = b.command(ctx, g.calls, true)
			again = append(again, g.cmd)
			b.calls.Add(1)
			b.requests.Add(uint64(len(g.calls)))
		}
	}
	if len(again) > 0 {
		b.sendEach(ctx, again)
	}
	for _, g := range retry {
		g.split(ctx, b.budget)
	}
}

// loadOnMasters loads the script on every master at once, within the batch's budget
// (ctx): a master that is down or slow (NOSCRIPT often follows a failover) holds the
// retried calls no longer than a call would wait for it. A master that missed the load
// answers NOSCRIPT again, and its calls run as EVAL.
func (b *batcher) loadOnMasters(ctx context.Context) {
	_ = b.cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		b.pipelines.Add(1)
		return m.ScriptLoad(ctx, b.script.Source()).Err()
	})
}

// BatchStats reports what batching did: round trips, script calls and requests sent,
// retries after NOSCRIPT included. All are 0 when batching is off.
type BatchStats struct {
	Pipelines, Calls, Requests uint64
}

func (b *batcher) stats() BatchStats {
	return BatchStats{Pipelines: b.pipelines.Load(), Calls: b.calls.Load(), Requests: b.requests.Load()}
}
