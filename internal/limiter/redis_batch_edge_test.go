package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// Edge cases of the batcher's queue (redis_batch.go): withdrawal on cancel, cancellation
// after a request left the queue, Close with requests queued, the BatchMax bound, and
// lanes that must come back after cancellations.
// Lanes are made busy deterministically: Redis is frozen (SIGSTOP) while one call is in
// flight, so every later request queues. Timeouts here detect hangs; none bounds latency.

const (
	edgeNow  = 1_700_000_000_000 // the clock of every request
	edgeHang = 3 * time.Second   // what should happen at once has hung after this long
)

// newWarmBatchedRedis is newBatchedRedis with the script loaded and a connection open,
// so that no call meets NOSCRIPT (each request is sent once) or dials while Redis is frozen.
func newWarmBatchedRedis(t *testing.T, lanes, maxBatch int) (*limiter.RedisEngine, *testredis.Server) {
	t.Helper()
	e, srv := newBatchedRedis(t, lanes, maxBatch)
	ctx := context.Background()
	if err := srv.Client().ScriptLoad(ctx, redislua.Request.Source()).Err(); err != nil {
		t.Fatal(err)
	}
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	d := make([]limiter.Decision, 1)
	if _, err := e.Evaluate(ctx, edgeNow, oneCheck(p, uniquePrefix(t)+":warm", 1), d); err != nil {
		t.Fatal(err)
	}
	return e, srv
}

type edgeResult struct {
	d   limiter.Decision
	err error
}

// evaluateAsync runs one single-check request on its own goroutine.
func evaluateAsync(ctx context.Context, e *limiter.RedisEngine, checks []limiter.LimitCheck) <-chan edgeResult {
	ch := make(chan edgeResult, 1)
	go func() {
		d := make([]limiter.Decision, 1)
		_, err := e.Evaluate(ctx, edgeNow, checks, d)
		ch <- edgeResult{d[0], err}
	}()
	return ch
}

// awaitResult returns the request's result, or fails the test if none comes (a hang).
func awaitResult(t *testing.T, what string, ch <-chan edgeResult) edgeResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(edgeHang):
		t.Fatalf("%s: no result after %v (hung)", what, edgeHang)
		return edgeResult{}
	}
}

// waitEdge polls cond until it holds, or fails the test after edgeHang.
func waitEdge(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(edgeHang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", edgeHang, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// queuedInBatcher counts the goroutines parked in the batcher's select, waiting for a
// lane or their result. The batcher exposes no queue length and a sleep would only make
// queueing likely, so this reads goroutine stacks; if do is renamed, the tests that wait
// on it fail loudly instead of testing less.
func queuedInBatcher() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, frames, _ := strings.Cut(g, "\n")
		if !strings.Contains(header, "[select") {
			continue
		}
		for _, line := range strings.Split(frames, "\n") {
			if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "runtime.") {
				continue
			}
			if strings.Contains(line, "limiter.(*batcher).do(") {
				count++
			}
			break // the first frame outside the runtime decides
		}
	}
	return count
}

// stallLane freezes Redis and sends one request on key, which takes a lane and stays in
// flight until srv.Resume; it returns that request's result channel once it is sent.
func stallLane(t *testing.T, e *limiter.RedisEngine, srv *testredis.Server, checks []limiter.LimitCheck) <-chan edgeResult {
	t.Helper()
	calls := e.BatchStats().Calls
	srv.Pause()
	ch := evaluateAsync(context.Background(), e, checks)
	waitEdge(t, "the first request to be sent", func() bool { return e.BatchStats().Calls > calls })
	return ch
}

// enqueue starts a request and waits until it is parked in the batcher's queue.
func enqueue(t *testing.T, ctx context.Context, e *limiter.RedisEngine, checks []limiter.LimitCheck) <-chan edgeResult {
	t.Helper()
	before := queuedInBatcher()
	ch := evaluateAsync(ctx, e, checks)
	waitEdge(t, "a request to queue", func() bool { return queuedInBatcher() > before })
	return ch
}

