package legacyenv

import (
	"bytes"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/redis/go-redis/v9"
)

// fakeEnv is a process environment for Apply.
type fakeEnv map[string]string

func (e fakeEnv) lookup(k string) (string, bool) { v, ok := e[k]; return v, ok }
func (e fakeEnv) set(k, v string) error          { e[k] = v; return nil }

// env is e as the mapping's environment, beside a command line that gives the flags in
// given.
func (e fakeEnv) env(given map[string]string) Env {
	return Env{Lookup: e.lookup, Set: e.set, Given: given}
}

// apply maps e with no flags on the command line.
func apply(e fakeEnv) ([]Note, error) { return Apply(e.env(nil)) }

func TestLegacyEnvironment(t *testing.T) {
	// The directories under envoyproxy/ratelimit's default RUNTIME_ROOT that "exist".
	was := dirExists
	dirExists = func(dir string) bool { return dir == "/srv/runtime_data/current/ratelimit/config" }
	t.Cleanup(func() { dirExists = was })
	cases := []struct {
		name string
		in   fakeEnv
		want map[string]string // our variables afterwards
		err  string
	}{
		{"ports and log level", fakeEnv{"PORT": "8080", "GRPC_PORT": "8081", "LOG_LEVEL": "DEBUG"},
			map[string]string{"RATELIMIT_EXT_HTTP_ADDR": "0.0.0.0:8080", "RATELIMIT_EXT_GRPC_ADDR": "0.0.0.0:8081", "RATELIMIT_EXT_LOG_LEVEL": "debug"}, ""},
		{"logrus's level words", fakeEnv{"LOG_LEVEL": "Warning"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "warn"}, ""},
		{"logrus's trace is our debug", fakeEnv{"LOG_LEVEL": "TRACE", "LOG_FORMAT": "JSON"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "debug", "RATELIMIT_EXT_LOG_FORMAT": "json"}, ""},
		{"logrus's fatal is our error; a format other than json is text", fakeEnv{"LOG_LEVEL": "fatal", "LOG_FORMAT": "logfmt"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "error", "RATELIMIT_EXT_LOG_FORMAT": "text"}, ""},
		{"hosts", fakeEnv{"GRPC_HOST": "127.0.0.1", "GRPC_PORT": "9000"},
			map[string]string{"RATELIMIT_EXT_GRPC_ADDR": "127.0.0.1:9000"}, ""},
		{"hosts without ports: their default ports", fakeEnv{"GRPC_HOST": "10.0.0.5", "HOST": "10.0.0.6"},
			map[string]string{"RATELIMIT_EXT_GRPC_ADDR": "10.0.0.5:8081", "RATELIMIT_EXT_HTTP_ADDR": "10.0.0.6:8080"}, ""},
		{"runtime layout", fakeEnv{"RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit"},
			map[string]string{"RATELIMIT_EXT_CONFIG_DIR": "/data/ratelimit/config"}, ""},
		{"runtime layout: their default root", fakeEnv{"RUNTIME_SUBDIRECTORY": "ratelimit"},
			map[string]string{"RATELIMIT_EXT_CONFIG_DIR": "/srv/runtime_data/current/ratelimit/config"}, ""},
		{"runtime layout: their default root, where nothing is, stops the process", fakeEnv{"RUNTIME_SUBDIRECTORY": "elsewhere"},
			nil, "RUNTIME_SUBDIRECTORY: the rules directory it names, /srv/runtime_data/current/elsewhere/config"},
		{"runtime layout: their default root, where nothing is, beside our own directory", fakeEnv{"RUNTIME_SUBDIRECTORY": "elsewhere",
			"RATELIMIT_EXT_CONFIG_DIR": "/rules"}, map[string]string{"RATELIMIT_EXT_CONFIG_DIR": "/rules"}, ""},
		{"a unix-socket gRPC listener stops the process", fakeEnv{"GRPC_UDS": "/var/run/rl.sock"}, nil, "GRPC_UDS"},
		{"runtime layout: another app directory", fakeEnv{"RUNTIME_ROOT": "/data/", "RUNTIME_APPDIRECTORY": "rules"},
			map[string]string{"RATELIMIT_EXT_CONFIG_DIR": "/data/rules"}, ""},
		{"single redis with auth and TLS", fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_AUTH": "s3cret", "REDIS_TLS": "true"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "rediss://:s3cret@redis.svc:6379"}, ""},
		{"cluster", fakeEnv{"REDIS_URL": "a:6379,b:6379,c:6379", "REDIS_TYPE": "CLUSTER"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://a:6379?addr=b:6379&addr=c:6379", "RATELIMIT_EXT_REDIS_MODE": "cluster"}, ""},
		{"sentinel", fakeEnv{"REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_TYPE": "sentinel"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://s1:26379?addr=s2:26379", "RATELIMIT_EXT_REDIS_MODE": "sentinel", "RATELIMIT_EXT_REDIS_SENTINEL_MASTER": "mymaster"}, ""},
		{"sentinel: REDIS_AUTH is the master's, REDIS_SENTINEL_AUTH the sentinels'", fakeEnv{"REDIS_URL": "mymaster,s1:26379,s2:26379",
			"REDIS_TYPE": "sentinel", "REDIS_AUTH": "app:p@ss", "REDIS_SENTINEL_AUTH": "s3nt"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://:s3nt@s1:26379?addr=s2:26379&username=app&password=p%40ss"}, ""},
		{"sentinel: the master's password alone", fakeEnv{"REDIS_URL": "mymaster,s1:26379", "REDIS_TYPE": "sentinel", "REDIS_AUTH": "pw"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://s1:26379?password=pw"}, ""},
		{"REDIS_SENTINEL_AUTH without sentinels is not used", fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_SENTINEL_AUTH": "s3nt"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://redis.svc:6379"}, ""},
		{"unix socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_SOCKET_TYPE": "unix"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "unix:///var/run/redis.sock"}, ""},
		{"a socket path without a socket type (their default is unix)", fakeEnv{"REDIS_URL": "/var/run/redis.sock"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "unix:///var/run/redis.sock"}, ""},
		{"a TCP address without a socket type", fakeEnv{"REDIS_URL": "redis:6379"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://redis:6379"}, ""},
		{"key prefix kept as written", fakeEnv{"CACHE_KEY_PREFIX": "Edge_RL:"},
			map[string]string{"RATELIMIT_EXT_KEY_PREFIX": "Edge_RL:"}, ""},
		{"dynamic metadata", fakeEnv{"RESPONSE_DYNAMIC_METADATA": "True"},
			map[string]string{"RATELIMIT_EXT_RESPONSE_DYNAMIC_METADATA": "true"}, ""},
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
		{"rule files are not looked for with xDS, as there", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "RUNTIME_ROOT": "/data", "RUNTIME_SUBDIRECTORY": "ratelimit"},
			map[string]string{"RATELIMIT_EXT_CONFIG_DIR": ""}, ""},
		{"gRPC server over mutual TLS", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key",
			"GRPC_CLIENT_TLS_CACERT": "/certs/clients.crt", "GRPC_CLIENT_TLS_SAN": "envoy.internal"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CERT": "/certs/tls.crt", "RATELIMIT_EXT_GRPC_TLS_KEY": "/certs/tls.key",
				"RATELIMIT_EXT_GRPC_TLS_CLIENT_CA": "/certs/clients.crt", "RATELIMIT_EXT_GRPC_TLS_CLIENT_SAN": "envoy.internal"}, ""},
		{"a Kubernetes service link in GRPC_PORT (a Service named grpc) is not a port, and not used",
			fakeEnv{"GRPC_PORT": "tcp://10.96.0.9:8081", "PORT": "tcp://10.96.0.10:80"},
			map[string]string{"RATELIMIT_EXT_GRPC_ADDR": "", "RATELIMIT_EXT_HTTP_ADDR": ""}, ""},
		{"gRPC TLS files without USE_TLS are not used, as there", fakeEnv{"GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CERT": "", "RATELIMIT_EXT_GRPC_TLS_KEY": ""}, ""},
		{"Envoy Gateway's GRPC_SERVER_TLS_CA_CERT is not a client CA, as there", fakeEnv{"GRPC_SERVER_USE_TLS": "true",
			"GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key", "GRPC_SERVER_TLS_CA_CERT": "/certs/ca.crt"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CERT": "/certs/tls.crt", "RATELIMIT_EXT_GRPC_TLS_CLIENT_CA": ""}, ""},
		{"a client SAN without a client CA checks nothing, as there", fakeEnv{"GRPC_SERVER_USE_TLS": "true",
			"GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key", "GRPC_CLIENT_TLS_SAN": "envoy.internal"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CLIENT_SAN": ""}, ""},
		{"our own gRPC certificate and key win, both", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/theirs.crt",
			"GRPC_SERVER_TLS_KEY": "/theirs.key", "RATELIMIT_EXT_GRPC_TLS_CERT": "/ours.crt", "RATELIMIT_EXT_GRPC_TLS_KEY": "/ours.key"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CERT": "/ours.crt", "RATELIMIT_EXT_GRPC_TLS_KEY": "/ours.key"}, ""},
		{"Prometheus on its own port", fakeEnv{"USE_PROMETHEUS": "true", "PROMETHEUS_ADDR": ":19001"},
			map[string]string{"RATELIMIT_EXT_METRICS_ADDR": ":19001"}, ""},
		{"Prometheus on their default port", fakeEnv{"USE_PROMETHEUS": "TRUE"},
			map[string]string{"RATELIMIT_EXT_METRICS_ADDR": ":9090"}, ""},
		{"a Prometheus address without USE_PROMETHEUS is not used, as there", fakeEnv{"PROMETHEUS_ADDR": ":19001"},
			map[string]string{"RATELIMIT_EXT_METRICS_ADDR": ""}, ""},
		{"Redis URL with credentials and a database", fakeEnv{"REDIS_URL": "redis://user:p%40ss@redis.svc:6379/2"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://user:p%40ss@redis.svc:6379/2"}, ""},
		{"rediss URLs in a cluster", fakeEnv{"REDIS_URL": "rediss://a:6379,rediss://b:6379", "REDIS_TYPE": "cluster"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "rediss://a:6379?addr=b:6379", "RATELIMIT_EXT_REDIS_MODE": "cluster"}, ""},
		{"a password with URL characters", fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_AUTH": "p@ss/word"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://:p%40ss%2Fword@redis.svc:6379"}, ""},
		{"Redis over mutual TLS", fakeEnv{"REDIS_URL": "redis.svc:6380", "REDIS_TLS": "true", "REDIS_TLS_CLIENT_CERT": "/redis-certs/tls.crt",
			"REDIS_TLS_CLIENT_KEY": "/redis-certs/tls.key", "REDIS_TLS_CACERT": "/redis-certs/ca.crt"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "rediss://redis.svc:6380", "RATELIMIT_EXT_REDIS_TLS_CERT": "/redis-certs/tls.crt",
				"RATELIMIT_EXT_REDIS_TLS_KEY": "/redis-certs/tls.key", "RATELIMIT_EXT_REDIS_TLS_CA": "/redis-certs/ca.crt"}, ""},
		{"Redis TLS files without REDIS_TLS are not used, as there", fakeEnv{"REDIS_URL": "redis.svc:6379", "REDIS_TLS_CLIENT_CERT": "/redis-certs/tls.crt"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://redis.svc:6379", "RATELIMIT_EXT_REDIS_TLS_CERT": ""}, ""},
		{"unknown config type", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_DELTA"}, nil, "CONFIG_TYPE=GRPC_XDS_DELTA: want FILE or GRPC_XDS_SOTW"},
		{"bad GRPC_SERVER_USE_TLS", fakeEnv{"GRPC_SERVER_USE_TLS": "on"}, nil, `GRPC_SERVER_USE_TLS="on"`},
		{"gRPC TLS without a certificate", fakeEnv{"GRPC_SERVER_USE_TLS": "true"}, nil, "needs GRPC_SERVER_TLS_CERT"},
		{"bad USE_PROMETHEUS", fakeEnv{"USE_PROMETHEUS": "yes please"}, nil, "USE_PROMETHEUS"},
		{"bad REDIS_TLS", fakeEnv{"REDIS_URL": "a:1", "REDIS_TLS": "yes"}, nil, `REDIS_TLS="yes"`},
		{"Redis URL of another scheme", fakeEnv{"REDIS_URL": "memcache://a:1"}, nil, `scheme "memcache"`},
		{"Redis URL without a host", fakeEnv{"REDIS_URL": "redis://"}, nil, "REDIS_URL: address 1"},
		{"bad USE_TLS", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "yes please"}, nil, "CONFIG_GRPC_XDS_SERVER_USE_TLS"},
		{"bad headers", fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": "token"}, nil, "is not key:value"},
		{"bad port", fakeEnv{"PORT": "http"}, nil, "not a port"},
		{"bad redis type", fakeEnv{"REDIS_URL": "a:1", "REDIS_TYPE": "ring"}, nil, "REDIS_TYPE=ring"},
		{"quota mode for every limit stops the process", fakeEnv{"QUOTA_MODE": "true"}, nil, "set quota_mode: true on the rule entries"},
		{"bad QUOTA_MODE", fakeEnv{"QUOTA_MODE": "soft"}, nil, `QUOTA_MODE="soft"`},
		{"QUOTA_MODE=false changes nothing", fakeEnv{"QUOTA_MODE": "false", "LOG_LEVEL": "warn"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "warn"}, ""},
		{"connection age", fakeEnv{"GRPC_MAX_CONNECTION_AGE": "12h", "GRPC_MAX_CONNECTION_AGE_GRACE": "5m"},
			map[string]string{"RATELIMIT_EXT_GRPC_MAX_CONNECTION_AGE": "12h", "RATELIMIT_EXT_GRPC_MAX_CONNECTION_AGE_GRACE": "5m"}, ""},
		{"memcached stops the process", fakeEnv{"BACKEND_TYPE": "memcache", "MEMCACHE_HOST_PORT": "m:11211"}, nil, "BACKEND_TYPE=memcache"},
		{"another backend stops the process", fakeEnv{"BACKEND_TYPE": "dynamodb"}, nil, "BACKEND_TYPE=dynamodb"},
		{"BACKEND_TYPE=redis without an address stops the process", fakeEnv{"BACKEND_TYPE": "redis"}, nil, "set REDIS_URL"},
		{"Redis settings without an address stop the process", fakeEnv{"REDIS_SOCKET_TYPE": "tcp", "REDIS_AUTH": "pw"}, nil, "REDIS_URL is not"},
		{"Redis settings beside our own URL", fakeEnv{"REDIS_AUTH": "pw", "BACKEND_TYPE": "redis", "RATELIMIT_EXT_REDIS_URL": "redis://r:6379"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://r:6379"}, ""},
		{"Redis settings with the memory engine chosen", fakeEnv{"REDIS_SOCKET_TYPE": "tcp", "RATELIMIT_EXT_ENGINE": "memory"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": ""}, ""},
		{"BACKEND_TYPE=redis with an address", fakeEnv{"BACKEND_TYPE": "Redis", "REDIS_URL": "r:6379"},
			map[string]string{"RATELIMIT_EXT_REDIS_URL": "redis://r:6379"}, ""},
		{"calendar months are reported (the rules decide)", fakeEnv{"USE_CALENDAR_MONTH_RATE_LIMIT": "true", "LOG_LEVEL": "warn"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "warn"}, ""},
		{"bad USE_CALENDAR_MONTH_RATE_LIMIT", fakeEnv{"USE_CALENDAR_MONTH_RATE_LIMIT": "yes please"}, nil, "USE_CALENDAR_MONTH_RATE_LIMIT"},
		{"USE_CALENDAR_MONTH_RATE_LIMIT=false changes nothing", fakeEnv{"USE_CALENDAR_MONTH_RATE_LIMIT": "false", "LOG_LEVEL": "warn"},
			map[string]string{"RATELIMIT_EXT_LOG_LEVEL": "warn"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkApply(t, c.in, nil, c.want, c.err) })
	}
}

// checkApply maps env with the flags given and checks the outcome: an error containing
// wantErr, or else our variables afterwards holding want.
func checkApply(t *testing.T, env fakeEnv, given map[string]string, want map[string]string, wantErr string) {
	t.Helper()
	_, err := Apply(env.env(given))
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want one containing %q", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

// With envoyproxy/ratelimit's USE_CALENDAR_MONTH_RATE_LIMIT=true, rules with a month
// limit are refused, naming the limit (here a month is 30 days from the epoch, not a
// calendar month); rules without one, or the switch off, are not. (That serve stops on
// the refusal is cmd/ratelimit-ext's test.)
func TestCalendarMonthsRefuseMonthRules(t *testing.T) {
	// The note says what it does: not "ignored", as it refuses month limits.
	notes, err := apply(fakeEnv{"USE_CALENDAR_MONTH_RATE_LIMIT": "true"})
	if err != nil || len(notes) != 1 || notes[0].Ignored || !strings.HasPrefix(notes[0].Outcome, "rules with a month limit stop the start") {
		t.Errorf("USE_CALENDAR_MONTH_RATE_LIMIT=true: notes %+v (%v), want one, not ignored, saying month limits are refused", notes, err)
	}
	month, err := descriptors.Parse("q.yaml", []byte("domain: q\ndescriptors:\n  - key: org\n    rate_limit: {unit: month, requests_per_unit: 1000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	day, err := descriptors.Parse("q.yaml", []byte("domain: q\ndescriptors:\n  - key: org\n    rate_limit: {unit: day, requests_per_unit: 1000}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := MonthLimitsRefused(true, month); err == nil || !strings.Contains(err.Error(), "=true, and 1 limit has unit: month (q: org (q.yaml:4)): it would count") {
		t.Errorf("a month limit with calendar months asked for: %v, want an error naming it", err)
	}
	two, err := descriptors.Parse("q.yaml", []byte("domain: q\ndescriptors:\n  - key: org\n    rate_limits: [{unit: month, requests_per_unit: 1000}, {unit: month, requests_per_unit: 9}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	// Two on one descriptor, written on one line: told apart by their index (the
	// limit's ID, as /debug/config shows it).
	if err := MonthLimitsRefused(true, two); err == nil || !strings.Contains(err.Error(), "=true, and 2 limits have unit: month (q: org#0 (q.yaml:4), q: org#1 (q.yaml:4)): they would count") {
		t.Errorf("two month limits with calendar months asked for: %v", err)
	}
	// The first five are named, each where it is written.
	var yaml strings.Builder
	yaml.WriteString("domain: q\ndescriptors:\n")
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g"} {
		yaml.WriteString("  - key: " + k + "\n    rate_limits:\n      - {unit: month, requests_per_unit: 1}\n      - {unit: day, requests_per_unit: 1}\n")
	}
	seven, err := descriptors.Parse("m.yaml", []byte(yaml.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := "=true, and 7 limits have unit: month (q: a#0 (m.yaml:5), q: b#0 (m.yaml:9), q: c#0 (m.yaml:13), q: d#0 (m.yaml:17), q: e#0 (m.yaml:21)): they would count"
	if err := MonthLimitsRefused(true, seven); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("seven month limits: %v, want %q", err, want)
	}
	if err := MonthLimitsRefused(true, day); err != nil {
		t.Errorf("no month limit: %v", err)
	}
	if err := MonthLimitsRefused(false, month); err != nil {
		t.Errorf("calendar months not asked for: %v", err)
	}
}

// A flag on the command line wins over envoyproxy/ratelimit's variables as our own
// variable does: Redis settings beside --redis-url, a RUNTIME_* directory that does not
// exist beside --config-dir, and memcached beside --engine start as they did.
func TestLegacyVariablesBesideFlags(t *testing.T) {
	for _, c := range []struct {
		env  fakeEnv
		args []string
	}{
		{fakeEnv{"REDIS_SOCKET_TYPE": "tcp", "REDIS_AUTH": "pw"}, []string{"--redis-url", "redis://r:6379"}},
		{fakeEnv{"REDIS_SOCKET_TYPE": "tcp"}, []string{"--engine=memory"}},
		{fakeEnv{"BACKEND_TYPE": "memcache"}, []string{"-redis-url=redis://r:6379"}},
		{fakeEnv{"RUNTIME_SUBDIRECTORY": "nowhere"}, []string{"--config-dir", "/rules"}},
	} {
		notes, err := Apply(c.env.env(flagsGiven(c.args)))
		if err != nil {
			t.Errorf("%v beside %v: %v", c.env, c.args, err)
			continue
		}
		for _, n := range notes {
			if strings.HasPrefix(n.Outcome, "mapped to ") {
				t.Errorf("%v beside %v: %s %s, want it ignored for the flag", c.env, c.args, n.Name, n.Outcome)
			}
		}
	}
	if _, err := Apply(fakeEnv{"REDIS_SOCKET_TYPE": "tcp"}.env(flagsGiven([]string{"--log-level", "debug"}))); err == nil {
		t.Error("Redis settings without any address of ours: started, want refused")
	}
}

// With no RUNTIME_* variable set, envoyproxy/ratelimit's own rules directory is read
// when it exists (rules mounted where the image swapped out read them), and not over
// our own setting; where it does not exist, nothing changes.
func TestLegacyDefaultRulesDirectory(t *testing.T) {
	was := dirExists
	t.Cleanup(func() { dirExists = was })
	for _, c := range []struct {
		name   string
		exists bool
		in     fakeEnv
		want   string
	}{
		{"their directory exists", true, fakeEnv{}, "/srv/runtime_data/current/config"},
		{"our setting wins", true, fakeEnv{"RATELIMIT_EXT_CONFIG_DIR": "/rules"}, "/rules"},
		{"their directory does not exist", false, fakeEnv{}, ""},
		{"rules from xDS", true, fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW"}, ""},
		{"rules from our xDS server", true, fakeEnv{"RATELIMIT_EXT_XDS_SERVER": "xds:18000"}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			dirExists = func(dir string) bool { return c.exists && dir == "/srv/runtime_data/current/config" }
			notes, err := apply(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.in["RATELIMIT_EXT_CONFIG_DIR"]; got != c.want {
				t.Errorf("RATELIMIT_EXT_CONFIG_DIR = %q, want %q", got, c.want)
			}
			said := slices.ContainsFunc(notes, func(n Note) bool {
				return strings.Contains(n.Outcome, "default, /srv/runtime_data/current/config")
			})
			if said != (c.want == "/srv/runtime_data/current/config") {
				t.Errorf("notes %v: a note on the default directory %v, want %v", notes, said, !said)
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
		{fakeEnv{"REDIS_URL": "redis://user:s3cret@redis.svc:6379"}, "REDIS_URL", "RATELIMIT_EXT_REDIS_URL", "s3cret", ""},
		{fakeEnv{"REDIS_URL": "redis.svc:6379"}, "REDIS_URL", "RATELIMIT_EXT_REDIS_URL", "", "redis://redis.svc:6379"},
	} {
		notes, err := apply(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		if tc.secret != "" && !strings.Contains(tc.env[tc.ours], tc.secret) {
			t.Errorf("%s = %q: the secret was not mapped", tc.ours, tc.env[tc.ours])
		}
		seen := false
		for _, n := range notes {
			if tc.secret != "" && strings.Contains(n.Outcome, tc.secret) {
				t.Errorf("%s: %q shows the secret", n.Name, n.Outcome)
			}
			if n.Name == tc.legacy && strings.Contains(n.Outcome, tc.ours) {
				seen = true
				if !strings.Contains(n.Outcome, tc.shown) {
					t.Errorf("%s: %q, want it to show %q", n.Name, n.Outcome, tc.shown)
				}
			}
		}
		if !seen {
			t.Errorf("no note for %s: %v", tc.legacy, notes)
		}
	}
}

// A malformed CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS item (our key=value format
// where theirs is key:value, with or without a ':' in the token, or a bare token) is
// named by its place, not its text,
// which may be a token, as --xds-headers does.
func TestLegacyHeadersErrorHidesTheItem(t *testing.T) {
	for _, v := range []string{"authorization=Bearer s3cret", "x-tenant:a, s3cret", ":s3cret", "authorization=Bearer s3cret:x"} {
		_, err := apply(fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": v})
		if err == nil || !strings.Contains(err.Error(), "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS") || !strings.Contains(err.Error(), "key:value") {
			t.Fatalf("%q: error %v, want one naming the variable and its format", v, err)
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%q: error %q shows the item, which may be a secret", v, err)
		}
	}
}

// Variables we do not map are reported, with what to use instead.
func TestLegacyEnvironmentReportsIgnored(t *testing.T) {
	env := fakeEnv{"USE_STATSD": "true", "NEAR_LIMIT_RATIO": "0.9", "LOCAL_CACHE_SIZE_IN_BYTES": "1000000"}
	notes, err := apply(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 3 {
		t.Fatalf("notes %v, want one per variable", notes)
	}
	for _, n := range notes {
		if !strings.HasPrefix(n.Outcome, "ignored: ") {
			t.Errorf("%s: %q", n.Name, n.Outcome)
		}
	}
	for k := range env {
		if strings.HasPrefix(k, "RATELIMIT_EXT_") {
			t.Errorf("an ignored variable set %s", k)
		}
	}
}

// A password in an address that cannot be read must not reach the error message.
func TestLegacyRedisErrorsHideTheAddress(t *testing.T) {
	for _, env := range []fakeEnv{
		{"REDIS_URL": "redis://user:s3cret@[bad"},
		// A plain address that is not host:port is refused here, before it reaches a
		// URL that carries REDIS_AUTH (whose parse error would quote it whole).
		{"REDIS_URL": "mymaster,s1 :26379,s2:26379", "REDIS_TYPE": "sentinel", "REDIS_AUTH": "s3cret"},
		{"REDIS_URL": "h%:6379", "REDIS_AUTH": "s3cret"},
	} {
		_, err := apply(env)
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%v: error %v: want one that does not show the password", env["REDIS_URL"], err)
		}
	}
}

// Credentials on a cluster's or Sentinel's later addresses are not used, and a note
// says so (without showing them).
func TestLegacyLaterAddressCredentialsAreReported(t *testing.T) {
	env := fakeEnv{"REDIS_URL": "redis://a:6379,redis://u:s3cret@b:6379", "REDIS_TYPE": "cluster"}
	notes, err := apply(env)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(env["RATELIMIT_EXT_REDIS_URL"], "s3cret") {
		t.Errorf("URL %q carries the second address's password", env["RATELIMIT_EXT_REDIS_URL"])
	}
	if !slices.ContainsFunc(notes, func(n Note) bool {
		return n.Name == "REDIS_URL" && strings.Contains(n.Outcome, "address 2 are not used") && !strings.Contains(n.Outcome, "s3cret")
	}) {
		t.Errorf("no note says address 2's credentials are not used: %v", notes)
	}
}

// HOST and GRPC_HOST that shaped a listener say so.
func TestLegacyHostNotes(t *testing.T) {
	env := fakeEnv{"HOST": "127.0.0.1", "PORT": "8080", "GRPC_HOST": "127.0.0.2"}
	notes, err := apply(env)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"HOST": "used: the host of RATELIMIT_EXT_HTTP_ADDR", "GRPC_HOST": "mapped to RATELIMIT_EXT_GRPC_ADDR=127.0.0.2:8081"} {
		if !slices.ContainsFunc(notes, func(n Note) bool { return n.Name == name && n.Outcome == want }) {
			t.Errorf("no note %s: %q in %v", name, want, notes)
		}
	}
}

// When our own variable is set, the legacy variables that would have shaped it are
// reported ignored, not used: the notes are the record of what is in effect.
func TestLegacyNotesDoNotClaimOverriddenVariables(t *testing.T) {
	for _, tc := range []struct {
		env     fakeEnv
		ignored []string
	}{
		{fakeEnv{"HOST": "10.0.0.6", "PORT": "8080", "RATELIMIT_EXT_HTTP_ADDR": "127.0.0.1:9"}, []string{"HOST", "PORT"}},
		{fakeEnv{"REDIS_URL": "mymaster,s1:26379", "REDIS_TYPE": "sentinel", "REDIS_AUTH": "pw", "REDIS_SENTINEL_AUTH": "sp",
			"RATELIMIT_EXT_REDIS_URL": "redis://mine:26379"}, []string{"REDIS_URL", "REDIS_AUTH", "REDIS_SENTINEL_AUTH"}},
		{fakeEnv{"REDIS_URL": "h:6379", "REDIS_AUTH": "pw", "REDIS_TLS": "true", "REDIS_SOCKET_TYPE": "tcp",
			"RATELIMIT_EXT_REDIS_URL": "redis://mine:6379"}, []string{"REDIS_URL", "REDIS_AUTH", "REDIS_TLS", "REDIS_SOCKET_TYPE"}},
		{fakeEnv{"REDIS_URL": "/run/redis.sock", "REDIS_AUTH": "pw", "RATELIMIT_EXT_REDIS_URL": "redis://mine:6379"},
			[]string{"REDIS_URL", "REDIS_AUTH"}},
	} {
		notes, err := apply(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range tc.ignored {
			i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == name })
			if i < 0 || !strings.HasPrefix(notes[i].Outcome, "ignored: ") {
				t.Errorf("%v: %s: %v, want it reported ignored", tc.env, name, notes)
			}
		}
	}
}

// The sentinel URL the mapping builds means to go-redis what the variables meant to
// envoyproxy/ratelimit: REDIS_AUTH authenticates to the master, REDIS_SENTINEL_AUTH to
// the sentinels.
func TestLegacySentinelCredentials(t *testing.T) {
	env := fakeEnv{"REDIS_URL": "mymaster,s1:26379,s2:26379", "REDIS_TYPE": "sentinel",
		"REDIS_AUTH": "app:p@ss:word", "REDIS_SENTINEL_AUTH": "s3nt&x"}
	notes, err := apply(env)
	if err != nil {
		t.Fatal(err)
	}
	o, err := redis.ParseFailoverURL(env["RATELIMIT_EXT_REDIS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	if o.Username != "app" || o.Password != "p@ss:word" || o.SentinelUsername != "" || o.SentinelPassword != "s3nt&x" ||
		!slices.Equal(o.SentinelAddrs, []string{"s1:26379", "s2:26379"}) {
		t.Errorf("master %q/%q, sentinels %q/%q at %v", o.Username, o.Password, o.SentinelUsername, o.SentinelPassword, o.SentinelAddrs)
	}
	for _, n := range notes {
		if strings.Contains(n.Outcome, "p@ss") || strings.Contains(n.Outcome, "s3nt") {
			t.Errorf("a startup note shows a password: %s: %s", n.Name, n.Outcome)
		}
	}
}

// theirVariables are the settings envoyproxy/ratelimit reads (src/settings/settings.go,
// the version make bench pins, and four that later versions added).
var theirVariables = []string{
	"USE_CALENDAR_MONTH_RATE_LIMIT", "DETAILED_METRICS_MODE", "REDIS_USE_EXPLICIT_PIPELINE",
	"REDIS_PERSECOND_USE_EXPLICIT_PIPELINE",
	"BACKEND_TYPE", "CACHE_KEY_PREFIX", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
	"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "CONFIG_GRPC_XDS_NODE_ID",
	"CONFIG_GRPC_XDS_NODE_METADATA", "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL",
	"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "CONFIG_GRPC_XDS_SERVER_TLS_SAN",
	"CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_SERVER_USE_TLS", "CONFIG_TYPE", "DEBUG_HOST",
	"DEBUG_PORT", "DISABLE_STATS", "EXPIRATION_JITTER_MAX_SECONDS", "EXTRA_TAGS",
	"FORCE_START_WITHOUT_INITIAL_CONFIG", "GRPC_CLIENT_TLS_CACERT", "GRPC_CLIENT_TLS_SAN",
	"GRPC_HOST", "GRPC_MAX_CONNECTION_AGE", "GRPC_MAX_CONNECTION_AGE_GRACE", "GRPC_PORT",
	"GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY", "GRPC_SERVER_USE_TLS", "GRPC_UDS",
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", "HOST", "LIMIT_LIMIT_HEADER", "LIMIT_REMAINING_HEADER",
	"LIMIT_RESET_HEADER", "LIMIT_RESPONSE_HEADERS_ENABLED", "LOCAL_CACHE_SIZE_IN_BYTES", "LOG_FORMAT",
	"LOG_LEVEL", "MEMCACHE_HOST_PORT", "MEMCACHE_MAX_IDLE_CONNS", "MEMCACHE_SRV",
	"MEMCACHE_SRV_REFRESH", "MEMCACHE_TLS", "MEMCACHE_TLS_CACERT", "MEMCACHE_TLS_CLIENT_CERT",
	"MEMCACHE_TLS_CLIENT_KEY", "MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION", "MERGE_DOMAIN_CONFIG",
	"NEAR_LIMIT_RATIO", "PORT", "PROMETHEUS_ADDR", "PROMETHEUS_MAPPER_YAML", "PROMETHEUS_PATH",
	"QUOTA_MODE", "REDIS_AUTH", "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", "REDIS_PERSECOND",
	"REDIS_PERSECOND_AUTH", "REDIS_PERSECOND_PIPELINE_LIMIT", "REDIS_PERSECOND_PIPELINE_WINDOW",
	"REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR", "REDIS_PERSECOND_POOL_SIZE",
	"REDIS_PERSECOND_SENTINEL_AUTH", "REDIS_PERSECOND_SOCKET_TYPE", "REDIS_PERSECOND_TIMEOUT",
	"REDIS_PERSECOND_TLS", "REDIS_PERSECOND_TYPE", "REDIS_PERSECOND_URL", "REDIS_PIPELINE_LIMIT",
	"REDIS_PIPELINE_WINDOW", "REDIS_POOL_ON_EMPTY_BEHAVIOR", "REDIS_POOL_SIZE", "REDIS_SENTINEL_AUTH",
	"REDIS_SOCKET_TYPE", "REDIS_TIMEOUT", "REDIS_TLS", "REDIS_TLS_CACERT", "REDIS_TLS_CLIENT_CERT",
	"REDIS_TLS_CLIENT_KEY", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "REDIS_TYPE", "REDIS_URL",
	"RESPONSE_DYNAMIC_METADATA", "RUNTIME_APPDIRECTORY", "RUNTIME_IGNOREDOTFILES", "RUNTIME_ROOT",
	"RUNTIME_SUBDIRECTORY", "RUNTIME_WATCH_ROOT", "SHADOW_MODE", "STATSD_HOST", "STATSD_PORT",
	"STATS_FLUSH_INTERVAL", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "TRACING_ENABLED",
	"TRACING_EXPORTER_PROTOCOL", "TRACING_SAMPLING_RATE", "TRACING_SERVICE_INSTANCE_ID",
	"TRACING_SERVICE_NAME", "TRACING_SERVICE_NAMESPACE", "USE_DOG_STATSD",
	"USE_DOG_STATSD_MOGRIFIERS", "USE_PROMETHEUS", "USE_STATSD",
	"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "XDS_CLIENT_BACKOFF_JITTER",
	"XDS_CLIENT_BACKOFF_MAX_INTERVAL", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR",
	"XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES",
}

// Every envoyproxy/ratelimit variable, set alone, is mapped or reported with a note, or
// stops the process with an error that names it: none is silently dropped.
func TestEveryLegacyVariableIsReported(t *testing.T) {
	for _, v := range theirVariables {
		env := fakeEnv{v: "true"}
		notes, err := apply(env)
		if err != nil {
			if !strings.Contains(err.Error(), v) {
				t.Errorf("%s=true: the error does not name it: %v", v, err)
			}
			continue
		}
		if !slices.ContainsFunc(notes, func(n Note) bool { return n.Name == v }) {
			t.Errorf("%s=true: no note says what became of it", v)
		}
	}
}

// A variable that had no effect is logged as a warning, so that it shows at
// envoyproxy/ratelimit's default level (WARN); a mapped one is information.
func TestLegacyIgnoredVariablesAreWarnings(t *testing.T) {
	env := fakeEnv{"USE_STATSD": "true", "LOG_LEVEL": "warning"}
	notes, err := apply(env)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	Log(slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelWarn})), notes)
	if !strings.Contains(out.String(), "variable=USE_STATSD") || strings.Contains(out.String(), "LOG_LEVEL") {
		t.Errorf("at level warn the log reads:\n%s\nwant USE_STATSD (ignored) and not LOG_LEVEL (mapped)", out.String())
	}
}

// With a unix-socket Redis address every Redis variable set still gets a note: a socket
// is one standalone server reached without TLS. A cluster or Sentinel on a socket is
// refused, as envoyproxy/ratelimit reaches those over TCP only and would not start; with
// REDIS_SOCKET_TYPE=unix beside host:port addresses they are reached over TCP, as there.
func TestLegacyRedisSocketNotesEveryVariable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     fakeEnv
		url     string            // RATELIMIT_EXT_REDIS_URL afterwards
		outcome map[string]string // the start of a variable's note
		err     string
	}{
		{"TLS asked for on a socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_TLS": "true", "REDIS_TLS_CACERT": "/ca.crt"},
			"unix:///var/run/redis.sock", map[string]string{"REDIS_TLS": "ignored: ", "REDIS_TLS_CACERT": "ignored: "}, ""},
		{"plaintext and single on a socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_SOCKET_TYPE": "unix",
			"REDIS_TLS": "false", "REDIS_TYPE": "SINGLE"}, "unix:///var/run/redis.sock",
			map[string]string{"REDIS_TLS": "used: ", "REDIS_TYPE": "used: one Redis server", "REDIS_SOCKET_TYPE": "used: a unix:// socket"}, ""},
		{"a cluster on a socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_TYPE": "cluster"}, "", nil, "REDIS_TYPE=cluster with a unix socket"},
		{"a cluster on a socket, the type given", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_SOCKET_TYPE": "unix", "REDIS_TYPE": "CLUSTER"},
			"", nil, "REDIS_TYPE=CLUSTER with a unix socket"},
		{"sentinels on a socket", fakeEnv{"REDIS_URL": "mymaster,/var/run/sentinel.sock", "REDIS_SOCKET_TYPE": "unix", "REDIS_TYPE": "sentinel"},
			"", nil, "REDIS_TYPE=sentinel with a unix socket"},
		{"an unknown type on a socket", fakeEnv{"REDIS_URL": "/var/run/redis.sock", "REDIS_TYPE": "ring"}, "", nil, "REDIS_TYPE=ring: want single, cluster or sentinel"},
		{"a cluster beside REDIS_SOCKET_TYPE=unix is reached over TCP, as there",
			fakeEnv{"REDIS_URL": "a:6379,b:6379", "REDIS_SOCKET_TYPE": "unix", "REDIS_TYPE": "cluster"}, "redis://a:6379?addr=b:6379",
			map[string]string{"REDIS_SOCKET_TYPE": "ignored: REDIS_TYPE=cluster", "REDIS_TYPE": "mapped to RATELIMIT_EXT_REDIS_MODE=cluster"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, err := apply(tc.env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.env["RATELIMIT_EXT_REDIS_URL"]; got != tc.url {
				t.Errorf("RATELIMIT_EXT_REDIS_URL = %q, want %q", got, tc.url)
			}
			for k := range tc.env {
				if !strings.HasPrefix(k, "RATELIMIT_EXT_") && !slices.ContainsFunc(notes, func(n Note) bool { return n.Name == k }) {
					t.Errorf("%s: no note in %v", k, notes)
				}
			}
			for k, want := range tc.outcome {
				if !slices.ContainsFunc(notes, func(n Note) bool { return n.Name == k && strings.HasPrefix(n.Outcome, want) }) {
					t.Errorf("%s: want a note starting %q in %v", k, want, notes)
				}
			}
		})
	}
}

// With our own Redis URL (variable or flag), envoyproxy/ratelimit's Redis connection
// settings are each reported ignored for it, and none of them is applied or checked: no
// mode, master or TLS file of theirs is set, and a value that would be refused without
// our URL does not stop the start. REDIS_POOL_SIZE, not part of the connection, is
// still mapped.
func TestLegacyRedisConnectionBesideOurURL(t *testing.T) {
	theirs := []fakeEnv{
		{"REDIS_URL": "a:6379,b:6379", "REDIS_TYPE": "cluster", "REDIS_POOL_SIZE": "20"},
		{"REDIS_URL": "mymaster,s1:26379", "REDIS_TYPE": "sentinel", "REDIS_AUTH": "pw", "REDIS_SENTINEL_AUTH": "sp"},
		{"REDIS_URL": "h:6380", "REDIS_TLS": "true", "REDIS_TLS_CLIENT_CERT": "/c.crt", "REDIS_TLS_CLIENT_KEY": "/c.key", "REDIS_TLS_CACERT": "/ca.crt",
			"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true"},
		{"REDIS_URL": "h:6380", "REDIS_TLS": "true", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "maybe"},
		{"REDIS_URL": "redis://", "REDIS_SOCKET_TYPE": "tcp"},
		{"REDIS_URL": "h:6379", "REDIS_TYPE": "ring"},
		{"REDIS_URL": "h:6379", "REDIS_TLS": "yes"},
		{"REDIS_URL": "/var/run/redis.sock", "REDIS_TYPE": "cluster"},
		{"REDIS_AUTH": "pw", "REDIS_TLS": "true", "REDIS_TLS_CACERT": "/ca.crt"}, // no REDIS_URL of theirs
	}
	for _, ours := range []struct {
		env  fakeEnv
		args []string
		by   string
	}{
		{fakeEnv{"RATELIMIT_EXT_REDIS_URL": "redis://mine:6379"}, nil, "RATELIMIT_EXT_REDIS_URL is set"},
		{fakeEnv{}, []string{"--redis-url", "redis://mine:6379"}, "--redis-url is given"},
	} {
		for _, legacy := range theirs {
			env := maps.Clone(legacy)
			maps.Copy(env, ours.env)
			notes, err := Apply(env.env(flagsGiven(ours.args)))
			if err != nil {
				t.Errorf("%v beside %s: %v", legacy, ours.by, err)
				continue
			}
			for k := range legacy {
				want := "ignored: " + ours.by
				if k == "REDIS_POOL_SIZE" {
					want = "mapped to RATELIMIT_EXT_REDIS_POOL_SIZE=20"
				}
				if i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == k }); i < 0 || notes[i].Outcome != want {
					t.Errorf("%v beside %s: %s: want the note %q in %v", legacy, ours.by, k, want, notes)
				}
			}
			for k, v := range env {
				if strings.HasPrefix(k, "RATELIMIT_EXT_REDIS_") && k != "RATELIMIT_EXT_REDIS_POOL_SIZE" && ours.env[k] != v {
					t.Errorf("%v beside %s: %s=%s set", legacy, ours.by, k, v)
				}
			}
		}
	}
}

// GRPC_SERVER_USE_TLS=true needs a certificate and a key, both from their variables or
// both from ours, flags on the command line included (TestCertificatePairFromOneSide):
// a half of ours with nothing of theirs is left to serve's own check, which names our
// flags. A client CA of ours, flag or variable, is one for GRPC_CLIENT_TLS_SAN.
func TestLegacyGRPCTLSBesideOurs(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  fakeEnv
		args []string
		want map[string]string // our variables afterwards
		err  string
	}{
		{"our certificate flag, their key", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_KEY": "/theirs.key"},
			[]string{"--grpc-tls-cert", "/ours.crt"}, nil, "GRPC_SERVER_TLS_KEY is not used beside our certificate (--grpc-tls-cert is given)"},
		{"our certificate and key flags", fakeEnv{"GRPC_SERVER_USE_TLS": "true"},
			[]string{"--grpc-tls-cert=/ours.crt", "--grpc-tls-key=/ours.key"}, map[string]string{}, ""},
		{"our key variable, their certificate", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/theirs.crt",
			"RATELIMIT_EXT_GRPC_TLS_KEY": "/ours.key"}, nil, nil, "GRPC_SERVER_TLS_CERT is not used beside our key (RATELIMIT_EXT_GRPC_TLS_KEY is set)"},
		{"a certificate without a key", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/theirs.crt"},
			nil, nil, "GRPC_SERVER_USE_TLS=true needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY"},
		{"our certificate flag without a key: left to our own check", fakeEnv{"GRPC_SERVER_USE_TLS": "true"},
			[]string{"--grpc-tls-cert", "/ours.crt"}, map[string]string{"RATELIMIT_EXT_GRPC_TLS_KEY": ""}, ""},
		{"a key without a certificate", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_KEY": "/theirs.key"},
			nil, nil, "GRPC_SERVER_USE_TLS=true needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY"},
		{"our variables set empty (a chart's value: \"\") give no certificate", fakeEnv{"GRPC_SERVER_USE_TLS": "true",
			"RATELIMIT_EXT_GRPC_TLS_CERT": "", "RATELIMIT_EXT_GRPC_TLS_KEY": " "},
			nil, nil, "GRPC_SERVER_USE_TLS=true needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY"},
		{"their client SAN beside our client CA flag", fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/theirs.crt",
			"GRPC_SERVER_TLS_KEY": "/theirs.key", "GRPC_CLIENT_TLS_SAN": "envoy.internal"}, []string{"--grpc-tls-client-ca", "/ca.crt"},
			map[string]string{"RATELIMIT_EXT_GRPC_TLS_CLIENT_SAN": "envoy.internal"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) { checkApply(t, tc.env, flagsGiven(tc.args), tc.want, tc.err) })
	}
}

// A certificate and its key come from one side: with either half of ours set (flag or
// variable), neither of theirs is used, for each pair the service has. Each of theirs
// is reported ignored, naming what of ours wins. A half of ours beside their other half
// stops the start with an error naming both: they would almost never match.
func TestCertificatePairFromOneSide(t *testing.T) {
	for _, p := range []struct {
		on                fakeEnv // what makes theirs used
		certVar, keyVar   string
		certFlag, keyFlag string
	}{
		{fakeEnv{"GRPC_SERVER_USE_TLS": "true"}, "GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY", "grpc-tls-cert", "grpc-tls-key"},
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "true"},
			"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "xds-tls-cert", "xds-tls-key"},
		{fakeEnv{"REDIS_URL": "redis.svc:6380", "REDIS_TLS": "true"},
			"REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY", "redis-tls-cert", "redis-tls-key"},
	} {
		for _, ours := range []struct {
			name string
			env  fakeEnv
			args []string
			half bool // only one half of ours: an error
		}{
			{"both our flags", nil, []string{"--" + p.certFlag, "/ours.crt", "--" + p.keyFlag + "=/ours.key"}, false},
			{"both our variables", fakeEnv{VarName(p.certFlag): "/ours.crt", VarName(p.keyFlag): "/ours.key"}, nil, false},
			{"our certificate variable, our key flag", fakeEnv{VarName(p.certFlag): "/ours.crt"}, []string{"--" + p.keyFlag, "/ours.key"}, false},
			{"our certificate flag alone", nil, []string{"--" + p.certFlag, "/ours.crt"}, true},
			{"our key variable alone", fakeEnv{VarName(p.keyFlag): "/ours.key"}, nil, true},
		} {
			t.Run(p.certVar+"/"+ours.name, func(t *testing.T) {
				env := fakeEnv{p.certVar: "/theirs.crt", p.keyVar: "/theirs.key"}
				maps.Copy(env, p.on)
				maps.Copy(env, ours.env)
				notes, err := Apply(env.env(flagsGiven(ours.args)))
				if ours.half {
					// The error names our half that is set, and their other half.
					half, other := "--"+p.certFlag, p.keyVar
					if len(ours.env) > 0 {
						half, other = VarName(p.keyFlag), p.certVar
					}
					if err == nil || !strings.Contains(err.Error(), half) || !strings.Contains(err.Error(), other) {
						t.Fatalf("error %v, want one naming %s and %s", err, half, other)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				// Each of theirs is ignored for our setting of its half.
				for v, flag := range map[string]string{p.certVar: p.certFlag, p.keyVar: p.keyFlag} {
					by := VarName(flag) + " is set"
					if _, given := flagsGiven(ours.args)[flag]; given {
						by = "--" + flag + " is given"
					}
					i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == v })
					if i < 0 || !notes[i].Ignored || !strings.HasPrefix(notes[i].Outcome, "ignored: "+by+": a certificate and its key come from one side") {
						t.Errorf("%s: want it ignored for %q in %v", v, by, notes)
					}
				}
				for _, flag := range []string{p.certFlag, p.keyFlag} {
					if v := env[VarName(flag)]; strings.HasPrefix(v, "/theirs") {
						t.Errorf("%s=%s: theirs mapped beside ours", VarName(flag), v)
					}
				}
			})
		}
	}
}

// Every envoyproxy/ratelimit variable set to false, alone or with rules from xDS (where
// the xDS client's switches are read), gets a note too, or an error that names it.
func TestEveryLegacyVariableSetFalseIsReported(t *testing.T) {
	for _, base := range []fakeEnv{{}, {"CONFIG_TYPE": "GRPC_XDS_SOTW"}} {
		for _, v := range theirVariables {
			if _, ok := base[v]; ok {
				continue
			}
			env := maps.Clone(base)
			env[v] = "false"
			notes, err := apply(env)
			if err != nil {
				if !strings.Contains(err.Error(), v) {
					t.Errorf("%v: the error does not name %s: %v", env, v, err)
				}
				continue
			}
			if !slices.ContainsFunc(notes, func(n Note) bool { return n.Name == v }) {
				t.Errorf("%v: no note says what became of %s", env, v)
			}
		}
	}
	// Beside our own switch, the note says that it wins.
	notes, err := apply(fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "false", "RATELIMIT_EXT_XDS_TLS": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(notes, ignoredNote("CONFIG_GRPC_XDS_SERVER_USE_TLS", "RATELIMIT_EXT_XDS_TLS is set")) {
		t.Errorf("CONFIG_GRPC_XDS_SERVER_USE_TLS=false beside RATELIMIT_EXT_XDS_TLS: notes %v", notes)
	}
}

// REDIS_TLS's note says what decided TLS: REDIS_TLS=true turns it on for a plain
// address, a rediss:// address turns it on whatever REDIS_TLS says, so REDIS_TLS=false
// beside one has no effect.
func TestLegacyRedisTLSNote(t *testing.T) {
	for _, tc := range []struct {
		env       fakeEnv
		url, note string
	}{
		{fakeEnv{"REDIS_URL": "h:6379", "REDIS_TLS": "true"}, "rediss://h:6379", "used: rediss://, TLS (RATELIMIT_EXT_REDIS_URL)"},
		{fakeEnv{"REDIS_URL": "h:6379", "REDIS_TLS": "false"}, "redis://h:6379", "used: redis://, plaintext (RATELIMIT_EXT_REDIS_URL)"},
		{fakeEnv{"REDIS_URL": "rediss://h:6380", "REDIS_TLS": "true"}, "rediss://h:6380", "used: rediss://, TLS (RATELIMIT_EXT_REDIS_URL)"},
		{fakeEnv{"REDIS_URL": "rediss://h:6380", "REDIS_TLS": "false"}, "rediss://h:6380",
			"ignored: REDIS_URL has a rediss:// address, which turns TLS on whatever REDIS_TLS says"},
		{fakeEnv{"REDIS_URL": "redis://a:6379,rediss://b:6379", "REDIS_TYPE": "cluster", "REDIS_TLS": "FALSE"}, "rediss://a:6379?addr=b:6379",
			"ignored: REDIS_URL has a rediss:// address, which turns TLS on whatever REDIS_TLS says"},
	} {
		notes, err := apply(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.env["RATELIMIT_EXT_REDIS_URL"]; got != tc.url {
			t.Errorf("%v: RATELIMIT_EXT_REDIS_URL = %q, want %q", tc.env, got, tc.url)
		}
		if i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == "REDIS_TLS" }); i < 0 || notes[i].Outcome != tc.note {
			t.Errorf("%v: want REDIS_TLS: %q in %v", tc.env, tc.note, notes)
		}
	}
}

// PORT and GRPC_PORT are port numbers, 1 to 65535 in plain digits: anything else (a
// sign, another base, out of range) stops the start naming the variable, rather than
// becoming an address that fails to listen or means something else.
func TestLegacyPortsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		env  fakeEnv
		want map[string]string // our variables afterwards; nil: an error naming the variable
	}{
		{fakeEnv{"PORT": "+80"}, nil},
		{fakeEnv{"GRPC_PORT": "99999"}, nil},
		{fakeEnv{"PORT": "0"}, nil},
		{fakeEnv{"GRPC_PORT": "-1", "GRPC_HOST": "127.0.0.1"}, nil},
		{fakeEnv{"PORT": "0x50"}, nil},
		{fakeEnv{"PORT": "65536"}, nil},
		{fakeEnv{"PORT": "8080 "}, map[string]string{"RATELIMIT_EXT_HTTP_ADDR": "0.0.0.0:8080"}},
		{fakeEnv{"PORT": "1", "GRPC_PORT": "65535"}, map[string]string{"RATELIMIT_EXT_HTTP_ADDR": "0.0.0.0:1", "RATELIMIT_EXT_GRPC_ADDR": "0.0.0.0:65535"}},
		{fakeEnv{"GRPC_PORT": "08081"}, map[string]string{"RATELIMIT_EXT_GRPC_ADDR": "0.0.0.0:8081"}},
	} {
		_, err := apply(tc.env)
		if tc.want == nil {
			var name string
			for k, v := range tc.env {
				if strings.HasSuffix(k, "PORT") {
					name = k + "=" + strconv.Quote(v) + " is not a port number"
				}
			}
			if err == nil || !strings.HasPrefix(err.Error(), name) {
				t.Errorf("%v: error %v, want one starting %q", tc.env, err, name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		for k, v := range tc.want {
			if tc.env[k] != v {
				t.Errorf("%v: %s = %q, want %q", tc.env, k, tc.env[k], v)
			}
		}
	}
}

// Beside our own metrics address (flag or variable), USE_PROMETHEUS=true and
// PROMETHEUS_ADDR are both reported ignored for it: neither says it opened a port.
func TestLegacyPrometheusBesideOurMetricsAddr(t *testing.T) {
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		by   string
	}{
		{fakeEnv{"USE_PROMETHEUS": "true", "PROMETHEUS_ADDR": ":19001"}, []string{"--metrics-addr", ":9999"}, "--metrics-addr is given"},
		{fakeEnv{"USE_PROMETHEUS": "true", "PROMETHEUS_ADDR": ":19001", "RATELIMIT_EXT_METRICS_ADDR": ":9999"}, nil, "RATELIMIT_EXT_METRICS_ADDR is set"},
		{fakeEnv{"USE_PROMETHEUS": "true"}, []string{"--metrics-addr=:9999"}, "--metrics-addr is given"},
	} {
		ours := tc.env["RATELIMIT_EXT_METRICS_ADDR"]
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		for k := range tc.env {
			if strings.HasPrefix(k, "RATELIMIT_EXT_") {
				continue
			}
			var got []string
			for _, n := range notes {
				if n.Name == k {
					got = append(got, n.Outcome)
				}
			}
			if !slices.Equal(got, []string{"ignored: " + tc.by}) {
				t.Errorf("%v beside %s: %s: notes %q, want only that it is ignored for it", tc.env, tc.by, k, got)
			}
		}
		if tc.env["RATELIMIT_EXT_METRICS_ADDR"] != ours {
			t.Errorf("%v: RATELIMIT_EXT_METRICS_ADDR = %q", tc.env, tc.env["RATELIMIT_EXT_METRICS_ADDR"])
		}
	}
}

// GRPC_SERVER_USE_TLS=false beside our own certificate says that ours serves TLS, not
// that gRPC is plaintext.
func TestLegacyGRPCTLSFalseBesideOurCertificate(t *testing.T) {
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		want string
	}{
		{fakeEnv{"GRPC_SERVER_USE_TLS": "false"}, []string{"--grpc-tls-cert=/ours.crt"}, "--grpc-tls-cert is given: gRPC is served over TLS from our settings"},
		{fakeEnv{"GRPC_SERVER_USE_TLS": "false", "RATELIMIT_EXT_GRPC_TLS_CERT": "/ours.crt"}, nil, "RATELIMIT_EXT_GRPC_TLS_CERT is set: gRPC is served over TLS from our settings"},
		{fakeEnv{"GRPC_SERVER_USE_TLS": "false"}, nil, "gRPC is served in plaintext, the default"},
		{fakeEnv{"GRPC_SERVER_USE_TLS": "false", "RATELIMIT_EXT_GRPC_TLS_CERT": ""}, nil, "gRPC is served in plaintext, the default"},
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == "GRPC_SERVER_USE_TLS" })
		if i < 0 || !strings.HasSuffix(notes[i].Outcome, tc.want) {
			t.Errorf("%v %q: notes %+v, want GRPC_SERVER_USE_TLS ending %q", tc.env, tc.args, notes, tc.want)
		}
	}
}

// Their gRPC server TLS files without GRPC_SERVER_USE_TLS=true are ignored, as there;
// beside our certificate and key, which serve gRPC over TLS whatever their switch says,
// their notes say that it is over TLS all the same, without them: an operator who set
// GRPC_CLIENT_TLS_CACERT learns that client certificates are not required, not only
// that their switch is off. (As their xDS TLS files say: TestLegacyXDSTLSFilesBesideOurCA.)
func TestLegacyGRPCTLSFilesBesideOurCertificate(t *testing.T) {
	const without = "GRPC_SERVER_USE_TLS is not true (gRPC is served over TLS all the same, as %s, but without this setting)"
	files := fakeEnv{"GRPC_CLIENT_TLS_CACERT": "/ca.crt", "GRPC_CLIENT_TLS_SAN": "client"}
	with := func(extra fakeEnv) fakeEnv { e := maps.Clone(files); maps.Copy(e, extra); return e }
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		why  string
	}{
		{with(fakeEnv{"RATELIMIT_EXT_GRPC_TLS_CERT": "/c.crt", "RATELIMIT_EXT_GRPC_TLS_KEY": "/c.key"}), nil, fmt.Sprintf(without, "RATELIMIT_EXT_GRPC_TLS_CERT is set")},
		{with(fakeEnv{"GRPC_SERVER_USE_TLS": "false"}), []string{"--grpc-tls-cert=/c.crt", "--grpc-tls-key=/c.key"}, fmt.Sprintf(without, "--grpc-tls-cert is given")},
		{with(nil), nil, "GRPC_SERVER_USE_TLS is not true"},
		{with(nil), []string{"--grpc-tls-cert=", "--grpc-tls-key="}, "GRPC_SERVER_USE_TLS is not true"}, // given empty: no certificate, no TLS
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"GRPC_CLIENT_TLS_CACERT", "GRPC_CLIENT_TLS_SAN"} {
			if want := ignoredNote(v, tc.why); !slices.Contains(notes, want) {
				t.Errorf("%v %q: notes %+v, want %+v", tc.env, tc.args, notes, want)
			}
		}
	}
}

// CONFIG_GRPC_XDS_SERVER_USE_TLS=false beside a TLS file or name of ours (which turns
// xDS TLS on) says that ours turns TLS on and wins, not that false is the default: the
// operator who meant "no TLS" learns that the connection is over TLS.
func TestLegacyXDSTLSFalseBesideOurFiles(t *testing.T) {
	const onByOurs = ", which turns TLS on and wins: the xDS connection is over TLS"
	xdsOff := fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "false"}
	with := func(extra fakeEnv) fakeEnv { e := maps.Clone(xdsOff); maps.Copy(e, extra); return e }
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		want string
	}{
		{with(nil), []string{"--xds-tls-ca=/ours.crt"}, "--xds-tls-ca is given" + onByOurs},
		{with(fakeEnv{"RATELIMIT_EXT_XDS_TLS_CA": "/ours.crt"}), nil, "RATELIMIT_EXT_XDS_TLS_CA is set" + onByOurs},
		{with(fakeEnv{"RATELIMIT_EXT_XDS_TLS_CERT": "/c.crt", "RATELIMIT_EXT_XDS_TLS_KEY": "/c.key"}), nil, "RATELIMIT_EXT_XDS_TLS_CERT is set" + onByOurs},
		{with(nil), []string{"--xds-tls-server-name", "xds.internal"}, "--xds-tls-server-name is given" + onByOurs},
		{with(fakeEnv{"RATELIMIT_EXT_XDS_TLS": "false", "RATELIMIT_EXT_XDS_TLS_CA": "/ours.crt"}), nil, "RATELIMIT_EXT_XDS_TLS is set"}, // ours decides (and serve refuses the pair)
		{with(nil), nil, "false is the default"},
		{with(fakeEnv{"RATELIMIT_EXT_XDS_TLS_CA": " "}), nil, "false is the default"}, // set empty: unset
		{with(nil), []string{"--xds-tls-ca="}, "false is the default"},                // given empty: no CA, no TLS
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		if want := ignoredNote("CONFIG_GRPC_XDS_SERVER_USE_TLS", tc.want); !slices.Contains(notes, want) {
			t.Errorf("%v %q: notes %+v, want %+v", tc.env, tc.args, notes, want)
		}
	}
}

// Their TLS files without CONFIG_GRPC_XDS_SERVER_USE_TLS=true are ignored, as there;
// beside a TLS file or name of ours, which turns TLS on, their notes say that the
// connection is over TLS all the same, without them (their client certificate is not
// sent), not only that their switch is off.
func TestLegacyXDSTLSFilesBesideOurCA(t *testing.T) {
	const without = "CONFIG_GRPC_XDS_SERVER_USE_TLS is not true (the connection is over TLS all the same, as %s, but without this setting)"
	files := fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_TLS_CERT": "/tls.crt", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": "/tls.key"}
	with := func(extra fakeEnv) fakeEnv { e := maps.Clone(files); maps.Copy(e, extra); return e }
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		why  string
	}{
		{with(fakeEnv{"RATELIMIT_EXT_XDS_TLS_CA": "/ca.crt"}), nil, fmt.Sprintf(without, "RATELIMIT_EXT_XDS_TLS_CA is set")},
		{with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "false"}), []string{"--xds-tls-ca=/ca.crt"}, fmt.Sprintf(without, "--xds-tls-ca is given")},
		{with(nil), nil, "CONFIG_GRPC_XDS_SERVER_USE_TLS is not true"},
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY"} {
			if want := ignoredNote(v, tc.why); !slices.Contains(notes, want) {
				t.Errorf("%v %q: notes %+v, want %+v", tc.env, tc.args, notes, want)
			}
		}
	}
}

// Their listen port and host are only reported ignored, not checked, when our address
// wins: PORT=0 beside RATELIMIT_EXT_HTTP_ADDR does not stop the start.
func TestLegacyListenersBesideOurs(t *testing.T) {
	env := fakeEnv{"PORT": "0", "HOST": "h", "RATELIMIT_EXT_HTTP_ADDR": "0.0.0.0:9000", "GRPC_PORT": "+1"}
	notes, err := Apply(env.env(map[string]string{"grpc-addr": ""}))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"PORT", "HOST", "GRPC_PORT"} {
		i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == name })
		if i < 0 || !notes[i].Ignored {
			t.Errorf("%s: notes %+v, want it reported ignored", name, notes)
		}
	}
	if env["RATELIMIT_EXT_HTTP_ADDR"] != "0.0.0.0:9000" {
		t.Errorf("RATELIMIT_EXT_HTTP_ADDR = %q, want ours unchanged", env["RATELIMIT_EXT_HTTP_ADDR"])
	}
}

// Each of their switches takes true or false (as strconv.ParseBool spells them); any
// other value stops the start with an error naming the variable and its value.
func TestLegacySwitchesRefuseOtherValues(t *testing.T) {
	xds := fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "xds:18000"}
	for _, tc := range []struct {
		name string
		base fakeEnv
	}{
		{"QUOTA_MODE", nil}, {"USE_CALENDAR_MONTH_RATE_LIMIT", nil}, {"GRPC_SERVER_USE_TLS", nil},
		{"USE_PROMETHEUS", nil}, {"REDIS_TLS", fakeEnv{"REDIS_URL": "redis:6379"}},
		{"XDS_CLIENT_BACKOFF_JITTER", xds}, {"CONFIG_GRPC_XDS_SERVER_USE_TLS", xds},
		{"FORCE_START_WITHOUT_INITIAL_CONFIG", xds}, {"MERGE_DOMAIN_CONFIG", nil},
	} {
		for _, v := range []string{"maybe", "TRUE", "0"} {
			env := maps.Clone(tc.base)
			if env == nil {
				env = fakeEnv{}
			}
			env[tc.name] = v
			_, err := apply(env)
			refused := err != nil && strings.Contains(err.Error(), tc.name+`="maybe": want true or false`)
			if v == "maybe" && !refused {
				t.Errorf("%s=maybe: error %v, want one naming it and asking for true or false", tc.name, err)
			}
			if v != "maybe" && err != nil && strings.Contains(err.Error(), "want true or false") {
				t.Errorf("%s=%s refused: %v", tc.name, v, err)
			}
		}
	}
}

// A malformed variable of theirs is reported ignored, not refused, when our flag or our
// variable for the same setting is set: ours wins, so their value would not be used.
// Without ours, it still stops the start (TestLegacyEnvironment).
func TestMalformedLegacyValueBesideOurs(t *testing.T) {
	xds := func(e fakeEnv) fakeEnv { e["CONFIG_TYPE"] = "GRPC_XDS_SOTW"; return e }
	for _, tc := range []struct {
		env    fakeEnv
		args   []string
		legacy string // the malformed variable
		by     string // what wins, as the note says
	}{
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_DELTA"}, []string{"--config-source=file"}, "CONFIG_TYPE", "--config-source is given"},
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_DELTA", "RATELIMIT_EXT_CONFIG_SOURCE": "file"}, nil, "CONFIG_TYPE", "RATELIMIT_EXT_CONFIG_SOURCE is set"},
		{xds(fakeEnv{"XDS_CLIENT_BACKOFF_JITTER": "maybe"}), []string{"--xds-backoff-jitter", "0.1"}, "XDS_CLIENT_BACKOFF_JITTER", "--xds-backoff-jitter is given"},
		{xds(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "yes please"}), []string{"--xds-tls=false"}, "CONFIG_GRPC_XDS_SERVER_USE_TLS", "--xds-tls is given"},
		{xds(fakeEnv{"FORCE_START_WITHOUT_INITIAL_CONFIG": "maybe", "RATELIMIT_EXT_XDS_START_WITHOUT_RULES": "true"}), nil,
			"FORCE_START_WITHOUT_INITIAL_CONFIG", "RATELIMIT_EXT_XDS_START_WITHOUT_RULES is set"},
		{xds(fakeEnv{"CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS": "token"}), []string{"--xds-headers", "a=b"}, "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "--xds-headers is given"},
		{fakeEnv{"USE_PROMETHEUS": "yes please"}, []string{"--metrics-addr=:19001"}, "USE_PROMETHEUS", "--metrics-addr is given"},
		{fakeEnv{"GRPC_SERVER_USE_TLS": "on"}, []string{"--grpc-tls-cert", "/c", "--grpc-tls-key", "/k"}, "GRPC_SERVER_USE_TLS", "--grpc-tls-cert is given"},
		{fakeEnv{"REDIS_URL": "a:1", "REDIS_TYPE": "ring"}, []string{"--redis-mode=cluster"}, "REDIS_TYPE", "--redis-mode is given"},
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Errorf("%v %q: %v, want %s reported ignored", tc.env, tc.args, err, tc.legacy)
			continue
		}
		i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == tc.legacy })
		if i < 0 || !notes[i].Ignored || !strings.Contains(notes[i].Outcome, tc.by) {
			t.Errorf("%v %q: notes %+v, want %s ignored as %s", tc.env, tc.args, notes, tc.legacy, tc.by)
		}
	}
}

