package decide

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// The local over-limit cache is checked against the store itself: two deciders see the
// same random traffic, one with the cache on engine A, one without it on engine B (an
// identical copy). A cached answer is a denial and writes nothing, so the two stores stay
// identical and every answer must match field for field. Traffic from another replica
// (a decider without cache on each store) is mixed in, so frozen keys meet concurrent
// traffic. RATELIMIT_CACHE_SEED=N replays one seed.

const cacheRules = `
domain: c
descriptors:
  - key: fw
    rate_limit: {unit: second, requests_per_unit: 5, algorithm: fixed_window}
  - key: fm
    rate_limit: {unit: minute, requests_per_unit: 3, algorithm: fixed_window}
  - key: gc
    rate_limit: {unit: second, requests_per_unit: 3, algorithm: gcra, burst: 2}
  - key: g7
    rate_limit: {unit: second, requests_per_unit: 7, algorithm: gcra, burst: 4}
  - key: tb
    rate_limit: {unit: second, requests_per_unit: 3, algorithm: token_bucket, burst: 4}
  - key: sw
    rate_limit: {unit: second, requests_per_unit: 4, algorithm: sliding_window, buckets: 4}
  - key: s1
    rate_limit: {unit: second, unit_multiplier: 2, requests_per_unit: 5, algorithm: sliding_window, buckets: 1}
  - key: lg
    rate_limit: {unit: second, requests_per_unit: 4, algorithm: sliding_window_log}
  - key: bd
    rate_limit: {unit: second, requests_per_unit: 6, algorithm: token_budget}
  - key: multi
    rate_limits:
      - {unit: second, requests_per_unit: 2, algorithm: gcra}
      - {unit: minute, requests_per_unit: 9, algorithm: fixed_window}
  - key: sh
    shadow_mode: true
    rate_limit: {unit: second, requests_per_unit: 2, algorithm: fixed_window}
  - key: free
    rate_limit: {unit: second, unlimited: true}
`

var cacheKeys = []string{"fw", "fm", "gc", "g7", "tb", "sw", "s1", "lg", "bd", "multi", "sh", "free"}

type cacheTraffic struct {
	r        *rand.Rand
	stepBack bool
	keys     []string // descriptor keys to draw from (default cacheKeys)
}

func (g *cacheTraffic) request(now int64) *Request {
	n := 1 + g.r.IntN(3)
	if g.r.IntN(3) > 0 {
		n = 1 // mostly the single-descriptor requests Envoy sends
	}
	req := &Request{Domain: "c", Now: now}
	switch g.r.IntN(6) {
	case 0:
		req.HitsAddend = 2
	case 1:
		req.HitsAddend = 3
	}
	keys := g.keys
	if len(keys) == 0 {
		keys = cacheKeys
	}
	for range n {
		k := keys[g.r.IntN(len(keys))]
		desc := Descriptor{Entries: []descriptors.Entry{{Key: k, Value: strconv.Itoa(g.r.IntN(2))}}}
		switch g.r.IntN(12) {
		case 0:
			c := uint64(0) // check-only
			desc.Cost = &c
		case 1:
			c := uint64(1 + g.r.IntN(5))
			desc.Cost = &c
		case 2:
			desc.Override = &Override{RequestsPerUnit: int64(2 + g.r.IntN(3)), Unit: "second"}
		}
		req.Descriptors = append(req.Descriptors, desc)
	}
	return req
}

// step advances the clock by a random amount (sometimes back, if stepBack).
func (g *cacheTraffic) step() int64 {
	steps := []int64{0, 0, 0, 0, 1, 1, 1, 2, 3, 5, 10, 30, 100, 400}
	d := steps[g.r.IntN(len(steps))]
	if g.stepBack && g.r.IntN(15) == 0 {
		d = -int64(1 + g.r.IntN(500))
	}
	return d
}

// summary is a Result in comparable form (override limits are fresh per request, so
// limits are compared by ID).
type summary struct {
	OverLimit    bool
	Now          int64
	RetryAfterMs int64
	Statuses     []statusSummary
}

type statusSummary struct {
	OverLimit bool
	Limit     string
	Decision  limiter.Decision
	Checked   []string
}

