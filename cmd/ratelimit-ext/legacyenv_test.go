package main

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
)

// fakeEnv is a process environment for legacyenv.Apply.
type fakeEnv map[string]string

func (e fakeEnv) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e fakeEnv) set(k, v string) error          { e[k] = v; return nil }

// With USE_CALENDAR_MONTH_RATE_LIMIT=true, serve refuses to start on rules with a
// month limit, and says why.
func TestCalendarMonthsRefuseMonthRulesAtStart(t *testing.T) {
	isolateEnv(t)
	t.Setenv("USE_CALENDAR_MONTH_RATE_LIMIT", "true")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "q.yaml"), []byte("domain: q\ndescriptors:\n  - key: org\n    rate_limit: {unit: month, requests_per_unit: 1000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// An address the test holds: were the rules not refused, serve would stop at its
	// listener instead of serving, and the test fail, not hang.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	code, out := runStderr(t, "serve", "--config-dir", dir, "--grpc-addr", held.Addr().String(), "--http-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, "1 limit has unit: month (q: org (q.yaml:4))") {
		t.Errorf("serve with a month limit and calendar months asked for: exit %d, stderr %.300q; want 1 and the reason", code, out)
	}
}

// envoyGatewayEnv is the environment Envoy Gateway gives its rate-limit container
// (envoyproxy/gateway, internal/infrastructure/kubernetes/ratelimit), with every
// optional part on: Redis over mutual TLS, Prometheus on port 19001 (its default) and
// tracing. Paths are its mounts: /certs (Secret envoy-rate-limit), /redis-certs.
func envoyGatewayEnv() fakeEnv {
	return fakeEnv{
		"RUNTIME_ROOT":                       "/data",
		"RUNTIME_SUBDIRECTORY":               "ratelimit",
		"RUNTIME_IGNOREDOTFILES":             "true",
		"RUNTIME_WATCH_ROOT":                 "false",
		"LOG_LEVEL":                          "info",
		"USE_STATSD":                         "false",
		"CONFIG_TYPE":                        "GRPC_XDS_SOTW",
		"CONFIG_GRPC_XDS_SERVER_URL":         "envoy-gateway:18001",
		"CONFIG_GRPC_XDS_NODE_ID":            "envoy-ratelimit",
		"GRPC_SERVER_USE_TLS":                "true",
		"GRPC_SERVER_TLS_CERT":               "/certs/tls.crt",
		"GRPC_SERVER_TLS_KEY":                "/certs/tls.key",
		"GRPC_SERVER_TLS_CA_CERT":            "/certs/ca.crt",
		"CONFIG_GRPC_XDS_SERVER_USE_TLS":     "true",
		"CONFIG_GRPC_XDS_CLIENT_TLS_CERT":    "/certs/tls.crt",
		"CONFIG_GRPC_XDS_CLIENT_TLS_KEY":     "/certs/tls.key",
		"CONFIG_GRPC_XDS_SERVER_TLS_CACERT":  "/certs/ca.crt",
		"FORCE_START_WITHOUT_INITIAL_CONFIG": "true",
		"REDIS_SOCKET_TYPE":                  "tcp",
		"REDIS_URL":                          "redis.redis-system.svc.cluster.local:6379",
		"REDIS_TLS":                          "true",
		"REDIS_TLS_CLIENT_CERT":              "/redis-certs/tls.crt",
		"REDIS_TLS_CLIENT_KEY":               "/redis-certs/tls.key",
		"USE_PROMETHEUS":                     "true",
		"PROMETHEUS_ADDR":                    ":19001",
		"PROMETHEUS_MAPPER_YAML":             "/etc/statsd-exporter/conf.yaml",
		"TRACING_ENABLED":                    "true",
		"TRACING_SERVICE_NAME":               "envoy-ratelimit",
		"TRACING_SERVICE_NAMESPACE":          "envoy-gateway-system",
		"TRACING_SERVICE_INSTANCE_ID":        "envoy-ratelimit-5c8f7b9d4-x2x7k",
		"TRACING_SAMPLING_RATE":              "1.0",
		"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://otel-collector.monitoring.svc.cluster.local:4318",
	}
}

// envoyGatewayStatsdEnv is what older Envoy Gateway releases set instead of the
// Prometheus and tracing variables, next to a prom/statsd-exporter sidecar.
func envoyGatewayStatsdEnv() fakeEnv {
	env := envoyGatewayEnv()
	for k := range env {
		if strings.HasPrefix(k, "PROMETHEUS_") || strings.HasPrefix(k, "TRACING_") || strings.HasPrefix(k, "REDIS_TLS") ||
			k == "USE_PROMETHEUS" || k == "OTEL_EXPORTER_OTLP_ENDPOINT" {
			delete(env, k)
		}
	}
	env["USE_STATSD"], env["STATSD_PORT"] = "true", "9125"
	return env
}

