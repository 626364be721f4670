package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// validate exits 0 on good rules, 1 on broken ones, 2 on bad usage, and -h asks for
// help instead of naming a directory.
func TestValidateExitCodes(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "edge.yaml"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: seconds, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"validate", "../../config"}, 0},
		{[]string{"validate", broken}, 1},
		{[]string{"validate"}, 2},
		{[]string{"validate", "../../config", "../../config/edge.yaml"}, 2},
		{[]string{"validate", "../../config/edge.yaml", "../../config"}, 2},
		{[]string{"validate", "../../config/edge.yaml"}, 0},
		{[]string{"validate", filepath.Join(broken, "edge.yaml")}, 1},
		{[]string{"validate", "../../config/edge.yaml", filepath.Join(broken, "missing.yaml")}, 1},
		{[]string{"validate", "-h"}, 0},
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}

// Files given to validate are compiled as one rule set: a domain that two of them define
// is an error naming both, and the error names the files as given.
func TestValidateFilesAsOneRuleSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")
	rule := []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, rule, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if code, out := runStderr(t, "validate", a); code != 0 || out != "" {
		t.Errorf("validate %s: exit %d, stderr %q; want 0", a, code, out)
	}
	code, out := runStderr(t, "validate", a, b)
	if code != 1 || !strings.Contains(out, b+":1: ") || !strings.Contains(out, a) {
		t.Errorf("validate two files of one domain: exit %d, stderr %q; want 1 and an error naming %s and %s", code, out, a, b)
	}
}

// A file the server would never read (not *.yaml/*.yml) validates with a warning saying
// so: a check that passes on rules the server skips would mislead.
func TestValidateWarnsOfFilesTheServerSkips(t *testing.T) {
	f := filepath.Join(t.TempDir(), "edge.conf")
	if err := os.WriteFile(f, []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runStderr(t, "validate", f); code != 0 || !strings.Contains(out, "warning: "+f+": the server reads only *.yaml and *.yml") {
		t.Errorf("validate %s: exit %d, stderr %q; want 0 and a warning", f, code, out)
	}
	// A missing file is an error of its own, not a file the server would skip.
	missing := filepath.Join(t.TempDir(), "missing")
	if code, out := runStderr(t, "validate", missing); code != 1 || strings.Contains(out, "warning") {
		t.Errorf("validate %s: exit %d, stderr %q; want 1 and no warning", missing, code, out)
	}
}

// A directory holding a file the server passes over for its name (a ConfigMap key
// without .yaml, which envoyproxy/ratelimit would read) validates with a warning
// naming it.
func TestValidateWarnsOfDirectoryFilesTheServerSkips(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runStderr(t, "validate", dir)
	if code != 0 || !strings.Contains(out, "warning: not read, as the names do not end in .yaml or .yml: config (") {
		t.Errorf("validate %s: exit %d, stderr %q; want 0 and a warning naming the file", dir, code, out)
	}
}

// A rule file hidden by a leading dot is named in a warning: the server skips it.
func TestValidateWarnsOfHiddenRuleFiles(t *testing.T) {
	dir := t.TempDir()
	rule := []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	for _, name := range []string{".edge.yaml", "ok.yaml", ".notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), rule, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o755); err != nil { // a ConfigMap's: not named
		t.Fatal(err)
	}
	code, out := runStderr(t, "validate", dir)
	if code != 0 || !strings.Contains(out, "warning: not read, as dot-files are skipped: .edge.yaml (") ||
		strings.Contains(out, ".notes.txt") || strings.Contains(out, "..data") {
		t.Errorf("validate %s: exit %d, stderr %q; want 0 and a warning naming .edge.yaml alone", dir, code, out)
	}
}

// Rules without any limit validate, with a warning that they would allow everything.
func TestValidateWarnsOfNoLimits(t *testing.T) {
	empty := t.TempDir()
	code, out := runStderr(t, "validate", empty)
	if code != 0 || !strings.Contains(out, "warning: no limits") {
		t.Errorf("validate on an empty directory: exit %d, stderr %q; want 0 and a warning", code, out)
	}
	if code, out := runStderr(t, "validate", "../../config"); code != 0 || out != "" {
		t.Errorf("validate config/: exit %d, stderr %q; want 0 and nothing", code, out)
	}
}

// version and --version print one line naming the build's Go version.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stdout := os.Stdout
		os.Stdout = w
		code := run(args)
		os.Stdout = stdout
		w.Close()
		out, _ := readAll(r)
		if code != 0 || !strings.HasPrefix(out, "ratelimit-ext ") || !strings.HasSuffix(out, runtime.Version()+"\n") {
			t.Errorf("%v: exit %d, %q", args, code, out)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{{[]string{"version", "extra"}, "version takes no arguments"}, {[]string{"help", "serve", "extra"}, "help takes one subcommand"},
		{[]string{"help", "bogus"}, `unknown subcommand "bogus"`}} {
		if code, out := runStderr(t, c.args...); code != 2 || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, out, c.want)
		}
	}
	// help NAME and NAME -h show NAME's flags, and exit 0.
	for _, args := range [][]string{{"help", "serve"}, {"serve", "-h"}, {"help", "conformance"}, {"conformance", "-h"},
		{"help", "validate"}, {"help", "bench"}, {"bench", "-h"}} {
		if code, out := runStderr(t, args...); code != 0 || !strings.Contains(out, "-") || strings.Contains(out, "help requested") {
			t.Errorf("%v: exit %d, stderr %.200q; want 0 and the flags", args, code, out)
		}
	}
	// Subcommands without flags answer -h with the summary, as help does.
	for _, args := range [][]string{{"version", "-h"}, {"help", "--help"}} {
		if code, out := runStdout(t, args...); code != 0 || !strings.Contains(out, "usage:") {
			t.Errorf("%v: exit %d, stdout %.200q; want 0 and the summary", args, code, out)
		}
	}
}

