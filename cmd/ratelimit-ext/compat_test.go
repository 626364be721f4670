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
		{"xDS rules are refused", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW"}, nil, "CONFIG_TYPE=GRPC_XDS_SOTW is not supported"},
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
