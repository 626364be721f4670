package limiter

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func mustParams(t *testing.T, p Params) *Params {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	return &p
}

// Requests that take the engine's clock (now = 0) see it in the order they decide, even
// when a goroutine is preempted right after reading it: no fixed window admits past its
// limit, and a goroutine's nows never decrease. (With the clock read before the shard
// locks, a request that read the end of a window could decide after one that opened the
// next and write its old window over the new one's count: 19 to 24 admitted on a limit
// of 5 here.)
func TestMemoryEngineClockFollowsDecisionOrder(t *testing.T) {
	var ticks atomic.Int64
	clock := func() int64 {
		now := 1_700_000_000_000 + ticks.Add(1)/40 // one ms per 40 reads
		runtime.Gosched()                          // preempted between reading the clock and deciding
		return now
	}
	e := NewMemoryEngine(MemoryOptions{Clock: clock, Sweep: -1})
	fw := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 10})
	var mu sync.Mutex
	perWindow := map[int64]int64{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			out := make([]Decision, 1)
			last := int64(0)
			for range 4000 {
				o, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: "hot", Params: fw, Cost: 1}}, out)
				if err != nil {
					t.Error(err)
					return
				}
				if o.Now < last {
					t.Errorf("now went from %d to %d", last, o.Now)
					return
				}
				last = o.Now
				if o.Allowed {
					mu.Lock()
					perWindow[o.Now/10]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	e.Close()
	for w, n := range perWindow {
		if n > 5 {
			t.Errorf("window %d admitted %d on a limit of 5", w, n)
		}
	}
}

// Concurrent requests on one key admit exactly the limit, and a request denied by one of
// its keys charges none of the others, however the goroutines interleave.
func TestMemoryEngineConcurrentExactness(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Shards: 8})
	defer e.Close()
	fw := mustParams(t, Params{Algorithm: FixedWindow, Limit: 500, PeriodMs: 3_600_000})
	wide := mustParams(t, Params{Algorithm: FixedWindow, Limit: 1_000_000, PeriodMs: 3_600_000})
	const now = int64(1_700_000_000_000)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			checks := []LimitCheck{
				{Key: fmt.Sprintf("side-%d", g), Params: wide, Cost: 1},
				{Key: "hot", Params: fw, Cost: 1},
			}
			out := make([]Decision, 2)
			for i := 0; i < 100; i++ {
				o, err := e.Evaluate(context.Background(), now, checks, out)
				if err != nil {
					t.Error(err)
					return
				}
				if o.Allowed {
					admitted.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	if got := admitted.Load(); got != 500 {
		t.Fatalf("admitted %d requests on a limit of 500", got)
	}
	// Each side key was charged only by its admitted requests.
	var charged int64
	out := make([]Decision, 1)
	for g := 0; g < 16; g++ {
		if _, err := e.Evaluate(context.Background(), now, []LimitCheck{{Key: fmt.Sprintf("side-%d", g), Params: wide}}, out); err != nil {
			t.Fatal(err)
		}
		charged += wide.Limit - out[0].Remaining
	}
	if charged != 500 {
		t.Fatalf("side keys charged %d units, want 500 (denied requests must consume nothing)", charged)
	}
}

// A bound below the number of shards holds too: each shard keeps at least one key.
func TestMemoryEngineFewerKeysThanShards(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{MaxKeys: 10, Sweep: -1}) // 64 shards by default
	defer e.Close()
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 60_000})
	out := make([]Decision, 1)
	for i := 0; i < 1000; i++ {
		if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: fmt.Sprintf("k%d", i), Params: p, Cost: 1}}, out); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.Keys(); n > 10 {
		t.Errorf("%d keys stored with MaxKeys 10", n)
	}
}

