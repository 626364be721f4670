package main

import (
	"fmt"
	"log/slog"

	"google.golang.org/grpc"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/extauthz"
)

// extAuthzSettings are the settings of the ext_authz door (envoy.service.auth.v3.Authorization,
// served on the gRPC port next to the RLS).
type extAuthzSettings = extauthz.Options

// extAuthzFlags registers the --ext-authz-* flags. What both doors render (Retry-After,
// the IETF fields, problem bodies, the upstream header) comes from the shared header
// flags; see registerExtAuthz. Malformed values, on the command line or in the
// environment, fail parsing like every other flag.
func extAuthzFlags(f *envFlags, o *extAuthzSettings) {
	o.FailureMode = extauthz.ModeEnvoy
	f.StringVar(&o.DefaultDomain, "ext-authz-default-domain", "",
		`domain of ext_authz checks without a "domain" context extension (e.g. checks from Istio)`)
	f.parsedVar("ext-authz-failure-mode", o.FailureMode.String(),
		"ext_authz answer when the store fails under the fail_closed policy: envoy (UNAVAILABLE; Envoy's failure_mode_allow and status_on_error decide), allow, or deny (HTTP 503)",
		func(s string) (err error) { o.FailureMode, err = extauthz.ParseFailureMode(s); return err })
	// Off by default, like every header but Retry-After (SPEC §6) and like Envoy's
	// own enable_x_ratelimit_headers, which this renders for the ext_authz door.
	f.BoolVar(&o.XRateLimitHeaders, "ext-authz-x-ratelimit-headers", false,
		"add X-RateLimit-Limit/-Remaining/-Reset (draft 03) to ext_authz answers, as Envoy's rate-limit filter does with enable_x_ratelimit_headers")
}

// parsedVar registers a string flag whose value set validates and applies: a bad
// command-line value fails flag parsing, a bad environment value is reported by parse.
func (e *envFlags) parsedVar(name, def, usage string, set func(string) error) {
	if v, ok := e.lookup(name); ok {
		if err := set(v); err != nil {
			e.malformed(name, v, err.Error())
		}
	}
	e.fs.Func(name, e.usage(name, fmt.Sprintf("%s (default %s)", usage, def)), set)
}

// registerExtAuthz serves the ext_authz door on the RLS's gRPC server, deciding with the
// same decider (rules, engine, keys, store failure policy) and rendering with the same
// header switches as ShouldRateLimit.
func registerExtAuthz(gs *grpc.Server, d *decide.Decider, c *serveConfig, obs decide.Observer, log *slog.Logger) {
	o := c.extAuthz
	o.Headers, o.Log = c.headers, log
	extauthz.New(d, o, obs).Register(gs)
}
