package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
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
// up after 8 ms: a slow store must not be reported as a failed suite. The flag's help
// says what matters for each: Envoy's timeout for serve, not for conformance.
func TestConformanceWaitsForASlowStore(t *testing.T) {
	for _, c := range []struct{ cmd, want, note string }{
		{"conformance", "(default 1s)", "timeout to read a Redis reply (a slower reply fails the run)"},
		{"serve", "(default 8ms)", "timeout to read a Redis reply (keep below Envoy's rate-limit timeout)"},
	} {
		_, out := runStderr(t, c.cmd, "-h")
		i := strings.Index(out, "-redis-read-timeout")
		if i < 0 || !strings.Contains(strings.SplitN(out[i:], "\n  -", 2)[0], c.want) {
			t.Errorf("%s -h: --redis-read-timeout not %s:\n%s", c.cmd, c.want, out)
		}
		if i < 0 || !strings.Contains(strings.SplitN(out[i:], "\n  -", 2)[0], c.note) {
			t.Errorf("%s -h: --redis-read-timeout's help is not %q:\n%s", c.cmd, c.note, out)
		}
	}
}

// Every message of conformance on stderr begins "ratelimit-ext conformance: ", as bench's
// begin "ratelimit-ext bench: "; a mistake in the command line exits 2 (--engine redis
// without a URL too, as --engine foo does), a file that does not load exits 1, and a
// JSON syntax error is placed by line and column.
func TestConformanceErrors(t *testing.T) {
	isolateEnv(t)
	vectors := "../../testdata/request-vectors.json"
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	comment := file("comment.json", "# vectors\n{}\n")
	// the column counts characters: é is two bytes
	comma := file("comma.json", "{\n  \"suites\": [\n    {\"name\": \"é\",}\n  ]\n}\n")
	lease := file("lease.json", `{"suites": [{"primitive": "lease", "name": "l", "ops": []}]}`)
	missing := filepath.Join(dir, "missing.json")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--vectors", vectors, "--engine", "redis"}, 2, "--engine redis needs --redis-url (env RATELIMIT_EXT_REDIS_URL)"},
		{[]string{"--vectors", vectors, "--engine", "foo"}, 2, `--engine "foo": want memory or redis`},
		{nil, 2, "--vectors FILE is required"},
		{[]string{"--vectors", vectors, "--redis-url", "http://127.0.0.1:6379"}, 2, `--redis-url "http://127.0.0.1:6379": invalid URL scheme: http`},
		{[]string{"--vectors", vectors, "--redis-url", "redis://127.0.0.1:6379?bogus=1"}, 2, `--redis-url "redis://127.0.0.1:6379?bogus=1": unexpected option: bogus`},
		{[]string{"--vectors", vectors, "--redis-url", "127.0.0.1:6379"}, 2, `--redis-url "127.0.0.1:6379": want a URL: redis://127.0.0.1:6379 (rediss:// for TLS)`},
		{[]string{"--vectors", vectors, "--redis-url", "redis://127.0.0.1:1", "--redis-pool-size", "-1"}, 2, "--redis-pool-size -1: want 0 (10 per CPU) or more"},
		{[]string{"--vectors", vectors, "--redis-url", "redis://127.0.0.1:1", "--redis-read-timeout", "0s"}, 2, "--redis-read-timeout 0s: want a positive duration"},
		{[]string{"--vectors", vectors, "--redis-url", "redis://127.0.0.1:1", "--redis-write-timeout", "-1s"}, 2, "--redis-write-timeout -1s: want a positive duration"},
		{[]string{"--vectors", missing}, 1, "open " + missing + ": no such file or directory"},
		{[]string{"--vectors", comment}, 1, comment + ":1:1: invalid character '#' looking for beginning of value"},
		{[]string{"--vectors", comma}, 1, comma + ":3:18: invalid character '}' looking for beginning of object key string"},
		{[]string{"--vectors", lease}, 1, "no suite was replayed"},
	} {
		code, out := runStderr(t, append([]string{"conformance"}, tc.args...)...)
		if code != tc.code || out != "ratelimit-ext conformance: "+tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit %d and the one line:\nratelimit-ext conformance: %s", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// conformance checks a store as the least-privilege ACL user docs/redis.md gives: its
// keys live under --key-prefix (rlx: by default, the user's pattern), and a prefix the
// user may not write is refused by Redis, not silently replayed elsewhere.
func TestConformanceAsTheDocumentedACLUser(t *testing.T) {
	isolateEnv(t)
	srv := testredis.Start(t)
	cmd := []any{"ACL", "SETUSER", "ratelimit", "reset"}
	for _, a := range testredis.DocumentedACL(t, "../../docs/redis.md", "rlx:") {
		cmd = append(cmd, a)
	}
	if err := srv.Client().Do(context.Background(), cmd...).Err(); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("ratelimit", "pw")
	args := []string{"conformance", "--vectors", "../../testdata/request-vectors.json", "--redis-url", u.String()}
	if code, out := runStdout(t, args...); code != 0 || !strings.Contains(out, " 0 failed") {
		t.Errorf("conformance as the documented ACL user: exit %d\n%s", code, out)
	}
	code, out := runStderr(t, append(args, "--key-prefix", "other:")...)
	if code != 1 || !strings.Contains(out, "NOPERM") {
		t.Errorf("conformance under a prefix the user may not write: exit %d, stderr %q; want 1 and Redis's NOPERM", code, out)
	}
}

// What conformance says for each outcome an operator meets: a pass ends with the
// summary; a mismatch prints its FAIL line naming suite, op and field (exit 1); a
// malformed file is refused at its line and column before anything replays (exit 1);
// Redis that does not answer is said to be that, before any suite is replayed (exit 1).
func TestConformanceSaysWhatFailed(t *testing.T) {
	isolateEnv(t)
	raw, err := os.ReadFile("../../testdata/request-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, from, to string) string {
		edited := strings.Replace(string(raw), from, to, 1)
		if edited == string(raw) {
			t.Fatalf("%s: %q is not in the vectors", name, from)
		}
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong := write("wrong.json", `"remaining": 2`, `"remaining": 99`)
	malformed := write("malformed.json", `"costs"`, `"cots"`)
	before := string(raw[:strings.Index(string(raw), `"costs"`)])
	cots := fmt.Sprintf("%d:%d", strings.Count(before, "\n")+1, len(before)-strings.LastIndex(before, "\n"))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://" + l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		name   string
		args   []string
		stdout bool
		code   int
		want   string
	}{
		{"all pass", []string{"--vectors", "../../testdata/request-vectors.json"}, true, 0, "11 passed, 0 failed, 0 skipped\n"},
		{"a wrong expectation", []string{"--vectors", wrong}, true, 1,
			"FAIL request request/all-or-nothing-two-keys: op 0 (now 0, replayed at 60000) limit 0: remaining 2, want 99\n"},
		{"a malformed file", []string{"--vectors", malformed}, false, 1,
			conformanceSays + malformed + ":" + cots + `: suites[0] "request/all-or-nothing-two-keys": ops[0]: unknown field "cots" (want now, costs or expect)` + "\n"},
		{"Redis unreachable", []string{"--vectors", "../../testdata/request-vectors.json", "--redis-url", closed, "--redis-dial-timeout", "200ms"}, false, 1,
			conformanceSays + `the store does not answer, so nothing was replayed: store unavailable: redis: dial tcp ` + l.Addr().String() + ": connect: connection refused\n"},
	} {
		run := runStderr
		if tc.stdout {
			run = runStdout
		}
		code, out := run(t, append([]string{"conformance"}, tc.args...)...)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, output:\n%s\nwant exit %d and a line %q", tc.name, code, out, tc.code, tc.want)
		}
	}
}
