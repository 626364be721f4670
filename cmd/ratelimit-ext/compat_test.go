package main

import (
	"strings"
	"testing"
)

// fakeEnv is a process environment for applyLegacyEnv.
type fakeEnv map[string]string

func (e fakeEnv) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e fakeEnv) set(k, v string) error          { e[k] = v; return nil }

func TestLegacyEnvironment(t *testing.T) {
	cases := []struct {
		name string
		in   fakeEnv
		want map[string]string // our variables afterwards
		err  string
	}{
		{"ports and log level", fakeEnv{"PORT": "8080", "GRPC_PORT": "8081", "LOG_LEVEL": "DEBUG"},
			map[string]string{"RATELIMIT_EXT_HTTP_ADDR": "0.0.0.0:8080", "RATELIMIT_EXT_GRPC_ADDR": "0.0.0.0:8081", "RATELIMIT_EXT_LOG_LEVEL": "debug"}, ""},
		{"hosts", fakeEnv{"GRPC_HOST": "127.0.0.1", "GRPC_PORT": "9000"},
			map[string]string{"RATELIMIT_EXT_GRPC_ADDR": "127.0.0.1:9000"}, ""},
		{"runtime layout", fakeEnv{"RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit"},
			map[string]string{"RATELIMIT_EXT_CONFIG_DIR": "/data/ratelimit/config"}, ""},
		{"single redis with auth and TLS", fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_AUTH": "s3cret", "REDIS_TLS": "true"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "rediss://:s3cret@redis.svc:6379"}, ""},
		{"cluster", fakeEnv{"REDIS_URL": "a:6379,b:6379,c:6379", "REDIS_TYPE": "CLUSTER"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://a:6379?addr=b:6379&addr=c:6379", "RATELIMIT_EXT_REDIS_MODE": "cluster"}, ""},
		{"sentinel", fakeEnv{"REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_TYPE": "sentinel"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://s1:26379?addr=s2:26379", "RATELIMIT_EXT_REDIS_MODE": "sentinel", "RATELIMIT_EXT_REDIS_SENTINEL_MASTER": "mymaster"}, ""},
		{"unix socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_SOCKET_TYPE": "unix"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "unix:///var/run/redis.sock"}, ""},
		{"our own variable wins", fakeEnv{"SHADOW_MODE": "true", "RATELIMIT_EXT_SHADOW_MODE": "false"},
			map[string]string{"RATELIMIT_EXT_SHADOW_MODE": "false"}, ""},
		{"xDS with their default server", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW"},
			map[string]string{"RATELIMIT_EXT_CONFIG_SOURCE": "xds", "RATELIMIT_EXT_XDS_SERVER": "localhost:18000"}, ""},
		{"xDS node, metadata and size", fakeEnv{"CONFIG_TYPE": "grpc_xds_sotw", "CONFIG_GRPC_XDS_SERVER_URL": "xds:18001",
			"CONFIG_GRPC_XDS_NODE_ID": "rl", "CONFIG_GRPC_XDS_NODE_METADATA": "a=1,b=2", "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES": "8388608"},
			map[string]string{"RATELIMIT_EXT_XDS_SERVER": "xds:18001", "RATELIMIT_EXT_XDS_NODE_ID": "rl",
				"RATELIMIT_EXT_XDS_NODE_METADATA": "a=1,b=2", "RATELIMIT_EXT_XDS_MAX_MESSAGE_BYTES": "8388608"}, ""},
		{"xDS backoff", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL": "5s",
			"XDS_CLIENT_BACKOFF_MAX_INTERVAL": "2m", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR": "0.3", "XDS_CLIENT_BACKOFF_JITTER": "false",
			"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL": "3s"},
			map[string]string{"RATELIMIT_EXT_XDS_BACKOFF_INITIAL": "5s", "RATELIMIT_EXT_XDS_BACKOFF_MAX": "2m",
				"RATELIMIT_EXT_XDS_BACKOFF_JITTER": "0"}, ""},
		{"the retry interval is the first wait", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL": "3s",
			"XDS_CLIENT_BACKOFF_RANDOM_FACTOR": "0.3", "XDS_CLIENT_BACKOFF_JITTER": "true"},
			map[string]string{"RATELIMIT_EXT_XDS_BACKOFF_INITIAL": "3s", "RATELIMIT_EXT_XDS_BACKOFF_JITTER": "0.3"}, ""},
		{"xDS over mutual TLS", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "true",
			"CONFIG_GRPC_XDS_CLIENT_TLS_CERT": "/certs/tls.crt", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": "/certs/tls.key",
			"CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "/certs/ca.crt", "CONFIG_GRPC_XDS_SERVER_TLS_SAN": "xds.internal"},
			map[string]string{"RATELIMIT_EXT_XDS_TLS": "true", "RATELIMIT_EXT_XDS_TLS_CERT": "/certs/tls.crt",
				"RATELIMIT_EXT_XDS_TLS_KEY": "/certs/tls.key", "RATELIMIT_EXT_XDS_TLS_CA": "/certs/ca.crt",
				"RATELIMIT_EXT_XDS_TLS_SERVER_NAME": "xds.internal"}, ""},
		{"xDS TLS files without USE_TLS are not used, as there", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW",
			"CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "/certs/ca.crt"},
			map[string]string{"RATELIMIT_EXT_XDS_TLS_CA": "", "RATELIMIT_EXT_XDS_TLS": ""}, ""},
		{"xDS headers", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": "x-tenant:a, authorization:Bearer t:k"},
			map[string]string{"RATELIMIT_EXT_XDS_HEADERS": "x-tenant=a,authorization=Bearer t:k"}, ""},
		{"start without the first config", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "FORCE_START_WITHOUT_INITIAL_CONFIG": "TRUE"},
			map[string]string{"RATELIMIT_EXT_XDS_START_WITHOUT_RULES": "true"}, ""},
		{"xDS variables without CONFIG_TYPE=GRPC_XDS_SOTW are not used, as there", fakeEnv{"CONFIG_TYPE": "FILE",
			"CONFIG_GRPC_XDS_SERVER_URL": "xds:18001", "FORCE_START_WITHOUT_INITIAL_CONFIG": "true"},
			map[string]string{"RATELIMIT_EXT_CONFIG_SOURCE": "", "RATELIMIT_EXT_XDS_SERVER": "", "RATELIMIT_EXT_XDS_START_WITHOUT_RULES": ""}, ""},
		{"our own xDS variable wins", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "theirs:1",
			"RATELIMIT_EXT_XDS_SERVER": "ours:1"}, map[string]string{"RATELIMIT_EXT_XDS_SERVER": "ours:1"}, ""},
		{"unknown config type", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_DELTA"}, nil, "CONFIG_TYPE=GRPC_XDS_DELTA: want FILE or GRPC_XDS_SOTW"},
		{"bad USE_TLS", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "yes please"}, nil, "CONFIG_GRPC_XDS_SERVER_USE_TLS"},
		{"bad headers", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": "token"}, nil, "is not key:value"},
		{"bad port", fakeEnv{"PORT": "http"}, nil, "not a port"},
		{"bad redis type", fakeEnv{"REDIS_URL": "a:1", "REDIS_TYPE": "ring"}, nil, "REDIS_TYPE=ring"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := applyLegacyEnv(c.in.lookup, c.in.set)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.want {
				if c.in[k] != v {
					t.Errorf("%s = %q, want %q", k, c.in[k], v)
				}
			}
		})
	}
}

