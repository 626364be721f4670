package main

import (
	"strings"
	"testing"
)

// A mistake on the command line of any subcommand is one plain line on stderr, naming
// the flag as the documentation does (--name) and saying what it wants, and exit 2;
// not the flag package's message followed by every flag's usage.
func TestBadFlagsAreOneLine(t *testing.T) {
	isolateEnv(t) // the machine's RATELIMIT_EXT_* settings must not add errors
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis-read-timeout", "5"}, `ratelimit-ext: --redis-read-timeout "5": want a duration such as 10ms`},
		{[]string{"--unknown-flag"}, "ratelimit-ext: unknown flag --unknown-flag (see ratelimit-ext serve -h)"},
		{[]string{"--un\nknown"}, `ratelimit-ext: unknown flag "--un\nknown" (see ratelimit-ext serve -h)`},
		{[]string{"--shutdown-timeout", "5\nx"}, `ratelimit-ext: --shutdown-timeout "5\nx": want a duration such as 10ms`},
		{[]string{"serve", "-unknown-flag=1"}, "ratelimit-ext: unknown flag --unknown-flag (see ratelimit-ext serve -h)"},
		{[]string{"serve", "--shadow-mode=maybe"}, `ratelimit-ext: --shadow-mode "maybe": want true or false`},
		{[]string{"serve", "--max-descriptors", "many"}, `ratelimit-ext: --max-descriptors "many": want an integer`},
		{[]string{"serve", "--max-descriptors", "99999999999999999999"}, `ratelimit-ext: --max-descriptors "99999999999999999999": value out of range`},
		{[]string{"serve", "--shutdown-timeout"}, "ratelimit-ext: --shutdown-timeout needs a value: want a duration such as 10ms"},
		{[]string{"serve", "--grpc-addr"}, "ratelimit-ext: --grpc-addr needs a value"},
		{[]string{"serve", "---x"}, "ratelimit-ext: bad flag syntax: ---x (see ratelimit-ext serve -h)"},
		{[]string{"validate", "--unknown-flag", "config"}, "ratelimit-ext validate: unknown flag --unknown-flag (see ratelimit-ext validate -h)"},
		{[]string{"validate", "--max-entries", "0", "config"}, "ratelimit-ext validate: --max-entries 0: want at least 1"},
		{[]string{"conformance", "--unknown-flag"}, "ratelimit-ext conformance: unknown flag --unknown-flag (see ratelimit-ext conformance -h)"},
		{[]string{"conformance", "--base", "1m"}, `ratelimit-ext conformance: --base "1m": want an integer`},
		{[]string{"conformance", "--redis-read-timeout", "5"}, `ratelimit-ext conformance: --redis-read-timeout "5": want a duration such as 10ms`},
		{[]string{"bench", "--unknown-flag"}, "ratelimit-ext bench: unknown flag --unknown-flag (see ratelimit-ext bench -h)"},
		{[]string{"bench", "--duration", "5"}, `ratelimit-ext bench: --duration "5": want a duration such as 10ms`},
		{[]string{"bench", "--rate", "fast"}, `ratelimit-ext bench: --rate "fast": want a number such as 0.5`},
		{[]string{"bench", "--cost", "-1"}, `ratelimit-ext bench: --cost "-1": want an integer, 0 or more`},
	} {
		code, out := runStderr(t, tc.args...)
		if code != 2 || out != tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and the one line:\n%s", tc.args, code, out, tc.want)
		}
	}
}

// -h and --help still print the whole usage, and exit 0.
func TestHelpFlagsPrintTheUsage(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args  []string
		first string // the usage's first line
		lines int    // at least
	}{
		{[]string{"-h"}, "usage:", 100},
		{[]string{"--help"}, "usage:", 100},
		{[]string{"serve", "-h"}, "usage:", 100},
		{[]string{"help", "serve"}, "usage:", 100},
		{[]string{"validate", "--help"}, "usage: ratelimit-ext validate [flags] DIR | FILE...", 10},
		{[]string{"conformance", "-h"}, "Usage of conformance:", 20},
		{[]string{"bench", "--help"}, "usage: ratelimit-ext bench [flags]", 50},
	} {
		code, out := runStderr(t, tc.args...)
		if code != 0 || !strings.HasPrefix(out, tc.first) || strings.Count(out, "\n") < tc.lines {
			t.Errorf("%q: exit %d, %d lines:\n%.300s\nwant exit 0 and the usage (%q..., %d lines or more)", tc.args, code, strings.Count(out, "\n"), out, tc.first, tc.lines)
		}
	}
}

// Every message of validate, conformance and bench about the command line begins as
// their bad flags do: "ratelimit-ext SUBCOMMAND: ".
func TestUsageErrorsNameTheSubcommand(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args []string
		want string
		code int
	}{
		{[]string{"validate", "../../config", "../../config/edge.yaml"}, "ratelimit-ext validate: ../../config is a directory; give one directory, or rule files", 2},
		{[]string{"bench", "--keys", "0"}, "ratelimit-ext bench: --keys 0: want at least 1", 2},
		{[]string{"bench", "x"}, `ratelimit-ext bench: unexpected argument "x": bench takes only flags (see ratelimit-ext bench -h)`, 2},
	} {
		code, out := runStderr(t, tc.args...)
		if code != tc.code || out != tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit %d and the one line:\n%s", tc.args, code, out, tc.code, tc.want)
		}
	}
}

// A boolean flag's value given apart (--watch false, as a Kubernetes args list easily
// has it) is taken by the flag package as an argument, the flag being set to true: the
// refusal says how to write it.
func TestBooleanValueGivenApart(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--watch", "false"}, `ratelimit-ext: unexpected argument "false": serve takes only flags (see ratelimit-ext serve -h); a boolean flag takes its value after '=': --watch=false`},
		{[]string{"serve", "-shadow-mode", "True"}, `ratelimit-ext: unexpected argument "True": serve takes only flags (see ratelimit-ext serve -h); a boolean flag takes its value after '=': --shadow-mode=True`},
		{[]string{"serve", "--watch=true", "false"}, `ratelimit-ext: unexpected argument "false": serve takes only flags (see ratelimit-ext serve -h)`},
		{[]string{"serve", "--watch", "maybe"}, `ratelimit-ext: unexpected argument "maybe": serve takes only flags (see ratelimit-ext serve -h)`},
		{[]string{"serve", "--watch", "--", "false"}, `ratelimit-ext: unexpected argument "false": serve takes only flags (see ratelimit-ext serve -h)`},
		{[]string{"bench", "--json", "false"}, `ratelimit-ext bench: unexpected argument "false": bench takes only flags (see ratelimit-ext bench -h); a boolean flag takes its value after '=': --json=false`},
	} {
		code, out := runStderr(t, tc.args...)
		if code != 2 || out != tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and the one line:\n%s", tc.args, code, out, tc.want)
		}
	}
}
