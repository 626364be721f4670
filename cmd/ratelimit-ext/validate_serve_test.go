package main

import (
	"cmp"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// validate refuses the rules serve refuses at start for the same files and
// environment, with serve's message: month limits with envoyproxy/ratelimit's
// USE_CALENDAR_MONTH_RATE_LIMIT=true (a month here is 30 days from the epoch), and a
// malformed value of that switch. Without it, both accept the rules.
func TestValidateRefusesWhatServeRefuses(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "q.yaml"), []byte("domain: q\ndescriptors:\n  - key: org\n    rate_limit: {unit: month, requests_per_unit: 1000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An address the test holds: were the rules not refused, serve would stop at its
	// listener instead of serving.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	serveSays := func() (int, string) {
		code, out := runStderr(t, "serve", "--config-dir", dir, "--grpc-addr", held.Addr().String(), "--http-addr", "127.0.0.1:0")
		_, refusal, _ := strings.Cut(out, "\nratelimit-ext: ") // after the log's notes, if any
		return code, strings.TrimPrefix(cmp.Or(refusal, out), "ratelimit-ext: ")
	}
	t.Chdir(dir) // validate q.yaml names the file as serve, reading the directory, does
	for _, tc := range []struct {
		value string // USE_CALENDAR_MONTH_RATE_LIMIT's
		code  int    // both exit with it
		want  string // in both messages
	}{
		{"true", 1, "USE_CALENDAR_MONTH_RATE_LIMIT=true, and 1 limit has unit: month (q: org (q.yaml:4))"},
		{"maybe", 2, `USE_CALENDAR_MONTH_RATE_LIMIT="maybe": want true or false`},
	} {
		t.Setenv("USE_CALENDAR_MONTH_RATE_LIMIT", tc.value)
		serveCode, serveOut := serveSays()
		if serveCode != tc.code || !strings.Contains(serveOut, tc.want) {
			t.Fatalf("serve with %s: exit %d, %q; want %d and %q", tc.value, serveCode, serveOut, tc.code, tc.want)
		}
		code, out := runStderr(t, "validate", "q.yaml")
		out = strings.TrimPrefix(out, "ratelimit-ext validate: ")
		if code != tc.code || out != serveOut {
			t.Errorf("validate with %s: exit %d, %q; want %d and serve's %q", tc.value, code, out, tc.code, serveOut)
		}
		// A directory: the same refusal, naming the file from the working directory as
		// validate's other messages do.
		want := strings.ReplaceAll(tc.want, "(q.yaml:4)", "("+filepath.Join(dir, "q.yaml")+":4)")
		if code, out := runStderr(t, "validate", dir); code != tc.code || !strings.Contains(out, want) {
			t.Errorf("validate %s with %s: exit %d, %q; want %d and %q", dir, tc.value, code, out, tc.code, want)
		}
	}
	t.Setenv("USE_CALENDAR_MONTH_RATE_LIMIT", "false")
	if code, out := runStderr(t, "validate", "q.yaml"); code != 0 {
		t.Errorf("validate with calendar months off: exit %d, %q; want 0", code, out)
	}
}

// validate warns of rules over the request bounds the flags (or their variables) it is
// given set, as serve does with the same ones; and refuses a bound serve refuses.
func TestValidateTakesServesRuleBounds(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	rule := "domain: edge\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        descriptors:\n          - key: c\n            rate_limit: {unit: second, requests_per_unit: 1}\n"
	if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	const over = "above --max-entries (2)"
	for _, tc := range []struct {
		env  string // RATELIMIT_EXT_MAX_ENTRIES
		args []string
		warn bool
	}{
		{"", nil, false},
		{"", []string{"--max-entries", "2"}, true},
		{"2", nil, true},
		{"2", []string{"--max-entries=3"}, false}, // the flag wins
	} {
		t.Setenv("RATELIMIT_EXT_MAX_ENTRIES", tc.env)
		code, out := runStderr(t, append(append([]string{"validate"}, tc.args...), "edge.yaml")...)
		if code != 0 || strings.Contains(out, over) != tc.warn {
			t.Errorf("validate %q (env %q): exit %d, %q; want 0, warning %v", tc.args, tc.env, code, out, tc.warn)
		}
		// serve, with the same flags and variable, warns of the same.
		c, err := loadServeConfig(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := descriptors.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		ws, _ := ruleWarnings(rs, c.bounds)
		var serveWarns []string
		for _, w := range ws {
			serveWarns = append(serveWarns, "warning: "+w.Error())
		}
		if got := strings.Join(serveWarns, "\n"); !strings.Contains(out, got) || strings.Contains(got, over) != tc.warn {
			t.Errorf("validate %q (env %q) said %q; serve warns %q", tc.args, tc.env, out, got)
		}
	}
	t.Setenv("RATELIMIT_EXT_MAX_ENTRIES", "")
	if code, out := runStderr(t, "validate", "--max-entries", "0", "edge.yaml"); code != 2 || out != "ratelimit-ext validate: --max-entries 0: want at least 1\n" {
		t.Errorf("validate --max-entries 0: exit %d, %q; want 2 and serve's error", code, out)
	}
	if code, out := runStderr(t, "validate", "edge.yaml", "--max-entries", "2"); code != 2 || !strings.Contains(out, "flags go before") {
		t.Errorf("validate with a flag after the files: exit %d, %q; want 2 and where flags go", code, out)
	}
}