// Our variable set empty, or to spaces, counts as unset, as theirs do: theirs maps.
func TestOurEmptyVariableIsUnset(t *testing.T) {
	for _, tc := range []struct {
		env        fakeEnv
		ours, want string
	}{
		{fakeEnv{"REDIS_URL": "r:6379", "RATELIMIT_EXT_REDIS_URL": ""}, "RATELIMIT_EXT_REDIS_URL", "redis://r:6379"},
		{fakeEnv{"SHADOW_MODE": "true", "RATELIMIT_EXT_SHADOW_MODE": " "}, "RATELIMIT_EXT_SHADOW_MODE", "true"},
		{fakeEnv{"PORT": "9000", "RATELIMIT_EXT_HTTP_ADDR": ""}, "RATELIMIT_EXT_HTTP_ADDR", "0.0.0.0:9000"},
		{fakeEnv{"USE_PROMETHEUS": "true", "RATELIMIT_EXT_METRICS_ADDR": ""}, "RATELIMIT_EXT_METRICS_ADDR", ":9090"},
	} {
		if _, err := apply(tc.env); err != nil || tc.env[tc.ours] != tc.want {
			t.Errorf("%v: %s = %q (%v), want %q", tc.env, tc.ours, tc.env[tc.ours], err, tc.want)
		}
	}
}

