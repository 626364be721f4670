package main

import (
	"strings"
	"testing"
)

// Settings the load generator would quietly replace by a default are refused, naming
// the flag, before anything is sent.
func TestBenchRefusesSettingsItWouldReplace(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--keys", "0"}, "--keys 0"},
		{[]string{"--workers", "0"}, "--workers 0"},
		{[]string{"--requests", "-1"}, "--requests -1"},
		{[]string{"--duration", "-1s"}, "--duration"},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--duration", "0s"}, "never end"},
	} {
		args := append([]string{"bench", "--target", "127.0.0.1:1"}, tc.args...)
		code, out := runStderr(t, args...)
		if code != 2 || !strings.Contains(out, tc.says) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, out, tc.says)
		}
	}
}
