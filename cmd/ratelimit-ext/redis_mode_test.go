package main

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// --redis-mode and --redis-sentinel-master reach the engine options (flag and
// environment), and cluster mode makes the server's keys hash-tagged by domain.
func TestRedisModeFlags(t *testing.T) {
	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if o := c.redis(); o.Mode != limiter.RedisSingle || o.SentinelMaster != "" {
		t.Errorf("defaults: mode %q, sentinel master %q", o.Mode, o.SentinelMaster)
	}
	if newKeyBuilder(c).ClusterTag {
		t.Error("single mode: keys carry a cluster hash tag")
	}

	c, err = loadServeConfig([]string{"--redis-mode", "cluster", "--redis-url", "redis://a:7000?addr=b:7001"})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.redis(); o.Mode != limiter.RedisCluster {
		t.Errorf("--redis-mode cluster: mode %q", o.Mode)
	}
	if !newKeyBuilder(c).ClusterTag {
		t.Error("cluster mode: keys carry no hash tag")
	}
	e, name, err := openEngine(c, nil, nil)
	if err != nil {
		t.Fatalf("cluster engine: %v", err)
	}
	if _, ok := e.(*limiter.RedisEngine); !ok || name != "redis" {
		t.Errorf("cluster engine: %T %q, want the Redis engine (so the circuit breaker guards it)", e, name)
	}
	e.Close()

	t.Setenv("RATELIMIT_EXT_REDIS_MODE", "sentinel")
	t.Setenv("RATELIMIT_EXT_REDIS_SENTINEL_MASTER", "mymaster")
	c, err = loadServeConfig([]string{"--redis-url", "redis://s1:26379?addr=s2:26379"})
	if err != nil {
		t.Fatal(err)
	}
	if o := c.redis(); o.Mode != limiter.RedisSentinel || o.SentinelMaster != "mymaster" {
		t.Errorf("environment: mode %q, sentinel master %q", o.Mode, o.SentinelMaster)
	}
	if newKeyBuilder(c).ClusterTag {
		t.Error("sentinel mode: keys carry a cluster hash tag")
	}
	if conformancePrefix(c.redis(), "rlx:") == conformancePrefix(limiter.RedisOptions{Mode: limiter.RedisCluster}, "rlx:") {
		t.Error("the conformance prefix is a hash tag outside cluster mode")
	}
}

func TestCheckRedisMode(t *testing.T) {
	for _, tc := range []struct {
		o    limiter.RedisOptions
		want string // "" = valid
	}{
		{limiter.RedisOptions{URL: "redis://h:6379"}, ""},
		{limiter.RedisOptions{URL: "redis://h:6379", Mode: "single"}, ""},
		{limiter.RedisOptions{URL: "redis://h:1?addr=h:2", Mode: "cluster"}, ""},
		{limiter.RedisOptions{URL: "redis://s:26379?master_name=m", Mode: "sentinel"}, ""},
		{limiter.RedisOptions{URL: "redis://s:26379", Mode: "sentinel", SentinelMaster: "m"}, ""},
		{limiter.RedisOptions{URL: "redis://h:6379", Mode: "mesh"}, "--redis-mode"},
		{limiter.RedisOptions{URL: "redis://h:6379", SentinelMaster: "m"}, "--redis-sentinel-master"},
		{limiter.RedisOptions{URL: "redis://h:1", Mode: "cluster", SentinelMaster: "m"}, "--redis-sentinel-master"},
		{limiter.RedisOptions{URL: "redis://s:26379", Mode: "sentinel"}, "--redis-sentinel-master NAME or master_name"},
		{limiter.RedisOptions{URL: "127.0.0.1:6379"}, `--redis-url "127.0.0.1:6379": want a URL: redis://127.0.0.1:6379`},
		{limiter.RedisOptions{URL: "rediss://h:6380"}, ""},
		{limiter.RedisOptions{URL: "user:s3cret@h:6379"}, "--redis-url: want a URL: redis://[user:password@]host:port"},
		{limiter.RedisOptions{URL: "redis://h:6379?read_timeout=50ms"}, "read_timeout in the URL is not used: set --redis-read-timeout"},
		{limiter.RedisOptions{URL: "redis://h:1?addr=h:2&dial_timeout=2s", Mode: "cluster"}, "set --redis-dial-timeout"},
		{limiter.RedisOptions{URL: "redis://h:6379?pool_size=50&write_timeout=1s"}, "set --redis-write-timeout"},
		{limiter.RedisOptions{URL: "redis://h:6379?pool_size=50"}, ""},
	} {
		err := checkRedisMode(tc.o)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.o, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: error %v, want one naming %q", tc.o, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "s3cret"):
			t.Errorf("%+v: the error repeats the password: %v", tc.o, err)
		}
	}
	if _, err := newRedisEngine(limiter.RedisOptions{URL: "redis://h:6379", Mode: "mesh"}); err == nil ||
		!strings.Contains(err.Error(), "--redis-mode") {
		t.Errorf("newRedisEngine with a bad mode: %v", err)
	}
}