// A request canceled while it queues behind a busy lane returns its context's error at
// once (Redis still frozen: it does not wait for the lane), is never sent nor charged,
// and the requests around it in the queue are answered normally.
func TestRedisBatchEdgeCancelWhileQueued(t *testing.T) {
	e, srv := newWarmBatchedRedis(t, 1, 8)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	prefix := uniquePrefix(t)
	before := e.BatchStats()

	a := stallLane(t, e, srv, oneCheck(p, prefix+":a", 1))
	c1 := enqueue(t, context.Background(), e, oneCheck(p, prefix+":c1", 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := enqueue(t, ctx, e, oneCheck(p, prefix+":b", 1)) // in the middle of the queue
	c2 := enqueue(t, context.Background(), e, oneCheck(p, prefix+":c2", 1))

	cancel()
	rb := awaitResult(t, "the canceled queued request, with Redis frozen", b)
	if !errors.Is(rb.err, limiter.ErrStore) || !errors.Is(rb.err, context.Canceled) {
		t.Errorf("canceled queued request: %v, want ErrStore wrapping context.Canceled", rb.err)
	}
	srv.Resume()

	for _, r := range []struct {
		name string
		ch   <-chan edgeResult
	}{{"in flight", a}, {"queued before", c1}, {"queued after", c2}} {
		res := awaitResult(t, r.name, r.ch)
		if res.err != nil || !res.d.Allowed || res.d.Remaining != p.Limit-1 {
			t.Errorf("request %s: %+v, %v; want allowed with %d remaining", r.name, res.d, res.err, p.Limit-1)
		}
	}
	s := e.BatchStats()
	if sent := s.Requests - before.Requests; sent != 3 {
		t.Errorf("%d requests sent, want 3 (the canceled one withdrawn)", sent)
	}
	d := make([]limiter.Decision, 1)
	if _, err := e.Evaluate(context.Background(), edgeNow, oneCheck(p, prefix+":b", 0), d); err != nil {
		t.Fatal(err)
	}
	if d[0].Remaining != p.Limit {
		t.Errorf("the canceled request's key has %d of %d left: it was charged", d[0].Remaining, p.Limit)
	}
	t.Logf("%d requests in %d calls", s.Requests-before.Requests, s.Calls-before.Calls)
}

// Close with requests queued fails them at once (Redis still frozen) with ErrStore; the
// request in flight ends too, answered or failed; later requests fail with ErrStore.
func TestRedisBatchEdgeCloseWhileQueued(t *testing.T) {
	e, srv := newWarmBatchedRedis(t, 1, 4)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 100, PeriodMs: 60_000})
	prefix := uniquePrefix(t)

	inFlight := stallLane(t, e, srv, oneCheck(p, prefix+":sent", 1))
	var queued []<-chan edgeResult
	for i := range 6 {
		queued = append(queued, enqueue(t, context.Background(), e, oneCheck(p, fmt.Sprintf("%s:q%d", prefix, i), 1)))
	}

	closed := make(chan error, 1)
	go func() { closed <- e.Close() }()
	for i, ch := range queued {
		r := awaitResult(t, fmt.Sprintf("queued request %d after Close, with Redis frozen", i), ch)
		if !errors.Is(r.err, limiter.ErrStore) || errors.Is(r.err, context.Canceled) {
			t.Errorf("queued request %d after Close: %+v, %v; want an ErrStore failure", i, r.d, r.err)
		}
	}
	srv.Resume()
	select {
	case <-closed:
	case <-time.After(edgeHang):
		t.Fatalf("Close hung for %v", edgeHang)
	}
	r := awaitResult(t, "the request in flight at Close", inFlight)
	if r.err == nil && (!r.d.Allowed || r.d.Remaining != p.Limit-1) {
		t.Errorf("the request in flight at Close: %+v, want allowed with %d remaining (or an error)", r.d, p.Limit-1)
	}
	t.Logf("the request in flight at Close: %+v, %v", r.d, r.err)

	later := awaitResult(t, "a request after Close", evaluateAsync(context.Background(), e, oneCheck(p, prefix+":later", 1)))
	if !errors.Is(later.err, limiter.ErrStore) {
		t.Errorf("a request after Close: %+v, %v; want ErrStore", later.d, later.err)
	}
}

