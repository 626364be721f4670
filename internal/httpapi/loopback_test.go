package httpapi_test

import (
	"net"
	"net/http"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
)

// serveGuarded serves an OK handler behind GuardLoopback on a listener at addr.
func serveGuarded(t *testing.T, addr string) string {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("no listener on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: httpapi.GuardLoopback(lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return lis.Addr().String()
}

func statusWithHost(t *testing.T, addr, host string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/decide", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// On a loopback listener, a request naming the host by a name that outside DNS could
// point here (a DNS-rebinding page) is refused; loopback names and addresses pass.
func TestGuardLoopbackRefusesOtherNames(t *testing.T) {
	addr := serveGuarded(t, "127.0.0.1:0")
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		"localhost:" + port:          http.StatusOK,
		"LOCALHOST":                  http.StatusOK,
		"api.localhost:" + port:      http.StatusOK,
		"127.0.0.1:" + port:          http.StatusOK,
		"[::1]:" + port:              http.StatusOK,
		"10.0.0.5":                   http.StatusOK,
		"rebind.attacker.example":    http.StatusForbidden,
		"attacker.example:" + port:   http.StatusForbidden,
		"localhost.attacker.example": http.StatusForbidden,
	} {
		if got := statusWithHost(t, addr, host); got != want {
			t.Errorf("Host %q: %d, want %d", host, got, want)
		}
	}
}

// A listener on every interface serves what a deployment calls it by: no check.
func TestGuardLoopbackLeavesOtherListenersAlone(t *testing.T) {
	addr := serveGuarded(t, "0.0.0.0:0")
	_, port, _ := net.SplitHostPort(addr)
	if got := statusWithHost(t, "127.0.0.1:"+port, "ratelimit.svc.cluster.local"); got != http.StatusOK {
		t.Errorf("a service name on a 0.0.0.0 listener: %d, want 200", got)
	}
}