// Our flag given empty (--redis-url= from a templated command line), or as spaces,
// counts as not given, as our variable set empty does: theirs maps, and the notes say
// so. --key-prefix= is the exception (no prefix, as RATELIMIT_EXT_KEY_PREFIX= is), and a
// switch given alone (--shadow-mode) is given.
func TestOurFlagGivenEmptyIsUnset(t *testing.T) {
	tlsOn := fakeEnv{"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/certs/tls.crt", "GRPC_SERVER_TLS_KEY": "/certs/tls.key"}
	for _, tc := range []struct {
		env        fakeEnv
		args       []string
		ours, want string // our variable afterwards
		note       Note   // one of the notes
	}{
		{maps.Clone(tlsOn), []string{"--grpc-tls-cert=", "--grpc-tls-key="}, "RATELIMIT_EXT_GRPC_TLS_CERT", "/certs/tls.crt",
			Note{Name: "GRPC_SERVER_USE_TLS", Outcome: "used: gRPC is served over TLS (GRPC_SERVER_TLS_CERT, GRPC_SERVER_TLS_KEY)"}},
		{maps.Clone(tlsOn), []string{"--grpc-tls-cert", "", "--grpc-tls-key", " "}, "RATELIMIT_EXT_GRPC_TLS_KEY", "/certs/tls.key",
			Note{Name: "GRPC_SERVER_USE_TLS", Outcome: "used: gRPC is served over TLS (GRPC_SERVER_TLS_CERT, GRPC_SERVER_TLS_KEY)"}},
		{fakeEnv{"REDIS_URL": "r:6379"}, []string{"--redis-url="}, "RATELIMIT_EXT_REDIS_URL", "redis://r:6379",
			Note{Name: "REDIS_URL", Outcome: "mapped to RATELIMIT_EXT_REDIS_URL=redis://r:6379", MappedTo: "RATELIMIT_EXT_REDIS_URL"}},
		{fakeEnv{"SHADOW_MODE": "true"}, []string{"-shadow-mode="}, "RATELIMIT_EXT_SHADOW_MODE", "true",
			Note{Name: "SHADOW_MODE", Outcome: "mapped to RATELIMIT_EXT_SHADOW_MODE=true", MappedTo: "RATELIMIT_EXT_SHADOW_MODE"}},
		{fakeEnv{"USE_PROMETHEUS": "true"}, []string{"--metrics-addr", ""}, "RATELIMIT_EXT_METRICS_ADDR", ":9090",
			Note{Name: "USE_PROMETHEUS", Outcome: "mapped to RATELIMIT_EXT_METRICS_ADDR=:9090", MappedTo: "RATELIMIT_EXT_METRICS_ADDR"}},
		{fakeEnv{"CACHE_KEY_PREFIX": "theirs:"}, []string{"--key-prefix="}, "RATELIMIT_EXT_KEY_PREFIX", "",
			ignoredNote("CACHE_KEY_PREFIX", "--key-prefix is given")},
		{fakeEnv{"CACHE_KEY_PREFIX": "theirs:"}, []string{"--key-prefix= "}, "RATELIMIT_EXT_KEY_PREFIX", "theirs:",
			Note{Name: "CACHE_KEY_PREFIX", Outcome: "mapped to RATELIMIT_EXT_KEY_PREFIX=theirs:", MappedTo: "RATELIMIT_EXT_KEY_PREFIX"}},
		{fakeEnv{"SHADOW_MODE": "true"}, []string{"--shadow-mode"}, "RATELIMIT_EXT_SHADOW_MODE", "",
			ignoredNote("SHADOW_MODE", "--shadow-mode is given")},
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Errorf("%v %q: %v", tc.env, tc.args, err)
			continue
		}
		if tc.env[tc.ours] != tc.want || !slices.Contains(notes, tc.note) {
			t.Errorf("%v %q: %s = %q, notes %+v; want %q and %+v", tc.env, tc.args, tc.ours, tc.env[tc.ours], notes, tc.want, tc.note)
		}
	}
}