func summarize(res *Result) summary {
	s := summary{OverLimit: res.OverLimit, Now: res.Now, RetryAfterMs: res.RetryAfterMs()}
	for _, st := range res.Statuses {
		ss := statusSummary{OverLimit: st.OverLimit, Decision: st.Decision}
		if st.Limit != nil {
			ss.Limit = st.Limit.ID
		}
		for _, c := range st.Checked {
			ss.Checked = append(ss.Checked, fmt.Sprintf("%s shadow=%v %+v", c.Limit.ID, c.Shadow, c.Decision))
		}
		s.Statuses = append(s.Statuses, ss)
	}
	return s
}

func cacheSeed(t *testing.T, def uint64) uint64 {
	if s := os.Getenv("RATELIMIT_CACHE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return def
}

type cachePair struct {
	cached, plain   *Decider // the deciders compared: with the cache on store A, without on store B
	otherA, otherB  *Decider // another replica's traffic, on each store
	cache           *overlimit.Cache
	answered, total int
	algorithms      map[limiter.Algorithm]int // cached answers per algorithm
}

func newCachePair(t *testing.T, engA, engB limiter.Engine, prefixA, prefixB string, mono func() int64) *cachePair {
	t.Helper()
	rs, err := descriptors.Parse("c.yaml", []byte(cacheRules))
	if err != nil {
		t.Fatal(err)
	}
	var clock func() overlimit.Stamp // nil: the cache's own clocks
	if mono != nil {
		clock = func() overlimit.Stamp { ms := mono(); return overlimit.Stamp{Mono: ms, Wall: ms} }
	}
	p := &cachePair{
		cached: New(rs, engA, Options{Keys: storekey.New(prefixA, 0)}),
		plain:  New(rs, engB, Options{Keys: storekey.New(prefixB, 0)}),
		otherA: New(rs, engA, Options{Keys: storekey.New(prefixA, 0)}),
		otherB: New(rs, engB, Options{Keys: storekey.New(prefixB, 0)}),
		cache:  overlimit.New(overlimit.Options{MaxAge: time.Hour, Clock: clock, ExplicitNow: mono == nil}),
	}
	p.cached = reconfigured(p.cached, func(o *Options) { o.OverLimit = p.cache })
	return p
}

func decideOK(t *testing.T, d *Decider, req *Request) *Result {
	t.Helper()
	res, err := d.Decide(context.Background(), req)
	if err != nil {
		t.Fatalf("%+v: %v", req, err)
	}
	return res
}

// explicitNow runs traffic with explicit nows and demands identical answers.
func (p *cachePair) explicitNow(t *testing.T, g *cacheTraffic, ops int, exact func(*Request) bool) {
	now := int64(1_700_000_000_000) + g.r.Int64N(1_000_000)
	for i := 0; i < ops; i++ {
		now += g.step()
		if g.r.IntN(4) == 0 { // another replica
			req := g.request(now)
			a, b := decideOK(t, p.otherA, req), decideOK(t, p.otherB, req)
			if !reflect.DeepEqual(summarize(a), summarize(b)) {
				t.Fatalf("op %d: the two stores diverged:\nA %+v\nB %+v", i, summarize(a), summarize(b))
			}
		}
		req := g.request(now)
		a, b := decideOK(t, p.cached, req), decideOK(t, p.plain, req)
		p.total++
		if a.Cached {
			p.answered++
			p.count(a)
			if !b.OverLimit {
				t.Fatalf("op %d: the cache denied a request the store allows: %+v\ncache %+v\nstore %+v", i, req, summarize(a), summarize(b))
			}
		}
		if !exact(req) && a.Cached {
			continue
		}
		if sa, sb := summarize(a), summarize(b); !reflect.DeepEqual(sa, sb) {
			t.Fatalf("op %d (cached %v): %+v\ncache %+v\nstore %+v", i, a.Cached, req, sa, sb)
		}
	}
}

func always(*Request) bool { return true }

func (p *cachePair) count(res *Result) {
	if p.algorithms == nil {
		p.algorithms = map[limiter.Algorithm]int{}
	}
	for _, st := range res.Statuses {
		for _, c := range st.Checked {
			p.algorithms[c.Limit.Params.Algorithm]++
		}
	}
}

func (p *cachePair) merge(o *cachePair) {
	if p.algorithms == nil {
		p.algorithms = map[limiter.Algorithm]int{}
	}
	for a, n := range o.algorithms {
		p.algorithms[a] += n
	}
}

// allAlgorithms fails unless cached answers covered every algorithm.
func (p *cachePair) allAlgorithms(t *testing.T) {
	t.Helper()
	for a := limiter.FixedWindow; a <= limiter.TokenBudget; a++ {
		if p.algorithms[a] == 0 {
			t.Errorf("no cached answer for %s (%v)", a, p.algorithms)
		}
	}
}

func memoryPair(t *testing.T, clock func() int64) *cachePair {
	a := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: clock})
	b := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: clock})
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return newCachePair(t, a, b, "c:", "c:", clock)
}

