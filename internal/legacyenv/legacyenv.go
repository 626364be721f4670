// Package legacyenv maps envoyproxy/ratelimit's environment variables onto ours, so a
// deployment can switch by changing its image (docs/migrating.md). Each one is mapped
// onto our own RATELIMIT_EXT_ variable when that is not set, or reported at startup as
// ignored, with the reason. Precedence: a flag, then RATELIMIT_EXT_*, then these, then
// the defaults (the container image's are built into the binary, so that these still
// win over them). A variable set empty or to spaces, ours or theirs, counts as unset, and
// so does our flag given so (Blank). A malformed value of theirs stops the start only
// when it would be used: beside our own setting of it, it is reported ignored.
package legacyenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// Note is what happened to one legacy variable.
type Note struct {
	Name, Outcome string
	MappedTo      string // our variable it was mapped onto, if it was
	Ignored       bool   // it had no effect
}

// ignoredNote is the note of a variable that had no effect, and why.
func ignoredNote(name, why string) Note {
	return Note{Name: name, Outcome: "ignored: " + why, Ignored: true}
}

// Log logs what became of each envoyproxy/ratelimit variable: a variable that had
// no effect as a warning, so that it shows at --log-level warn (that service's default
// level is WARN), the others as information.
func Log(log *slog.Logger, notes []Note) {
	for _, n := range notes {
		level := slog.LevelInfo
		if n.Ignored {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "envoyproxy/ratelimit setting", "variable", n.Name, "outcome", n.Outcome)
	}
}

// dirExists says whether a directory exists (a variable, for tests).
var dirExists = func(dir string) bool {
	info, err := os.Stat(dir)
	return err == nil && info.IsDir()
}

// Variables maps each of our variables that an envoyproxy/ratelimit variable was
// mapped onto to that variable's name.
func Variables(notes []Note) map[string]string {
	m := map[string]string{}
	for _, n := range notes {
		if n.MappedTo != "" {
			m[n.MappedTo] = n.Name
		}
	}
	return m
}

// ignoredLegacy are variables we do not map, with what to do instead.
var ignoredLegacy = map[string]string{
	"USE_STATSD":                              "statsd is not supported; scrape /metrics",
	"STATSD_HOST":                             "statsd is not supported; scrape /metrics",
	"STATSD_PORT":                             "statsd is not supported; scrape /metrics",
	"PROMETHEUS_MAPPER_YAML":                  "the metrics are Prometheus-native, named ratelimit_ext_* (docs/metrics.md): there is no statsd mapping",
	"NEAR_LIMIT_RATIO":                        "near_limit is counted below 20% of the limit left (docs/metrics.md)",
	"LIMIT_RESPONSE_HEADERS_ENABLED":          "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"LOCAL_CACHE_SIZE_IN_BYTES":               "the local over-limit cache is on by default and sized in entries (--local-cache-size)",
	"REDIS_PIPELINE_WINDOW":                   "script calls are batched automatically (--redis-batch)",
	"REDIS_PIPELINE_LIMIT":                    "script calls are batched automatically (--redis-batch-size)",
	"REDIS_USE_EXPLICIT_PIPELINE":             "script calls are batched automatically (--redis-batch)",
	"REDIS_PERSECOND_USE_EXPLICIT_PIPELINE":   "one Redis holds every limit: per-second limits are not split out",
	"DETAILED_METRICS_MODE":                   "set detailed_metric: true on the rule entries whose values should have series of their own (docs/metrics.md)",
	"EXPIRATION_JITTER_MAX_SECONDS":           "keys expire exactly when their state is cold",
	"RUNTIME_WATCH_ROOT":                      "the config directory is watched unless --watch=false",
	"RUNTIME_IGNOREDOTFILES":                  "dot-files are always ignored",
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED": "/healthcheck and readiness always wait for rules (with FORCE_START_WITHOUT_INITIAL_CONFIG, the empty start counts)",
	"REDIS_HEALTH_CHECK_ACTIVE_CONNECTION":    "/healthcheck never follows the store (as with this off); /readyz and grpc.health.v1 always do: probe /readyz for readiness that includes Redis",
	"DEBUG_HOST":                              "there is no debug port: /debug/config is on the HTTP port, profiles on --pprof-addr",
	"DEBUG_PORT":                              "there is no debug port: /debug/config is on the HTTP port, profiles on --pprof-addr",
	"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "a denied request never consumes anything here",
	"LIMIT_LIMIT_HEADER":                      "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"LIMIT_REMAINING_HEADER":                  "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"LIMIT_RESET_HEADER":                      "set Envoy's enable_x_ratelimit_headers: DRAFT_VERSION_03, or --ratelimit-headers for the IETF fields",
	"USE_DOG_STATSD":                          "statsd is not supported; scrape /metrics",
	"USE_DOG_STATSD_MOGRIFIERS":               "statsd is not supported; scrape /metrics",
	"EXTRA_TAGS":                              "statsd is not supported; scrape /metrics",
	"MEMCACHE_HOST_PORT":                      "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_SRV":                            "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_SRV_REFRESH":                    "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_MAX_IDLE_CONNS":                 "memcached is not supported: use Redis (--redis-url)",
	"REDIS_PERSECOND":                         "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_URL":                     "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_SOCKET_TYPE":             "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_TYPE":                    "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_AUTH":                    "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_TLS":                     "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_POOL_SIZE":               "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_PIPELINE_WINDOW":         "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_PIPELINE_LIMIT":          "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_SENTINEL_AUTH":           "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_TIMEOUT":                 "one Redis holds every limit: per-second limits are not split out",
	"REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR":  "one Redis holds every limit: per-second limits are not split out",
	"REDIS_TIMEOUT":                           "a script call is bounded by --redis-write-timeout plus --redis-read-timeout (8 ms each by default, under Envoy's 20 ms), a dial by --redis-dial-timeout",
	"REDIS_POOL_ON_EMPTY_BEHAVIOR":            "a call waits for a free connection within its time budget (--redis-pool-size sets the pool)",
	"MEMCACHE_TLS":                            "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_TLS_CACERT":                     "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_TLS_CLIENT_CERT":                "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_TLS_CLIENT_KEY":                 "memcached is not supported: use Redis (--redis-url)",
	"MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION": "memcached is not supported: use Redis (--redis-url)",
	"DISABLE_STATS":                           "statsd is not supported; scrape /metrics",
	"STATS_FLUSH_INTERVAL":                    "statsd is not supported; scrape /metrics",
	// envoyproxy/ratelimit reads its client CA from GRPC_CLIENT_TLS_CACERT; Envoy
	// Gateway sets this name, which it never reads, so Envoy's client certificate is
	// not checked there. Requiring it here would be a change the operator did not ask for.
	"GRPC_SERVER_TLS_CA_CERT":     "envoyproxy/ratelimit does not read it either (its client CA is GRPC_CLIENT_TLS_CACERT): client certificates are not required; set RATELIMIT_EXT_GRPC_TLS_CLIENT_CA to require them",
	"TRACING_ENABLED":             "tracing is not supported: no spans are exported",
	"TRACING_SERVICE_NAME":        "tracing is not supported",
	"TRACING_SERVICE_NAMESPACE":   "tracing is not supported",
	"TRACING_SERVICE_INSTANCE_ID": "tracing is not supported",
	"TRACING_SAMPLING_RATE":       "tracing is not supported",
	"TRACING_EXPORTER_PROTOCOL":   "tracing is not supported",
}

// Env is the environment the mapping reads and writes, and what of ours it yields to.
type Env struct {
	Lookup func(string) (string, bool)
	// Set sets one of our variables. Its failure is not reported: the variable is left
	// unset and gets no note. That is silent on purpose, as os.Setenv (FromOS) fails only
	// for a name that is empty or holds '=' or NUL, or a value that holds NUL: our names
	// never do, and values read from the environment cannot, so it never fails there.
	Set func(string, string) error
	// Given maps each flag the command line gives to its value (--name=value, or
	// --name value; "" for a switch given alone): a flag wins over their variables as
	// our own variable does, and its value (--xds-tls=false, --config-source=file)
	// decides how theirs are read. A flag given a blank value (Blank) is not in it.
	Given map[string]string
}

// FromOS applies the legacy variables of the process environment, beside the flags
// args gives.
func FromOS(args []string) ([]Note, error) {
	return Apply(Env{Lookup: os.LookupEnv, Set: os.Setenv, Given: flagsGiven(args)})
}

