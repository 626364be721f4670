package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestHeaderFlags(t *testing.T) {
	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := c.headers
	if !h.RetryAfter || h.RetryAfterJitter != 0 || h.RateLimitHeaders || h.ProblemDetails || h.UpstreamRemainingHeader != "" || h.DynamicMetadata {
		t.Fatalf("defaults %+v: only Retry-After may be on", h)
	}
	if c.extAuthz.XRateLimitHeaders {
		t.Fatal("ext_authz X-RateLimit-* headers on by default: only Retry-After may be on (SPEC §6)")
	}

	t.Setenv("RATELIMIT_EXT_RATELIMIT_HEADERS", "true")
	t.Setenv("RATELIMIT_EXT_RETRY_AFTER_JITTER", "2s")
	c, err = loadServeConfig([]string{"--problem-details", "--retry-after-header=false",
		"--upstream-remaining-header", "X-RateLimit-Remaining-Quota", "--response-dynamic-metadata"})
	if err != nil {
		t.Fatal(err)
	}
	h = c.headers
	if h.RetryAfter || h.RetryAfterJitter != 2*time.Second || !h.RateLimitHeaders || !h.ProblemDetails ||
		h.UpstreamRemainingHeader != "x-ratelimit-remaining-quota" || !h.DynamicMetadata {
		t.Fatalf("flags and environment not applied: %+v", h)
	}
	t.Setenv("RATELIMIT_EXT_EXT_AUTHZ_X_RATELIMIT_HEADERS", "true")
	if c, err = loadServeConfig(nil); err != nil || !c.extAuthz.XRateLimitHeaders {
		t.Fatalf("RATELIMIT_EXT_EXT_AUTHZ_X_RATELIMIT_HEADERS=true not applied (%v)", err)
	}

	for _, args := range [][]string{
		{"--upstream-remaining-header", "two words"},
		{"--upstream-remaining-header", "host"},
		{"--retry-after-jitter", "-1s"},
	} {
		if _, err := loadServeConfig(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	t.Setenv("RATELIMIT_EXT_PROBLEM_DETAILS", "sometimes")
	if _, err := loadServeConfig(nil); err == nil || !strings.Contains(err.Error(), "RATELIMIT_EXT_PROBLEM_DETAILS") {
		t.Errorf("a malformed environment value: %v", err)
	}
}

// go-redis's own lines (one per failed dial while Redis is down) are debug-level.
func TestRedisLogsAreDebug(t *testing.T) {
	var buf bytes.Buffer
	info := redisLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	info.Printf(context.Background(), "redis: connection pool: failed to dial after %d attempts: %s", 1, "refused")
	if buf.Len() != 0 {
		t.Fatalf("logged at info level: %s", buf.String())
	}
	debug := redisLogger{slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	var noCtx context.Context // go-redis may pass none
	debug.Printf(noCtx, "failed to dial after %d attempts", 1)
	if got := buf.String(); !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, `msg="failed to dial after 1 attempts"`) ||
		!strings.Contains(got, "component=go-redis") {
		t.Fatalf("debug line %q", got)
	}
}