// A full engine holds exactly MaxKeys keys, for bounds below the number of shards, at
// it, and above it whether or not the shards divide them evenly.
func TestMemoryEngineHoldsExactlyMaxKeys(t *testing.T) {
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 3_600_000})
	out := make([]Decision, 1)
	for _, tc := range []struct{ maxKeys, shards int }{
		{1, 0}, {10, 0}, {63, 0}, {64, 0}, {65, 0}, {100, 0}, {1000, 0}, {7, 4}, {1001, 4},
	} {
		t.Run(fmt.Sprintf("%d keys, %d shards", tc.maxKeys, tc.shards), func(t *testing.T) {
			e := NewMemoryEngine(MemoryOptions{MaxKeys: tc.maxKeys, Shards: tc.shards, Sweep: -1}) // 0: 64 shards
			defer e.Close()
			// enough keys that every shard is filled, whatever the hash seed
			for i := range 20*tc.maxKeys + 200 {
				if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: fmt.Sprint("k", i), Params: p, Cost: 1}}, out); err != nil {
					t.Fatal(err)
				}
			}
			if n := e.Keys(); n != tc.maxKeys {
				t.Errorf("%d keys held when full, want MaxKeys %d", n, tc.maxKeys)
			}
		})
	}
}

// The number of stored keys never exceeds MaxKeys; expired state goes before live state.
func TestMemoryEngineBoundedKeys(t *testing.T) {
	clock := int64(1_000_000)
	e := NewMemoryEngine(MemoryOptions{MaxKeys: 1000, Shards: 4, Sweep: -1, Clock: func() int64 { return clock }})
	defer e.Close()
	short := mustParams(t, Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 1000})
	out := make([]Decision, 1)
	for i := 0; i < 5000; i++ {
		if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: fmt.Sprintf("k%d", i), Params: short, Cost: 1}}, out); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.Keys(); n > 1000 {
		t.Fatalf("%d keys stored with MaxKeys 1000", n)
	}
	if e.Evictions() == 0 {
		t.Fatal("a full engine evicted nothing")
	}
	// Once everything has expired, new keys replace expired ones without evicting live state.
	clock += 10_000
	before := e.Evictions()
	for i := 0; i < 200; i++ {
		if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: fmt.Sprintf("new%d", i), Params: short, Cost: 1}}, out); err != nil {
			t.Fatal(err)
		}
	}
	if e.Evictions() != before {
		t.Fatalf("evicted %d live keys while expired ones were available", e.Evictions()-before)
	}
}

// The sweeper removes idle state once it reads as cold.
func TestMemoryEngineSweepsExpiredState(t *testing.T) {
	var clock atomic.Int64
	clock.Store(5_000)
	e := NewMemoryEngine(MemoryOptions{Sweep: 5 * time.Millisecond, Clock: clock.Load})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: GCRA, Limit: 10, PeriodMs: 1000})
	out := make([]Decision, 1)
	if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: "g", Params: p, Cost: 1}}, out); err != nil {
		t.Fatal(err)
	}
	if e.Keys() != 1 {
		t.Fatalf("keys = %d after one write", e.Keys())
	}
	clock.Add(1_000)
	deadline := time.Now().Add(2 * time.Second)
	for e.Keys() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if e.Keys() != 0 {
		t.Fatal("expired state was not swept")
	}
}

