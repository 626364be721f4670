package main

import (
	"os"
	"testing"
)

// A listen address that cannot be listened on for its form (no port, a port out of
// range or not a number, or nothing at all) is a mistake in the settings: one line
// naming the flag, and exit 2, before anything starts. It used to reach net.Listen
// and end the process with a logged "exiting" and exit 1; an empty --grpc-addr or
// --http-addr even served, on a random port of every interface (now it is unset, and
// the default holds).
func TestBadListenAddressesAreUsageErrors(t *testing.T) {
	isolateEnv(t)
	// Without the check, the missing directory stops the start first (exit 1), so a
	// regression fails here rather than serving.
	none := t.TempDir() + "/none"
	for _, tc := range []struct {
		args []string
		env  string // RATELIMIT_EXT_GRPC_ADDR's value, when not "-"
		want string
	}{
		{[]string{"--http-addr", "localhost"}, "-", `ratelimit-ext: --http-addr "localhost": want host:port, e.g. 127.0.0.1:8080 (missing port in address)`},
		{[]string{"--grpc-addr", "127.0.0.1:99999"}, "-", `ratelimit-ext: --grpc-addr "127.0.0.1:99999": want host:port, e.g. 127.0.0.1:8081 (port 99999: want 0 to 65535)`},
		{[]string{"--http-addr", "127.0.0.1:abc"}, "-", `ratelimit-ext: --http-addr "127.0.0.1:abc": want host:port, e.g. 127.0.0.1:8080 (unknown port "abc")`},
		{[]string{"--metrics-addr", "bogus"}, "-", `ratelimit-ext: --metrics-addr "bogus": want host:port, e.g. 0.0.0.0:19001 (missing port in address)`},
		{[]string{"--pprof-addr", "6060"}, "-", `ratelimit-ext: --pprof-addr "6060": want host:port, e.g. 127.0.0.1:6060 (missing port in address)`},
		// (An empty variable, or flag, is unset, and leaves the default:
		// TestEmptyVariablesAreUnset, TestFlagsGivenEmptyAreUnset.)
		{nil, "localhost", `ratelimit-ext: --grpc-addr "localhost": want host:port, e.g. 127.0.0.1:8081 (missing port in address) (--grpc-addr is set by RATELIMIT_EXT_GRPC_ADDR)`},
	} {
		os.Unsetenv("RATELIMIT_EXT_GRPC_ADDR")
		if tc.env != "-" {
			os.Setenv("RATELIMIT_EXT_GRPC_ADDR", tc.env)
		}
		args := append([]string{"serve", "--config-dir", none}, tc.args...)
		code, out := runStderr(t, args...)
		if code != 2 || out != tc.want+"\n" {
			t.Errorf("%q (env %q): exit %d, stderr:\n%s\nwant exit 2 and the one line:\n%s", tc.args, tc.env, code, out, tc.want)
		}
	}
	os.Unsetenv("RATELIMIT_EXT_GRPC_ADDR")
}

// Every form net.Listen takes is still accepted: any host or none, port 0, a service
// name; and an empty --metrics-addr or --pprof-addr is off.
func TestGoodListenAddressesAreAccepted(t *testing.T) {
	isolateEnv(t)
	for _, addr := range []string{":8081", "0.0.0.0:0", "[::1]:9000", "localhost:8081", "127.0.0.1:http", "127.0.0.1:"} {
		for _, flag := range []string{"--grpc-addr", "--http-addr", "--metrics-addr", "--pprof-addr"} {
			if _, err := loadServeConfig([]string{flag, addr}); err != nil {
				t.Errorf("%s %q: %v", flag, addr, err)
			}
		}
	}
	if _, err := loadServeConfig([]string{"--metrics-addr", "", "--pprof-addr", ""}); err != nil {
		t.Errorf("empty --metrics-addr and --pprof-addr: %v", err)
	}
}