// With one lane and BatchMax 4, requests queued behind a frozen Redis go out at most 4
// per script call, and each is decided in order: a fixed window of 7 on their shared key
// admits exactly 7 of 22, leaving 6, 5, ..., 0.
func TestRedisBatchEdgeMaxBound(t *testing.T) {
	const maxBatch, total, limit = 4, 22, 7
	e, srv := newWarmBatchedRedis(t, 1, maxBatch)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: limit, PeriodMs: 60_000})
	key := uniquePrefix(t)
	before := e.BatchStats()
	logEveryCommand(t, srv)

	first := stallLane(t, e, srv, oneCheck(p, key+":other", 1))
	base := queuedInBatcher()
	chans := make([]<-chan edgeResult, total)
	for i := range chans {
		chans[i] = evaluateAsync(context.Background(), e, oneCheck(p, key, 1))
	}
	waitEdge(t, fmt.Sprintf("%d requests to queue", total), func() bool { return queuedInBatcher() >= base+total })
	srv.Resume()

	if r := awaitResult(t, "the request in flight", first); r.err != nil {
		t.Fatal(r.err)
	}
	allowed := map[int64]int{}
	for i, ch := range chans {
		r := awaitResult(t, fmt.Sprintf("queued request %d", i), ch)
		switch {
		case r.err != nil:
			t.Fatalf("queued request %d: %v", i, r.err)
		case r.d.Allowed:
			allowed[r.d.Remaining]++
		case r.d.Remaining != 0 || r.d.RetryAfterMs <= 0:
			t.Errorf("queued request %d denied with %+v", i, r.d)
		}
	}
	n := 0
	for rem := range int64(limit) {
		if allowed[rem] != 1 {
			t.Errorf("%d requests allowed leaving %d, want 1 (allowed: %v)", allowed[rem], rem, allowed)
		}
		n += allowed[rem]
	}
	if len(allowed) != limit {
		t.Errorf("allowed by remaining: %v, want one each of 0..%d", allowed, limit-1)
	}

	s := e.BatchStats()
	calls, requests := s.Calls-before.Calls-1, s.Requests-before.Requests-1 // less the stalled one
	if requests != total {
		t.Errorf("%d queued requests sent, want %d (each once)", requests, total)
	}
	if requests > maxBatch*calls {
		t.Errorf("%d requests in %d script calls: more than %d in some call", requests, calls, maxBatch)
	}
	if want := uint64((total + maxBatch - 1) / maxBatch); calls < want {
		t.Errorf("%d queued requests in %d script calls, want at least %d with BatchMax %d", total, calls, want, maxBatch)
	}
	// Each call's own size, as Redis saw it: the counts above bound only the average.
	sizes := scriptCallKeys(t, srv)
	sent := 0
	for _, k := range sizes {
		if k > maxBatch {
			t.Errorf("a script call with %d one-key requests, more than BatchMax %d (calls: %v)", k, maxBatch, sizes)
		}
		sent += k
	}
	if sent != total+1 { // and the stalled one
		t.Errorf("Redis saw script calls for %d requests %v, want %d", sent, sizes, total+1)
	}
	t.Logf("%d queued requests in %d script calls %v, %d allowed", requests, calls, sizes, n)
}

