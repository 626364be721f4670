package main

import (
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
)

// envoyproxy/ratelimit's environment variables, so a deployment can switch by changing
// its image (docs/migrating.md). Each one is mapped onto our own RATELIMIT_EXT_ variable
// when that is not set, or reported at startup as ignored, with the reason. Precedence:
// a flag, then RATELIMIT_EXT_*, then these.

// legacyNote is what happened to one legacy variable.
type legacyNote struct {
	name, outcome string
}

// ignoredLegacy are variables we do not map, with what to do instead.
var ignoredLegacy = map[string]string{
	"USE_PROMETHEUS":                 "metrics are always on, at /metrics on the HTTP port",
	"USE_STATSD":                     "statsd is not supported; scrape /metrics",
	"NEAR_LIMIT_RATIO":               "near_limit is counted below 20% of the limit left (docs/metrics.md)",
	"LIMIT_RESPONSE_HEADERS_ENABLED": "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"LOCAL_CACHE_SIZE_IN_BYTES":      "the local over-limit cache is on by default and sized in entries (--local-cache-size)",
	"REDIS_PIPELINE_WINDOW":          "script calls are batched automatically (--redis-batch)",
	"REDIS_PIPELINE_LIMIT":           "script calls are batched automatically (--redis-batch-size)",
	"EXPIRATION_JITTER_MAX_SECONDS":  "keys expire exactly when their state is cold",
	"RUNTIME_WATCH_ROOT":             "the config directory is always watched (--watch)",
	"RUNTIME_IGNOREDOTFILES":         "dot-files are always ignored",
	"BACKEND_TYPE":                   "the engine is redis when a Redis URL is set, else memory",
}

// applyLegacyEnv maps envoyproxy/ratelimit's variables found by lookup onto our own
// (through setenv) and returns a note per variable seen. An unsupported value that would
// change behaviour silently (CONFIG_TYPE=GRPC_XDS_SOTW) is an error.
func applyLegacyEnv(lookup func(string) (string, bool), setenv func(string, string) error) ([]legacyNote, error) {
	var notes []legacyNote
	set := func(legacy, flag, value string) {
		ours := envName(flag)
		if _, taken := lookup(ours); taken {
			notes = append(notes, legacyNote{legacy, "ignored: " + ours + " is set"})
			return
		}
		if err := setenv(ours, value); err == nil {
			notes = append(notes, legacyNote{legacy, "mapped to " + ours + "=" + value})
		}
	}
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		return strings.TrimSpace(v), ok && strings.TrimSpace(v) != ""
	}
	if v, ok := get("CONFIG_TYPE"); ok && !strings.EqualFold(v, "FILE") {
		return notes, fmt.Errorf("CONFIG_TYPE=%s is not supported yet: rules come from files (--config-dir)", v)
	}
	if root, ok := get("RUNTIME_ROOT"); ok {
		sub, _ := get("RUNTIME_SUBDIRECTORY")
		set("RUNTIME_ROOT", "config-dir", strings.TrimSuffix(root, "/")+"/"+strings.Trim(sub, "/")+"/config")
	}
	for legacy, flag := range map[string]string{"PORT": "http-addr", "GRPC_PORT": "grpc-addr"} {
		if v, ok := get(legacy); ok {
			host, _ := get(strings.TrimSuffix(legacy, "PORT") + "HOST")
			if host == "" {
				host = "0.0.0.0"
			}
			if _, err := strconv.Atoi(v); err != nil {
				return notes, fmt.Errorf("%s=%q is not a port number", legacy, v)
			}
			set(legacy, flag, net.JoinHostPort(host, v))
		}
	}
	simple := map[string]string{
		"LOG_LEVEL": "log-level", "LOG_FORMAT": "log-format", "SHADOW_MODE": "shadow-mode",
		"CACHE_KEY_PREFIX": "key-prefix", "REDIS_POOL_SIZE": "redis-pool-size",
	}
	for legacy, flag := range simple {
		if v, ok := get(legacy); ok {
			set(legacy, flag, strings.ToLower(v))
		}
	}
	if err := mapLegacyRedis(get, set); err != nil {
		return notes, err
	}
	for legacy, why := range ignoredLegacy {
		if _, ok := get(legacy); ok {
			notes = append(notes, legacyNote{legacy, "ignored: " + why})
		}
	}
	sort.Slice(notes, func(i, j int) bool { return notes[i].name < notes[j].name })
	return notes, nil
}

// mapLegacyRedis turns REDIS_SOCKET_TYPE, REDIS_URL, REDIS_AUTH, REDIS_TLS and
// REDIS_TYPE into a Redis URL and mode. envoyproxy/ratelimit's REDIS_URL is host:port
// (or a socket path, or for Sentinel "master,host:port,host:port").
func mapLegacyRedis(get func(string) (string, bool), set func(legacy, flag, value string)) error {
	addr, ok := get("REDIS_URL")
	if !ok {
		return nil
	}
	auth, _ := get("REDIS_AUTH")
	tlsOn, _ := get("REDIS_TLS")
	mode, _ := get("REDIS_TYPE")
	socket, _ := get("REDIS_SOCKET_TYPE")
	scheme := "redis"
	if b, _ := strconv.ParseBool(tlsOn); b {
		scheme = "rediss"
	}
	user := ""
	if auth != "" {
		user = ":" + auth + "@"
		if u, p, found := strings.Cut(auth, ":"); found {
			user = u + ":" + p + "@"
		}
	}
	if strings.EqualFold(socket, "unix") {
		set("REDIS_URL", "redis-url", "unix://"+user+addr)
		return nil
	}
	parts := strings.Split(addr, ",")
	switch strings.ToLower(mode) {
	case "", "single":
	case "cluster":
		set("REDIS_TYPE", "redis-mode", "cluster")
	case "sentinel":
		if len(parts) < 2 {
			return fmt.Errorf("REDIS_TYPE=sentinel wants REDIS_URL=master,host:port[,host:port...]")
		}
		set("REDIS_TYPE", "redis-mode", "sentinel")
		set("REDIS_TYPE", "redis-sentinel-master", parts[0])
		parts = parts[1:]
	default:
		return fmt.Errorf("REDIS_TYPE=%s: want single, cluster or sentinel", mode)
	}
	url := scheme + "://" + user + parts[0]
	for i, extra := range parts[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		url += sep + "addr=" + extra
	}
	set("REDIS_URL", "redis-url", url)
	return nil
}

// legacyEnvFromOS applies the legacy variables of the process environment.
func legacyEnvFromOS() ([]legacyNote, error) {
	return applyLegacyEnv(os.LookupEnv, os.Setenv)
}
