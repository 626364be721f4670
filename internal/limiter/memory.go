package limiter

import (
	"context"
	"hash/maphash"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configures the embedded in-memory engine.
type MemoryOptions struct {
	MaxKeys int // bound on stored keys across all shards (default 1,000,000)
	// MaxBytes bounds the memory the stored state takes, approximately (keys, states,
	// sub-buckets and log entries; entrySize). Default: half of the Go memory limit
	// (GOMEMLIMIT) when one is set, else 1 GiB.
	MaxBytes int64
	Shards   int           // number of independently locked shards (default 64)
	Clock    func() int64  // epoch ms used when a request passes now = 0 (default wall clock)
	Sweep    time.Duration // how often idle state is swept (default 1 s; < 0 disables)
}

// MemoryEngine keeps state in process. Keys are spread over shards so that unrelated
// keys do not contend; a request locks the shards of its keys in index order, which
// makes it atomic and deadlock-free. Memory is bounded by MaxKeys and MaxBytes, split
// between the shards (share): when a shard is full, expired state is dropped first,
// then, among a sample, the state that holds the fewest units (see evict).
type MemoryEngine struct {
	shards    []memShard
	seed      maphash.Seed
	clock     func() int64
	evictions atomic.Uint64
	forgiven  atomic.Uint64 // units the evicted live states held
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

type memShard struct {
	mu       sync.Mutex
	data     map[string]State
	bytes    int64    // entrySize of every entry in data
	maxKeys  int      // its share of MaxKeys
	maxBytes int64    // its share of MaxBytes
	_        [24]byte // 40 bytes above + 24: one shard per 64-byte cache line
}

// entrySize approximates what one entry costs the heap: the key's bytes, the map slot
// with its State, and the Runs (sub-buckets or log entries) behind it. Measured with
// runtime.MemStats in TestMemoryEngineBytesBound.
func entrySize(key string, st State) int64 {
	return int64(len(key)) + entryOverhead + int64(cap(st.Runs))*runSize
}

const (
	entryOverhead = 160 // map slot, string header, State, allocation rounding
	runSize       = 16  // one Run
)

// defaultMaxBytes is half the Go memory limit when one is set (GOMEMLIMIT), else 1 GiB.
func defaultMaxBytes() int64 {
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		return max(limit/2, 1<<20)
	}
	return 1 << 30
}

// NewMemoryEngine starts an in-memory engine (and its sweeper, unless disabled).
func NewMemoryEngine(o MemoryOptions) *MemoryEngine {
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1_000_000
	}
	if o.Shards <= 0 {
		o.Shards = 64
	}
	// Each shard holds at least one key, so more shards than keys would hold more than
	// MaxKeys in all.
	o.Shards = min(o.Shards, o.MaxKeys)
	if o.Clock == nil {
		o.Clock = monotonicEpochMs()
	}
	if o.Sweep == 0 {
		o.Sweep = time.Second
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = defaultMaxBytes()
	}
	m := &MemoryEngine{
		shards: make([]memShard, o.Shards),
		seed:   maphash.MakeSeed(),
		clock:  o.Clock,
		stop:   make(chan struct{}),
	}
	for i := range m.shards {
		sh := &m.shards[i]
		sh.data = make(map[string]State)
		sh.maxKeys = int(share(int64(o.MaxKeys), o.Shards, i))
		sh.maxBytes = share(o.MaxBytes, o.Shards, i)
	}
	if o.Sweep > 0 {
		m.done.Add(1)
		go m.sweepLoop(o.Sweep)
	}
	return m
}

// share is shard i's part of a bound of total split between n shards: total/n, and one
// more for the first total%n shards, so that the parts add up to total exactly (an
// even total/n for each would hold up to n-1 less: 960 keys of 1,000 in 64 shards).
func share(total int64, n, i int) int64 {
	part := total / int64(n)
	if int64(i) < total%int64(n) {
		part++
	}
	return part
}

// Evaluate implements Engine.
func (m *MemoryEngine) Evaluate(_ context.Context, now int64, checks []LimitCheck, decisions []Decision) (Outcome, error) {
	if err := validateChecks(now, checks, decisions); err != nil {
		return Outcome{}, err
	}
	var buf [8]int
	locked := m.lock(checks, buf[:0])
	if now == 0 {
		// Read with the request's shard locks held: two requests on one key then see the
		// clock in the order they decide, as Redis's single thread sees its TIME. (Read
		// before the locks, a request that read 999 could decide after one that read
		// 1000 and write its older window over the newer one's count: 200 of 201 fixed
		// windows admitted past their limit under 32 goroutines.)
		now = m.clock()
	}
	allowed := evaluateLocked(memView{m, now, checks}, now, checks, decisions)
	m.unlock(locked)
	return Outcome{Now: now, Allowed: allowed}, nil
}

// monotonicEpochMs is the engine's default clock: epoch milliseconds that follow Go's
// monotonic clock from the engine's start, so a step of the wall clock (NTP, a restored
// VM) neither rewinds it (requests decided later would see an earlier now) nor stops it.
func monotonicEpochMs() func() int64 {
	start := time.Now()
	base := start.UnixMilli()
	return func() int64 { return base + time.Since(start).Milliseconds() }
}

