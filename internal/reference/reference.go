// Package reference says how this repository runs envoyproxy/ratelimit's service_cmd,
// the service it replaces: `make bench` measures it beside this one
// (scripts/benchsuite), and the differential test compares their answers (compat),
// which starts this one with the same variables, as a drop-in replacement is started.
// One environment for both, so that what is measured is what is compared.
package reference

import (
	"net"
	"os"
)

// Addrs are the loopback host:port addresses the service listens on.
type Addrs struct{ GRPC, HTTP, Debug string }

// ReadyURL answers 200 once the service serves (envoyproxy/ratelimit's /healthcheck).
func (a Addrs) ReadyURL() string { return "http://" + a.HTTP + "/healthcheck" }

// Env is the environment to start the service with: Redis at redisAddr, the rules under
// runtimeRoot/ratelimit/config (read at start, not watched), the listen addresses, and
// stats kept in the process rather than sent to statsd (it then logs them every 10 s
// whatever LOG_LEVEL says: send its output to a file). Besides those only the caller's
// PATH, HOME and TMPDIR: a variable of its own left in the caller's shell (REDIS_AUTH,
// LOCAL_CACHE_SIZE_IN_BYTES, ...) would change what it does.
func Env(redisAddr, runtimeRoot string, a Addrs) []string {
	return env(redisAddr, a,
		"RUNTIME_ROOT="+runtimeRoot, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_WATCH_ROOT=false")
}

// XDSEnv is Env with the rules from the xDS server at xdsServer (plaintext), for node
// nodeID, instead of files: the variables Envoy Gateway starts the service with,
// FORCE_START_WITHOUT_INITIAL_CONFIG included, so the service serves (with no rules)
// before the first config arrives.
func XDSEnv(redisAddr, xdsServer, nodeID string, a Addrs) []string {
	return env(redisAddr, a,
		"CONFIG_TYPE=GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL="+xdsServer, "CONFIG_GRPC_XDS_NODE_ID="+nodeID,
		"FORCE_START_WITHOUT_INITIAL_CONFIG=true")
}

// env is the settings both kinds of rule source share, then rules, then the caller's
// PATH, HOME and TMPDIR.
func env(redisAddr string, a Addrs, rules ...string) []string {
	env := []string{
		"USE_STATSD=false", "LOG_LEVEL=warn",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + redisAddr,
		"GRPC_HOST=127.0.0.1", "GRPC_PORT=" + port(a.GRPC),
		"HOST=127.0.0.1", "PORT=" + port(a.HTTP),
		"DEBUG_HOST=127.0.0.1", "DEBUG_PORT=" + port(a.Debug),
	}
	env = append(env, rules...)
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