// Our --xds-tls (flag or variable) decides whether the xDS connection is over TLS, and
// so whether their TLS files are used: beside ours set false they are reported ignored
// and map onto nothing (any --xds-tls-* of ours would turn TLS back on), beside ours set
// true they are used whatever CONFIG_GRPC_XDS_SERVER_USE_TLS says. Without ours, theirs
// decides, as there.
func TestLegacyXDSTLSFilesFollowOurSwitch(t *testing.T) {
	files := fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_TLS_CACERT": "/ca.crt",
		"CONFIG_GRPC_XDS_CLIENT_TLS_CERT": "/tls.crt", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY": "/tls.key",
		"CONFIG_GRPC_XDS_SERVER_TLS_SAN": "xds.internal"}
	with := func(extra fakeEnv) fakeEnv { e := maps.Clone(files); maps.Copy(e, extra); return e }
	for _, tc := range []struct {
		name   string
		env    fakeEnv
		args   []string
		mapped bool   // their files onto ours
		why    string // else the note on each
	}{
		{"their true beside our flag false", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "true"}), []string{"--xds-tls=false"},
			false, "--xds-tls is given: it turns TLS off"},
		{"their true beside our variable false", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "true", "RATELIMIT_EXT_XDS_TLS": "false"}), nil,
			false, "RATELIMIT_EXT_XDS_TLS is set: it turns TLS off"},
		{"their false beside our variable true", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "false", "RATELIMIT_EXT_XDS_TLS": "true"}), nil,
			true, ""},
		{"theirs unset beside our flag", with(nil), []string{"--xds-tls"}, true, ""},
		{"their malformed beside our flag true", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "yes"}), []string{"-xds-tls=1"}, true, ""},
		{"their true alone", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "true"}), nil, true, ""},
		{"their true beside our empty variable", with(fakeEnv{"CONFIG_GRPC_XDS_SERVER_USE_TLS": "true", "RATELIMIT_EXT_XDS_TLS": " "}), nil, true, ""},
		{"theirs unset alone", with(nil), nil, false, "CONFIG_GRPC_XDS_SERVER_USE_TLS is not true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range legacyXDSTLS {
				ours, set := tc.env[VarName(x.flag)]
				if set != tc.mapped || tc.mapped && ours != files[x.legacy] {
					t.Errorf("%s = %q (set: %v), want it set to theirs: %v", VarName(x.flag), ours, set, tc.mapped)
				}
				if !tc.mapped && !slices.Contains(notes, ignoredNote(x.legacy, tc.why)) {
					t.Errorf("%s: notes %+v, want it ignored: %s", x.legacy, notes, tc.why)
				}
			}
		})
	}
}

