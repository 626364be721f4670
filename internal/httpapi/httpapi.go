// Package httpapi serves the operator's HTTP port: liveness (/healthz), readiness
// (/readyz), envoyproxy/ratelimit's health endpoint (/healthcheck), the JSON decision
// endpoint (/v1/decide), the compiled rules (/debug/config), and whatever the server
// adds with Handle (/metrics).
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

// API holds what the endpoints report on.
type API struct {
	decider *decide.Decider
	log     *slog.Logger
	obs     decide.Observer // may be nil
	ready   *Readiness      // what /readyz reports: its own, or the server's (UseReadiness)
	mux     *http.ServeMux
	// stopping is set when shutdown begins (Shutdown).
	stopping atomic.Bool
}

// New returns the API for decider; obs, when not nil, sees every /v1/decide request.
func New(d *decide.Decider, log *slog.Logger, obs decide.Observer) *API {
	a := &API{decider: d, log: log, obs: obs, mux: http.NewServeMux(), ready: NewReadiness(d, ReadinessOptions{Log: log})}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	// No method in the pattern: envoyproxy/ratelimit answers /healthcheck whatever the
	// method, and probes written for it keep working.
	a.mux.HandleFunc("/healthcheck", a.healthcheck)
	a.mux.HandleFunc("POST /v1/decide", a.decideHandler)
	a.mux.HandleFunc("GET /debug/config", a.debugConfig)
	return a
}

// UseReadiness makes /readyz report (and refresh) r, the state grpc.health.v1 follows,
// in place of the API's own.
func (a *API) UseReadiness(r *Readiness) { a.ready = r }

// Shutdown marks the start of shutdown: from now on /healthcheck and /readyz fail, as
// envoyproxy/ratelimit's health check does on SIGTERM, while in-flight work drains.
func (a *API) Shutdown() { a.stopping.Store(true) }

// errShuttingDown is the state once Shutdown was called.
var errShuttingDown = errors.New("shutting down")

// Handle adds an endpoint (metrics, debug) to the mux.
func (a *API) Handle(pattern string, h http.Handler) { a.mux.Handle(pattern, h) }

// Handler returns the HTTP handler. A browser's cross-origin POST (a page on another
// site aiming at a service it can reach) is refused: /v1/decide charges quota and, as a
// form post, would need no CORS preflight. Clients that are not browsers (curl, the
// service's users) send no Sec-Fetch-Site or Origin header and pass.
func (a *API) Handler() http.Handler { return http.NewCrossOriginProtection().Handler(a.mux) }

// healthz says the process is alive; it never checks dependencies.
func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readyz says the service can decide: rules are loaded and the store answers. It checks
// now, or takes a check under way or just made (Readiness.Check), and the observation
// updates the shared state, so gRPC health follows at once too.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	noCache(w)
	err := errShuttingDown
	if !a.stopping.Load() {
		err = a.ready.Check(r.Context())
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// healthcheck is envoyproxy/ratelimit's health endpoint, which Envoy Gateway's
// rate-limit Deployment probes for readiness and, in recent releases, for liveness: 200
// with the body "OK" while serving, 500 when not. It answers as envoyproxy/ratelimit's
// defaults do: not serving before the first rules (xDS) and once shutdown began, and
// regardless of the store. There Redis counts only with the opt-in
// REDIS_HEALTH_CHECK_ACTIVE_CONNECTION, and as a liveness probe a check of Redis would
// restart every pod during an outage, which helps nothing; /readyz checks the store.
// The failure body carries the reason, which probes ignore and people read.
func (a *API) healthcheck(w http.ResponseWriter, _ *http.Request) {
	noCache(w)
	if err := a.serving(); err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("not serving: " + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("OK"))
}

// serving says why the service is not serving, or nil: shutdown began, or no rule set
// is in place yet (an xDS server has not sent one). An empty rule set, as
// --xds-start-without-rules starts with, is serving.
func (a *API) serving() error {
	if a.stopping.Load() {
		return errShuttingDown
	}
	if a.decider.Rules() == nil {
		return errNoRules
	}
	return nil
}

// noCache marks a plain-text answer that describes this instant.
func noCache(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
}

// debugConfig shows the compiled rules in use.
func (a *API) debugConfig(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, a.decider.Rules().Dump())
}