// Envoy Gateway's environment turns into settings that load: xDS from its server and
// gRPC served over TLS, both with the certificate it mounts, serving before the first
// config, Redis and metrics where it expects them. Every variable it sets is reported,
// and what cannot be honoured is reported ignored.
func TestEnvoyGatewayEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		env                   fakeEnv
		redisURL, metricsAddr string
		redisTLS              bool
	}{
		{"with Prometheus, tracing and Redis over mutual TLS", envoyGatewayEnv(), "rediss://redis.redis-system.svc.cluster.local:6379", ":19001", true},
		{"older, with a statsd exporter beside it", envoyGatewayStatsdEnv(), "redis://redis.redis-system.svc.cluster.local:6379", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			theirs := maps.Clone(tc.env)
			notes, err := legacyenv.Apply(legacyenv.Env{Lookup: tc.env.lookup, Set: tc.env.set})
			if err != nil {
				t.Fatal(err)
			}
			outcome := map[string]string{}
			for _, n := range notes {
				outcome[n.Name] += n.Outcome + "; "
			}
			for k := range theirs {
				if outcome[k] == "" {
					t.Errorf("%s is set by Envoy Gateway but not reported", k)
				}
			}
			for _, k := range []string{"GRPC_SERVER_TLS_CA_CERT", "RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "USE_STATSD", "STATSD_PORT",
				"PROMETHEUS_MAPPER_YAML", "TRACING_ENABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
				if _, set := theirs[k]; set && !strings.HasPrefix(outcome[k], "ignored: ") {
					t.Errorf("%s: %q, want it reported ignored", k, outcome[k])
				}
			}
			for k, v := range tc.env {
				if strings.HasPrefix(k, "RATELIMIT_EXT_") {
					t.Setenv(k, v)
				}
			}
			c, err := loadServeConfig(nil)
			if err != nil {
				t.Fatal(err)
			}
			x := c.xds
			if x.source != sourceXDS || x.server != "envoy-gateway:18001" || x.nodeID != "envoy-ratelimit" || !x.tls.on ||
				x.tls.ca != "/certs/ca.crt" || x.tls.cert != "/certs/tls.crt" || x.tls.key != "/certs/tls.key" || !x.startWithoutRules {
				t.Errorf("xDS settings %+v", x)
			}
			if c.tls != (tlsFiles{cert: "/certs/tls.crt", key: "/certs/tls.key"}) {
				t.Errorf("gRPC TLS %+v, want the mounted pair and no client CA", c.tls)
			}
			if c.metricsAddr != tc.metricsAddr || c.logLevel != "info" {
				t.Errorf("metrics address %q, log level %q", c.metricsAddr, c.logLevel)
			}
			r := c.redis()
			if r.URL != tc.redisURL {
				t.Errorf("Redis URL %q, want %q", r.URL, tc.redisURL)
			}
			if tc.redisTLS && (r.TLSCertFile != "/redis-certs/tls.crt" || r.TLSKeyFile != "/redis-certs/tls.key") {
				t.Errorf("Redis client certificate %q %q", r.TLSCertFile, r.TLSKeyFile)
			}
		})
	}
}

// The image sets where it listens and reads its rules as the binary's defaults (the
// Dockerfile's -X flags), so envoyproxy/ratelimit's PORT, GRPC_PORT and RUNTIME_ROOT
// still take effect in it: a file-mode deployment that switches images serves its own
// rules on its own ports, and nothing of it is reported ignored.
func TestLegacyVariablesWinOverTheImagesDefaults(t *testing.T) {
	for p, v := range map[*string]string{&defaultGRPCAddr: "0.0.0.0:8081", &defaultHTTPAddr: "0.0.0.0:8080",
		&defaultConfigDir: "/etc/ratelimit-ext/config"} {
		was := *p
		*p = v
		t.Cleanup(func() { *p = was })
	}
	isolateEnv(t) // none of the machine's settings; the mapping's os.Setenv undone after

	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "0.0.0.0:8081" || c.httpAddr != "0.0.0.0:8080" || c.configDir != "/etc/ratelimit-ext/config" {
		t.Fatalf("nothing set: %s, %s, %s; want the image's defaults", c.grpcAddr, c.httpAddr, c.configDir)
	}

	t.Setenv("RUNTIME_ROOT", "/data")
	t.Setenv("RUNTIME_SUBDIRECTORY", "ratelimit")
	t.Setenv("PORT", "9080")
	t.Setenv("GRPC_PORT", "9081")
	c, err = loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.grpcAddr != "0.0.0.0:9081" || c.httpAddr != "0.0.0.0:9080" || c.configDir != "/data/ratelimit/config" {
		t.Errorf("with envoyproxy/ratelimit's variables: %s, %s, %s; want theirs", c.grpcAddr, c.httpAddr, c.configDir)
	}
	for _, n := range c.legacy {
		if !strings.HasPrefix(n.Outcome, "mapped to ") {
			t.Errorf("%s: %s, want it mapped", n.Name, n.Outcome)
		}
	}
	if len(c.legacy) != 3 { // RUNTIME_SUBDIRECTORY is part of RUNTIME_ROOT's note
		t.Errorf("notes %v, want one each for RUNTIME_ROOT, PORT and GRPC_PORT", c.legacy)
	}
}

