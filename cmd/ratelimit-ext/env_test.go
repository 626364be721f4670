package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/extauthz"
	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
)

// A malformed environment variable does not stop the start when the command line gives
// its flag: the flag wins over the variable, so the variable's value is not used. Without
// the flag it still does. So for envoyproxy/ratelimit's variables, mapped onto ours.
func TestMalformedVariableBesideItsFlag(t *testing.T) {
	for _, tc := range []struct {
		env      map[string]string
		args     []string
		ok       func(*serveConfig) bool // the flag's value is used
		reported string                  // in the warning that it is ignored
	}{
		{map[string]string{"RATELIMIT_EXT_WATCH": "maybe"}, []string{"--watch=false"},
			func(c *serveConfig) bool { return !c.watch }, `RATELIMIT_EXT_WATCH=\"maybe\": want true or false; ignored: the command line gives --watch, which wins`},
		{map[string]string{"RATELIMIT_EXT_MAX_ENTRIES": "lots"}, []string{"--max-entries", "8"},
			func(c *serveConfig) bool { return c.bounds.MaxEntries == 8 }, "RATELIMIT_EXT_MAX_ENTRIES"},
		{map[string]string{"RATELIMIT_EXT_SHUTDOWN_TIMEOUT": "soon"}, []string{"--shutdown-timeout=3s"},
			func(c *serveConfig) bool { return c.shutdownTimeout == 3*time.Second }, "RATELIMIT_EXT_SHUTDOWN_TIMEOUT"},
		{map[string]string{"RATELIMIT_EXT_XDS_BACKOFF_JITTER": "half"}, []string{"--xds-backoff-jitter", "0.25"},
			func(c *serveConfig) bool { return c.xds.backoff.Jitter == 0.25 }, "RATELIMIT_EXT_XDS_BACKOFF_JITTER"},
		{map[string]string{"RATELIMIT_EXT_EXT_AUTHZ_FAILURE_MODE": "open"}, []string{"--ext-authz-failure-mode", "deny"},
			func(c *serveConfig) bool { return c.extAuthz.FailureMode == extauthz.ModeDeny }, "RATELIMIT_EXT_EXT_AUTHZ_FAILURE_MODE"},
		// envoyproxy/ratelimit's: a malformed switch whose flag of ours is given.
		{map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW", "XDS_CLIENT_BACKOFF_JITTER": "maybe"}, []string{"--xds-backoff-jitter=0.25"},
			func(c *serveConfig) bool { return c.xds.backoff.Jitter == 0.25 }, "XDS_CLIENT_BACKOFF_JITTER"},
		{map[string]string{"CONFIG_TYPE": "GRPC_XDS_SOTW", "FORCE_START_WITHOUT_INITIAL_CONFIG": "maybe"}, []string{"--xds-start-without-rules"},
			func(c *serveConfig) bool { return c.xds.startWithoutRules }, "FORCE_START_WITHOUT_INITIAL_CONFIG"},
		{map[string]string{"USE_PROMETHEUS": "yes please"}, []string{"--metrics-addr", "127.0.0.1:19001"},
			func(c *serveConfig) bool { return c.metricsAddr == "127.0.0.1:19001" }, "USE_PROMETHEUS"},
		{map[string]string{"CONFIG_TYPE": "GRPC_XDS_DELTA"}, []string{"--config-source", "file"},
			func(c *serveConfig) bool { return c.xds.source == sourceFile }, "CONFIG_TYPE"},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		if _, err := loadServeConfig(nil); err == nil {
			t.Errorf("%v without %v: no error", tc.env, tc.args)
		}
		isolateEnv(t) // the mapping of envoyproxy/ratelimit's variables sets ours
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(tc.args)
		if err != nil || !tc.ok(c) {
			t.Errorf("%v %v: %v, want the flag's value used", tc.env, tc.args, err)
			continue
		}
		if said := ignoredAtStart(c); !strings.Contains(said, tc.reported) {
			t.Errorf("%v %v: the start says %q, want %s reported ignored", tc.env, tc.args, said, tc.reported)
		}
	}
}

// A variable set empty, or to spaces (FOO= in a manifest or a compose file), counts as
// unset, as envoyproxy/ratelimit's do: the default holds, and theirs still maps.
func TestEmptyVariablesAreUnset(t *testing.T) {
	isolateEnv(t)
	for _, name := range []string{"WATCH", "MAX_ENTRIES", "SHUTDOWN_TIMEOUT", "XDS_BACKOFF_JITTER",
		"EXT_AUTHZ_FAILURE_MODE", "GRPC_ADDR", "LOG_LEVEL", "NOT_A_SETTING"} {
		t.Setenv("RATELIMIT_EXT_"+name, "")
	}
	t.Setenv("RATELIMIT_EXT_HTTP_ADDR", "  ")
	t.Setenv("LOG_LEVEL", "warn") // envoyproxy/ratelimit's, beside our empty one
	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !c.watch || c.bounds.MaxEntries != 32 || c.shutdownTimeout != 10*time.Second || c.xds.backoff.Jitter != 0.5 ||
		c.extAuthz.FailureMode != extauthz.ModeEnvoy || c.grpcAddr != defaultGRPCAddr ||
		c.httpAddr != defaultHTTPAddr {
		t.Errorf("empty variables changed the defaults: %+v", c)
	}
	if c.logLevel != "warn" {
		t.Errorf("log level %q: LOG_LEVEL=warn lost to an empty RATELIMIT_EXT_LOG_LEVEL", c.logLevel)
	}
}