func TestEvaluateRejectsBadInput(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 1, PeriodMs: 1000})
	cases := []struct {
		name string
		now  int64
		cost int64
		out  int
	}{
		{"negative now", -1, 1, 1},
		{"now past 2200", MaxNowMs + 1, 1, 1},
		{"negative cost", 1000, -1, 1},
		{"cost above uint32", 1000, MaxCost + 1, 1},
		{"decisions length", 1000, 1, 2},
	}
	for _, c := range cases {
		_, err := e.Evaluate(context.Background(), c.now, []LimitCheck{{Key: "k", Params: p, Cost: c.cost}}, make([]Decision, c.out))
		if err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

func TestValidateBounds(t *testing.T) {
	cases := []struct {
		name string
		p    Params
		want string // substring of the error; "" = valid
	}{
		{"fixed default", Params{Algorithm: FixedWindow, Limit: 100, PeriodMs: 1000}, ""},
		{"zero limit blocks", Params{Algorithm: FixedWindow, Limit: 0, PeriodMs: 1000}, ""},
		{"zero limit of any algorithm blocks", Params{Algorithm: GCRA, Limit: 0, PeriodMs: 1000}, ""},
		{"negative limit", Params{Algorithm: FixedWindow, Limit: -1, PeriodMs: 1000}, "limit -1"},
		{"limit too large", Params{Algorithm: FixedWindow, Limit: MaxLimit + 1, PeriodMs: 1000}, "out of range"},
		{"period too long", Params{Algorithm: FixedWindow, Limit: 1, PeriodMs: MaxPeriodMs + 1}, "period"},
		{"gcra 1000/s reduces to 1 ms", Params{Algorithm: GCRA, Limit: 1000, PeriodMs: 1000}, ""},
		{"gcra coprime huge limit", Params{Algorithm: GCRA, Limit: 1_234_567, PeriodMs: 86_400_000}, "2^20"},
		{"gcra tolerance too long", Params{Algorithm: GCRA, Limit: 1, PeriodMs: 86_400_000, Burst: 30}, "2^31 ms"},
		{"token bucket per day", Params{Algorithm: TokenBucket, Limit: 1000, PeriodMs: 86_400_000}, ""},
		{"token bucket huge capacity×period", Params{Algorithm: TokenBucket, Limit: 1, PeriodMs: 31_536_000_000, Burst: 1_000_000}, "2^50"},
		{"sliding window indivisible", Params{Algorithm: SlidingWindow, Limit: 10, PeriodMs: 1000, Buckets: 3}, "divisible"},
		{"sliding window too many buckets", Params{Algorithm: SlidingWindow, Limit: 10, PeriodMs: 1000, Buckets: 1000}, "buckets"},
		{"sliding window magnitude", Params{Algorithm: SlidingWindow, Limit: 1 << 31, PeriodMs: 86_400_000 * 30, Buckets: 1}, "2^50"},
		{"log cap", Params{Algorithm: SlidingWindowLog, Limit: MaxLogLimit + 1, PeriodMs: 1000}, "cap"},
	}
	for _, c := range cases {
		err := c.p.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
}

// A clock that steps back never earns the same refill twice, and state far ahead of now
// (a clock jump) is clamped rather than overflowing.
func TestClockStepsBack(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	tb := mustParams(t, Params{Algorithm: TokenBucket, Limit: 1, PeriodMs: 1000, Burst: 2})
	out := make([]Decision, 1)
	eval := func(now, q int64) Decision {
		t.Helper()
		if _, err := e.Evaluate(context.Background(), now, []LimitCheck{{Key: "tb", Params: tb, Cost: q}}, out); err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	eval(10_000, 2) // empty at t=10 s
	if d := eval(9_000, 1); d.Allowed {
		t.Fatalf("a clock 1 s behind earned a token: %+v", d)
	}
	if d := eval(11_000, 1); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("after 1 s of real refill: %+v, want one token admitted", d)
	}
}

// A sliding_window whose limit was lowered reads each sub-bucket count above the new
// limit as the limit (docs/algorithms.md, lowered limits; it keeps the arithmetic
// bounded) and the window's sum as at most the limit + 1: one sub-bucket over the new
// limit reads as a full window (a cost-0 check allowed, a cost of 1 denied), two that
// add up to more than it read as over (a cost-0 check denied, as SPEC §4.4's formula
// says).
func TestSlidingWindowLoweredLimit(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	out := make([]Decision, 1)
	eval := func(key string, now, limit, q int64) Decision {
		t.Helper()
		p := mustParams(t, Params{Algorithm: SlidingWindow, Limit: limit, PeriodMs: 1000, Buckets: 10})
		if _, err := e.Evaluate(context.Background(), now, []LimitCheck{{Key: key, Params: p, Cost: q}}, out); err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	eval("one", 10_000, 10, 10) // 10 in one sub-bucket
	if d := eval("one", 10_000, 5, 0); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("one sub-bucket of 10 under a limit of 5, cost 0: %+v, want allowed with 0 left", d)
	}
	if d := eval("one", 10_000, 5, 1); d.Allowed {
		t.Fatalf("one sub-bucket of 10 under a limit of 5, cost 1: %+v, want denied", d)
	}
	eval("two", 10_000, 10, 5) // 5 in one sub-bucket ...
	eval("two", 10_100, 10, 5) // ... and 5 in the next
	if d := eval("two", 10_100, 5, 0); d.Allowed || d.Remaining != 0 {
		t.Fatalf("two sub-buckets of 5 under a limit of 5, cost 0: %+v, want denied", d)
	}
}

// One million distinct keys keep the engine within its configured bound: the key count
// never exceeds MaxKeys and the heap stays proportional to it, not to the traffic.
func TestMemoryEngineMillionKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("one million requests")
	}
	const maxKeys = 50_000
	e := NewMemoryEngine(MemoryOptions{MaxKeys: maxKeys, Sweep: -1})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: SlidingWindow, Limit: 100, PeriodMs: 3_600_000})
	checks := []LimitCheck{{Params: p, Cost: 1}}
	out := make([]Decision, 1)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	key := make([]byte, 0, 32)
	for i := 0; i < 1_000_000; i++ {
		key = strconv.AppendInt(append(key[:0], "client-"...), int64(i), 10)
		checks[0].Key = string(key)
		if _, err := e.Evaluate(context.Background(), 0, checks, out); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	grown := int64(ms.HeapAlloc) - int64(base)
	perKey := grown / maxKeys
	t.Logf("1,000,000 keys: %d stored (bound %d), %d evictions, heap grew %d MiB (%d bytes per stored key)",
		e.Keys(), maxKeys, e.Evictions(), grown>>20, perKey)
	if e.Keys() > maxKeys {
		t.Fatalf("%d keys stored, bound %d", e.Keys(), maxKeys)
	}
	// A sliding-window state with its key is a few hundred bytes; 2 KiB per bounded key
	// leaves room for map overhead while catching growth with the traffic (which would be
	// 20× the bound here).
	if e.Evictions() == 0 {
		t.Fatal("no live key was evicted: the bound was not exercised")
	}
	if perKey > 2048 {
		t.Fatalf("heap grew %d bytes per stored key", perKey)
	}
}