// CONFIG_TYPE gets notes that say where the rules come from, and only those: FILE is
// used (the default), or ignored beside our xDS server, which wins; GRPC_XDS_SOTW is
// mapped, and our server beside it is no reason to report it ignored (their default
// server is what our server replaces, and CONFIG_GRPC_XDS_SERVER_URL is not set).
func TestLegacyConfigTypeNotes(t *testing.T) {
	toXDS := Note{Name: "CONFIG_TYPE", Outcome: "mapped to RATELIMIT_EXT_CONFIG_SOURCE=xds", MappedTo: "RATELIMIT_EXT_CONFIG_SOURCE"}
	for _, tc := range []struct {
		env  fakeEnv
		args []string
		want []Note // CONFIG_TYPE's
	}{
		{fakeEnv{"CONFIG_TYPE": "FILE"}, nil, []Note{{Name: "CONFIG_TYPE", Outcome: "used: rules come from files (--config-source=file), the default"}}},
		{fakeEnv{"CONFIG_TYPE": "file", "RATELIMIT_EXT_CONFIG_SOURCE": "file"}, nil, []Note{{Name: "CONFIG_TYPE", Outcome: "used: rules come from files (--config-source=file), the default"}}},
		{fakeEnv{"CONFIG_TYPE": "FILE"}, []string{"--xds-server", "x:1"}, []Note{ignoredNote("CONFIG_TYPE", "--xds-server is given: rules come from the xDS server")}},
		{fakeEnv{"CONFIG_TYPE": "FILE", "RATELIMIT_EXT_XDS_SERVER": "x:1"}, nil, []Note{ignoredNote("CONFIG_TYPE", "RATELIMIT_EXT_XDS_SERVER is set: rules come from the xDS server")}},
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "RATELIMIT_EXT_XDS_SERVER": "x:1"}, nil, []Note{toXDS}},
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW"}, []string{"--xds-server=x:1"}, []Note{toXDS}},
		{fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW"}, nil, []Note{toXDS, {Name: "CONFIG_TYPE", Outcome: "mapped to RATELIMIT_EXT_XDS_SERVER=localhost:18000", MappedTo: "RATELIMIT_EXT_XDS_SERVER"}}},
	} {
		notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Fatal(err)
		}
		got := slices.DeleteFunc(notes, func(n Note) bool { return n.Name != "CONFIG_TYPE" })
		if !slices.Equal(got, tc.want) {
			t.Errorf("%v %q: CONFIG_TYPE's notes %+v, want %+v", tc.env, tc.args, got, tc.want)
		}
	}
}