// A flag given empty (--redis-url= from a templated command line whose value came out
// empty), or as spaces, counts as not given, as a variable set empty does: the variable
// below it applies, ours or envoyproxy/ratelimit's, else the default; what is served
// is what the start's notes say. --key-prefix= is the exception: no prefix.
func TestFlagsGivenEmptyAreUnset(t *testing.T) {
	const theirTLS = "used: gRPC is served over TLS (GRPC_SERVER_TLS_CERT, GRPC_SERVER_TLS_KEY)"
	tlsOn := map[string]string{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key"}
	for _, tc := range []struct {
		env  map[string]string
		args []string
		ok   func(*serveConfig) bool
		said string // in the start's notes and warnings ("" for nothing to check)
	}{
		{tlsOn, []string{"--grpc-tls-cert=", "--grpc-tls-key="},
			func(c *serveConfig) bool { return c.tls.cert == "/certs/tls.crt" && c.tls.key == "/certs/tls.key" }, theirTLS},
		{tlsOn, []string{"--grpc-tls-cert", "", "--grpc-tls-key", " "},
			func(c *serveConfig) bool { return c.tls.cert == "/certs/tls.crt" && c.tls.key == "/certs/tls.key" }, theirTLS},
		{map[string]string{"REDIS_URL": "r:6379"}, []string{"--redis-url="},
			func(c *serveConfig) bool { return c.engine == "redis" && c.redis().URL == "redis://r:6379" }, "mapped to RATELIMIT_EXT_REDIS_URL=redis://r:6379"},
		{map[string]string{"RATELIMIT_EXT_WATCH": "false"}, []string{"--watch="}, func(c *serveConfig) bool { return !c.watch }, ""},
		// A switch given alone is given (true), and takes no value: "" after it is not one.
		{map[string]string{"RATELIMIT_EXT_WATCH": "false"}, []string{"--watch", "--grpc-addr", ""},
			func(c *serveConfig) bool { return c.watch && c.grpcAddr == defaultGRPCAddr }, ""},
		{map[string]string{"LOG_LEVEL": "warn"}, []string{"--log-level="}, func(c *serveConfig) bool { return c.logLevel == "warn" }, ""},
		{nil, []string{"--grpc-addr", "", "--http-addr=", "--max-entries="}, func(c *serveConfig) bool {
			return c.grpcAddr == defaultGRPCAddr && c.httpAddr == defaultHTTPAddr && c.bounds.MaxEntries == 32
		}, ""},
		{nil, []string{"--xds-server", "x:1", "--xds-node-id", ""}, func(c *serveConfig) bool { return c.xds.nodeID == "default" }, ""},
		{map[string]string{"CACHE_KEY_PREFIX": "theirs:"}, []string{"--key-prefix="}, func(c *serveConfig) bool { return c.keyPrefix == "" }, ""},
		{map[string]string{"RATELIMIT_EXT_KEY_PREFIX": "ours:"}, []string{"--key-prefix", ""}, func(c *serveConfig) bool { return c.keyPrefix == "" }, ""},
		{map[string]string{"CACHE_KEY_PREFIX": "theirs:"}, []string{"--key-prefix= "}, func(c *serveConfig) bool { return c.keyPrefix == "theirs:" }, ""},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(tc.args)
		if err != nil || !tc.ok(c) {
			t.Errorf("%v %q: %v; want each flag given empty read as not given (but --key-prefix=: no prefix)", tc.env, tc.args, err)
			continue
		}
		if said := ignoredAtStart(c); !strings.Contains(said, tc.said) {
			t.Errorf("%v %q: the start says %q, want %q", tc.env, tc.args, said, tc.said)
		}
	}
}

// A Redis setting given empty on the memory engine sets nothing: no warning that it has
// no effect.
func TestFlagGivenEmptyIsNotWarnedUnused(t *testing.T) {
	isolateEnv(t)
	c, err := loadServeConfig([]string{"--redis-tls-ca=", "--redis-mode", ""})
	if err != nil {
		t.Fatal(err)
	}
	if said := ignoredAtStart(c); strings.Contains(said, "settings have no effect") {
		t.Errorf("the start says %q, want no settings named without effect", said)
	}
}

// RATELIMIT_EXT_KEY_PREFIX set empty is no prefix, as it always was: read as unset, it
// would move every counter to new keys on an upgrade. Spaces only still count as
// unset, and envoyproxy/ratelimit's CACHE_KEY_PREFIX loses to our empty one.
func TestEmptyKeyPrefixIsNoPrefix(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"RATELIMIT_EXT_KEY_PREFIX": ""}, ""},
		{map[string]string{"RATELIMIT_EXT_KEY_PREFIX": "", "CACHE_KEY_PREFIX": "theirs:"}, ""},
		{map[string]string{"RATELIMIT_EXT_KEY_PREFIX": "  "}, "rlx:"},
		{map[string]string{"CACHE_KEY_PREFIX": "theirs:"}, "theirs:"},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(nil)
		if err != nil {
			t.Fatalf("%v: %v", tc.env, err)
		}
		if c.keyPrefix != tc.want {
			t.Errorf("%v: key prefix %q, want %q", tc.env, c.keyPrefix, tc.want)
		}
	}
}

// ignoredAtStart is what serve logs at start about the settings: the notes on
// envoyproxy/ratelimit's variables, then its own warnings of settings ignored.
func ignoredAtStart(c *serveConfig) string {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	legacyenv.Log(log, c.legacy)
	c.warnIgnored(log)
	return buf.String()
}
