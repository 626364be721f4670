package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/gcfloor"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
)

// perfSettings are the performance switches of `serve` (docs/performance.md).
type perfSettings struct {
	redisBatch                     bool
	redisBatchMax, redisBatchLanes int
	localCache                     bool
	localCacheSize                 int
	localCacheMaxAge               time.Duration
	pprofAddr                      string
	gcFloorMiB                     int
}

func perfFlags(f *envFlags, p *perfSettings) {
	f.BoolVar(&p.redisBatch, "redis-batch", true, "decide Redis requests that arrive together in one script call (each request stays atomic; no added wait when idle)")
	f.IntVar(&p.redisBatchMax, "redis-batch-size", limiter.DefaultRedisBatchMax, "most requests per script call")
	f.IntVar(&p.redisBatchLanes, "redis-batch-lanes", limiter.DefaultRedisBatchLanes, "script calls in flight at once (connections used by batching)")
	f.BoolVar(&p.localCache, "local-cache", true, "answer requests whose limits are known to deny in a frozen state without a store call (exact; see docs/performance.md)")
	f.IntVar(&p.localCacheSize, "local-cache-size", overlimit.DefaultMaxEntries, "most keys the local over-limit cache holds")
	f.DurationVar(&p.localCacheMaxAge, "local-cache-max-age", overlimit.DefaultMaxAge, "longest a remembered denial is trusted without asking the store again")
	f.StringVar(&p.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this address, e.g. 127.0.0.1:6060 (empty = off; keep it private)")
	f.IntVar(&p.gcFloorMiB, "gc-floor-mib", gcfloor.DefaultBytes>>20, "let the heap grow at least this many MiB over the live heap between garbage collections (0 = Go's default; a GOGC environment variable also switches it off)")
}

// check refuses settings that cannot work (serveConfig.check runs it with the others).
func (p *perfSettings) check() error {
	if p.gcFloorMiB < 0 || p.gcFloorMiB > 1<<20 {
		return fmt.Errorf("--gc-floor-mib %d: want 0 (off) to 1048576", p.gcFloorMiB)
	}
	return nil
}

// startGCFloor keeps the garbage collector's floor for the life of the process.
func (p *perfSettings) startGCFloor(log *slog.Logger) {
	if _, started := gcfloor.Start(uint64(p.gcFloorMiB) << 20); started {
		log.Debug("garbage-collection floor on", "mib", p.gcFloorMiB)
	}
}

// applyRedis sets the batching options of the Redis engine.
func (p *perfSettings) applyRedis(o *limiter.RedisOptions) {
	o.Batch, o.BatchMax, o.BatchLanes = p.redisBatch, p.redisBatchMax, p.redisBatchLanes
}

// cache returns the local over-limit cache, or nil when it is off.
func (p *perfSettings) cache() *overlimit.Cache {
	if !p.localCache {
		return nil
	}
	return overlimit.New(overlimit.Options{MaxEntries: p.localCacheSize, MaxAge: p.localCacheMaxAge})
}

// startPprof serves the profiling endpoints on their own listener, if asked to, for
// the life of the process.
func (p *perfSettings) startPprof(guard httpapi.HostGuard, log *slog.Logger) error {
	if p.pprofAddr == "" {
		return nil
	}
	lis, err := net.Listen("tcp", p.pprofAddr)
	if err != nil {
		return fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := newHTTPServer(guard.Wrap(lis, mux), httpReadTimeout, 0) // a profile takes as long as asked
	go func() { _ = srv.Serve(lis) }()
	log.Info("pprof", "addr", lis.Addr().String())
	return nil
}

// newOverLimitCache makes the decider's local over-limit cache and registers its
// metrics, or returns nil: the Redis engine's only (the memory engine decides
// in-process, so a cached answer saves little, and it drops keys to stay within its
// memory bound, after which a remembered denial would no longer be its answer).
func newOverLimitCache(c *serveConfig, m *metrics.Metrics) *overlimit.Cache {
	if c.engine != "redis" {
		return nil
	}
	cache := c.perf.cache()
	if cache != nil {
		m.OverLimitCache(cache.Stats)
	}
	return cache
}

// startPerf starts the garbage collector floor and pprof.
func startPerf(c *serveConfig, log *slog.Logger) error {
	c.perf.startGCFloor(log)
	guard, _ := c.hostGuard() // checked at start
	return c.perf.startPprof(guard, log)
}