// Our --config-source=file (flag, either form, or variable) wins over
// CONFIG_TYPE=GRPC_XDS_SOTW: their xDS client variables are reported ignored for it and
// set no xDS server of ours (beside which serve refuses --config-source=file), and the
// RUNTIME_* variables map as they do with rules from files.
func TestLegacyXDSBesideOurFileSource(t *testing.T) {
	theirs := fakeEnv{"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "xds:18000",
		"CONFIG_GRPC_XDS_NODE_ID": "n", "CONFIG_GRPC_XDS_SERVER_USE_TLS": "true", "RUNTIME_ROOT": "/data"}
	for _, tc := range []struct {
		ours fakeEnv
		args []string
		by   string
	}{
		{fakeEnv{}, []string{"--config-source=file"}, "--config-source is given"},
		{fakeEnv{}, []string{"--config-source", "file"}, "--config-source is given"},
		{fakeEnv{"RATELIMIT_EXT_CONFIG_SOURCE": "file"}, nil, "RATELIMIT_EXT_CONFIG_SOURCE is set"},
	} {
		env := maps.Clone(theirs)
		maps.Copy(env, tc.ours)
		notes, err := Apply(env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Errorf("%v %q: %v", tc.ours, tc.args, err)
			continue
		}
		for _, k := range []string{"RATELIMIT_EXT_XDS_SERVER", "RATELIMIT_EXT_XDS_NODE_ID", "RATELIMIT_EXT_XDS_TLS"} {
			if v, ok := env[k]; ok {
				t.Errorf("%v %q: %s=%s set, want their xDS variables unused", tc.ours, tc.args, k, v)
			}
		}
		if env["RATELIMIT_EXT_CONFIG_DIR"] != "/data/config" {
			t.Errorf("%v %q: RATELIMIT_EXT_CONFIG_DIR = %q, want RUNTIME_ROOT's /data/config", tc.ours, tc.args, env["RATELIMIT_EXT_CONFIG_DIR"])
		}
		for _, k := range []string{"CONFIG_TYPE", "CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_NODE_ID", "CONFIG_GRPC_XDS_SERVER_USE_TLS"} {
			i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == k })
			if i < 0 || !notes[i].Ignored || !strings.Contains(notes[i].Outcome, tc.by) {
				t.Errorf("%v %q: notes %+v, want %s ignored as %s", tc.ours, tc.args, notes, k, tc.by)
			}
		}
	}
}

