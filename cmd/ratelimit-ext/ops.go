package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
	grpchealth "google.golang.org/grpc/health"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
)

// headerFlags registers the switches of what decisions add to Envoy's answers
// (SPEC §6; docs/operations.md#headers), all off by default. --retry-after-header (on
// by default) is registered with the other serve flags, as ext_authz shares it.
func headerFlags(f *envFlags, o *ratelimitheaders.Options) {
	f.DurationVar(&o.RetryAfterJitter, "retry-after-jitter", 0, "add a random 0..this to Retry-After's wait before rounding up, to spread retries (0 = exact)")
	f.BoolVar(&o.RateLimitHeaders, "ratelimit-headers", false, "add the IETF RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers-11) for the most restrictive limit")
	f.BoolVar(&o.ProblemDetails, "problem-details", false, "on OVER_LIMIT, send an RFC 9457 application/problem+json body naming the violated limit")
	f.StringVar(&o.UpstreamRemainingHeader, "upstream-remaining-header", "", "request header that tells the upstream the most restrictive limit's remaining quota, e.g. x-ratelimit-remaining-quota (empty = off)")
	f.BoolVar(&o.DynamicMetadata, "response-dynamic-metadata", false, "set ShouldRateLimit's dynamic_metadata as envoyproxy/ratelimit's RESPONSE_DYNAMIC_METADATA=true does: the descriptors, quota_mode violations and the rules' metadata of the descriptors within their limits")
}

// checkHeaderFlags validates the header switches after parsing. Its errors say
// "--flag value: what is wrong", as the other settings errors do; Validate's own name
// their subject in its words, which after the flag's name would say it twice.
func checkHeaderFlags(o *ratelimitheaders.Options) error {
	jitter := ratelimitheaders.Options{RetryAfterJitter: o.RetryAfterJitter}
	if jitter.Validate() != nil {
		return fmt.Errorf("--retry-after-jitter %v: want 0 to %v", o.RetryAfterJitter, ratelimitheaders.MaxJitter)
	}
	header := o.UpstreamRemainingHeader // Validate lower-cases it
	if err := o.Validate(); err != nil {
		why := cmp.Or(errors.Unwrap(err), err) // without Validate's "upstream header %q: "
		return fmt.Errorf("--upstream-remaining-header %q: %w", header, why)
	}
	return nil
}

// startReadiness observes readiness now and then every second until ctx ends, keeping
// /readyz, grpc.health.v1 (the server, the RateLimitService and any services given)
// and the ready metric in step, with one log line per change.
func startReadiness(ctx context.Context, d *decide.Decider, health *grpchealth.Server, m *metrics.Metrics, log *slog.Logger, services ...string) *httpapi.Readiness {
	report := rls.HealthReporter(health, services...)
	// A /readyz within 100 ms of an observation gets that one: at most ten probes a
	// second reach the store however many requests come.
	r := httpapi.NewReadiness(d, httpapi.ReadinessOptions{Interval: time.Second, MaxAge: 100 * time.Millisecond, Log: log, OnChange: func(err error) {
		report(err)
		m.SetReady(err)
	}})
	r.Check(ctx)
	go r.Run(ctx)
	return r
}

// routeRedisLogs sends go-redis's own log lines (it prints one per failed dial while
// Redis is down) to slog at debug level: the readiness watcher already logs one line per
// change of the store's state.
func routeRedisLogs(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
	}
}

// closeEngine closes the engine, waiting at most d: after a forced shutdown, calls still
// blocked in the store (up to --redis-read-timeout) must not hold up the exit.
func closeEngine(e limiter.Engine, d time.Duration, log *slog.Logger) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Close(); err != nil {
			log.Debug("closing the engine", "error", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(d):
		log.Warn("the engine did not close in time; exiting anyway", "waited", d)
	}
}

// httpReadTimeout bounds reading one HTTP request, body included: a client that sends
// headers and then trickles (or never sends) its body must not hold a connection and
// its goroutine for good. /v1/decide bodies are at most 1 MiB.
const httpReadTimeout = 10 * time.Second

// httpWriteTimeout bounds writing one HTTP response: a client that stops reading (a
// scrape of /metrics or /debug/config that stalls) must not hold its handler for good.
const httpWriteTimeout = time.Minute

// newHTTPServer is the settings every HTTP listener of the service shares; a write
// timeout of 0 leaves responses unbounded (pprof's, which last as long as asked).
func newHTTPServer(h http.Handler, readTimeout, writeTimeout time.Duration) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       2 * time.Minute,
	}
}
