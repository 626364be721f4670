package limiter_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// documentedACL is the least-privilege user docs/redis.md gives, with its password
// and key pattern set for the test.
func documentedACL(t *testing.T, prefix string) []string {
	return testredis.DocumentedACL(t, "../../docs/redis.md", prefix)
}

// The ACL user docs/redis.md documents is enough to decide every algorithm, with the
// store's clock and the script loaded again after a SCRIPT FLUSH, and to be ready;
// without any one of the commands a decision needs, decisions fail and so does Ping
// (readiness), which decides a request of every algorithm on its probe keys.
func TestDocumentedACLDecidesAndIsReady(t *testing.T) {
	srv := testredis.Start(t)
	c, ctx := srv.Client(), context.Background()
	const prefix = "acl:"
	acl := documentedACL(t, prefix)
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("ratelimit", "pw")
	e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: u.String(), ProbeKey: prefix + "probe",
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	decide := func() error {
		checks := allAlgorithms(t, prefix+uniquePrefix(t), 60_000)
		_, err := e.Evaluate(ctx, 0, checks, make([]limiter.Decision, len(checks)))
		return err
	}
	// decideOlder decides on keys that hold state from earlier in their window and
	// from windows before, so the script also runs what it runs only on older state:
	// stale sliding_window sub-buckets are dropped (HDEL), old log entries trimmed.
	decideOlder := func() error {
		checks := allAlgorithms(t, prefix+uniquePrefix(t), 60_000)
		start := time.Now().UnixMilli()
		for _, at := range []int64{0, 20_000, 40_000, 130_000, 135_000} {
			if _, err := e.Evaluate(ctx, start+at, checks, make([]limiter.Decision, len(checks))); err != nil {
				return fmt.Errorf("at +%d ms: %w", at, err)
			}
		}
		return nil
	}
	setUser := func(args []string) {
		t.Helper()
		cmd := []any{"ACL", "SETUSER", "ratelimit", "reset"}
		for _, a := range args {
			cmd = append(cmd, a)
		}
		if err := c.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}

	setUser(acl)
	if err := c.Do(ctx, "SCRIPT", "FLUSH").Err(); err != nil {
		t.Fatal(err)
	}
	if err := decide(); err != nil {
		t.Fatalf("a decision of every algorithm as the documented user, after SCRIPT FLUSH: %v", err)
	}
	if err := decideOlder(); err != nil {
		t.Fatalf("decisions of every algorithm on older state as the documented user: %v", err)
	}
	if err := e.Ping(ctx); err != nil {
		t.Fatalf("Ping as the documented user: %v", err)
	}
	for _, cmd := range []string{"+time", "+get", "+set", "+hgetall", "+hset", "+zadd"} {
		setUser(slices.DeleteFunc(slices.Clone(acl), func(a string) bool { return a == cmd }))
		if err := decide(); err == nil {
			t.Errorf("without %s: a decision of every algorithm succeeded", cmd)
		}
		if err := e.Ping(ctx); !errors.Is(err, limiter.ErrStore) {
			t.Errorf("without %s: Ping %v, want ErrStore", cmd, err)
		}
	}
}

// Every command the script calls is in the documented ACL: a command the script runs
// only on some state (HDEL on a sliding_window's stale sub-buckets) fails decisions
// in production long after a test of fresh keys passed.
func TestDocumentedACLCoversEveryScriptCommand(t *testing.T) {
	acl := documentedACL(t, "rlx:")
	granted := map[string]bool{}
	for _, a := range acl {
		if strings.HasPrefix(a, "+") {
			granted[strings.ToUpper(strings.TrimPrefix(a, "+"))] = true
		}
	}
	src, err := os.ReadFile("../redislua/request.lua")
	if err != nil {
		t.Fatal(err)
	}
	// redis.call('GET', ...), redis.pcall('HGETALL', ...) and flush('HDEL', ...):
	// the script names every command as a literal in one of these.
	calls := regexp.MustCompile(`(?:call|flush)\('([A-Z]+)'`).FindAllSubmatch(src, -1)
	if len(calls) < 10 {
		t.Fatalf("found %d command names in request.lua; the pattern no longer matches how it calls Redis", len(calls))
	}
	for _, c := range calls {
		if cmd := string(c[1]); !granted[cmd] {
			t.Errorf("request.lua calls %s, which docs/redis.md's ACL does not grant", cmd)
			granted[cmd] = true // once per command
		}
	}
}
