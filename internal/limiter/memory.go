package limiter

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// MemoryOptions configures the embedded in-memory engine.
type MemoryOptions struct {
	MaxKeys int           // bound on stored keys across all shards (default 1,000,000)
	Shards  int           // number of independently locked shards (default 64)
	Clock   func() int64  // epoch ms used when a request passes now = 0 (default wall clock)
	Sweep   time.Duration // how often idle state is swept (default 1 s; < 0 disables)
}

// MemoryEngine keeps state in process. Keys are spread over shards so that unrelated
// keys do not contend; a request locks the shards of its keys in index order, which
// makes it atomic and deadlock-free. Memory is bounded by MaxKeys: when a shard is full,
// expired state is dropped first, then the state that expires soonest among a sample.
type MemoryEngine struct {
	shards    []memShard
	perShard  int
	seed      maphash.Seed
	clock     func() int64
	evictions atomic.Uint64
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

type memShard struct {
	mu   sync.Mutex
	data map[string]State
	_    [40]byte // keep shards on separate cache lines
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
		o.Clock = func() int64 { return time.Now().UnixMilli() }
	}
	if o.Sweep == 0 {
		o.Sweep = time.Second
	}
	m := &MemoryEngine{
		shards:   make([]memShard, o.Shards),
		perShard: max(1, o.MaxKeys/o.Shards),
		seed:     maphash.MakeSeed(),
		clock:    o.Clock,
		stop:     make(chan struct{}),
	}
	for i := range m.shards {
		m.shards[i].data = make(map[string]State)
	}
	if o.Sweep > 0 {
		m.done.Add(1)
		go m.sweepLoop(o.Sweep)
	}
	return m
}

// Evaluate implements Engine.
func (m *MemoryEngine) Evaluate(_ context.Context, now int64, checks []LimitCheck, decisions []Decision) (Outcome, error) {
	if err := validateChecks(now, checks, decisions); err != nil {
		return Outcome{}, err
	}
	if now == 0 {
		now = m.clock()
	}
	var buf [8]int
	locked := m.lock(checks, buf[:0])
	allowed := evaluateLocked(memView{m}, now, checks, decisions)
	m.unlock(locked)
	return Outcome{Now: now, Allowed: allowed}, nil
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

// memView is the StateStore over shards the caller has locked.
type memView struct{ m *MemoryEngine }

func (v memView) Load(key string) State {
	return v.m.shards[v.m.shardOf(key)].data[key]
}

func (v memView) Store(key string, st State) {
	sh := &v.m.shards[v.m.shardOf(key)]
	if _, ok := sh.data[key]; !ok && len(sh.data) >= v.m.perShard {
		v.m.evict(sh)
	}
	sh.data[key] = st
}

// evict makes room for one key in a full shard: it drops every expired entry among a
// sample, or else the sampled entry that expires soonest. Map iteration order is random,
// so the sample is too.
func (m *MemoryEngine) evict(sh *memShard) {
	const sample = 32
	var victim string
	victimAt := int64(-1)
	seen, dropped := 0, 0
	nowMs := m.clock()
	for k, st := range sh.data {
		if st.ExpireAt <= nowMs {
			delete(sh.data, k)
			dropped++
		} else if victimAt < 0 || st.ExpireAt < victimAt {
			victim, victimAt = k, st.ExpireAt
		}
		if seen++; seen >= sample {
			break
		}
	}
	if dropped == 0 && victimAt >= 0 {
		delete(sh.data, victim)
		m.evictions.Add(1)
	}
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

// Evictions reports how many live keys were evicted to respect MaxKeys.
func (m *MemoryEngine) Evictions() uint64 { return m.evictions.Load() }

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