// trafficMixes are the runs of the comparison tests: all keys mixed, then each key
// hot on its own (with a little of everything else), so every algorithm spends time
// frozen.
func trafficMixes() (names []string, keys [][]string) {
	names, keys = append(names, "all"), append(keys, nil)
	for _, k := range cacheKeys[:10] {
		names, keys = append(names, "hot-"+k), append(keys, []string{k, k, k, k, k, k, cacheKeys[len(k)%len(cacheKeys)]})
	}
	return names, keys
}

// With explicit nows that move forward (Options.ExplicitNow), every answer with the
// cache on equals the store's, field for field.
func TestOverLimitCacheMatchesStore(t *testing.T) {
	explicitNowMixes(t, 1, 11, 3000, func(int) *cachePair { return memoryPair(t, nil) })
}

// explicitNowMixes runs every traffic mix (seeds from seedBase, ops requests each) with
// explicit nows on the pair pairFor makes for it, and demands that the cache answered
// a fair share of each and every algorithm in all.
func explicitNowMixes(t *testing.T, seedBase, stream uint64, ops int, pairFor func(mix int) *cachePair) {
	names, keys := trafficMixes()
	all := &cachePair{}
	for i, name := range names {
		seed := cacheSeed(t, seedBase+uint64(i))
		t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
			p := pairFor(i)
			p.explicitNow(t, &cacheTraffic{r: rand.New(rand.NewPCG(seed, stream)), keys: keys[i]}, ops, always)
			// (two limits on one descriptor must both be frozen: rarer, so not counted)
			if p.answered < p.total/25 && name != "hot-multi" {
				t.Errorf("the cache answered %d of %d requests: the test does not exercise it", p.answered, p.total)
			}
			t.Logf("cache answered %d of %d requests %v", p.answered, p.total, p.algorithms)
			all.merge(p)
		})
	}
	all.allAlgorithms(t)
}

// Requests that pass their own now may step back, where a frozen state can be
// overwritten by an admission in an older window: by default the cache neither answers
// nor remembers them, so every answer is the store's.
func TestOverLimitCacheIgnoresExplicitNow(t *testing.T) {
	for s := range uint64(3) {
		seed := cacheSeed(t, 100+s)
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			p := memoryPair(t, nil)
			p.cached = reconfigured(p.cached, func(o *Options) { o.OverLimit = overlimit.New(overlimit.Options{}) })
			p.explicitNow(t, &cacheTraffic{r: rand.New(rand.NewPCG(seed, 12)), stepBack: true}, 2000, always)
			if p.answered != 0 {
				t.Errorf("the cache answered %d requests with explicit nows", p.answered)
			}
		})
	}
}

// Requests with now = 0 use the store's clock. The cache then answers at a lower bound
// of it: the answer is the store's exact answer at that earlier now (asked explicitly),
// at most 2 ms plus drift before the store's own reading, and the store at its own
// reading denies too.
func TestOverLimitCacheStoreClock(t *testing.T) {
	names, keys := trafficMixes()
	all := &cachePair{}
	for i, name := range names {
		seed := cacheSeed(t, uint64(50+i))
		t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
			p := storeClockRun(t, seed, keys[i])
			if p.answered < p.total/25 && name != "hot-multi" {
				t.Errorf("the cache answered %d of %d requests", p.answered, p.total)
			}
			all.merge(p)
		})
	}
	all.allAlgorithms(t)
}

