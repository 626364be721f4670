package httpapi_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
)

// guardedStatus is the status g's wrap of an OK handler, on a loopback listener,
// answers a request with the Host header host ("" for none, as HTTP/1.0 allows).
func guardedStatus(t *testing.T, g httpapi.HostGuard, host string) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("no loopback listener: %v", err)
	}
	defer lis.Close()
	h := g.Wrap(lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	req := httptest.NewRequest(http.MethodPost, "/v1/decide", nil)
	req.Host = host
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

// A request without a Host header passes the guard: no DNS name, so no page a DNS
// rebinding could point here, sent it.
func TestHostGuardPassesARequestWithoutHost(t *testing.T) {
	if got := guardedStatus(t, httpapi.HostGuard{}, ""); got != http.StatusOK {
		t.Errorf("no Host on a loopback listener: %d, want 200", got)
	}
}

// An IPv6 address in brackets without a port names the server by address: it passes.
func TestHostGuardPassesABracketedIPv6AddressWithoutPort(t *testing.T) {
	for _, host := range []string{"[::1]", "[fe80::1]"} {
		if got := guardedStatus(t, httpapi.HostGuard{}, host); got != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, got)
		}
	}
}

// An allowed name listed fully qualified, with its root dot, matches the name as
// callers send it, with or without that dot.
func TestHostGuardAllowedNameWithTrailingDot(t *testing.T) {
	g := httpapi.HostGuard{Allowed: []string{"ratelimit.internal."}}
	for host, want := range map[string]int{
		"ratelimit.internal":       http.StatusOK,
		"RateLimit.Internal:8080":  http.StatusOK,
		"ratelimit.internal.":      http.StatusOK,
		"ratelimit.internal.evil.": http.StatusForbidden,
	} {
		if got := guardedStatus(t, g, host); got != want {
			t.Errorf("allowed %q, Host %q: %d, want %d", g.Allowed, host, got, want)
		}
	}
}