// A flag on serve's command line wins over envoyproxy/ratelimit's variables as our own
// variable does: Redis settings beside --redis-url are reported ignored, and do not stop
// the start for want of a REDIS_URL.
func TestLegacyVariablesYieldToServeFlags(t *testing.T) {
	isolateEnv(t)
	t.Setenv("REDIS_SOCKET_TYPE", "tcp")
	t.Setenv("REDIS_AUTH", "pw")
	c, err := loadServeConfig([]string{"--redis-url", "redis://r:6379"})
	if err != nil {
		t.Fatal(err)
	}
	if c.redis().URL != "redis://r:6379" || len(c.legacy) == 0 {
		t.Fatalf("Redis URL %q, notes %v", c.redis().URL, c.legacy)
	}
	for _, n := range c.legacy {
		if !n.Ignored {
			t.Errorf("%s: %s, want it ignored for --redis-url", n.Name, n.Outcome)
		}
	}
}

// Each envoyproxy/ratelimit variable that is mapped, set to a value that does not fit
// and would be used, stops the start with an error that names it: the operator set it,
// not the variable of ours it is mapped onto. Whether the mapping or our own flag
// parsing finds the fault, the operator must be told which of their variables to fix.
// Left out: the values only using them can fault (HOST and GRPC_HOST, listened on;
// CONFIG_GRPC_XDS_SERVER_URL, dialled; the TLS files and RUNTIME_*, read at start),
// and LOG_FORMAT, which takes any value as there.
func TestMalformedLegacyValueIsNamed(t *testing.T) {
	xds := map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "xds:18000"}
	redis := map[string]string{"REDIS_URL": "r:6379"}
	for _, tc := range []struct {
		legacy, value string
		base          map[string]string // what else it needs to be used
	}{
		{"SHADOW_MODE", "maybe", nil},
		{"RESPONSE_DYNAMIC_METADATA", "maybe", nil},
		{"REDIS_POOL_SIZE", "lots", redis},
		{"REDIS_POOL_SIZE", "-3", redis},
		{"GRPC_MAX_CONNECTION_AGE", "a day", nil},
		{"GRPC_MAX_CONNECTION_AGE_GRACE", "an hour", nil},
		{"LOG_LEVEL", "loud", nil},
		{"CACHE_KEY_PREFIX", "{app}", map[string]string{"REDIS_URL": "a:6379,b:6379", "REDIS_TYPE": "cluster"}},
		{"PORT", "eighty", nil},
		{"GRPC_PORT", "+1", nil},
		{"QUOTA_MODE", "maybe", nil},
		{"USE_CALENDAR_MONTH_RATE_LIMIT", "maybe", nil},
		{"GRPC_SERVER_USE_TLS", "maybe", nil},
		{"USE_PROMETHEUS", "maybe", nil},
		{"PROMETHEUS_ADDR", "nineteen", map[string]string{"USE_PROMETHEUS": "true"}},
		{"BACKEND_TYPE", "cassandra", nil},
		{"REDIS_URL", "http://r:6379", nil},
		{"REDIS_TYPE", "ring", redis},
		{"REDIS_TLS", "maybe", redis},
		{"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "maybe", map[string]string{"REDIS_URL": "r:6380", "REDIS_TLS": "true"}},
		{"GRPC_UDS", "/tmp/rl.sock", nil},
		{"CONFIG_TYPE", "GRPC_XDS_DELTA", nil},
		{"CONFIG_GRPC_XDS_NODE_METADATA", "novalue", xds},
		{"CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "token", xds},
		{"CONFIG_GRPC_XDS_SERVER_USE_TLS", "maybe", xds},
		{"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "soon", xds},
		{"XDS_CLIENT_BACKOFF_MAX_INTERVAL", "later", xds},
		{"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "soon", xds},
		{"XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "half", xds},
		{"XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "2", xds},
		{"XDS_CLIENT_BACKOFF_JITTER", "maybe", xds},
		{"XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "4MiB", xds},
		{"FORCE_START_WITHOUT_INITIAL_CONFIG", "maybe", xds},
	} {
		isolateEnv(t)
		for k, v := range tc.base {
			t.Setenv(k, v)
		}
		t.Setenv(tc.legacy, tc.value)
		_, err := loadServeConfig(nil)
		if err == nil || !namesVariable(err.Error(), tc.legacy) {
			t.Errorf("%s=%q: error %v, want one that names %s", tc.legacy, tc.value, err, tc.legacy)
		}
	}
	// The value as the operator wrote it (the mapping passes words on in lower case),
	// and the setting of ours it is mapped onto.
	isolateEnv(t)
	t.Setenv("SHADOW_MODE", " Maybe")
	want := `SHADOW_MODE="Maybe" (envoyproxy/ratelimit's, mapped to RATELIMIT_EXT_SHADOW_MODE): want true or false`
	if _, err := loadServeConfig(nil); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("SHADOW_MODE=Maybe: error %v, want %q", err, want)
	}
}

// REDIS_TLS_SKIP_HOSTNAME_VERIFICATION=true beside REDIS_TLS=true reaches the Redis
// engine's options as a chain-only check; beside our own server name it is ignored,
// and the start goes on with that name checked.
func TestLegacySkipHostnameVerificationReachesRedis(t *testing.T) {
	for _, tc := range []struct {
		ours       map[string]string
		skip       bool
		serverName string
	}{
		{nil, true, ""},
		{map[string]string{"RATELIMIT_EXT_REDIS_TLS_SERVER_NAME": "redis.internal"}, false, "redis.internal"},
	} {
		isolateEnv(t)
		for k, v := range map[string]string{"REDIS_URL": "10.0.0.7:6380", "REDIS_TLS": "true", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true"} {
			t.Setenv(k, v)
		}
		for k, v := range tc.ours {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(nil)
		if err != nil {
			t.Errorf("%v: %v", tc.ours, err)
			continue
		}
		if o := c.redis(); o.URL != "rediss://10.0.0.7:6380" || o.TLSSkipHostnameVerification != tc.skip || o.TLSServerName != tc.serverName {
			t.Errorf("%v: Redis options %+v, want skip %v and server name %q", tc.ours, o, tc.skip, tc.serverName)
		}
	}
}

// namesVariable says whether text names the variable name itself, not merely a longer
// one that ends with it (RATELIMIT_EXT_SHADOW_MODE does not name SHADOW_MODE).
func namesVariable(text, name string) bool {
	return regexp.MustCompile(`(^|[^A-Z0-9_])` + regexp.QuoteMeta(name) + `($|[^A-Z0-9_])`).MatchString(text)
}

// Our explicit "no TLS" to the xDS server wins over CONFIG_GRPC_XDS_SERVER_USE_TLS=true:
// serve is left with no TLS setting for the xDS client at all (any --xds-tls-* would
// turn TLS back on), flag or variable.
func TestOurXDSTLSOffWinsOverTheirs(t *testing.T) {
	for _, tc := range []struct {
		ours map[string]string
		args []string
	}{
		{nil, []string{"--xds-tls=false"}},
		{map[string]string{"RATELIMIT_EXT_XDS_TLS": "false"}, nil},
	} {
		isolateEnv(t)
		for k, v := range envoyGatewayEnv() {
			if strings.HasPrefix(k, "CONFIG_") {
				t.Setenv(k, v)
			}
		}
		for k, v := range tc.ours {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if x := c.xds.tls; x.on || x.ca != "" || x.cert != "" || x.key != "" || x.serverName != "" {
			t.Errorf("%v %v: xDS TLS settings %+v, want none", tc.ours, tc.args, x)
		}
	}
}

// Our --config-source=file wins over CONFIG_TYPE=GRPC_XDS_SOTW: serve loads, with rules
// from files, instead of refusing the xDS server their variables would have set.
func TestOurFileSourceWinsOverTheirXDS(t *testing.T) {
	for _, args := range [][]string{{"--config-source", "file"}, {"--config-source=file"}} {
		isolateEnv(t)
		t.Setenv("CONFIG_TYPE", "GRPC_XDS_SOTW")
		t.Setenv("CONFIG_GRPC_XDS_SERVER_URL", "xds:18000")
		c, err := loadServeConfig(args)
		if err != nil || c.xds.source != sourceFile || c.xds.server != "" {
			t.Errorf("%q: %v, want rules from files and no xDS server", args, err)
		}
	}
}

// Our --engine=memory wins over their REDIS_URL: serve loads with the memory engine,
// instead of refusing the Redis URL their variables would have set beside it.
func TestOurMemoryEngineWinsOverTheirRedis(t *testing.T) {
	isolateEnv(t)
	t.Setenv("REDIS_URL", "r:6379")
	t.Setenv("RATELIMIT_EXT_ENGINE", "memory")
	c, err := loadServeConfig(nil)
	if err != nil || c.engine != "memory" || c.redis().URL != "" {
		t.Errorf("REDIS_URL beside RATELIMIT_EXT_ENGINE=memory: %v, want the memory engine and no Redis URL", err)
	}
}