func storeClockRun(t *testing.T, seed uint64, keys []string) *cachePair {
	var clock atomic.Int64
	const start = 1_700_000_123_456
	clock.Store(start)
	read := func() int64 { return clock.Load() }
	p := memoryPair(t, read)
	g := &cacheTraffic{r: rand.New(rand.NewPCG(seed, 13)), keys: keys}
	for i := 0; i < 3000; i++ {
		clock.Add(max(0, g.step()))
		if g.r.IntN(4) == 0 {
			req := g.request(0)
			decideOK(t, p.otherA, req)
			decideOK(t, p.otherB, req)
		}
		req := g.request(0)
		a, b := decideOK(t, p.cached, req), decideOK(t, p.plain, req)
		p.total++
		if !a.Cached {
			if sa, sb := summarize(a), summarize(b); !reflect.DeepEqual(sa, sb) {
				t.Fatalf("op %d: %+v\nwith cache %+v\nstore      %+v", i, req, sa, sb)
			}
			continue
		}
		p.answered++
		p.count(a)
		if !b.OverLimit {
			t.Fatalf("op %d: the cache denied a request the store allows at its own now: %+v", i, req)
		}
		// The lower bound lags the store's clock by at most 1 ms plus the 0.1% drift
		// allowance over the time since the entry was stored (at most the whole run).
		if lag := b.Now - a.Now; lag < 0 || lag > 2+(b.Now-start)/1000 {
			t.Fatalf("op %d: cached now %d, store now %d", i, a.Now, b.Now)
		}
		at := *req
		at.Now = a.Now
		if sa, sb := summarize(a), summarize(decideOK(t, p.plain, &at)); !reflect.DeepEqual(sa, sb) {
			t.Fatalf("op %d: the cached answer is not the store's at now %d:\ncache %+v\nstore %+v", i, a.Now, sa, sb)
		}
	}
	t.Logf("cache answered %d of %d requests %v", p.answered, p.total, p.algorithms)
	return p
}

