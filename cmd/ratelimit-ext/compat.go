package main

import (
	"fmt"
	"net"
	"os"
	"slices"
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
	"USE_PROMETHEUS":                          "metrics are always on, at /metrics on the HTTP port",
	"USE_STATSD":                              "statsd is not supported; scrape /metrics",
	"NEAR_LIMIT_RATIO":                        "near_limit is counted below 20% of the limit left (docs/metrics.md)",
	"LIMIT_RESPONSE_HEADERS_ENABLED":          "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"LOCAL_CACHE_SIZE_IN_BYTES":               "the local over-limit cache is on by default and sized in entries (--local-cache-size)",
	"REDIS_PIPELINE_WINDOW":                   "script calls are batched automatically (--redis-batch)",
	"REDIS_PIPELINE_LIMIT":                    "script calls are batched automatically (--redis-batch-size)",
	"EXPIRATION_JITTER_MAX_SECONDS":           "keys expire exactly when their state is cold",
	"RUNTIME_WATCH_ROOT":                      "the config directory is always watched (--watch)",
	"RUNTIME_IGNOREDOTFILES":                  "dot-files are always ignored",
	"BACKEND_TYPE":                            "the engine is redis when a Redis URL is set, else memory",
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "readiness always waits for rules (with FORCE_START_WITHOUT_INITIAL_CONFIG, an empty start counts)",
}

