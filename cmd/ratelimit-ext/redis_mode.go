package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// Redis deployment modes (--redis-mode single|cluster|sentinel, docs/redis.md).

// checkRedisMode reports flag mistakes of --redis-url (a bare host:port), --redis-mode
// and --redis-sentinel-master in the flags' own words, before the engine is built.
func checkRedisMode(o limiter.RedisOptions) error {
	if o.URL != "" && !strings.Contains(o.URL, "://") {
		return fmt.Errorf("--redis-url %q: want a URL: redis://%s (rediss:// for TLS)", o.URL, o.URL)
	}
	mode, err := limiter.ParseRedisMode(string(o.Mode))
	if err != nil {
		return fmt.Errorf("--redis-mode: %w", err)
	}
	if o.SentinelMaster != "" && mode != limiter.RedisSentinel {
		return fmt.Errorf("--redis-sentinel-master is for --redis-mode sentinel, not %s", mode)
	}
	if mode == limiter.RedisSentinel && o.SentinelMaster == "" {
		if u, err := url.Parse(o.URL); err == nil && u.Query().Get("master_name") == "" {
			return errors.New("--redis-mode sentinel needs the master's name: --redis-sentinel-master NAME or master_name=NAME in --redis-url")
		}
	}
	return nil
}

// isCluster reports whether the Redis options select Redis Cluster.
func isCluster(o limiter.RedisOptions) bool { return o.Mode == limiter.RedisCluster }

// newKeyBuilder builds the storage keys. On Redis Cluster every key of a domain carries
// the domain as a {hash tag}, so all keys of a request share one slot and the request
// stays one atomic script call.
func newKeyBuilder(c *serveConfig) *storekey.Builder {
	keys := storekey.New(c.keyPrefix, c.maxKeyLen)
	keys.ClusterTag = isCluster(c.redis())
	return keys
}

// conformancePrefix is the key prefix of a conformance replay; on Redis Cluster it is a
// hash tag, so the keys of each multi-limit suite share a slot.
func conformancePrefix(o limiter.RedisOptions) string {
	p := fmt.Sprintf("rlx-conformance:%d", os.Getpid())
	if isCluster(o) {
		return "{" + p + "}"
	}
	return p
}