// Secrets (the xDS headers may carry a token, the Redis URL REDIS_AUTH's password) are
// mapped, but the startup notes only say so; a URL without a password is still shown.
func TestLegacySecretsAreNotLogged(t *testing.T) {
	for _, tc := range []struct {
		env           fakeEnv
		legacy, ours  string
		secret, shown string
	}{
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": "authorization:Bearer s3cret"},
			"CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "RATELIMIT_EXT_XDS_HEADERS", "s3cret", ""},
		{fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_AUTH": "s3cret"}, "REDIS_URL", "RATELIMIT_EXT_REDIS_URL", "s3cret", ""},
		{fakeEnv{"REDIS_URL": "/run/redis.sock", "REDIS_SOCKET_TYPE": "unix", "REDIS_AUTH": "u:s3cret"}, "REDIS_URL", "RATELIMIT_EXT_REDIS_URL", "s3cret", ""},
		{fakeEnv{"REDIS_URL": "redis.svc:6379"}, "REDIS_URL", "RATELIMIT_EXT_REDIS_URL", "", "redis://redis.svc:6379"},
	} {
		notes, err := applyLegacyEnv(tc.env.lookup, tc.env.set)
		if err != nil {
			t.Fatal(err)
		}
		if tc.secret != "" && !strings.Contains(tc.env[tc.ours], tc.secret) {
			t.Errorf("%s = %q: the secret was not mapped", tc.ours, tc.env[tc.ours])
		}
		seen := false
		for _, n := range notes {
			if tc.secret != "" && strings.Contains(n.outcome, tc.secret) {
				t.Errorf("%s: %q shows the secret", n.name, n.outcome)
			}
			if n.name == tc.legacy && strings.Contains(n.outcome, tc.ours) {
				seen = true
				if !strings.Contains(n.outcome, tc.shown) {
					t.Errorf("%s: %q, want it to show %q", n.name, n.outcome, tc.shown)
				}
			}
		}
		if !seen {
			t.Errorf("no note for %s: %v", tc.legacy, notes)
		}
	}
}

// Variables we do not map are reported, with what to use instead.
func TestLegacyEnvironmentReportsIgnored(t *testing.T) {
	env := fakeEnv{"USE_PROMETHEUS": "true", "NEAR_LIMIT_RATIO": "0.9", "LOCAL_CACHE_SIZE_IN_BYTES": "1000000"}
	notes, err := applyLegacyEnv(env.lookup, env.set)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 3 {
		t.Fatalf("notes %v, want one per variable", notes)
	}
	for _, n := range notes {
		if !strings.HasPrefix(n.outcome, "ignored: ") {
			t.Errorf("%s: %q", n.name, n.outcome)
		}
	}
	for k := range env {
		if strings.HasPrefix(k, "RATELIMIT_EXT_") {
			t.Errorf("an ignored variable set %s", k)
		}
	}
}
