package httpapi

import (
	"net"
	"net/http"
	"slices"
	"strings"
)

// HostGuard refuses HTTP requests that name the server by a host DNS rebinding could
// point at it. A browser on the machine can be made to call a local port by a page
// whose name the attacker re-points at 127.0.0.1: the requests carry that name as
// Host, and could charge limits through /v1/decide or read /debug/config and profiles.
// localhost, *.localhost and IP addresses always pass (no outside DNS decides them),
// as does a request without a Host.
//
// The check runs on a listener bound to loopback, and on every listener when Allowed
// is set: the names, besides those, that callers use (say a container's published
// port, which listens on 0.0.0.0 inside).
type HostGuard struct {
	Allowed []string // host names without port, matched without regard to case
}

// Wrap returns h, checked when lis is bound to loopback or g.Allowed is set.
func (g HostGuard) Wrap(lis net.Listener, h http.Handler) http.Handler {
	addr, ok := lis.Addr().(*net.TCPAddr)
	if len(g.Allowed) == 0 && (!ok || !addr.IP.IsLoopback()) {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.allows(r.Host) {
			http.Error(w, "this port answers only requests that name it localhost, by IP address or by an allowed name (--http-allowed-hosts): refused as a possible DNS-rebinding page", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allows says whether host (a Host header, with or without a port) may call.
func (g HostGuard) allows(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if net.ParseIP(host) != nil || host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	return slices.ContainsFunc(g.Allowed, func(a string) bool { return strings.EqualFold(strings.TrimSuffix(a, "."), host) })
}
