package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// twoTeams writes two rule files of domain edge into a new directory.
func twoTeams(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, key := range map[string]string{"a.yaml": "user", "b.yaml": "key"} {
		rule := "domain: edge\ndescriptors:\n  - key: " + key + "\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// validate merges the files of a domain when serve would: with --merge-domains, its
// variable, or envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG (which the flag and ours
// override), for a directory and for files alike; otherwise the second file is a
// duplicate domain.
func TestValidateMergesDomainsAsServe(t *testing.T) {
	const merged, refused = "ok: 1 domain, 2 limits (edge: 2)", `b.yaml:1: domain: duplicate domain "edge" (already defined in `
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string // on stdout when code is 0, else on stderr
	}{
		{"default", nil, nil, 1, refused},
		{"flag", nil, []string{"--merge-domains"}, 0, merged},
		{"our variable", map[string]string{"RATELIMIT_EXT_MERGE_DOMAINS": "true"}, nil, 0, merged},
		{"theirs", map[string]string{"MERGE_DOMAIN_CONFIG": "true"}, nil, 0, merged},
		{"theirs false", map[string]string{"MERGE_DOMAIN_CONFIG": "false"}, nil, 1, refused},
		{"flag over theirs", map[string]string{"MERGE_DOMAIN_CONFIG": "true"}, []string{"--merge-domains=false"}, 1, refused},
		{"ours over theirs", map[string]string{"MERGE_DOMAIN_CONFIG": "true", "RATELIMIT_EXT_MERGE_DOMAINS": "false"}, nil, 1, refused},
		{"theirs malformed", map[string]string{"MERGE_DOMAIN_CONFIG": "maybe"}, nil, 2, `MERGE_DOMAIN_CONFIG="maybe": want true or false`},
	} {
		dir := twoTeams(t)
		for _, paths := range [][]string{{dir}, {filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")}} {
			t.Run(tc.name, func(t *testing.T) {
				isolateEnv(t) // also undoes what the mapping of theirs sets
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				args := append(append([]string{"validate"}, tc.args...), paths...)
				run := runStderr
				if tc.code == 0 {
					run = runStdout
				}
				if code, out := run(t, args...); code != tc.code || !strings.Contains(out, tc.want) {
					t.Errorf("%q with %v: exit %d, %q; want %d and %q", args, tc.env, code, out, tc.code, tc.want)
				}
			})
		}
	}
}

// serve loads its rules with --merge-domains at the start (and hands the same options to
// the reload and to xDS, which take them as they are: internal/reload, internal/xdsrules).
func TestServeMergesDomainsWhenAsked(t *testing.T) {
	isolateEnv(t)
	dir := twoTeams(t)
	for _, tc := range []struct {
		args []string
		env  string // MERGE_DOMAIN_CONFIG
		want bool
	}{
		{nil, "", false}, {[]string{"--merge-domains"}, "", true}, {nil, "true", true}, {[]string{"--merge-domains=false"}, "true", false},
	} {
		os.Unsetenv(envName("merge-domains"))
		t.Setenv("MERGE_DOMAIN_CONFIG", tc.env)
		c, err := loadServeConfig(append([]string{"--config-dir", dir}, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		if c.rules != (descriptors.Options{MergeDomains: tc.want}) {
			t.Errorf("%q, MERGE_DOMAIN_CONFIG=%q: rules %+v, want MergeDomains %v", tc.args, tc.env, c.rules, tc.want)
		}
		rs, err := initialRules(c)
		if loaded := err == nil && rs.LimitCount() == 2; loaded != tc.want {
			t.Errorf("%q, MERGE_DOMAIN_CONFIG=%q: initial rules %v, %v", tc.args, tc.env, rs.Summary(), err)
		}
	}
}

// A warning that points into another file of the domain names both files from the
// working directory, as validate's other messages do.
func TestValidateNamesBothFilesOfAMergedWarning(t *testing.T) {
	isolateEnv(t)
	dir := t.TempDir()
	for name, value := range map[string]string{"a.yaml": `"*"`, "b.yaml": `""`} {
		rule := "domain: edge\ndescriptors:\n  - key: user\n    value: " + value + "\n    rate_limit: {unit: minute, requests_per_unit: 1}\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := "warning: " + filepath.Join(dir, "b.yaml") + `:3: descriptors[0]: key "user" without value never matches: the value pattern "*" at ` + filepath.Join(dir, "a.yaml") + ":3 matches every value first"
	if code, out := runStderr(t, "validate", "--merge-domains", dir); code != 0 || !strings.Contains(out, want) {
		t.Errorf("exit %d, %q; want 0 and %q", code, out, want)
	}
}