// Our --engine=memory (flag or variable) wins over their Redis: the connection
// variables are each reported ignored for it and set no Redis URL of ours (beside which
// serve refuses --engine=memory), as beside our own Redis URL.
func TestLegacyRedisBesideOurMemoryEngine(t *testing.T) {
	theirs := fakeEnv{"REDIS_URL": "r:6379", "REDIS_TLS": "true", "REDIS_AUTH": "pw", "REDIS_TLS_CACERT": "/ca.crt",
		"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true"}
	for _, tc := range []struct {
		ours fakeEnv
		args []string
		by   string
	}{
		{fakeEnv{"RATELIMIT_EXT_ENGINE": "memory"}, nil, "RATELIMIT_EXT_ENGINE is set"},
		{fakeEnv{}, []string{"--engine", "memory"}, "--engine is given"},
		{fakeEnv{}, []string{"-engine=memory"}, "--engine is given"},
	} {
		env := maps.Clone(theirs)
		maps.Copy(env, tc.ours)
		notes, err := Apply(env.env(flagsGiven(tc.args)))
		if err != nil {
			t.Errorf("%v %q: %v", tc.ours, tc.args, err)
			continue
		}
		for k, v := range env {
			if strings.HasPrefix(k, "RATELIMIT_EXT_REDIS_") {
				t.Errorf("%v %q: %s=%s set, want their Redis unused", tc.ours, tc.args, k, v)
			}
		}
		for k := range theirs {
			i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == k })
			if i < 0 || !notes[i].Ignored || !strings.Contains(notes[i].Outcome, tc.by) {
				t.Errorf("%v %q: notes %+v, want %s ignored as %s", tc.ours, tc.args, notes, k, tc.by)
			}
		}
	}
}

