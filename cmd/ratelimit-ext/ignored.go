package main

import (
	"flag"
	"log/slog"
	"strings"
)

// unusedSettings are settings the operator set (by flag or environment variable) that
// the mode serve runs in does not read, and why.
type unusedSettings struct {
	why      string
	settings []string // "--flag", or "--flag (VARIABLE)" for envoyproxy/ratelimit's variable mapped onto it
}

// redisOnly says whether only the Redis engine reads a flag: the connection's (but
// --redis-url, which picks the engine), batching, the local over-limit cache (which
// the memory engine runs without) and the circuit breaker.
func redisOnly(name string) bool {
	return strings.HasPrefix(name, "redis-") && name != "redis-url" || strings.HasPrefix(name, "local-cache") ||
		name == "store-breaker-threshold" || name == "store-probe-interval"
}

// xdsOnly says whether only the xDS client reads a flag: --xds-server picks xDS, and
// --xds-start-without-rules without it is refused (xdsSettings.resolve).
func xdsOnly(name string) bool {
	return strings.HasPrefix(name, "xds-") && name != "xds-server" && name != "xds-start-without-rules"
}

// noteUnused lists in c.unused the settings f's command line and environment set that
// the engine and the rule source chosen leave without effect; serve warns of them
// (warnIgnored). Settings not set are not listed (a flag given at its default value
// is). --config-dir beside an xDS server is one of them: the rules come from the xDS
// server (explicitly named), and a deployment that names both, such as the Kubernetes
// manifest's directory plus a server added later, keeps starting.
func (c *serveConfig) noteUnused(f *envFlags) {
	var redis, xds, dir []string
	f.fs.VisitAll(func(fl *flag.Flag) {
		if !f.set(fl.Name) {
			return
		}
		name := "--" + fl.Name
		if from, ok := f.legacy[envName(fl.Name)]; ok && !f.given(fl.Name) {
			name += " (" + from + ")"
		}
		switch {
		case c.engine == "memory" && redisOnly(fl.Name):
			redis = append(redis, name)
		case c.xds.source == sourceFile && xdsOnly(fl.Name):
			xds = append(xds, name)
		case c.xds.source == sourceXDS && (fl.Name == "watch" || fl.Name == "config-dir"):
			dir = append(dir, name)
		}
	})
	for _, u := range []unusedSettings{
		{"the engine is memory (no --redis-url): only the Redis engine reads them", redis},
		{"rules come from --config-dir (no --xds-server): only the xDS client reads them", xds},
		{"rules come from the xDS server (--xds-server), which pushes every change: no directory is read or watched", dir},
	} {
		if len(u.settings) > 0 {
			c.unused = append(c.unused, u)
		}
	}
}

// warnIgnored logs at start, as warnings, what the operator set that has no effect: a
// malformed environment variable whose flag the command line gives (the flag wins), and
// settings the mode does not read (noteUnused), one line per reason.
func (c *serveConfig) warnIgnored(log *slog.Logger) {
	for _, b := range c.envOverridden {
		log.Warn("environment variable ignored", "why", b.ignoredText())
	}
	for _, u := range c.unused {
		log.Warn("settings have no effect", "settings", strings.Join(u.settings, ", "), "why", u.why)
	}
}