// VarName is the variable of ours that sets a flag: RATELIMIT_EXT_ and the flag's name
// in upper case, - as _ (--redis-url: RATELIMIT_EXT_REDIS_URL).
func VarName(flag string) string {
	return "RATELIMIT_EXT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// SetEmpty says whether our variable for flag, set empty, sets the flag to the empty
// string instead of counting as unset: for --key-prefix the empty value (no prefix) is
// one an operator means, and one that earlier versions honoured, so reading it as the
// default would move every counter to new keys on an upgrade.
func SetEmpty(flag string) bool { return flag == "key-prefix" }

// Blank says whether value, which our variable for flag holds or the command line
// gives flag, counts as unset: empty or spaces only (a chart's `value: ""`, a templated
// --redis-url= whose value came out empty), but "" for a flag that SetEmpty. A flag
// given blank is as if not given, the same rule as for the variable, so that the
// command line and the environment cannot disagree on whether ours is set.
func Blank(flag, value string) bool {
	return strings.TrimSpace(value) == "" && !(value == "" && SetEmpty(flag))
}

// Ours reads our variable for flag: set when it is not Blank.
func Ours(lookup func(string) (string, bool), flag string) (string, bool) {
	v, ok := lookup(VarName(flag))
	if !ok || Blank(flag, v) {
		return "", false
	}
	return v, true
}

// Apply maps envoyproxy/ratelimit's variables found in e onto our own and returns a
// note per variable seen. A value we cannot honour that would change behaviour
// silently (an unknown CONFIG_TYPE) is an error; the notes returned with it are those
// made so far.
func Apply(e Env) ([]Note, error) {
	m := &mapping{env: e}
	xds, err := mapLegacyXDS(m)
	if err != nil {
		return m.notes, err
	}
	// The order matters. A group sees what the groups before it set (mapLegacyBackend
	// must look for our own Redis URL before mapLegacyRedis sets one), and the first
	// error stops the rest.
	mapRuntime := func(m *mapping) error { return mapLegacyRuntime(m, xds) } // needs xds
	for _, mapGroup := range []func(*mapping) error{
		refuseGRPCUDS, mapQuotaMode, mapCalendarMonth, mapMergeDomains, mapLegacyBackend, mapRuntime, mapLegacyListeners,
	} {
		if err := mapGroup(m); err != nil {
			return m.notes, err
		}
	}
	mapLegacyWords(m)
	mapLegacyLogging(m)
	mapLegacyVerbatim(m)
	for _, mapGroup := range []func(*mapping) error{mapLegacyRedis, mapLegacyGRPCTLS, mapLegacyMetrics} {
		if err := mapGroup(m); err != nil {
			return m.notes, err
		}
	}
	ignoreTracingExporter(m)
	ignoreUnmapped(m)
	sort.SliceStable(m.notes, func(i, j int) bool { return m.notes[i].Name < m.notes[j].Name })
	return m.notes, nil
}

// ApplyRules is Apply for validate, which loads rules as serve does but leaves serve's
// other settings alone: it maps only the variables that change how rules load.
func ApplyRules(e Env) ([]Note, error) {
	m := &mapping{env: e}
	err := mapMergeDomains(m)
	return m.notes, err
}

// RulesFromOS applies ApplyRules to the process environment, beside the flags args gives.
func RulesFromOS(args []string) error {
	_, err := ApplyRules(Env{Lookup: os.LookupEnv, Set: os.Setenv, Given: flagsGiven(args)})
	return err
}

// mapMergeDomains maps MERGE_DOMAIN_CONFIG, envoyproxy/ratelimit's switch to merge the
// files (or xDS resources) that name one domain, onto --merge-domains.
func mapMergeDomains(m *mapping) error {
	on, set, err := m.booleanFor("MERGE_DOMAIN_CONFIG", "merge-domains")
	if err != nil || !set {
		return err
	}
	m.set("MERGE_DOMAIN_CONFIG", "merge-domains", strconv.FormatBool(on))
	return nil
}

// mapping is one run of Apply: the environment it reads and writes, and the notes so
// far. A group of legacy variables is mapped with its methods: read one (get), set one
// of ours (set; setSecret for a value that must not reach the log), report one
// ignored, or say what became of one that sets nothing itself (note: a switch for others).
type mapping struct {
	env   Env
	notes []Note
}

// get reads a legacy variable, without surrounding spaces: one that is blank counts as
// not set.
func (m *mapping) get(name string) (string, bool) {
	v, ok := m.env.Lookup(name)
	return strings.TrimSpace(v), ok && strings.TrimSpace(v) != ""
}

// takenBy says what of ours sets flag, winning over theirs: the flag on the command
// line, or our variable ("" when neither). Our variable set empty (a chart's
// `value: ""`) is unset, as theirs is (get), and as the flags read it (Ours), but for
// a flag whose empty value means something (SetEmpty); so is our flag given empty,
// which is not in Given (flagsGiven).
func (m *mapping) takenBy(flag string) string {
	if _, given := m.env.Given[flag]; given {
		return "--" + flag + " is given"
	}
	if _, ok := Ours(m.env.Lookup, flag); ok {
		return VarName(flag) + " is set"
	}
	return ""
}

// taken says whether our flag or variable for flag is set: it wins over theirs.
func (m *mapping) taken(flag string) bool { return m.takenBy(flag) != "" }

// ours reads the value our flag or variable gives flag: the command line's ("" for a
// flag given alone), else our variable's; set says whether either sets it.
func (m *mapping) ours(flag string) (value string, set bool) {
	if v, given := m.env.Given[flag]; given {
		return v, true
	}
	v, set := Ours(m.env.Lookup, flag)
	return strings.TrimSpace(v), set
}

// ourSwitch reads our boolean flag (--flag alone is true). decided is false when
// neither our flag nor our variable sets it, or when its value is not a boolean: then
// parsing the flags stops the start, whatever theirs say.
func (m *mapping) ourSwitch(flag string) (on, decided bool) {
	v, set := m.ours(flag)
	if !set {
		return false, false
	}
	if v == "" {
		return true, true
	}
	on, err := strconv.ParseBool(v)
	return on, err == nil
}

// overriddenBy says what of ours wins over legacy, which is malformed (err says how),
// and reports legacy ignored for that: "" when nothing does, and err stands. A value
// that would not be used must not stop the start.
func (m *mapping) overriddenBy(legacy, flag string, err error) string {
	by := m.takenBy(flag)
	if by != "" {
		m.ignore(legacy, err.Error()+"; "+by)
	}
	return by
}

// set maps legacy onto our variable for flag, with value, unless ours is taken (then
// legacy is ignored, and the note says by what).
func (m *mapping) set(legacy, flag, value string) { m.assign(legacy, flag, value, true) }

// setSecret is set for a value that must not reach the log (a password, a token).
func (m *mapping) setSecret(legacy, flag, value string) { m.assign(legacy, flag, value, false) }

// assign is set (show) and setSecret (not show). A variable Env.Set refuses gets no
// note (silently: os.Setenv never refuses ours, Env.Set says why).
func (m *mapping) assign(legacy, flag, value string, show bool) {
	ours := VarName(flag)
	if by := m.takenBy(flag); by != "" {
		m.ignore(legacy, by)
		return
	}
	shown := ours + "=" + value
	if !show {
		shown = ours + " (the value is not logged)"
	}
	if err := m.env.Set(ours, value); err == nil {
		m.notes = append(m.notes, Note{Name: legacy, Outcome: "mapped to " + shown, MappedTo: ours})
	}
}

// setDefault sets flag to envoyproxy/ratelimit's default for legacy, which is unset.
// It does not check that ours is free: the caller has.
func (m *mapping) setDefault(legacy, flag, value string) {
	ours := VarName(flag)
	if err := m.env.Set(ours, value); err == nil {
		m.notes = append(m.notes, Note{Name: legacy, MappedTo: ours,
			Outcome: "not set: envoyproxy/ratelimit's default, " + value + ", exists and is read (" + ours + "=" + value + ")"})
	}
}

// mapped says whether this mapping set our variable for flag (from one of theirs).
func (m *mapping) mapped(flag string) bool {
	return slices.ContainsFunc(m.notes, func(n Note) bool { return n.MappedTo == VarName(flag) })
}

// ignore reports legacy as having no effect, and why.
func (m *mapping) ignore(legacy, why string) { m.notes = append(m.notes, ignoredNote(legacy, why)) }

// note says what became of legacy when it sets nothing of ours itself.
func (m *mapping) note(legacy, outcome string) {
	m.notes = append(m.notes, Note{Name: legacy, Outcome: outcome})
}

// boolean reads a legacy switch: on, and whether it is set at all. A value that is not
// true or false (in strconv.ParseBool's spellings, as envconfig reads it there) is an
// error naming it.
func (m *mapping) boolean(legacy string) (on, set bool, err error) {
	v, set := m.get(legacy)
	if !set {
		return false, false, nil
	}
	on, err = strconv.ParseBool(v)
	if err != nil {
		return false, true, fmt.Errorf("%s=%q: want true or false", legacy, v)
	}
	return on, true, nil
}

// booleanFor is boolean for a switch that our flag (or variable) for flag overrides:
// malformed beside it, the switch is reported ignored and read as unset.
func (m *mapping) booleanFor(legacy, flag string) (on, set bool, err error) {
	on, set, err = m.boolean(legacy)
	if err != nil && m.overriddenBy(legacy, flag, err) != "" {
		return false, false, nil
	}
	return on, set, err
}

// refuseGRPCUDS stops the start when GRPC_UDS is set: Envoy would be pointed at a
// socket nobody listens on, so stop, as for TLS without a certificate.
func refuseGRPCUDS(m *mapping) error {
	if uds, ok := m.get("GRPC_UDS"); ok {
		return fmt.Errorf("GRPC_UDS=%q: a unix-socket gRPC listener is not supported; listen on TCP (--grpc-addr, or GRPC_PORT) and point Envoy's cluster at it", uds)
	}
	return nil
}

// legacyWords are the variables whose values are words (booleans, and the pool size):
// words are matched in any case, so they are passed on in lower case.
var legacyWords = map[string]string{
	"SHADOW_MODE": "shadow-mode", "REDIS_POOL_SIZE": "redis-pool-size",
	"RESPONSE_DYNAMIC_METADATA": "response-dynamic-metadata",
}

// mapLegacyWords maps legacyWords, in lower case.
func mapLegacyWords(m *mapping) {
	for legacy, flag := range legacyWords {
		if v, ok := m.get(legacy); ok {
			m.set(legacy, flag, strings.ToLower(v))
		}
	}
}

// mapLegacyVerbatim maps the variables whose values pass unchanged: Go durations there
// too (envconfig's time.Duration), and the key prefix, which is data, not a word
// ("App_" and "app_" are different keys).
func mapLegacyVerbatim(m *mapping) {
	for legacy, flag := range map[string]string{"GRPC_MAX_CONNECTION_AGE": "grpc-max-connection-age",
		"GRPC_MAX_CONNECTION_AGE_GRACE": "grpc-max-connection-age-grace"} {
		if v, ok := m.get(legacy); ok {
			m.set(legacy, flag, v)
		}
	}
	if v, ok := m.get("CACHE_KEY_PREFIX"); ok {
		m.set("CACHE_KEY_PREFIX", "key-prefix", v)
	}
}

// ignoreTracingExporter reports OTEL_EXPORTER_OTLP_ENDPOINT, the exporter's standard
// variable, which Envoy Gateway sets with tracing on. It is not envoyproxy/ratelimit's
// own, so it is reported only beside TRACING_ENABLED.
func ignoreTracingExporter(m *mapping) {
	if _, ok := m.get("TRACING_ENABLED"); ok {
		if _, ok := m.get("OTEL_EXPORTER_OTLP_ENDPOINT"); ok {
			m.ignore("OTEL_EXPORTER_OTLP_ENDPOINT", "tracing is not supported: no spans are exported")
		}
	}
}

// ignoreUnmapped reports each variable of ignoredLegacy that is set, with what to do
// instead.
func ignoreUnmapped(m *mapping) {
	for legacy, why := range ignoredLegacy {
		if _, ok := m.get(legacy); ok {
			m.ignore(legacy, why)
		}
	}
}

// mapLegacyRuntime maps RUNTIME_ROOT, RUNTIME_SUBDIRECTORY and RUNTIME_APPDIRECTORY to
// --config-dir, or says why they are ignored (rules from xDS, theirs or ours). A
// directory they name under the default root that is not there is an error; with none
// of them set, envoyproxy/ratelimit's default directory is read when it exists.
func mapLegacyRuntime(m *mapping, xds bool) error {
	runtimeVars := []string{"RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "RUNTIME_APPDIRECTORY"}
	firstRuntime := slices.IndexFunc(runtimeVars, func(v string) bool { _, ok := m.get(v); return ok })
	why := "rules come from the xDS server (CONFIG_TYPE=GRPC_XDS_SOTW)"
	if by := m.takenBy("xds-server"); by != "" && !xds {
		why, xds = "rules come from the xDS server ("+by+")", true
	}
	switch {
	case xds:
		// Envoy Gateway sets them though its rules come over xDS; they are unused there
		// too. Mapped, they would set a --config-dir that serve refuses beside an xDS server.
		for _, v := range runtimeVars {
			if _, ok := m.get(v); ok {
				m.ignore(v, why)
			}
		}
	case firstRuntime >= 0:
		// envoyproxy/ratelimit reads ROOT/SUBDIRECTORY/APPDIRECTORY, with its defaults
		// for the parts not set; one note, under the first of them that is set.
		root, rootSet := m.get("RUNTIME_ROOT")
		if !rootSet {
			root = "/srv/runtime_data/current"
		}
		sub, _ := m.get("RUNTIME_SUBDIRECTORY")
		app, ok := m.get("RUNTIME_APPDIRECTORY")
		if !ok {
			app = "config"
		}
		dir := strings.TrimSuffix(root, "/") + "/" + strings.Trim(sub, "/") + "/" + strings.Trim(app, "/")
		dir = path.Clean(dir)
		if !rootSet && !dirExists(dir) && !m.taken("config-dir") {
			// Reading --config-dir instead would serve whatever is there (the image's
			// example rules): every other domain would go unlimited without a word.
			return fmt.Errorf("%s: the rules directory it names, %s (under envoyproxy/ratelimit's default RUNTIME_ROOT), does not exist: mount the rules there, set RUNTIME_ROOT, or unset %[1]s to read --config-dir", runtimeVars[firstRuntime], dir)
		}
		m.set(runtimeVars[firstRuntime], "config-dir", dir)
	case !m.taken("config-dir") && dirExists(legacyRulesDir):
		// envoyproxy/ratelimit's rules directory when nothing is set: an image swapped
		// in beside rules mounted there reads them, as the one before did.
		m.setDefault("RUNTIME_ROOT", "config-dir", legacyRulesDir)
	}
	return nil
}

// legacyRulesDir is where envoyproxy/ratelimit reads its rules with none of the
// RUNTIME_* variables set.
const legacyRulesDir = "/srv/runtime_data/current/config"

// mapLegacyListeners maps the listeners' HOST and PORT variables (and GRPC_HOST,
// GRPC_PORT) to --http-addr and --grpc-addr, either one defaulting as there.
func mapLegacyListeners(m *mapping) error {
	for _, l := range []struct{ portVar, hostVar, flag, defaultPort string }{
		{"PORT", "HOST", "http-addr", "8080"}, {"GRPC_PORT", "GRPC_HOST", "grpc-addr", "8081"},
	} {
		port, portSet := m.get(l.portVar)
		if portSet && IsServiceLinkURL(port) {
			// Kubernetes sets <SERVICE>_PORT=tcp://ip:port for a Service named "grpc" (or
			// "port"'s kin) in the namespace: not a setting, and not worth refusing to start.
			m.ignore(l.portVar, "a Kubernetes service link ("+port+"), not a port number")
			port, portSet = "", false
		}
		host, hostSet := m.get(l.hostVar)
		switch {
		case !portSet && !hostSet:
			continue
		case !portSet:
			port = l.defaultPort
		case !hostSet:
			host = "0.0.0.0"
		}
		if by := m.takenBy(l.flag); by != "" { // ours wins: theirs is reported ignored, not checked
			if portSet {
				m.ignore(l.portVar, by)
			}
			if hostSet {
				m.ignore(l.hostVar, by)
			}
			continue
		}
		n, ok := portNumber(port)
		if !ok {
			return fmt.Errorf("%s=%q is not a port number: want 1 to 65535, in digits", l.portVar, port)
		}
		port = strconv.Itoa(n)
		if !portSet {
			m.set(l.hostVar, l.flag, net.JoinHostPort(host, port))
			continue
		}
		m.set(l.portVar, l.flag, net.JoinHostPort(host, port))
		if hostSet {
			m.note(l.hostVar, "used: the host of "+VarName(l.flag))
		}
	}
	return nil
}

// portNumber reads a port: 1 to 65535, in plain digits (no sign, no other base).
func portNumber(s string) (int, bool) {
	if s == "" || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}

// logrusLevels are the levels of envoyproxy/ratelimit's logger (logrus) that slog does
// not spell the same way, as the nearest of ours.
var logrusLevels = map[string]string{"warning": "warn", "trace": "debug", "fatal": "error", "panic": "error"}

// mapLegacyLogging maps LOG_LEVEL and LOG_FORMAT as envoyproxy/ratelimit reads them, so
// that an environment it started with starts this service too: LOG_LEVEL in logrus's
// words (a level logrus does not know stops both), and LOG_FORMAT json or, for any other
// value, text.
func mapLegacyLogging(m *mapping) {
	if v, ok := m.get("LOG_LEVEL"); ok {
		v = strings.ToLower(v)
		m.set("LOG_LEVEL", "log-level", cmp.Or(logrusLevels[v], v))
	}
	if v, ok := m.get("LOG_FORMAT"); ok {
		format := "text"
		if strings.EqualFold(v, "json") {
			format = "json"
		}
		m.set("LOG_FORMAT", "log-format", format)
	}
}

// mapQuotaMode handles QUOTA_MODE, envoyproxy/ratelimit's quota mode for every limit.
// There is no such switch here (quota_mode is a rule's), and serving its limits as hard
// limits would deny requests it allowed: true stops the process.
func mapQuotaMode(m *mapping) error {
	on, set, err := m.boolean("QUOTA_MODE")
	switch {
	case err != nil || !set:
		return err
	case on:
		return errors.New("QUOTA_MODE=true: quota mode for every limit is not supported; set quota_mode: true on the rule entries that should be soft limits (docs/configuration.md)")
	}
	m.ignore("QUOTA_MODE", "false is the default")
	return nil
}

// calendarMonthsVar is envoyproxy/ratelimit's switch to count `unit: month` per calendar
// month. A month here is always 30 days from the epoch (SPEC §7), so monthly quotas
// would reset on other days: with it on, rules with a month limit stop the start and
// are logged as errors when they arrive later (MonthLimitsRefused); others serve.
const calendarMonthsVar = "USE_CALENDAR_MONTH_RATE_LIMIT"

// mapCalendarMonth reports USE_CALENDAR_MONTH_RATE_LIMIT; serve acts on it with the rules.
func mapCalendarMonth(m *mapping) error {
	on, set, err := m.boolean(calendarMonthsVar)
	switch {
	case err != nil || !set:
		return err
	case on:
		// Not ignored: it refuses month limits (serve, with the rules; MonthLimitsRefused).
		m.note(calendarMonthsVar, "rules with a month limit stop the start, and such rules loaded later are applied and logged as errors: calendar months are not supported, and unit: month counts 30 days from the Unix epoch here (unset it, or set it false, to accept 30-day months)")
	default:
		m.ignore(calendarMonthsVar, "false is the default: a month is 30 days")
	}
	return nil
}

// CalendarMonthsAsked says whether the environment turns envoyproxy/ratelimit's
// calendar months on (mapCalendarMonth has refused any other value).
func CalendarMonthsAsked() bool {
	on, err := CalendarMonths(os.LookupEnv)
	return err == nil && on
}

// CalendarMonths reads USE_CALENDAR_MONTH_RATE_LIMIT from lookup, as serve does (Apply):
// on or not, and the error for a value that is not true or false. For validate, which
// refuses what serve refuses without mapping the rest.
func CalendarMonths(lookup func(string) (string, bool)) (bool, error) {
	m := &mapping{env: Env{Lookup: lookup}}
	on, _, err := m.boolean(calendarMonthsVar)
	return on, err
}

// MonthLimitsRefused is the error for rules with month limits while calendar months
// are asked for, nil when there are none (or they are not asked for). It names the
// first five, each where it is written (monthLimitName).
func MonthLimitsRefused(asked bool, rs *descriptors.RuleSet) error {
	return MonthLimitsRefusedIn("", asked, rs)
}

// MonthLimitsRefusedIn is MonthLimitsRefused for rules loaded from dir, which it puts
// before the file names ("" for none): validate names files from the working directory.
func MonthLimitsRefusedIn(dir string, asked bool, rs *descriptors.RuleSet) error {
	if !asked || rs == nil {
		return nil
	}
	var paths []string
	for _, d := range rs.Domains() {
		perPath := map[string]int{} // limits per descriptor
		for _, l := range rs.Limits(d) {
			perPath[l.Path]++
		}
		for _, l := range rs.Limits(d) {
			if l.Unit == "month" {
				paths = append(paths, monthLimitName(dir, d, l, perPath[l.Path] > 1))
			}
		}
	}
	if len(paths) == 0 {
		return nil
	}
	limits, they := "limits have", "they"
	if len(paths) == 1 {
		limits, they = "limit has", "it"
	}
	return fmt.Errorf("%s=true, and %d %s unit: month (%s): %s would count 30 days from the Unix epoch here, not calendar months; unset %[1]s (or set it false) to accept that", calendarMonthsVar, len(paths), limits, strings.Join(paths[:min(len(paths), 5)], ", "), they)
}

// monthLimitName names a limit for MonthLimitsRefused: its domain, its descriptor's
// path (its ID, path#index, when the descriptor has several limits) and where it is
// written, in dir: "q: org (rules.yaml:4)", "q: org#1 (rules.yaml:4)".
func monthLimitName(dir, domain string, l *descriptors.Limit, several bool) string {
	name := domain + ": " + l.Path
	if several {
		name = domain + ": " + l.ID
	}
	file := l.File
	if file != "" && dir != "" {
		file = filepath.Join(dir, file)
	}
	switch {
	case file != "" && l.Line > 0:
		name += fmt.Sprintf(" (%s:%d)", file, l.Line)
	case file != "":
		name += " (" + file + ")"
	}
	return name
}

// mapLegacyBackend refuses a store envoyproxy/ratelimit was told to use that is not
// mapped here. Running on without it would put each replica on its own memory, and N
// replicas would allow N times every limit without a word.
func mapLegacyBackend(m *mapping) error {
	backend, set := m.get("BACKEND_TYPE")
	// Our own choice of store (a Redis URL, or an engine) settles it, whatever theirs.
	for _, flag := range []string{"redis-url", "engine"} {
		if by := m.takenBy(flag); by != "" {
			if set {
				m.ignore("BACKEND_TYPE", by)
			}
			return nil
		}
	}
	if set && !strings.EqualFold(backend, "redis") {
		if strings.EqualFold(backend, "memcache") {
			return errors.New("BACKEND_TYPE=memcache: memcached is not supported; use Redis (REDIS_URL, or --redis-url), or set RATELIMIT_EXT_ENGINE=memory to count on each replica's own memory")
		}
		return fmt.Errorf("BACKEND_TYPE=%s: want redis (memcache is not supported)", backend)
	}
	if _, ok := m.get("REDIS_URL"); ok {
		if set {
			m.ignore("BACKEND_TYPE", "the engine is redis when a Redis URL is set")
		}
		return nil
	}
	// Their REDIS_URL defaults to a twemproxy socket: settings for that Redis without
	// an address of ours would silently mean no shared store at all.
	for _, v := range []string{"BACKEND_TYPE", "REDIS_SOCKET_TYPE", "REDIS_TYPE", "REDIS_AUTH", "REDIS_TLS", "REDIS_SENTINEL_AUTH"} {
		if _, ok := m.get(v); ok {
			return fmt.Errorf("%s is set but REDIS_URL is not: envoyproxy/ratelimit would use its default Redis (the socket /var/run/nutcracker/ratelimit.sock); set REDIS_URL (or --redis-url) to your Redis, or unset %s, or set RATELIMIT_EXT_ENGINE=memory to count on each replica's own memory", v, v)
		}
	}
	return nil
}

// legacyRedisConnection are the variables that say how to reach Redis: with our own
// Redis URL, none of them is used (or checked).
var legacyRedisConnection = []string{"REDIS_URL", "REDIS_SOCKET_TYPE", "REDIS_TYPE", "REDIS_AUTH",
	"REDIS_SENTINEL_AUTH", "REDIS_TLS", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY", "REDIS_TLS_CACERT",
	"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION"}

// mapLegacyRedis turns REDIS_SOCKET_TYPE, REDIS_URL, REDIS_AUTH, REDIS_TLS and
// REDIS_TYPE into a Redis URL and mode, and REDIS_TLS_* into our TLS settings.
// envoyproxy/ratelimit's REDIS_URL is host:port (or a socket path, or for Sentinel
// "master,host:port,host:port"); each address may also be a redis:// URL. A URL that
// carries a password is not logged. With our own Redis URL (flag or variable), they
// are all reported ignored, as a whole: a mode or TLS file of theirs would not fit ours.
// So with our --engine=memory: a Redis URL beside it is refused.
func mapLegacyRedis(m *mapping) error {
	by := m.takenBy("redis-url")
	if engine, _ := m.ours("engine"); by == "" && engine == "memory" {
		by = m.takenBy("engine") + ": the engine is memory"
	}
	if by != "" {
		for _, v := range legacyRedisConnection {
			if _, ok := m.get(v); ok {
				m.ignore(v, by)
			}
		}
		return nil
	}
	tlsOn, _, err := m.boolean("REDIS_TLS")
	if err != nil {
		return err
	}
	addr, ok := m.get("REDIS_URL")
	if !ok {
		ignoreRedisWithoutURL(m)
		return nil
	}
	r := redisMapping{mapping: m}
	r.auth, _ = m.get("REDIS_AUTH")
	// envoyproxy/ratelimit's default socket type is unix; a TCP address without it set
	// is far more common here, so an unset type means TCP unless the URL is a path.
	socket, set := m.get("REDIS_SOCKET_TYPE")
	mode, err := redisType(m)
	if err != nil {
		return err
	}
	unix := strings.EqualFold(socket, "unix") || (!set && strings.HasPrefix(addr, "/"))
	switch {
	case !unix:
		r.used("REDIS_SOCKET_TYPE", "a TCP address")
		return r.mapTCP(addr, mode, tlsOn)
	case !strings.EqualFold(mode, "cluster") && !strings.EqualFold(mode, "sentinel"):
		return r.mapSocket(addr, tlsOn)
	case slices.ContainsFunc(strings.Split(addr, ","), func(a string) bool { return strings.HasPrefix(strings.TrimSpace(a), "/") }):
		// There a cluster's nodes and the sentinels are dialled over TCP whatever
		// REDIS_SOCKET_TYPE says: a path is no address of theirs, and it does not start.
		return fmt.Errorf("REDIS_TYPE=%s with a unix socket (a path in REDIS_URL): envoyproxy/ratelimit reaches a cluster's nodes and the sentinels over TCP only, and would not start; set REDIS_URL to their host:port addresses, or REDIS_TYPE=single for the one server on the socket", mode)
	}
	// A cluster or Sentinel beside REDIS_SOCKET_TYPE=unix: TCP, as there.
	r.ignore("REDIS_SOCKET_TYPE", "REDIS_TYPE="+mode+": its servers are reached over TCP, as there")
	return r.mapTCP(addr, mode, tlsOn)
}

// redisType reads REDIS_TYPE. One envoyproxy/ratelimit does not know is an error,
// unless our --redis-mode wins: then it is reported ignored and read as unset.
func redisType(m *mapping) (string, error) {
	mode, _ := m.get("REDIS_TYPE")
	switch strings.ToLower(mode) {
	case "", "single", "cluster", "sentinel":
		return mode, nil
	}
	err := fmt.Errorf("REDIS_TYPE=%s: want single, cluster or sentinel", mode)
	if m.overriddenBy("REDIS_TYPE", "redis-mode", err) == "" {
		return "", err
	}
	return "", nil
}

// ignoreRedisWithoutURL reports the variables that would shape REDIS_URL, when it is
// not set.
func ignoreRedisWithoutURL(m *mapping) {
	for _, v := range []string{"REDIS_TLS", "REDIS_SOCKET_TYPE", "REDIS_AUTH", "REDIS_SENTINEL_AUTH", "REDIS_TYPE"} {
		if _, ok := m.get(v); ok {
			m.ignore(v, "REDIS_URL is not set")
		}
	}
	_ = mapRedisTLS(m, false, "REDIS_URL is not set") // off: no error
}

// redisMapping maps REDIS_URL, with the variables that only shape it (REDIS_AUTH,
// REDIS_SOCKET_TYPE, REDIS_TYPE, REDIS_TLS, REDIS_SENTINEL_AUTH), onto our Redis URL.
type redisMapping struct {
	*mapping
	auth string // REDIS_AUTH: "password" or "user:password"
}

// used notes how legacy, when set and not reported ignored, shaped the Redis URL.
func (r redisMapping) used(legacy, how string) {
	ignored := slices.ContainsFunc(r.notes, func(n Note) bool { return n.Name == legacy && n.Ignored })
	if _, ok := r.get(legacy); ok && !ignored {
		r.note(legacy, "used: "+how+" (RATELIMIT_EXT_REDIS_URL)")
	}
}

// mapSocket maps a unix socket's path: one standalone server (mapLegacyRedis comes
// here only when REDIS_TYPE is unset or single), without TLS (tlsOn is REDIS_TLS;
// Redis serves TLS on TCP only, and a unix:// URL has none).
func (r redisMapping) mapSocket(path string, tlsOn bool) error {
	setRedisURL(r.mapping, "unix://", redisUserinfo(r.auth), path, "", nil)
	r.used("REDIS_SOCKET_TYPE", "a unix:// socket")
	r.used("REDIS_TYPE", "one Redis server")
	r.used("REDIS_AUTH", "the password in the Redis URL")
	if tlsOn {
		r.ignore("REDIS_TLS", "REDIS_SOCKET_TYPE is unix: the socket is used without TLS")
	} else {
		r.used("REDIS_TLS", "a unix:// socket, plaintext")
	}
	ignoreSentinelAuth(r.mapping, "REDIS_SOCKET_TYPE is unix")
	return mapRedisTLS(r.mapping, false, "REDIS_SOCKET_TYPE is unix")
}

// mapTCP maps TCP addresses: one server's, a cluster's nodes', or a Sentinel master's
// name and its sentinels'; mode is REDIS_TYPE. The first address is the URL's host;
// the others are its addr= parameters. tlsOn is REDIS_TLS; a rediss:// address turns
// TLS on whatever it says.
func (r redisMapping) mapTCP(addr, mode string, tlsOn bool) error {
	parts, err := r.mapMode(mode, strings.Split(addr, ","))
	if err != nil {
		return err
	}
	addrs, err := parseRedisAddrs(r.mapping, parts)
	if err != nil {
		return err
	}
	first := addrs[0]
	params := make([]string, 0, len(addrs)+1)
	schemeTLS := false // a rediss:// address
	for i, a := range addrs {
		if i > 0 {
			params = append(params, "addr="+a.host)
		}
		schemeTLS = schemeTLS || a.tls
	}
	var userinfo string
	if strings.EqualFold(mode, "sentinel") {
		var credentials []string
		userinfo, credentials = r.sentinelCredentials(first)
		params = append(params, credentials...)
	} else {
		userinfo = r.serverCredentials(first)
	}
	scheme := "redis://"
	switch {
	case schemeTLS && !tlsOn:
		// The scheme decides: REDIS_TLS=false does not turn a rediss:// address plaintext.
		if _, ok := r.get("REDIS_TLS"); ok {
			r.ignore("REDIS_TLS", "REDIS_URL has a rediss:// address, which turns TLS on whatever REDIS_TLS says")
		}
		scheme, tlsOn = "rediss://", true
	case tlsOn:
		scheme = "rediss://"
		r.used("REDIS_TLS", "rediss://, TLS")
	default:
		r.used("REDIS_TLS", "redis://, plaintext")
	}
	setRedisURL(r.mapping, scheme, userinfo, first.host, first.db, params)
	return mapRedisTLS(r.mapping, tlsOn, "REDIS_TLS is not true")
}

// mapMode maps REDIS_TYPE (mode) and returns the addresses among parts, REDIS_URL's
// comma-separated items: with Sentinel, the first item is the master's name. mode is
// unset, single, cluster or sentinel (redisType refused any other).
func (r redisMapping) mapMode(mode string, parts []string) ([]string, error) {
	switch strings.ToLower(mode) {
	case "cluster":
		r.set("REDIS_TYPE", "redis-mode", "cluster")
	case "sentinel":
		if len(parts) < 2 {
			return nil, fmt.Errorf("REDIS_TYPE=sentinel wants REDIS_URL=master,host:port[,host:port...]")
		}
		r.set("REDIS_TYPE", "redis-mode", "sentinel")
		r.set("REDIS_TYPE", "redis-sentinel-master", parts[0])
		return parts[1:], nil
	default: // unset or single
		r.used("REDIS_TYPE", "one Redis server")
	}
	return parts, nil
}

// parseRedisAddrs parses REDIS_URL's addresses. The URL has one userinfo for every
// node, the first address's: credentials in the others are noted as not used.
func parseRedisAddrs(m *mapping, parts []string) ([]redisAddr, error) {
	addrs := make([]redisAddr, len(parts))
	for i, p := range parts {
		a, err := parseRedisAddr(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: address %d: %w", i+1, err)
		}
		if i > 0 && a.user != "" {
			m.note("REDIS_URL", fmt.Sprintf("the credentials in address %d are not used: every node gets the first address's (or REDIS_AUTH)", i+1))
		}
		addrs[i] = a
	}
	return addrs, nil
}

// sentinelCredentials is the userinfo and the parameters of a Sentinel URL. There
// REDIS_AUTH is the master's and REDIS_SENTINEL_AUTH the sentinels'; in go-redis's
// failover URL the userinfo is the sentinels' and the master's credentials are the
// username= and password= parameters.
func (r redisMapping) sentinelCredentials(first redisAddr) (string, []string) {
	userinfo := r.sentinelUserinfo(first)
	if r.auth == "" {
		return userinfo, nil
	}
	params := masterCredentials(r.auth)
	r.used("REDIS_AUTH", "the master's username= and password= in the Redis URL")
	return userinfo, params
}

// sentinelUserinfo is the sentinels' credentials as a URL's userinfo: the first
// sentinel's address's own, else REDIS_SENTINEL_AUTH's.
func (r redisMapping) sentinelUserinfo(first redisAddr) string {
	auth, set := r.get("REDIS_SENTINEL_AUTH")
	if first.user != "" {
		if set {
			r.ignore("REDIS_SENTINEL_AUTH", "REDIS_URL carries the sentinels' credentials")
		}
		return first.user + "@"
	}
	r.used("REDIS_SENTINEL_AUTH", "the sentinels' password in the Redis URL")
	return redisUserinfo(auth)
}

// serverCredentials is the userinfo of a single server's or a cluster's URL: the first
// address's own, else REDIS_AUTH's.
func (r redisMapping) serverCredentials(first redisAddr) string {
	ignoreSentinelAuth(r.mapping, "REDIS_TYPE is not sentinel")
	if first.user == "" {
		r.used("REDIS_AUTH", "the password in the Redis URL")
		return redisUserinfo(r.auth)
	}
	if r.auth != "" {
		r.ignore("REDIS_AUTH", "REDIS_URL carries its own credentials")
	}
	return first.user + "@"
}

// setRedisURL sets our Redis URL, with params (encoded key=value pairs) as its query;
// with credentials in it the startup notes do not show it.
func setRedisURL(m *mapping, scheme, userinfo, host, db string, params []string) {
	u := scheme + userinfo + host
	if db != "" {
		u += "/" + db
	}
	if len(params) > 0 {
		u += "?" + strings.Join(params, "&")
	}
	secret := userinfo != ""
	for _, p := range params {
		secret = secret || strings.HasPrefix(p, "password=")
	}
	if secret {
		m.setSecret("REDIS_URL", "redis-url", u)
	} else {
		m.set("REDIS_URL", "redis-url", u)
	}
}

// ignoreSentinelAuth reports REDIS_SENTINEL_AUTH unused, when set.
func ignoreSentinelAuth(m *mapping, why string) {
	if _, ok := m.get("REDIS_SENTINEL_AUTH"); ok {
		m.ignore("REDIS_SENTINEL_AUTH", why)
	}
}

// masterCredentials is REDIS_AUTH ("password" or "user:password") as the username= and
// password= parameters of go-redis's failover URL.
func masterCredentials(auth string) []string {
	user, pass, found := strings.Cut(auth, ":")
	if !found {
		user, pass = "", auth
	}
	var params []string
	if user != "" {
		params = append(params, "username="+url.QueryEscape(user))
	}
	return append(params, "password="+url.QueryEscape(pass))
}

// redisUserinfo is REDIS_AUTH ("password" or "user:password") as a URL's userinfo.
func redisUserinfo(auth string) string {
	if auth == "" {
		return ""
	}
	user, pass, found := strings.Cut(auth, ":")
	if !found {
		user, pass = "", auth
	}
	return url.UserPassword(user, pass).String() + "@"
}

// redisAddr is one address of REDIS_URL.
type redisAddr struct {
	host, user, db string // user: the userinfo as written, if any
	tls            bool
}

// parseRedisAddr reads host:port, or redis[s]://[user:password@]host:port[/db], which
// envoyproxy/ratelimit's Redis client also accepts and Envoy Gateway passes on as its
// EnvoyGateway resource gives it. Errors never repeat the address: it may hold a password.
func parseRedisAddr(s string) (redisAddr, error) {
	scheme, _, found := strings.Cut(s, "://")
	if !found {
		if u, err := url.Parse("redis://" + s); err != nil || u.Host != s || u.User != nil {
			return redisAddr{}, errors.New("not host:port nor a redis:// URL with a host")
		}
		return redisAddr{host: s}, nil
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return redisAddr{}, errors.New("not host:port nor a redis:// URL with a host")
	}
	a := redisAddr{host: u.Host, db: strings.Trim(u.Path, "/"), user: u.User.String()}
	switch scheme {
	case "redis":
	case "rediss":
		a.tls = true
	default:
		return redisAddr{}, fmt.Errorf("scheme %q: want redis or rediss", scheme)
	}
	return a, nil
}

// legacyRedisTLSFiles are used, as there, only with TLS to Redis (REDIS_TLS=true).
var legacyRedisTLSFiles = []struct{ legacy, flag string }{
	{"REDIS_TLS_CLIENT_CERT", "redis-tls-cert"},
	{"REDIS_TLS_CLIENT_KEY", "redis-tls-key"},
	{"REDIS_TLS_CACERT", "redis-tls-ca"},
}

// mapRedisTLS maps the Redis TLS files and REDIS_TLS_SKIP_HOSTNAME_VERIFICATION when
// on, else reports them ignored with why. The error is setFile's (a half of our client
// certificate beside theirs) or mapSkipHostname's.
func mapRedisTLS(m *mapping, on bool, why string) error {
	for _, x := range legacyRedisTLSFiles {
		if v, ok := m.get(x.legacy); ok {
			if !on {
				m.ignore(x.legacy, why)
			} else if err := m.setFile(x.legacy, x.flag, v); err != nil {
				return err
			}
		}
	}
	return mapSkipHostname(m, on, why)
}

// mapSkipHostname maps REDIS_TLS_SKIP_HOSTNAME_VERIFICATION onto our switch when TLS
// is on: there too the chain is verified (up to REDIS_TLS_CACERT, else the system
// roots) but not the name. Beside our server name it is ignored: that checks the name
// against a name of the operator's, and the two together are refused. Malformed, it
// stops the start unless our switch is set; it is not read where it is ignored.
func mapSkipHostname(m *mapping, on bool, why string) error {
	const legacy, flag = "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", "redis-tls-skip-hostname-verification"
	if _, ok := m.get(legacy); !ok {
		return nil
	}
	if !on {
		m.ignore(legacy, why)
		return nil
	}
	if by := m.takenBy("redis-tls-server-name"); by != "" {
		m.ignore(legacy, by+": the server's certificate must carry that name")
		return nil
	}
	skip, set, err := m.booleanFor(legacy, flag)
	if err != nil || !set {
		return err
	}
	m.set(legacy, flag, strconv.FormatBool(skip))
	return nil
}

// keyPairs pairs each flag of a certificate with its key's, both ways: the gRPC
// server's, and the xDS and Redis clients'.
var keyPairs = map[string]string{
	"grpc-tls-cert": "grpc-tls-key", "grpc-tls-key": "grpc-tls-cert",
	"xds-tls-cert": "xds-tls-key", "xds-tls-key": "xds-tls-cert",
	"redis-tls-cert": "redis-tls-key", "redis-tls-key": "redis-tls-cert",
}

// setFile is set for a TLS file of theirs that is to be used. A certificate and its key
// come from one side: with either half of ours set (flag or variable), theirs is
// ignored, as its other half is. A certificate from one side and a key from the other
// almost never match, and the mismatch would show as a key error at start, or at the
// next rotation. Ours with this half missing is an error, naming both: with it
// ignored, our own check would refuse the half pair without saying that theirs was there.
func (m *mapping) setFile(legacy, flag, value string) error {
	other, paired := keyPairs[flag]
	if !paired {
		m.set(legacy, flag, value)
		return nil
	}
	if by := m.takenBy(flag); by != "" {
		m.ignore(legacy, by+": a certificate and its key come from one side, and ours wins")
		return nil
	}
	by := m.takenBy(other)
	if by == "" || m.mapped(other) { // ours for the other half was mapped from theirs
		m.set(legacy, flag, value)
		return nil
	}
	half, ours := "key", "certificate"
	if strings.HasSuffix(flag, "-cert") {
		half, ours = ours, half
	}
	return fmt.Errorf("%s is not used beside our %s (%s): a certificate and its key come from one side, ours or envoyproxy/ratelimit's, else they almost never match; set our %s too (--%s, or %s), or unset ours to use theirs",
		legacy, ours, by, half, flag, VarName(flag))
}

// legacyGRPCTLS are the gRPC server's TLS variables, used (as there) only with
// GRPC_SERVER_USE_TLS=true. Envoy Gateway sets the first two, with the certificate it
// mounts at /certs, and has Envoy call the service over TLS.
var legacyGRPCTLS = []struct{ legacy, flag string }{
	{"GRPC_SERVER_TLS_CERT", "grpc-tls-cert"},
	{"GRPC_SERVER_TLS_KEY", "grpc-tls-key"},
	{"GRPC_CLIENT_TLS_CACERT", "grpc-tls-client-ca"},
	{"GRPC_CLIENT_TLS_SAN", "grpc-tls-client-san"},
}

// mapLegacyGRPCTLS maps GRPC_SERVER_USE_TLS and the files it turns on. TLS asked for
// without a certificate and a key (theirs or ours) is an error: serving plaintext
// instead would break every call.
func mapLegacyGRPCTLS(m *mapping) error {
	useTLS, set, err := m.booleanFor("GRPC_SERVER_USE_TLS", "grpc-tls-cert")
	if err != nil {
		return err
	}
	if set {
		if by := ourGRPCPair(m); useTLS && by != "" {
			m.note("GRPC_SERVER_USE_TLS", "used: gRPC is served over TLS, with our certificate and key ("+by+")")
		} else if useTLS {
			m.note("GRPC_SERVER_USE_TLS", "used: gRPC is served over TLS (GRPC_SERVER_TLS_CERT, GRPC_SERVER_TLS_KEY)")
		} else if by != "" {
			m.ignore("GRPC_SERVER_USE_TLS", by+": gRPC is served over TLS from our settings")
		} else {
			m.ignore("GRPC_SERVER_USE_TLS", "gRPC is served in plaintext, the default")
		}
	}
	if !useTLS {
		ignoreLegacyGRPCTLS(m)
		return nil
	}
	// The pair from their variables or from ours (flag or variable): with a half of
	// ours, ours decides (setFile), and our own check refuses it incomplete.
	has := func(legacy, flag string) bool { _, ok := m.get(legacy); return ok || m.taken(flag) }
	_, theirCert := m.get("GRPC_SERVER_TLS_CERT")
	_, theirKey := m.get("GRPC_SERVER_TLS_KEY")
	if ourGRPCPair(m) == "" && !(theirCert && theirKey) {
		return errors.New("GRPC_SERVER_USE_TLS=true needs GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY")
	}
	clientCA := has("GRPC_CLIENT_TLS_CACERT", "grpc-tls-client-ca")
	for _, x := range legacyGRPCTLS {
		v, ok := m.get(x.legacy)
		switch {
		case !ok:
		case x.legacy == "GRPC_CLIENT_TLS_SAN" && !clientCA:
			// There, without a client CA no client certificate is asked for.
			m.ignore(x.legacy, "no client CA (GRPC_CLIENT_TLS_CACERT): client certificates are not asked for")
		default:
			if err := m.setFile(x.legacy, x.flag, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ignoreLegacyGRPCTLS reports their gRPC server TLS files ignored, as GRPC_SERVER_USE_TLS
// is not true. Our certificate and key serve TLS whatever theirs says: the notes say so,
// or an operator who set their client CA would read that TLS is off, not that client
// certificates are not required.
func ignoreLegacyGRPCTLS(m *mapping) {
	why := "GRPC_SERVER_USE_TLS is not true"
	if by := ourGRPCPair(m); by != "" {
		why += " (gRPC is served over TLS all the same, as " + by + ", but without this setting)"
	}
	for _, x := range legacyGRPCTLS {
		if _, ok := m.get(x.legacy); ok {
			m.ignore(x.legacy, why)
		}
	}
}

// ourGRPCPair says what of ours sets either half of the gRPC server's certificate and
// key ("" when neither): then the pair is ours.
func ourGRPCPair(m *mapping) string {
	return cmp.Or(m.takenBy("grpc-tls-cert"), m.takenBy("grpc-tls-key"))
}

// mapLegacyMetrics gives metrics the port of their own that USE_PROMETHEUS=true opens
// there (PROMETHEUS_ADDR, default :9090). /metrics stays on the HTTP port as well.
func mapLegacyMetrics(m *mapping) error {
	on, set, err := m.booleanFor("USE_PROMETHEUS", "metrics-addr")
	if err != nil {
		return err
	}
	if set && !on {
		m.ignore("USE_PROMETHEUS", "metrics are always on, at /metrics on the HTTP port")
	}
	for _, v := range []string{"PROMETHEUS_ADDR", "PROMETHEUS_PATH"} {
		if _, ok := m.get(v); ok && !on {
			m.ignore(v, "USE_PROMETHEUS is not true")
		}
	}
	if !on {
		return nil
	}
	addr, addrSet := m.get("PROMETHEUS_ADDR")
	if by := m.takenBy("metrics-addr"); by != "" {
		// Ours says whether /metrics has a port of its own, and which.
		m.ignore("USE_PROMETHEUS", by)
		if addrSet {
			m.ignore("PROMETHEUS_ADDR", by)
		}
	} else if addrSet {
		m.set("PROMETHEUS_ADDR", "metrics-addr", addr)
		m.note("USE_PROMETHEUS", "used: /metrics also gets a port of its own (PROMETHEUS_ADDR)")
	} else {
		m.set("USE_PROMETHEUS", "metrics-addr", ":9090") // their default
	}
	if p, ok := m.get("PROMETHEUS_PATH"); ok {
		if p == "/metrics" {
			m.note("PROMETHEUS_PATH", "used: /metrics")
		} else {
			m.ignore("PROMETHEUS_PATH", "the path is always /metrics")
		}
	}
	return nil
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
// variables, and says whether rules come from xDS. With any other CONFIG_TYPE those
// variables are ignored, as they are there.
func mapLegacyXDS(m *mapping) (bool, error) {
	configType, _ := m.get("CONFIG_TYPE")
	switch strings.ToUpper(configType) {
	case "", "FILE":
		if configType != "" {
			noteFileSource(m)
		}
		ignoreLegacyXDS(m, "CONFIG_TYPE is not GRPC_XDS_SOTW")
		return false, nil
	case "GRPC_XDS_SOTW":
		// Our --config-source=file wins: mapped, their server would be refused beside it.
		if source, _ := m.ours("config-source"); source == "file" {
			by := m.takenBy("config-source")
			m.ignore("CONFIG_TYPE", by)
			ignoreLegacyXDS(m, by+": rules come from files")
			return false, nil
		}
	default:
		err := fmt.Errorf("CONFIG_TYPE=%s: want FILE or GRPC_XDS_SOTW", configType)
		if m.overriddenBy("CONFIG_TYPE", "config-source", err) == "" {
			return false, err
		}
		ignoreLegacyXDS(m, "CONFIG_TYPE is not GRPC_XDS_SOTW")
		return false, nil
	}
	m.set("CONFIG_TYPE", "config-source", "xds") // --config-source's value for rules from xDS
	server, ok := m.get("CONFIG_GRPC_XDS_SERVER_URL")
	switch {
	case ok:
		m.set("CONFIG_GRPC_XDS_SERVER_URL", "xds-server", server)
	case !m.taken("xds-server"):
		// Their default. Beside ours nothing is set, and nothing is reported: reported
		// ignored, CONFIG_TYPE would read as unused, though it chose xDS.
		m.set("CONFIG_TYPE", "xds-server", xdsServerDefault)
	}
	for _, x := range legacyXDSSimple {
		if v, ok := m.get(x.legacy); ok {
			m.set(x.legacy, x.flag, v)
		}
	}
	for _, mapGroup := range []func(*mapping) error{mapXDSBackoff, mapXDSHeaders, mapXDSTLS, mapXDSStartWithoutRules} {
		if err := mapGroup(m); err != nil {
			return true, err
		}
	}
	return true, nil
}

// noteFileSource says what became of CONFIG_TYPE=FILE: rules from files, unless our
// xDS server (flag or variable) wins.
func noteFileSource(m *mapping) {
	if by := m.takenBy("xds-server"); by != "" {
		m.ignore("CONFIG_TYPE", by+": rules come from the xDS server")
		return
	}
	m.note("CONFIG_TYPE", "used: rules come from files (--config-source=file), the default")
}

// ignoreLegacyXDS reports every xDS client variable that is set as ignored, for why:
// rules do not come from xDS.
func ignoreLegacyXDS(m *mapping, why string) {
	xdsVars := []string{"CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
		"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "CONFIG_GRPC_XDS_SERVER_USE_TLS",
		"XDS_CLIENT_BACKOFF_JITTER", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "FORCE_START_WITHOUT_INITIAL_CONFIG"}
	for _, v := range slices.Concat(legacyXDSTLS, legacyXDSSimple) {
		xdsVars = append(xdsVars, v.legacy)
	}
	for _, v := range xdsVars {
		if _, ok := m.get(v); ok {
			m.ignore(v, why)
		}
	}
}

// mapXDSBackoff maps the waits between the xDS client's attempts to connect: the first
// (CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL, unless XDS_CLIENT_BACKOFF_INITIAL_INTERVAL
// sets it), and their jitter. XDS_CLIENT_BACKOFF_JITTER=false turns jitter off (a
// fraction of 0); otherwise XDS_CLIENT_BACKOFF_RANDOM_FACTOR is the fraction.
func mapXDSBackoff(m *mapping) error {
	if v, ok := m.get("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL"); ok {
		if _, both := m.get("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL"); both {
			m.ignore("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL sets the first wait")
		} else {
			m.set("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "xds-backoff-initial", v)
		}
	}
	on, set, err := m.booleanFor("XDS_CLIENT_BACKOFF_JITTER", "xds-backoff-jitter")
	if err != nil {
		return err
	}
	jitter := on || !set // on by default
	switch {
	case set && on:
		m.ignore("XDS_CLIENT_BACKOFF_JITTER", "jitter is on by default; XDS_CLIENT_BACKOFF_RANDOM_FACTOR sets how much")
	case set:
		m.set("XDS_CLIENT_BACKOFF_JITTER", "xds-backoff-jitter", "0")
	}
	if v, ok := m.get("XDS_CLIENT_BACKOFF_RANDOM_FACTOR"); ok {
		if jitter {
			m.set("XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "xds-backoff-jitter", v)
		} else {
			m.ignore("XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "XDS_CLIENT_BACKOFF_JITTER=false turns jitter off")
		}
	}
	return nil
}

// mapXDSHeaders maps CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS, the gRPC metadata the
// xDS client sends. Their format is key:value,key:value; ours key=value. Values may be
// secrets (tokens): they are not logged.
func mapXDSHeaders(m *mapping) error {
	v, ok := m.get("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS")
	if !ok {
		return nil
	}
	if by := m.takenBy("xds-headers"); by != "" { // ours wins: theirs is not checked
		m.ignore("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", by)
		return nil
	}
	var kv []string
	n := 0
	for item := range strings.SplitSeq(v, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		n++
		k, val, found := strings.Cut(item, ":")
		switch k = strings.TrimSpace(k); {
		case !found || k == "":
			// Named by its place, not its text: a malformed item may be a token.
			return fmt.Errorf("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: item %d is not key:value (its text is not shown: it may hold a secret)", n)
		case strings.Contains(k, "="):
			// Our key=value in their variable, with a ':' in the value (a token):
			// cut at the ':', it would send another header than meant.
			return fmt.Errorf("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: item %d has '=' before its ':': write key:value there (key=value is RATELIMIT_EXT_XDS_HEADERS' format)", n)
		}
		kv = append(kv, k+"="+strings.TrimSpace(val))
	}
	m.setSecret("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "xds-headers", strings.Join(kv, ","))
	return nil
}

// mapXDSTLS maps CONFIG_GRPC_XDS_SERVER_USE_TLS and the TLS files it turns on
// (legacyXDSTLS): without it they are ignored, as there. Our --xds-tls, when set,
// decides instead: mapped beside ours set false, a file would turn TLS back on (any
// --xds-tls-* setting implies it), and ours would lose.
func mapXDSTLS(m *mapping) error {
	useTLS, set, err := m.booleanFor("CONFIG_GRPC_XDS_SERVER_USE_TLS", "xds-tls")
	if err != nil {
		return err
	}
	// A TLS file or name of ours turns TLS on without any switch: the notes say so, or
	// an operator who wrote false, or left theirs unset, would read that TLS is off.
	why, ourFile := "CONFIG_GRPC_XDS_SERVER_USE_TLS is not true", ourXDSTLSFile(m)
	if ours, decided := m.ourSwitch("xds-tls"); decided {
		useTLS, why = ours, m.takenBy("xds-tls")+": it turns TLS off"
	} else if ourFile != "" {
		why += " (the connection is over TLS all the same, as " + ourFile + ", but without this setting)"
	}
	if set {
		switch by := m.takenBy("xds-tls"); {
		case useTLS:
			m.set("CONFIG_GRPC_XDS_SERVER_USE_TLS", "xds-tls", "true")
		case by != "":
			m.ignore("CONFIG_GRPC_XDS_SERVER_USE_TLS", by)
		case ourFile != "":
			m.ignore("CONFIG_GRPC_XDS_SERVER_USE_TLS", ourFile+", which turns TLS on and wins: the xDS connection is over TLS")
		default:
			m.ignore("CONFIG_GRPC_XDS_SERVER_USE_TLS", "false is the default")
		}
	}
	for _, x := range legacyXDSTLS {
		if v, ok := m.get(x.legacy); ok {
			if !useTLS {
				m.ignore(x.legacy, why)
			} else if err := m.setFile(x.legacy, x.flag, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// ourXDSTLSFile says what of ours sets a TLS file or name of the xDS client ("" when
// none): any of them turns xDS TLS on without --xds-tls (one given or set empty is
// unset, and turns nothing on).
func ourXDSTLSFile(m *mapping) string {
	by := ""
	for _, x := range legacyXDSTLS {
		by = cmp.Or(by, m.takenBy(x.flag))
	}
	return by
}

// mapXDSStartWithoutRules maps FORCE_START_WITHOUT_INITIAL_CONFIG: whether to serve
// with no rules (and report ready) until the xDS server sends some.
func mapXDSStartWithoutRules(m *mapping) error {
	on, set, err := m.booleanFor("FORCE_START_WITHOUT_INITIAL_CONFIG", "xds-start-without-rules")
	if set && err == nil {
		m.set("FORCE_START_WITHOUT_INITIAL_CONFIG", "xds-start-without-rules", strconv.FormatBool(on))
	}
	return err
}

// flagsGiven names the flags a command line gives (-name, --name, with =value or not),
// each with its value, before they are parsed: a value that looks like a flag only
// adds a name no mapping asks about. A flag given a Blank value is left out, as the
// flags leave it unset (cmd/ratelimit-ext's envFlags): --grpc-tls-cert= does not make
// the certificate ours, and so hide theirs, while the server reads none. (A switch
// followed by "" is left out too, where the flags read it as given alone: serve then
// refuses the stray "", so nothing is served either way.)
func flagsGiven(args []string) map[string]string {
	given := map[string]string{}
	for i, a := range args {
		if a == "--" {
			break
		}
		name, ok := strings.CutPrefix(a, "-")
		if !ok {
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(name, "-"), "=")
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			// --name value. After a switch (--xds-tls alone) it is a stray argument,
			// which serve refuses: no setting is made from it.
			value, hasValue = args[i+1], true
		}
		if hasValue && Blank(name, value) {
			continue // a switch given alone (--xds-tls) has no value, and is given
		}
		given[name] = value
	}
	return given
}

// IsServiceLinkURL says whether value is a Kubernetes service link's
// proto://address:port (what <SERVICE>_PORT holds for a Service in the namespace).
func IsServiceLinkURL(value string) bool {
	for _, scheme := range []string{"tcp://", "udp://", "sctp://"} {
		if rest, ok := strings.CutPrefix(value, scheme); ok {
			_, err := netip.ParseAddrPort(rest)
			return err == nil
		}
	}
	return false
}
