package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// conformance exits 0 when every suite replays and matches, 1 on a mismatch, 1 when
// nothing was replayed (only lease suites), and 1 on a primitive it does not know,
// which must never pass as skipped.
func TestConformanceExitCodes(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/request-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	variant := func(name string, edit func(f map[string]any)) string {
		var f map[string]any
		if err := json.Unmarshal(raw, &f); err != nil {
			t.Fatal(err)
		}
		edit(f)
		b, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), name+".json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	suites := func(f map[string]any) []any { return f["suites"].([]any) }
	firstDecision := func(f map[string]any) map[string]any {
		op := suites(f)[0].(map[string]any)["ops"].([]any)[0].(map[string]any)
		return op["expect"].(map[string]any)["decisions"].([]any)[0].(map[string]any)
	}
	cases := []struct {
		name string
		edit func(f map[string]any)
		want int
	}{
		{"as shipped", func(map[string]any) {}, 0},
		{"a wrong expectation", func(f map[string]any) { firstDecision(f)["remaining"] = 99.0 }, 1},
		{"only lease suites", func(f map[string]any) {
			for _, s := range suites(f) {
				s.(map[string]any)["primitive"] = "lease"
			}
		}, 1},
		{"an unknown primitive", func(f map[string]any) { suites(f)[0].(map[string]any)["primitive"] = "Request" }, 1},
	}
	for _, tc := range cases {
		p := variant(tc.name, tc.edit)
		if got := run([]string{"conformance", "--vectors", p}); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// A Redis URL selects the Redis engine, as it does for serve: with nothing listening
// there the run must fail, never pass on the memory engine; beside an explicit
// --engine memory it is refused.
func TestConformanceRedisURLSelectsRedis(t *testing.T) {
	isolateEnv(t) // a RATELIMIT_EXT_REDIS_URL of the developer's shell must not count
	vectors := "../../testdata/request-vectors.json"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://" + l.Addr().String()
	l.Close() // nothing listens there: a Redis engine cannot connect
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--redis-url", closed}, 1},
		{[]string{"--redis-url", closed, "--engine", "memory"}, 2},
		{[]string{"--engine", "memory"}, 0},
		{[]string{"--engine", "memcached"}, 2},
	} {
		args := append([]string{"conformance", "--vectors", vectors, "--redis-dial-timeout", "200ms"}, tc.args...)
		if got := run(args); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
	t.Setenv("RATELIMIT_EXT_REDIS_URL", closed)
	if got := run([]string{"conformance", "--vectors", vectors, "--redis-dial-timeout", "200ms"}); got != 1 {
		t.Errorf("RATELIMIT_EXT_REDIS_URL set: exit %d, want 1 (the Redis engine, which cannot connect)", got)
	}
}

// A conformance replay waits up to a second for each Redis reply, where serving gives
// up after 8 ms: a slow store must not be reported as a failed suite.
func TestConformanceWaitsForASlowStore(t *testing.T) {
	for _, c := range []struct{ cmd, want string }{{"conformance", "(default 1s)"}, {"serve", "(default 8ms)"}} {
		_, out := runStderr(t, c.cmd, "-h")
		i := strings.Index(out, "-redis-read-timeout")
		if i < 0 || !strings.Contains(strings.SplitN(out[i:], "\n  -", 2)[0], c.want) {
			t.Errorf("%s -h: --redis-read-timeout not %s:\n%s", c.cmd, c.want, out)
		}
	}
}