// A flood of distinct keys cannot reset a counter a client has used up, nor forgive a
// quota's spent units: eviction drops the state holding the fewest units first, and
// each flood key holds one, whatever its limit (on a limit of 1 each flood key is as
// "full" as the used-up counter, and was evicted after it when eviction ranked by the
// share of the limit in use).
func TestMemoryEvictionKeepsUsedUpCounters(t *testing.T) {
	login := mustParams(t, Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 3_600_000})
	tenant := mustParams(t, Params{Algorithm: FixedWindow, Limit: 10_000, PeriodMs: 86_400_000})
	for _, flood := range []struct {
		name string
		p    Params
	}{
		{"a longer-lived limit of 1000", Params{Algorithm: FixedWindow, Limit: 1000, PeriodMs: 86_400_000}},
		{"a limit of 1, each key used up", Params{Algorithm: FixedWindow, Limit: 1, PeriodMs: 7_200_000}},
		{"a limit of 5, each key a fifth used", Params{Algorithm: FixedWindow, Limit: 5, PeriodMs: 7_200_000}},
		{"gcra, a limit of 1", Params{Algorithm: GCRA, Limit: 1, PeriodMs: 7_200_000, Burst: 1}},
	} {
		t.Run(flood.name, func(t *testing.T) {
			e := NewMemoryEngine(MemoryOptions{MaxKeys: 640, Sweep: -1}) // 10 keys per shard
			defer e.Close()
			fp := mustParams(t, flood.p)
			out := make([]Decision, 1)
			eval := func(key string, p *Params, cost int64) Decision {
				t.Helper()
				if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: key, Params: p, Cost: cost}}, out); err != nil {
					t.Fatal(err)
				}
				return out[0]
			}
			for range 5 {
				eval("login", login, 1)
			}
			eval("tenant", tenant, 1000)
			for i := range 20_000 {
				eval(fmt.Sprintf("flood%d", i), fp, 1)
			}
			if e.Evictions() == 0 {
				t.Fatal("the flood evicted nothing")
			}
			if e.EvictedUnits() != e.Evictions() {
				t.Errorf("%d units forgiven by %d evictions of one-unit flood keys, want one each", e.EvictedUnits(), e.Evictions())
			}
			if d := eval("login", login, 0); d.Remaining != 0 {
				t.Errorf("the used-up counter was evicted by the flood: %+v", d)
			}
			if d := eval("tenant", tenant, 0); d.Remaining != 9000 {
				t.Errorf("the tenant's 1000 spent units were forgiven by the flood: %+v", d)
			}
		})
	}
}

