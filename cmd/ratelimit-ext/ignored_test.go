package main

import (
	"strings"
	"testing"
)

// A setting the operator sets that the chosen mode does not read is named in one
// warning at start, with why: Redis settings on the memory engine, xDS settings with
// rules from files, --watch with rules from xDS. Settings left at their defaults, and
// settings the mode reads, are not.
func TestUnusedSettingsAreWarned(t *testing.T) {
	const memory, files, xds = "the engine is memory", "rules come from --config-dir", "rules come from the xDS server"
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want map[string][]string // why -> the settings named in its warning
	}{
		{nil, nil, nil},
		{nil, []string{"--redis-url", "redis://127.0.0.1:1", "--redis-pool-size", "20", "--local-cache=false",
			"--xds-server", "x:1", "--xds-node-id", "rl", "--xds-tls"}, nil},
		{nil, []string{"--redis-pool-size", "20"}, map[string][]string{memory: {"--redis-pool-size"}}},
		{map[string]string{"RATELIMIT_EXT_REDIS_READ_TIMEOUT": "20ms"}, []string{"--engine", "memory", "--local-cache-size", "5", "--store-breaker-threshold", "9"},
			map[string][]string{memory: {"--redis-read-timeout", "--local-cache-size", "--store-breaker-threshold"}}},
		// envoyproxy/ratelimit's, mapped onto ours: named with the variable that set it.
		{map[string]string{"REDIS_POOL_SIZE": "20"}, nil, map[string][]string{memory: {"--redis-pool-size (REDIS_POOL_SIZE)"}}},
		{nil, []string{"--xds-node-id", "rl"}, map[string][]string{files: {"--xds-node-id"}}},
		{map[string]string{"RATELIMIT_EXT_XDS_TLS": "true", "RATELIMIT_EXT_XDS_BACKOFF_MAX": "5s"}, []string{"--config-source=file"},
			map[string][]string{files: {"--xds-tls", "--xds-backoff-max"}}},
		{nil, []string{"--xds-server", "x:1", "--watch=false"}, map[string][]string{xds: {"--watch"}}},
		{nil, []string{"--xds-server", "x:1", "--redis-batch=false"}, map[string][]string{memory: {"--redis-batch"}}},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(tc.args)
		if err != nil {
			t.Errorf("%v %q: %v", tc.env, tc.args, err)
			continue
		}
		said := ignoredAtStart(c)
		lines := strings.Count(said, "settings have no effect")
		if lines != len(tc.want) {
			t.Errorf("%v %q: %d warnings of settings with no effect, want %d:\n%s", tc.env, tc.args, lines, len(tc.want), said)
		}
		for why, settings := range tc.want {
			line := lineWith(said, why)
			for _, s := range settings {
				if !strings.Contains(line, s) {
					t.Errorf("%v %q: %q does not name %s:\n%s", tc.env, tc.args, why, s, said)
				}
			}
		}
	}
}

// lineWith is the first line of text that contains s, or "".
func lineWith(text, s string) string {
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// --config-dir set (by flag or variable) beside --xds-server is warned of, as a setting
// with no effect: the rules come from the xDS server, named explicitly, and a
// deployment that sets both (the Kubernetes manifest's RATELIMIT_EXT_CONFIG_DIR plus a
// server added later) keeps starting. envoyproxy/ratelimit's RUNTIME_* beside our
// --xds-server are only reported ignored, as beside their CONFIG_TYPE=GRPC_XDS_SOTW.
func TestConfigDirBesideXDSServerIsWarned(t *testing.T) {
	dir := t.TempDir()
	const why = "rules come from the xDS server"
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"--xds-server", "x:1", "--config-dir", dir}},
		{map[string]string{"RATELIMIT_EXT_CONFIG_DIR": dir}, []string{"--config-source=xds", "--xds-server", "x:1"}},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(tc.args)
		if err != nil {
			t.Errorf("%v %q: %v, want a start with a warning", tc.env, tc.args, err)
			continue
		}
		if said := ignoredAtStart(c); !strings.Contains(lineWith(said, why), "--config-dir") {
			t.Errorf("%v %q: no warning naming --config-dir:\n%s", tc.env, tc.args, said)
		}
	}
	isolateEnv(t)
	t.Setenv("RUNTIME_ROOT", dir)
	t.Setenv("RATELIMIT_EXT_XDS_SERVER", "x:1")
	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if said := ignoredAtStart(c); !strings.Contains(lineWith(said, "variable=RUNTIME_ROOT"), "ignored") {
		t.Errorf("RUNTIME_ROOT beside RATELIMIT_EXT_XDS_SERVER: %s, want it reported ignored", said)
	}
}