// batchedRedis is a Redis engine with the serving defaults (batching) on a private Redis.
func batchedRedis(t *testing.T) (*limiter.RedisEngine, *testredis.Server) {
	srv := testredis.Start(t)
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{
		URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, Batch: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e, srv
}

// The same comparison through the Redis engine with batching (the serving defaults):
// two key prefixes on one Redis are the two stores, each traffic mix on keys of its own.
func TestOverLimitCacheMatchesRedis(t *testing.T) {
	e, _ := batchedRedis(t)
	explicitNowMixes(t, 21, 14, 1500, func(mix int) *cachePair {
		return newCachePair(t, e, e, fmt.Sprintf("a%d:", mix), fmt.Sprintf("b%d:", mix), nil)
	})
}

// Requests with now = 0 on Redis, as Envoy sends them: the store's clock is Redis's own
// (TIME), which the cache brackets with this process's clocks around real round trips,
// with the serving MaxAge. Every cached answer must be a denial whose now is not ahead
// of Redis's clock (read right after) and that the store, asked at that now, gives
// field for field. (No second store here: with a real clock two stores cannot be kept
// at the same time.)
func TestOverLimitCacheStoreClockOnRedis(t *testing.T) {
	e, srv := batchedRedis(t)
	names, keys := trafficMixes()
	all := &cachePair{}
	for i, name := range names {
		seed := cacheSeed(t, uint64(70+i))
		t.Run(fmt.Sprintf("%s/seed=%d", name, seed), func(t *testing.T) {
			p := newCachePair(t, e, e, fmt.Sprintf("clk%d:", i), "unused:", nil)
			p.cache = overlimit.New(overlimit.Options{MaxAge: time.Second})
			p.cached = reconfigured(p.cached, func(o *Options) { o.OverLimit = p.cache })
			g := &cacheTraffic{r: rand.New(rand.NewPCG(seed, 15)), keys: keys[i]}
			for op := 0; op < 800; op++ {
				if g.r.IntN(4) == 0 { // another replica
					decideOK(t, p.otherA, g.request(0))
				}
				req := g.request(0)
				asked := time.Now()
				a := decideOK(t, p.cached, req)
				p.total++
				if !a.Cached {
					continue
				}
				p.answered++
				p.count(a)
				storeNow, err := srv.Client().Time(context.Background()).Result()
				if err != nil {
					t.Fatal(err)
				}
				spent := time.Since(asked).Milliseconds()
				if lag := storeNow.UnixMilli() - a.Now; a.OverLimit == false || lag < 0 || lag > spent+1000 {
					t.Fatalf("op %d: cached answer (over limit %v) at now %d, Redis's clock %d after %d ms", op, a.OverLimit, a.Now, storeNow.UnixMilli(), spent)
				}
				at := *req
				at.Now = a.Now
				if sa, sb := summarize(a), summarize(decideOK(t, p.otherA, &at)); !reflect.DeepEqual(sa, sb) {
					t.Fatalf("op %d: the cached answer is not the store's at now %d:\ncache %+v\nstore %+v", op, a.Now, sa, sb)
				}
			}
			t.Logf("cache answered %d of %d requests %v", p.answered, p.total, p.algorithms)
			all.merge(p)
		})
	}
	all.allAlgorithms(t)
}

// A rule reload clears the cache: a key frozen under the old limit is decided by the
// store under the new one.
func TestOverLimitCacheClearedOnReload(t *testing.T) {
	rules := func(n int, extra ...string) *descriptors.RuleSet {
		rs, err := descriptors.Parse("r.yaml", fmt.Appendf(nil, "domain: r\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: %d}\n%s", n, strings.Join(extra, "")))
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	d := New(rules(1), mem, Options{Keys: storekey.New("r:", 0), OverLimit: overlimit.New(overlimit.Options{})})
	req := func() *Request {
		return &Request{Domain: "r", Descriptors: []Descriptor{{Entries: []descriptors.Entry{{Key: "k", Value: "v"}}}}}
	}
	for i, want := range []bool{false, true, true} {
		res := decideOK(t, d, req())
		if res.OverLimit != want || res.Cached != (i == 2) {
			t.Fatalf("request %d: over %v cached %v", i, res.OverLimit, res.Cached)
		}
	}
	// The same rules again (a reload that changed nothing) keep what the cache knows.
	d.SetRules(rules(1))
	if res := decideOK(t, d, req()); !res.OverLimit || !res.Cached {
		t.Fatalf("after reloading the same rules: over %v cached %v, want the cached denial", res.OverLimit, res.Cached)
	}
	// Any change clears it, even one that leaves this limit as it was: the store
	// decides again (and denies again).
	d.SetRules(rules(1, "  - key: other\n    rate_limit: {unit: hour, requests_per_unit: 9}\n"))
	if res := decideOK(t, d, req()); !res.OverLimit || res.Cached {
		t.Fatalf("after a reload that changed another limit: over %v cached %v, want the store's denial", res.OverLimit, res.Cached)
	}
	d.SetRules(rules(5))
	if res := decideOK(t, d, req()); res.OverLimit || res.Cached {
		t.Fatalf("after raising the limit: over %v cached %v", res.OverLimit, res.Cached)
	}
}

// A request override's denial is not remembered: requests with other override rates
// share its key and may still change the state, so it is never frozen for the cache.
func TestOverLimitCacheSkipsOverrides(t *testing.T) {
	rs, err := descriptors.Parse("r.yaml", []byte("domain: r\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 100, algorithm: gcra}\n"))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	defer mem.Close()
	d := New(rs, mem, Options{Keys: storekey.New("r:", 0), OverLimit: overlimit.New(overlimit.Options{})})
	req := func() *Request {
		return &Request{Domain: "r", Descriptors: []Descriptor{{
			Entries:  []descriptors.Entry{{Key: "k", Value: "v"}},
			Override: &Override{RequestsPerUnit: 1, Unit: "hour"},
		}}}
	}
	for i, over := range []bool{false, true, true, true} {
		res := decideOK(t, d, req())
		if res.OverLimit != over || res.Cached {
			t.Fatalf("request %d: over %v cached %v, want over %v from the store", i, res.OverLimit, res.Cached, over)
		}
	}
	if s := d.OverLimitCache().Stats(); s.Stores != 0 || s.Entries != 0 {
		t.Errorf("the override's denials were remembered: %+v", s)
	}
}