// lock takes the shard locks of every check's key in ascending shard order; idx is
// scratch space for the shard indexes, returned for unlock.
func (m *MemoryEngine) lock(checks []LimitCheck, idx []int) []int {
	for i := range checks {
		s := m.shardOf(checks[i].Key)
		pos := 0
		for pos < len(idx) && idx[pos] < s {
			pos++
		}
		if pos < len(idx) && idx[pos] == s {
			continue
		}
		idx = append(idx, 0)
		copy(idx[pos+1:], idx[pos:])
		idx[pos] = s
	}
	for _, s := range idx {
		m.shards[s].mu.Lock()
	}
	return idx
}

func (m *MemoryEngine) unlock(idx []int) {
	for i := len(idx) - 1; i >= 0; i-- {
		m.shards[idx[i]].mu.Unlock()
	}
}

func (m *MemoryEngine) shardOf(key string) int {
	return int(maphash.String(m.seed, key) % uint64(len(m.shards)))
}

// memView is the StateStore over shards the caller has locked, for one request: its
// clock and its checks, whose keys eviction never drops (a commit must not evict a key
// it has just charged).
type memView struct {
	m      *MemoryEngine
	now    int64
	checks []LimitCheck
}

func (v memView) Load(key string) State {
	return v.m.shards[v.m.shardOf(key)].data[key]
}

// Store writes st, first making room in a full shard. When every sampled key is the
// request's own (a shard smaller than the request), the shard goes over its bound by
// at most the request's keys until the next eviction or sweep.
func (v memView) Store(key string, st State) {
	sh := &v.m.shards[v.m.shardOf(key)]
	old, exists := sh.data[key]
	if exists {
		sh.bytes -= entrySize(key, old)
	}
	size := entrySize(key, st)
	for (!exists && len(sh.data) >= sh.maxKeys) || sh.bytes+size > sh.maxBytes {
		if !v.evict(sh) {
			break
		}
	}
	sh.data[key] = st
	sh.bytes += size
}

// evict makes room in a full shard and reports whether it freed any. Among a sample
// (map iteration order is random) it drops every expired entry, or else one live
// entry: the one holding the fewest units (State.Held), then the soonest to expire.
// Dropping live state forgives what it holds, so this forgives the fewest units: a
// flood of new keys, each holding one unit, evicts its own kind before a counter a
// client has used up or a quota part spent, whatever the limits of either (a flood
// on a limit of 1 makes every key "full", but each still holds one unit).
func (v memView) evict(sh *memShard) bool {
	const sample = 32
	var victim string
	var vst State
	found, dropped, seen := false, false, 0
	for k, st := range sh.data {
		if seen++; seen > sample {
			break
		}
		switch {
		case v.own(k):
		case st.ExpireAt <= v.now:
			delete(sh.data, k)
			sh.bytes -= entrySize(k, st)
			dropped = true
		case !found || st.Held < vst.Held || st.Held == vst.Held && st.ExpireAt < vst.ExpireAt:
			victim, vst, found = k, st, true
		}
	}
	if dropped || !found {
		return dropped
	}
	delete(sh.data, victim)
	sh.bytes -= entrySize(victim, vst)
	v.m.evictions.Add(1)
	v.m.forgiven.Add(uint64(vst.Held))
	return true
}

// own says whether key is one of the request's.
func (v memView) own(key string) bool {
	for i := range v.checks {
		if v.checks[i].Key == key {
			return true
		}
	}
	return false
}

// Keys reports how many keys are stored (expired ones not yet swept included).
func (m *MemoryEngine) Keys() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.data)
		sh.mu.Unlock()
	}
	return n
}

// Bytes reports the approximate memory the stored state takes (entrySize), the
// quantity MaxBytes bounds.
func (m *MemoryEngine) Bytes() int64 {
	var n int64
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += sh.bytes
		sh.mu.Unlock()
	}
	return n
}

// Evictions reports how many live keys were evicted to respect MaxKeys and MaxBytes.
func (m *MemoryEngine) Evictions() uint64 { return m.evictions.Load() }

// EvictedUnits reports how many units the evicted live keys held when last written:
// what eviction forgave (at most; gcra and token_bucket state refills after its write).
func (m *MemoryEngine) EvictedUnits() uint64 { return m.forgiven.Load() }

func (m *MemoryEngine) sweepLoop(every time.Duration) {
	defer m.done.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep(m.clock())
		}
	}
}

// sweep drops expired state, one shard lock at a time so requests are barely delayed.
func (m *MemoryEngine) sweep(now int64) {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		for k, st := range sh.data {
			if st.ExpireAt <= now {
				delete(sh.data, k)
				sh.bytes -= entrySize(k, st)
			}
		}
		sh.mu.Unlock()
	}
}

// Close stops the sweeper.
func (m *MemoryEngine) Close() error {
	m.closeOnce.Do(func() { close(m.stop) })
	m.done.Wait()
	return nil
}