// A request's commit never evicts a key the same request charged: all or nothing holds
// even in a shard smaller than the request.
func TestMemoryCommitKeepsItsOwnKeys(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{MaxKeys: 1, Sweep: -1})
	defer e.Close()
	p := mustParams(t, Params{Algorithm: FixedWindow, Limit: 1, PeriodMs: 3_600_000})
	out := make([]Decision, 2)
	if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: "a", Params: p, Cost: 1}, {Key: "b", Params: p, Cost: 1}}, out); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: k, Params: p, Cost: 1}}, out[:1]); err != nil {
			t.Fatal(err)
		}
		if out[0].Allowed {
			t.Fatalf("key %s charged by the first request was lost", k)
		}
	}
}

// MaxBytes bounds the state's memory, whatever the keys and states weigh, and
// entrySize is a fair estimate of what an entry costs the heap.
func TestMemoryEngineBytesBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p      Params
		key    int // key length
		writes int // admissions per key, at distinct times (log entries)
	}{
		{"fixed_window, short keys", Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 3_600_000}, 40, 1},
		{"fixed_window, 512-byte keys", Params{Algorithm: FixedWindow, Limit: 10, PeriodMs: 3_600_000}, 512, 1},
		{"sliding_window_log, 200 entries", Params{Algorithm: SlidingWindowLog, Limit: 1000, PeriodMs: 3_600_000}, 40, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxBytes = 8 << 20
			clock := int64(1_000_000)
			e := NewMemoryEngine(MemoryOptions{MaxBytes: maxBytes, Shards: 8, Sweep: -1, Clock: func() int64 { return clock }})
			defer e.Close()
			p := mustParams(t, tc.p)
			out := make([]Decision, 1)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			pad := strings.Repeat("k", tc.key-8)
			for i := range 200_000 {
				key := fmt.Sprintf("%s%08d", pad, i)
				for range tc.writes {
					clock++
					if _, err := e.Evaluate(context.Background(), 0, []LimitCheck{{Key: key, Params: p, Cost: 1}}, out); err != nil {
						t.Fatal(err)
					}
				}
				if e.Evictions() > 1000 { // well past full
					break
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			if b := e.Bytes(); b > maxBytes+maxBytes/100 {
				t.Fatalf("%d bytes accounted with MaxBytes %d", b, maxBytes)
			}
			heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
			ratio := float64(heap) / float64(e.Bytes())
			t.Logf("%d keys, %d bytes accounted, %d bytes of heap (%.2f×)", e.Keys(), e.Bytes(), heap, ratio)
			if ratio < 0.5 || ratio > 1.5 {
				t.Errorf("the heap holds %.2f× the accounted bytes: entrySize is off", ratio)
			}
		})
	}
}

// Deciding on the memory engine allocates nothing for the one-key algorithms, one or
// several checks (docs/performance.md, allocation budgets): a StateStore boxed in an
// interface once cost an allocation per request.
func TestMemoryEngineAllocatesNothing(t *testing.T) {
	e := NewMemoryEngine(MemoryOptions{Sweep: -1})
	defer e.Close()
	fw := mustParams(t, Params{Algorithm: FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000})
	gc := mustParams(t, Params{Algorithm: GCRA, Limit: 1000, PeriodMs: 1000, Burst: 1 << 20})
	checks := []LimitCheck{{Key: "a", Params: fw, Cost: 1}, {Key: "b", Params: gc, Cost: 1}, {Key: "a", Params: fw, Cost: 1}}
	out := make([]Decision, len(checks))
	ctx := context.Background()
	for _, n := range []int{1, 3} {
		if _, err := e.Evaluate(ctx, 0, checks[:n], out[:n]); err != nil {
			t.Fatal(err)
		}
		if allocs := testing.AllocsPerRun(200, func() { _, _ = e.Evaluate(ctx, 0, checks[:n], out[:n]) }); allocs != 0 {
			t.Errorf("%d checks: %.1f allocations per request, want 0", n, allocs)
		}
	}
}

// The default clock reads epoch milliseconds, the wall clock's at the start, and never
// goes back between readings (it follows Go's monotonic clock, which a wall-clock step
// does not move).
func TestMemoryEngineDefaultClock(t *testing.T) {
	clock := monotonicEpochMs()
	first := clock()
	if wall := time.Now().UnixMilli(); first < wall-1000 || first > wall+1000 {
		t.Fatalf("clock %d, wall clock %d", first, wall)
	}
	last := first
	for range 100_000 {
		now := clock()
		if now < last {
			t.Fatalf("the clock went back from %d to %d", last, now)
		}
		last = now
	}
}
