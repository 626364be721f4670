package main

import "log/slog"

// warnIgnored logs at start, as warnings, what the operator set that has no effect: a
// malformed environment variable whose flag the command line gives (the flag wins).
func (c *serveConfig) warnIgnored(log *slog.Logger) {
	for _, b := range c.envOverridden {
		log.Warn("environment variable ignored", "why", b.ignoredText())
	}
}
