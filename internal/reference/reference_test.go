package reference

import (
	"slices"
	"strings"
	"testing"
)

// The environment holds the settings and the caller's PATH, and nothing else of the
// caller's: a variable of envoyproxy/ratelimit's left in the shell is not passed on.
func TestEnv(t *testing.T) {
	t.Setenv("REDIS_AUTH", "secret")
	t.Setenv("PATH", "/bin")
	env := Env("127.0.0.1:6379", "/srv/runtime", Addrs{GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Debug: "127.0.0.1:3"})
	for _, want := range []string{"REDIS_URL=127.0.0.1:6379", "RUNTIME_ROOT=/srv/runtime", "GRPC_PORT=1", "PORT=2", "DEBUG_PORT=3", "PATH=/bin"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "REDIS_AUTH=") }) {
		t.Errorf("env %q passes the caller's REDIS_AUTH on", env)
	}
}

// With rules from xDS: Envoy Gateway's variables for the server and node, and no rule
// directory.
func TestXDSEnv(t *testing.T) {
	env := XDSEnv("127.0.0.1:6379", "127.0.0.1:18001", "envoy-ratelimit", Addrs{GRPC: "127.0.0.1:1", HTTP: "127.0.0.1:2", Debug: "127.0.0.1:3"})
	for _, want := range []string{"REDIS_URL=127.0.0.1:6379", "CONFIG_TYPE=GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL=127.0.0.1:18001",
		"CONFIG_GRPC_XDS_NODE_ID=envoy-ratelimit", "FORCE_START_WITHOUT_INITIAL_CONFIG=true", "GRPC_PORT=1"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %q lacks %s", env, want)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "RUNTIME_ROOT=") }) {
		t.Errorf("env %q names a rule directory", env)
	}
}