// REDIS_TLS_SKIP_HOSTNAME_VERIFICATION maps onto our switch where their REDIS_TLS
// applies, as the TLS files do: there too it verifies the chain but not the name. Where
// TLS is off, with our own Redis URL, and beside our server name (which checks the
// name against it) it is reported ignored; malformed, it stops the start only where
// it would be used and our switch is not set.
func TestLegacyRedisSkipHostnameVerification(t *testing.T) {
	const skip, ours = "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "RATELIMIT_EXT_REDIS_TLS_SKIP_HOSTNAME_VERIFICATION"
	tlsOn := fakeEnv{"REDIS_URL": "10.0.0.7:6380", "REDIS_TLS": "true"}
	with := func(base fakeEnv, kv ...string) fakeEnv {
		env := maps.Clone(base)
		if env == nil {
			env = fakeEnv{}
		}
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	for _, tc := range []struct {
		name  string
		env   fakeEnv
		args  []string
		value string // our variable afterwards ("": unset)
		note  string // the start of the note on theirs
		err   string
	}{
		{"with REDIS_TLS", with(tlsOn, skip, "true"), nil, "true", "mapped to " + ours + "=true", ""},
		{"in another spelling", with(tlsOn, skip, "TRUE"), nil, "true", "mapped to " + ours + "=true", ""},
		{"false", with(tlsOn, skip, "false"), nil, "false", "mapped to " + ours + "=false", ""},
		{"a rediss:// address turns TLS on", fakeEnv{"REDIS_URL": "rediss://10.0.0.7:6380", skip: "true"}, nil, "true", "mapped to " + ours + "=true", ""},
		{"a cluster over TLS", with(tlsOn, "REDIS_URL", "10.0.0.7:6380,10.0.0.8:6380", "REDIS_TYPE", "cluster", skip, "true"), nil, "true", "mapped to", ""},
		{"without REDIS_TLS", fakeEnv{"REDIS_URL": "10.0.0.7:6379", skip: "true"}, nil, "", "ignored: REDIS_TLS is not true", ""},
		{"on a socket", with(tlsOn, "REDIS_URL", "/var/run/redis.sock", skip, "true"), nil, "", "ignored: REDIS_SOCKET_TYPE is unix", ""},
		{"without REDIS_URL", fakeEnv{skip: "true"}, nil, "", "ignored: REDIS_URL is not set", ""},
		{"beside our Redis URL", with(tlsOn, skip, "true", "RATELIMIT_EXT_REDIS_URL", "rediss://mine:6380"), nil, "", "ignored: RATELIMIT_EXT_REDIS_URL is set", ""},
		{"beside our switch", with(tlsOn, skip, "true"), []string{"--redis-tls-skip-hostname-verification=false"}, "",
			"ignored: --redis-tls-skip-hostname-verification is given", ""},
		{"beside our server name", with(tlsOn, skip, "true", "RATELIMIT_EXT_REDIS_TLS_SERVER_NAME", "redis.internal"), nil, "",
			"ignored: RATELIMIT_EXT_REDIS_TLS_SERVER_NAME is set", ""},
		{"malformed", with(tlsOn, skip, "maybe"), nil, "", "", skip + `="maybe": want true or false`},
		{"malformed beside our switch", with(tlsOn, skip, "maybe", ours, "true"), nil, "true", "ignored: " + skip + `="maybe"`, ""},
		{"malformed without TLS", fakeEnv{"REDIS_URL": "10.0.0.7:6379", skip: "maybe"}, nil, "", "ignored: REDIS_TLS is not true", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			notes, err := Apply(tc.env.env(flagsGiven(tc.args)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.env[ours]; got != tc.value {
				t.Errorf("%s = %q, want %q", ours, got, tc.value)
			}
			if i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == skip }); i < 0 || !strings.HasPrefix(notes[i].Outcome, tc.note) {
				t.Errorf("want a note on %s starting %q in %v", skip, tc.note, notes)
			}
		})
	}
}

// MERGE_DOMAIN_CONFIG maps onto --merge-domains, read as envoyproxy/ratelimit reads
// booleans (strconv.ParseBool's spellings); ours wins over it, and a malformed value
// beside ours is only reported. ApplyRules (validate's) maps it the same way.
func TestLegacyMergeDomainConfig(t *testing.T) {
	const ours = "RATELIMIT_EXT_MERGE_DOMAINS"
	for _, tc := range []struct {
		env     fakeEnv
		args    []string
		want    string // our variable after the mapping; "" for unset
		outcome string // MERGE_DOMAIN_CONFIG's note
		err     string
	}{
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "true"}, want: "true", outcome: "mapped to RATELIMIT_EXT_MERGE_DOMAINS=true"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": " 1 "}, want: "true", outcome: "mapped to RATELIMIT_EXT_MERGE_DOMAINS=true"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "TRUE"}, want: "true", outcome: "mapped to RATELIMIT_EXT_MERGE_DOMAINS=true"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "false"}, want: "false", outcome: "mapped to RATELIMIT_EXT_MERGE_DOMAINS=false"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "F"}, want: "false", outcome: "mapped to RATELIMIT_EXT_MERGE_DOMAINS=false"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": ""}},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "maybe"}, err: `MERGE_DOMAIN_CONFIG="maybe": want true or false`},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "true", ours: "false"}, want: "false", outcome: "ignored: RATELIMIT_EXT_MERGE_DOMAINS is set"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "true"}, args: []string{"--merge-domains=false"}, outcome: "ignored: --merge-domains is given"},
		{env: fakeEnv{"MERGE_DOMAIN_CONFIG": "maybe"}, args: []string{"--merge-domains"},
			outcome: `ignored: MERGE_DOMAIN_CONFIG="maybe": want true or false; --merge-domains is given`},
	} {
		for name, apply := range map[string]func(Env) ([]Note, error){"Apply": Apply, "ApplyRules": ApplyRules} {
			env := maps.Clone(tc.env)
			notes, err := apply(env.env(flagsGiven(tc.args)))
			if tc.err != "" || err != nil {
				if err == nil || err.Error() != tc.err {
					t.Errorf("%s(%v %q): error %v, want %q", name, tc.env, tc.args, err, tc.err)
				}
				continue
			}
			if got := env[ours]; got != tc.want {
				t.Errorf("%s(%v %q): %s=%q, want %q", name, tc.env, tc.args, ours, got, tc.want)
			}
			i := slices.IndexFunc(notes, func(n Note) bool { return n.Name == "MERGE_DOMAIN_CONFIG" })
			switch {
			case tc.outcome == "" && i >= 0:
				t.Errorf("%s(%v): note %+v, want none", name, tc.env, notes[i])
			case tc.outcome != "" && (i < 0 || notes[i].Outcome != tc.outcome):
				t.Errorf("%s(%v %q): notes %+v, want MERGE_DOMAIN_CONFIG %q", name, tc.env, tc.args, notes, tc.outcome)
			}
		}
	}
	// ApplyRules maps nothing else: validate leaves serve's other settings alone.
	env := fakeEnv{"MERGE_DOMAIN_CONFIG": "true", "SHADOW_MODE": "true", "GRPC_UDS": "/s"}
	if notes, err := ApplyRules(env.env(nil)); err != nil || len(notes) != 1 || env["RATELIMIT_EXT_SHADOW_MODE"] != "" {
		t.Errorf("ApplyRules: notes %+v, error %v, env %v; want MERGE_DOMAIN_CONFIG's note alone", notes, err, env)
	}
}
