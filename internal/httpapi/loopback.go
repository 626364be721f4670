package httpapi

import (
	"net"
	"net/http"
	"strings"
)

// GuardLoopback returns h, or, when lis is bound to a loopback address, h behind a
// check of the Host header: a listener on loopback is meant for this machine's own
// tools, and a browser here can still be made to call it through DNS rebinding (a page
// whose name the attacker re-points at 127.0.0.1 sends requests with that name as Host,
// and could charge limits through /v1/decide or read /debug/config and profiles). Such
// requests are refused; localhost, *.localhost and IP addresses pass, as does an
// HTTP/1.0 request without a Host.
func GuardLoopback(lis net.Listener, h http.Handler) http.Handler {
	addr, ok := lis.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			http.Error(w, "this listener is bound to loopback: call it as localhost or by IP address, not by another name (refused as a possible DNS-rebinding page)", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost says whether host (a Host header, with or without a port) names this
// machine in a way no outside DNS can re-point.
func loopbackHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(host)
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}