// The server's wiring on a real cluster: the engine openEngine builds from the flags and
// the keys newKeyBuilder builds. A request with two descriptors of one domain is one
// script call on one slot (without the hash tag its keys would span slots and Redis would
// refuse the call), and it stays all or nothing: a denied request charges neither limit.
func TestServeOnRedisCluster(t *testing.T) {
	cl := testredis.StartCluster(t, 3, 0)
	c, err := loadServeConfig([]string{"--redis-mode", "cluster", "--redis-url", cl.URL(),
		"--redis-read-timeout", "5s", "--redis-write-timeout", "5s"})
	if err != nil {
		t.Fatal(err)
	}
	engine, _, err := openEngine(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	rules, err := descriptors.Parse("edge.yaml", []byte(`domain: edge
algorithm: sliding_window_log
descriptors:
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	keys := newKeyBuilder(c)
	d := decide.New(rules, engine, decide.Options{Keys: keys})
	user := "u-" + time.Now().Format("150405.000000000")
	req := &decide.Request{Domain: "edge", Descriptors: []decide.Descriptor{
		{Entries: []descriptors.Entry{{Key: "user", Value: user}}},
		{Entries: []descriptors.Entry{{Key: "tenant", Value: user}}},
	}}
	for i, want := range []bool{false, false, true} {
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		if res.OverLimit != want {
			t.Fatalf("request %d: over limit %v, want %v", i+1, res.OverLimit, want)
		}
		if i == 2 {
			if r := res.Statuses[1].Decision.Remaining; r != 98 {
				t.Errorf("the denied request charged the tenant limit: remaining %d, want 98", r)
			}
		}
	}
	// The request's two keys exist, and on one slot.
	var found []string
	var mu sync.Mutex
	err = cl.Client().ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
		ks, err := m.Keys(ctx, "*"+user+"*").Result()
		mu.Lock()
		found = append(found, ks...)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 2 || cl.Slot(found[0]) != cl.Slot(found[1]) {
		t.Errorf("the request's keys %q are not two keys on one slot", found)
	}
}

// A Redis URL that go-redis's parser for the mode refuses is a mistake in the settings,
// reported as one plain line and exit 2 before anything starts, like a bare host:port;
// it used to be the engine's error at start ("level=ERROR msg=exiting error="redis: URL:
// redis: invalid URL scheme: http"", exit 1). A URL holding a password is not repeated.
// So is --engine redis without a URL.
func TestRedisURLsGoRedisRefusesAreSettingsErrors(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--engine", "redis"}, "--engine redis needs --redis-url (env RATELIMIT_EXT_REDIS_URL)"},
		{[]string{"--redis-url", "127.0.0.1:6379"}, `--redis-url "127.0.0.1:6379": want a URL: redis://127.0.0.1:6379 (rediss:// for TLS)`},
		{[]string{"--redis-url", "http://127.0.0.1:6379"}, `--redis-url "http://127.0.0.1:6379": invalid URL scheme: http`},
		{[]string{"--redis-url", "redis://127.0.0.1:6379?bogus=1"}, `--redis-url "redis://127.0.0.1:6379?bogus=1": unexpected option: bogus`},
		{[]string{"--redis-url", "redis://127.0.0.1:6379/x"}, `--redis-url "redis://127.0.0.1:6379/x": invalid database number: "x"`},
		{[]string{"--redis-url", "redis://u:s3cret@127.0.0.1:6379?bogus=1"}, "--redis-url: unexpected option: bogus"},
		{[]string{"--redis-url", "redis://u:s3cret@127.0.0.1:x"}, `--redis-url: invalid port ":x" after host`},
		{[]string{"--redis-url", "redis://u:Xy9/s3cret@127.0.0.1:6379"}, "--redis-url: the user information does not parse: percent-encode / # ? @ : and % in the user name and password"},
		{[]string{"--redis-mode", "cluster", "--redis-url", "redis://h1:7000?master_name=m"}, `--redis-url "redis://h1:7000?master_name=m": unexpected option: master_name`},
		{[]string{"--redis-mode", "cluster", "--redis-url", "unix:///tmp/redis.sock"}, `--redis-url "unix:///tmp/redis.sock": invalid URL scheme: unix`},
		{[]string{"--redis-mode", "sentinel", "--redis-url", "redis://s1:26379?master_name=m&bogus=1"}, `--redis-url "redis://s1:26379?master_name=m&bogus=1": unexpected option: bogus`},
		{[]string{"--redis-mode", "sentinel", "--redis-url", "redis://s1:26379?master_name=m&password=s3cret&bogus=1"}, "--redis-url: unexpected option: bogus"},
	} {
		// A config directory that does not exist: should the URL pass, serve stops at
		// the rules (exit 1) instead of serving.
		args := append([]string{"--config-dir", t.TempDir() + "/none", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)
		code, out := runStderr(t, args...)
		if code != 2 || out != "ratelimit-ext: "+tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and the one line:\nratelimit-ext: %s", tc.args, code, out, tc.want)
		}
	}
	for _, ok := range []limiter.RedisOptions{ // and the forms of docs/redis.md pass
		{URL: "redis://u:p@h:6379/2?pool_size=50"},
		{URL: "rediss://h:6380"},
		{URL: "unix:///tmp/redis.sock"},
		{URL: "unix:/tmp/redis.sock"},
		{URL: "redis://h1:7000?addr=h2:7001&addr=h3:7002", Mode: limiter.RedisCluster},
		{URL: "redis://s1:26379?addr=s2:26379&master_name=m&password=p", Mode: limiter.RedisSentinel},
	} {
		if err := checkRedisMode(ok); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}