// validate names a broken file as a path from the working directory, the directory as
// given joined with the file, so that the location opens from where validate ran.
func TestValidateNamesFilesFromTheWorkingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	if err := os.MkdirAll(filepath.Join(dir, "team"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "team", "api.yaml"), []byte("domain: api\ndescriptors:\n  - key: k\n    rate_limit: {unit: seconds, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runStderr(t, "validate", dir)
	if want := filepath.Join(dir, "team", "api.yaml") + ":4: "; code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("exit %d, stderr %q; want 1 and a line starting %q", code, out, want)
	}
}

// A duplicate domain names both files from the working directory, not one of them
// relative to the rules directory.
func TestValidateNamesBothFilesOfADuplicateDomain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	if err := os.MkdirAll(filepath.Join(dir, "team"), 0o755); err != nil {
		t.Fatal(err)
	}
	rule := []byte("domain: api\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	for _, f := range []string{"a.yaml", filepath.Join("team", "b.yaml")} {
		if err := os.WriteFile(filepath.Join(dir, f), rule, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out := runStderr(t, "validate", dir)
	want := filepath.Join(dir, "team", "b.yaml") + `:1: domain: duplicate domain "api" (already defined in ` + filepath.Join(dir, "a.yaml") + ":1)"
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("exit %d, stderr %q; want 1 and %q", code, out, want)
	}
}

// A rule that loads but most likely is not what was meant (a replaces naming no limit)
// validates with a warning naming it by file and line; the service logs it at start.
func TestValidateAndServeWarnOfReplacesOfNoLimit(t *testing.T) {
	dir := t.TempDir()
	rule := "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: ghost}]}\n"
	if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "edge.yaml") + `:4: descriptors[0].rate_limit.replaces[0].name: no limit named "ghost" in domain "edge": this replaces nothing`
	if code, out := runStderr(t, "validate", dir); code != 0 || !strings.Contains(out, "warning: "+want) {
		t.Errorf("validate: exit %d, stderr %q; want 0 and the warning %q", code, out, want)
	}
	var many strings.Builder
	many.WriteString("domain: many\ndescriptors:\n")
	for i := range 12 {
		fmt.Fprintf(&many, "  - {key: k%d, rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: ghost%d}]}}\n", i, i)
	}
	if err := os.WriteFile(filepath.Join(dir, "many.yaml"), []byte(many.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startBinary(t, buildBinary(t), "--config-dir", dir)
	log := s.log()
	if !strings.Contains(log, `"msg":"the rules load, but most likely not as meant","warning":"edge.yaml:4: `) {
		t.Errorf("no warning in the service's log:\n%s", log)
	}
	if n := strings.Count(log, `"warning":`); n != 10 || !strings.Contains(log, `"more_warnings":3`) {
		t.Errorf("13 warnings logged as %d lines, want 10 and a count of 3 more:\n%s", n, log)
	}
}
