package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// Redis deployment modes (--redis-mode single|cluster|sentinel, docs/redis.md).

// checkRedisOptions reports mistakes in the Redis flags in their own words with the
// other settings, before anything starts: a negative pool size, and with a URL those
// of checkRedisMode and checkRedisTLS.
func checkRedisOptions(o limiter.RedisOptions) error {
	if o.PoolSize < 0 {
		return fmt.Errorf("--redis-pool-size %d: want 0 (10 per CPU) or more", o.PoolSize)
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{
		// A negative Redis timeout would mean "none" to go-redis, and lift the bound on
		// a script call (limiter.callBudget) with it; 0 would mean its default.
		{"redis-dial-timeout", o.DialTimeout},
		{"redis-read-timeout", o.ReadTimeout},
		{"redis-write-timeout", o.WriteTimeout},
	} {
		if d.value <= 0 {
			return fmt.Errorf("--%s %v: want a positive duration", d.flag, d.value)
		}
	}
	if o.URL == "" {
		return nil
	}
	if err := checkRedisMode(o); err != nil {
		return err
	}
	return checkRedisTLS(o)
}

// checkRedisTLS reports the --redis-tls-* flags beside a URL that is not rediss://, and
// the name flags set together or beside the URL's skip_verify (which verifies nothing,
// where either promises a verified chain). The engine refuses all of these too.
func checkRedisTLS(o limiter.RedisOptions) error {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil // the engine says what is wrong with the URL
	}
	for _, f := range []struct {
		flag string
		set  bool
	}{
		{"--redis-tls-ca", o.TLSCAFile != ""}, {"--redis-tls-cert", o.TLSCertFile != ""}, {"--redis-tls-key", o.TLSKeyFile != ""},
		{"--redis-tls-server-name", o.TLSServerName != ""}, {"--redis-tls-skip-hostname-verification", o.TLSSkipHostnameVerification},
	} {
		if f.set && u.Scheme != "rediss" {
			return fmt.Errorf("%s is for a rediss:// --redis-url, not %s://", f.flag, u.Scheme)
		}
	}
	flag := "--redis-tls-server-name"
	switch {
	case o.TLSServerName != "" && o.TLSSkipHostnameVerification:
		return errors.New("--redis-tls-server-name and --redis-tls-skip-hostname-verification: set one (the first checks the certificate's name against it, the second checks no name)")
	case o.TLSSkipHostnameVerification:
		flag = "--redis-tls-skip-hostname-verification"
	case o.TLSServerName == "":
		return nil
	}
	if v := u.Query().Get("skip_verify"); v == "true" || v == "1" {
		return fmt.Errorf("%s: skip_verify in --redis-url verifies nothing, where %s verifies the certificate's chain: drop one", flag, flag)
	}
	return nil
}

// checkRedisMode reports flag mistakes of --redis-url (a bare host:port), --redis-mode
// and --redis-sentinel-master in the flags' own words, before the engine is built.
func checkRedisMode(o limiter.RedisOptions) error {
	// A bare host:port is the likely mistake; unix:/path is a URL go-redis reads.
	if o.URL != "" && !strings.Contains(o.URL, "://") && !strings.HasPrefix(o.URL, "unix:") {
		if strings.Contains(o.URL, "@") { // it may hold a password: do not repeat it
			return errors.New("--redis-url: want a URL: redis://[user:password@]host:port (rediss:// for TLS)")
		}
		return fmt.Errorf("--redis-url %q: want a URL: redis://%s (rediss:// for TLS)", o.URL, o.URL)
	}
	if u, err := url.Parse(o.URL); err == nil {
		// go-redis reads these from the URL, but the flags (and their defaults) always
		// set them: say so rather than let the URL's value pass unused.
		for opt, flag := range map[string]string{"dial_timeout": "--redis-dial-timeout",
			"read_timeout": "--redis-read-timeout", "write_timeout": "--redis-write-timeout"} {
			if u.Query().Has(opt) {
				return fmt.Errorf("--redis-url: %s in the URL is not used: set %s instead", opt, flag)
			}
		}
		if n, err := strconv.Atoi(u.Query().Get("max_retries")); err == nil && n > 0 {
			// A script call that may have run must not be sent again: it could charge twice.
			return fmt.Errorf("--redis-url: max_retries=%d in the URL: retries are not allowed (a script call that may have run must not be sent twice)", n)
		}
	}
	mode, err := limiter.ParseRedisMode(string(o.Mode))
	if err != nil { // its error says "redis mode", as the flag's name does
		return fmt.Errorf("--redis-mode %q: want single, cluster or sentinel", o.Mode)
	}
	if err := parseRedisURL(o.URL, mode); err != nil {
		return err
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

// parseRedisURL reads a --redis-url with go-redis's parser for the mode, the one the
// engine will use, so that a URL it refuses (another scheme, an option it does not
// know, a database that is not a number) is a mistake in the settings, said before
// anything starts, rather than the engine's error at start. The URL is quoted unless it
// may hold a secret, and the reason never holds one (limiter.CheckURL).
func parseRedisURL(raw string, mode limiter.RedisMode) error {
	if raw == "" {
		return nil
	}
	err := limiter.CheckURL(raw, mode)
	switch {
	case err == nil:
		return nil
	case limiter.HasSecret(raw):
		return fmt.Errorf("--redis-url: %w", err)
	}
	return fmt.Errorf("--redis-url %q: %w", raw, err)
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

// keyPrefixFlag registers --key-prefix, which serve and conformance share.
func keyPrefixFlag(f *envFlags, p *string) {
	f.StringVar(p, "key-prefix", "rlx:", "prefix of every storage key")
}

// checkKeyPrefix refuses braces in the prefix on Redis Cluster: each domain's keys (a
// conformance run's too) get a hash tag after the prefix, so that they share one slot;
// braces in the prefix would pick the slot instead, the same for all.
func checkKeyPrefix(prefix string, o limiter.RedisOptions) error {
	if isCluster(o) && strings.ContainsAny(prefix, "{}") {
		return fmt.Errorf("--key-prefix %q: no braces on Redis Cluster (each domain's keys get their hash tag after the prefix)", prefix)
	}
	return nil
}

// conformancePrefix is the key prefix of a conformance replay: under the service's
// --key-prefix, so that the least-privilege ACL user of docs/redis.md may write its keys,
// then "conformance:<pid>"; on Redis Cluster that part is a hash tag, so the keys of each
// multi-limit suite share a slot.
func conformancePrefix(o limiter.RedisOptions, keyPrefix string) string {
	p := fmt.Sprintf("conformance:%d", os.Getpid())
	if isCluster(o) {
		return keyPrefix + "{" + p + "}"
	}
	return keyPrefix + p
}