// logEveryCommand makes srv keep every command from now on in its slow log (a private
// test server: nobody else reads it).
func logEveryCommand(t *testing.T, srv *testredis.Server) {
	t.Helper()
	ctx := context.Background()
	c := srv.Client()
	for _, kv := range [][2]string{{"slowlog-log-slower-than", "0"}, {"slowlog-max-len", "10000"}} {
		if err := c.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Do(ctx, "SLOWLOG", "RESET").Err(); err != nil {
		t.Fatal(err)
	}
}

// scriptCallKeys returns, oldest first, the number of KEYS of every EVALSHA or EVAL in
// srv's slow log: with one-key requests, each script call's number of requests.
func scriptCallKeys(t *testing.T, srv *testredis.Server) []int {
	t.Helper()
	log, err := srv.Client().SlowLogGet(context.Background(), -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for i := len(log) - 1; i >= 0; i-- { // the log is newest first
		args := log[i].Args
		if len(args) < 3 || (!strings.EqualFold(args[0], "evalsha") && !strings.EqualFold(args[0], "eval")) {
			continue
		}
		n, err := strconv.Atoi(args[2])
		if err != nil {
			t.Fatalf("slow log entry %v: %v", args, err)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// tripContext is a context that ends the first time the batcher consults it (Err) after
// arm, that is while the batch holding its request is being built: onTrip runs then.
// That first Err reports the request still live (it is sent) when sent is set, else
// canceled (it is dropped from the batch); later calls report it canceled.
type tripContext struct {
	context.Context // Background: no deadline, no values
	sent            bool
	onTrip          func()
	armed           atomic.Bool
	once            sync.Once
	done            chan struct{}
}

func newTripContext(sent bool, onTrip func()) *tripContext {
	return &tripContext{Context: context.Background(), sent: sent, onTrip: onTrip, done: make(chan struct{})}
}

func (c *tripContext) Done() <-chan struct{} { return c.done }

func (c *tripContext) Err() error {
	if !c.armed.Load() {
		return nil
	}
	first := false
	c.once.Do(func() {
		first = true
		if c.onTrip != nil {
			c.onTrip()
		}
		close(c.done)
	})
	if first && c.sent {
		return nil
	}
	return context.Canceled
}

func (c *tripContext) tripped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Requests canceled after they left the queue: w is handed the lane and canceled as it
// builds its batch (it must still send the batch: the requests behind it depend on it);
// x is taken into that batch and canceled just as the call goes out, with Redis frozen
// then (it must wait for the call, whose result it gets: the call charged it). w is not
// charged, the others are answered, and the lane is free afterwards.
func TestRedisBatchEdgeCancelAfterTaken(t *testing.T) {
	e, srv := newWarmBatchedRedis(t, 1, 8)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	prefix := uniquePrefix(t)
	before := e.BatchStats()

	a := stallLane(t, e, srv, oneCheck(p, prefix+":a", 1))
	wCtx := newTripContext(false, nil)
	w := enqueue(t, wCtx, e, oneCheck(p, prefix+":w", 1))
	xCtx := newTripContext(true, srv.Pause)
	x := enqueue(t, xCtx, e, oneCheck(p, prefix+":x", 1))
	y := enqueue(t, context.Background(), e, oneCheck(p, prefix+":y", 1))
	wCtx.armed.Store(true)
	xCtx.armed.Store(true)
	srv.Resume() // a's call returns; w gets the lane and sends w, x and y, freezing Redis

	waitEdge(t, "w and x to be canceled as their batch is built (w, handed the lane, never built it?)",
		func() bool { return wCtx.tripped() && xCtx.tripped() })
	var rx edgeResult
	early := false
	select {
	case rx = <-x:
		early = true
		t.Errorf("x returned (%+v, %v) while the call it was sent in was in flight", rx.d, rx.err)
	case <-time.After(200 * time.Millisecond):
	}
	srv.Resume()

	if r := awaitResult(t, "a", a); r.err != nil || r.d.Remaining != p.Limit-1 {
		t.Errorf("a: %+v, %v; want allowed with %d remaining", r.d, r.err, p.Limit-1)
	}
	if r := awaitResult(t, "w", w); !errors.Is(r.err, limiter.ErrStore) || !errors.Is(r.err, context.Canceled) {
		t.Errorf("w: %+v, %v; want ErrStore wrapping context.Canceled", r.d, r.err)
	}
	if !early {
		rx = awaitResult(t, "x", x)
	}
	// x gave up while its call was out, but the call came back: x gets its answer (an
	// error would have the failure policy answer a request the store charged).
	if rx.err != nil || rx.d.Remaining != p.Limit-1 {
		t.Errorf("x: %+v, %v; want its answer, allowed with %d remaining", rx.d, rx.err, p.Limit-1)
	}
	if r := awaitResult(t, "y", y); r.err != nil || r.d.Remaining != p.Limit-1 {
		t.Errorf("y: %+v, %v; want allowed with %d remaining", r.d, r.err, p.Limit-1)
	}
	sent := e.BatchStats().Requests - before.Requests

	used := func(key string) int64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), edgeHang)
		defer cancel()
		d := make([]limiter.Decision, 1)
		if _, err := e.Evaluate(ctx, edgeNow, oneCheck(p, key, 0), d); err != nil {
			t.Fatalf("a request after the cancellations: %v (a lane leaked?)", err)
		}
		return p.Limit - d[0].Remaining
	}
	if n := used(prefix + ":w"); n != 0 {
		t.Errorf("w, canceled before its call went out, was charged %d", n)
	}
	n := used(prefix + ":x")
	if n != 1 || sent != 3 {
		t.Errorf("x charged %d, %d requests sent: want x charged once, and a, x and y sent", n, sent)
	}
	t.Logf("x: %v, charged %d; %d requests sent", rx.err, n, sent)
}

// After a storm of requests with short random deadlines on one lane (Redis frozen for a
// moment in each round, so that most are canceled queued, a tenth or so after they were
// taken into a batch, now and then one handed the lane), the lane is free: sequential requests are answered,
// each in its own call. Every request without a deadline is answered; every request that
// was answered was charged, and nothing that was not sent was.
func TestRedisBatchEdgeNoLaneLeak(t *testing.T) {
	e, srv := newWarmBatchedRedis(t, 1, 4)
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000})
	key := uniquePrefix(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	before := e.BatchStats()

	const rounds, perRound = 50, 40
	var mu sync.Mutex
	var unexpected []string
	answered, expired := 0, 0
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range perRound {
			ctx, cancel := context.Background(), context.CancelFunc(func() {})
			deadline := rng.IntN(4) != 0
			if deadline {
				ctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(4000))*time.Microsecond)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer cancel()
				d := make([]limiter.Decision, 1)
				_, err := e.Evaluate(ctx, edgeNow, oneCheck(p, key, 1), d)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					answered++
				case deadline && errors.Is(err, limiter.ErrStore) && errors.Is(err, context.DeadlineExceeded):
					expired++
				default:
					unexpected = append(unexpected, fmt.Sprintf("round %d request %d (deadline %v): %v", round, i, deadline, err))
				}
			}()
		}
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Microsecond)
		srv.Pause()
		time.Sleep(time.Duration(1000+rng.IntN(3000)) * time.Microsecond)
		srv.Resume()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(edgeHang):
			t.Fatalf("round %d: requests still running after %v (hung)", round, edgeHang)
		}
	}
	mu.Lock()
	for _, u := range unexpected {
		t.Error(u)
	}
	mu.Unlock()
	storm := e.BatchStats()
	sent := storm.Requests - before.Requests

	const sequential = 20
	var last limiter.Decision
	for i := range sequential {
		ctx, cancel := context.WithTimeout(context.Background(), edgeHang)
		d := make([]limiter.Decision, 1)
		_, err := e.Evaluate(ctx, edgeNow, oneCheck(p, key, 1), d)
		cancel()
		if err != nil {
			t.Fatalf("sequential request %d after the storm: %v (a lane leaked?)", i, err)
		}
		if i > 0 && d[0].Remaining != last.Remaining-1 {
			t.Errorf("sequential request %d left %d, the one before %d", i, d[0].Remaining, last.Remaining)
		}
		last = d[0]
	}
	s := e.BatchStats()
	if s.Calls-storm.Calls != sequential || s.Requests-storm.Requests != sequential {
		t.Errorf("%d sequential requests went out as %d requests in %d calls, want %d in %d",
			sequential, s.Requests-storm.Requests, s.Calls-storm.Calls, sequential, sequential)
	}
	charged := uint64(p.Limit - last.Remaining - sequential)
	if charged < uint64(answered) || charged > sent {
		t.Errorf("the storm charged %d: want at least the %d answered and at most the %d sent", charged, answered, sent)
	}
	t.Logf("storm: %d requests, %d answered, %d expired; %d sent in %d calls, %d charged",
		rounds*perRound, answered, expired, sent, storm.Calls-before.Calls, charged)
}