// applyLegacyEnv maps envoyproxy/ratelimit's variables found by lookup onto our own
// (through setenv) and returns a note per variable seen. A value we cannot honour that
// would change behaviour silently (an unknown CONFIG_TYPE) is an error.
func applyLegacyEnv(lookup func(string) (string, bool), setenv func(string, string) error) ([]legacyNote, error) {
	var notes []legacyNote
	assign := func(legacy, flag, value string, show bool) {
		ours := envName(flag)
		if _, taken := lookup(ours); taken {
			notes = append(notes, legacyNote{legacy, "ignored: " + ours + " is set"})
			return
		}
		shown := ours + "=" + value
		if !show {
			shown = ours + " (the value is not logged)"
		}
		if err := setenv(ours, value); err == nil {
			notes = append(notes, legacyNote{legacy, "mapped to " + shown})
		}
	}
	set := func(legacy, flag, value string) { assign(legacy, flag, value, true) }
	get := func(name string) (string, bool) {
		v, ok := lookup(name)
		return strings.TrimSpace(v), ok && strings.TrimSpace(v) != ""
	}
	m := mapper{get: get, set: set,
		setSecret: func(legacy, flag, value string) { assign(legacy, flag, value, false) },
		ignore:    func(legacy, why string) { notes = append(notes, legacyNote{legacy, "ignored: " + why}) }}
	if err := mapLegacyXDS(m); err != nil {
		return notes, err
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
	if err := mapLegacyRedis(m); err != nil {
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
// (or a socket path, or for Sentinel "master,host:port,host:port"). A URL that carries
// REDIS_AUTH's password is not logged.
func mapLegacyRedis(m mapper) error {
	get, set := m.get, m.set
	addr, ok := get("REDIS_URL")
	if !ok {
		return nil
	}
	auth, _ := get("REDIS_AUTH")
	setURL := set
	if auth != "" {
		setURL = m.setSecret
	}
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
		setURL("REDIS_URL", "redis-url", "unix://"+user+addr)
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
	setURL("REDIS_URL", "redis-url", url)
	return nil
}

// mapper is what a group of legacy variables is mapped with: read one, set one of ours
// (setSecret for values that must not reach the log), or report one ignored.
type mapper struct {
	get            func(string) (string, bool)
	set, setSecret func(legacy, flag, value string)
	ignore         func(legacy, why string)
}

// xdsServerDefault is envoyproxy/ratelimit's CONFIG_GRPC_XDS_SERVER_URL when unset.
const xdsServerDefault = "localhost:18000"

// legacyXDSTLS are the xDS TLS variables, honoured (as there) only with
// CONFIG_GRPC_XDS_SERVER_USE_TLS=true.
var legacyXDSTLS = []struct{ legacy, flag string }{
	{"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "xds-tls-ca"},
	{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "xds-tls-cert"},
	{"CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "xds-tls-key"},
	{"CONFIG_GRPC_XDS_SERVER_TLS_SAN", "xds-tls-server-name"},
}

// legacyXDSSimple map one to one (values in the same format).
var legacyXDSSimple = []struct{ legacy, flag string }{
	{"CONFIG_GRPC_XDS_NODE_ID", "xds-node-id"},
	{"CONFIG_GRPC_XDS_NODE_METADATA", "xds-node-metadata"},
	{"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "xds-backoff-initial"},
	{"XDS_CLIENT_BACKOFF_MAX_INTERVAL", "xds-backoff-max"},
	{"XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "xds-max-message-bytes"},
}

// mapLegacyXDS maps CONFIG_TYPE and, when it is GRPC_XDS_SOTW, the xDS client's
// variables. With any other CONFIG_TYPE those variables are ignored, as they are there.
func mapLegacyXDS(m mapper) error {
	get, set, ignore := m.get, m.set, m.ignore
	xdsVars := []string{"CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
		"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "CONFIG_GRPC_XDS_SERVER_USE_TLS",
		"XDS_CLIENT_BACKOFF_JITTER", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "FORCE_START_WITHOUT_INITIAL_CONFIG"}
	for _, v := range slices.Concat(legacyXDSTLS, legacyXDSSimple) {
		xdsVars = append(xdsVars, v.legacy)
	}
	configType, _ := get("CONFIG_TYPE")
	switch strings.ToUpper(configType) {
	case "", "FILE":
		for _, v := range xdsVars {
			if _, ok := get(v); ok {
				ignore(v, "CONFIG_TYPE is not GRPC_XDS_SOTW")
			}
		}
		return nil
	case "GRPC_XDS_SOTW":
	default:
		return fmt.Errorf("CONFIG_TYPE=%s: want FILE or GRPC_XDS_SOTW", configType)
	}
	set("CONFIG_TYPE", "config-source", sourceXDS)
	server, ok := get("CONFIG_GRPC_XDS_SERVER_URL")
	if !ok {
		set("CONFIG_TYPE", "xds-server", xdsServerDefault) // their default
	} else {
		set("CONFIG_GRPC_XDS_SERVER_URL", "xds-server", server)
	}
	for _, x := range legacyXDSSimple {
		if v, ok := get(x.legacy); ok {
			set(x.legacy, x.flag, v)
		}
	}
	if v, ok := get("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL"); ok {
		if _, both := get("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL"); both {
			ignore("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL sets the first wait")
		} else {
			set("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "xds-backoff-initial", v)
		}
	}
	jitter := true
	if v, ok := get("XDS_CLIENT_BACKOFF_JITTER"); ok {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("XDS_CLIENT_BACKOFF_JITTER=%q: want true or false", v)
		}
		jitter = on
		if on {
			ignore("XDS_CLIENT_BACKOFF_JITTER", "jitter is on by default; XDS_CLIENT_BACKOFF_RANDOM_FACTOR sets how much")
		} else {
			set("XDS_CLIENT_BACKOFF_JITTER", "xds-backoff-jitter", "0")
		}
	}
	if v, ok := get("XDS_CLIENT_BACKOFF_RANDOM_FACTOR"); ok {
		if jitter {
			set("XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "xds-backoff-jitter", v)
		} else {
			ignore("XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "XDS_CLIENT_BACKOFF_JITTER=false turns jitter off")
		}
	}
	if v, ok := get("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS"); ok {
		// Their format is key:value,key:value; ours key=value. Values may be secrets
		// (tokens): they are not logged.
		var kv []string
		for item := range strings.SplitSeq(v, ",") {
			if k, val, found := strings.Cut(item, ":"); found {
				kv = append(kv, strings.TrimSpace(k)+"="+strings.TrimSpace(val))
			} else if strings.TrimSpace(item) != "" {
				return fmt.Errorf("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: %q is not key:value", item)
			}
		}
		m.setSecret("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "xds-headers", strings.Join(kv, ","))
	}
	useTLS := false
	if v, ok := get("CONFIG_GRPC_XDS_SERVER_USE_TLS"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("CONFIG_GRPC_XDS_SERVER_USE_TLS=%q: want true or false", v)
		}
		useTLS = b
		if b {
			set("CONFIG_GRPC_XDS_SERVER_USE_TLS", "xds-tls", "true")
		}
	}
	for _, x := range legacyXDSTLS {
		if v, ok := get(x.legacy); ok {
			if useTLS {
				set(x.legacy, x.flag, v)
			} else {
				ignore(x.legacy, "CONFIG_GRPC_XDS_SERVER_USE_TLS is not true")
			}
		}
	}
	if v, ok := get("FORCE_START_WITHOUT_INITIAL_CONFIG"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("FORCE_START_WITHOUT_INITIAL_CONFIG=%q: want true or false", v)
		}
		set("FORCE_START_WITHOUT_INITIAL_CONFIG", "xds-start-without-rules", strconv.FormatBool(b))
	}
	return nil
}

// legacyEnvFromOS applies the legacy variables of the process environment.
func legacyEnvFromOS() ([]legacyNote, error) {
	return applyLegacyEnv(os.LookupEnv, os.Setenv)
}