// A batched script call carries at most limiter.MaxBatchLimits limits among its requests
// (one request's may be more), as it carries at most MaxLogLimit log units: Redis runs
// a call without serving anyone else, and a call's time grows with its limits. Before
// the bound, 64 requests of 64 limits each went out as one call of 4,096 keys, which
// took Redis about 10 ms on a test machine, longer than the 8 ms default read timeout:
// every request of the call failed after the script had charged it, although each
// alone takes well under a millisecond.
func TestRedisBatchEdgeLimitsBound(t *testing.T) {
	const total, limits = 12, 64
	e, srv := newWarmBatchedRedis(t, 1, 0) // BatchMax: the default, 64
	p := params(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60_000})
	prefix := uniquePrefix(t)
	logEveryCommand(t, srv)

	first := stallLane(t, e, srv, oneCheck(p, prefix+":first", 1))
	base := queuedInBatcher()
	chans := make([]<-chan edgeResult, total)
	for i := range chans {
		checks := make([]limiter.LimitCheck, limits)
		for j := range checks {
			checks[j] = limiter.LimitCheck{Key: fmt.Sprintf("%s:%d:%d", prefix, i, j), Params: p, Cost: 1}
		}
		ch := make(chan edgeResult, 1)
		go func() {
			d := make([]limiter.Decision, len(checks))
			out, err := e.Evaluate(context.Background(), edgeNow, checks, d)
			ch <- edgeResult{limiter.Decision{Allowed: out.Allowed}, err}
		}()
		chans[i] = ch
	}
	waitEdge(t, fmt.Sprintf("%d requests to queue", total), func() bool { return queuedInBatcher() >= base+total })
	srv.Resume()
	if r := awaitResult(t, "the request in flight", first); r.err != nil {
		t.Fatal(r.err)
	}
	for i, ch := range chans {
		if r := awaitResult(t, fmt.Sprintf("queued request %d", i), ch); r.err != nil || !r.d.Allowed {
			t.Fatalf("queued request %d: allowed %v, %v", i, r.d.Allowed, r.err)
		}
	}
	sizes := scriptCallKeys(t, srv)
	sent := 0
	for _, k := range sizes {
		if k > limiter.MaxBatchLimits {
			t.Errorf("a script call with %d limits, more than MaxBatchLimits %d (calls: %v)", k, limiter.MaxBatchLimits, sizes)
		}
		sent += k
	}
	if want := 1 + total*limits; sent != want {
		t.Errorf("Redis saw script calls for %d limits %v, want %d (each once)", sent, sizes, want)
	}
	// The queue, taken in order, fills each call to the bound exactly: requests are
	// not sent one per call, nor cut one short.
	if want := []int{1, limiter.MaxBatchLimits, limiter.MaxBatchLimits, limiter.MaxBatchLimits}; !slices.Equal(sizes, want) {
		t.Errorf("script calls of %v keys, want %v", sizes, want)
	}
	t.Logf("%d queued requests of %d limits in script calls of %v keys", total, limits, sizes)
}
