package httpapi_test

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
)

// serveGuarded serves an OK handler behind g on a listener at addr.
func serveGuarded(t *testing.T, addr string, g httpapi.HostGuard) string {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("no listener on %s: %v", addr, err) // not a skip: a guard left untested must not pass
	}
	srv := &http.Server{Handler: g.Wrap(lis, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))}
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
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// On a loopback listener, a request naming the host by a name that outside DNS could
// point here (a DNS-rebinding page) is refused; loopback names and addresses pass.
func TestHostGuardOnLoopback(t *testing.T) {
	addr := serveGuarded(t, "127.0.0.1:0", httpapi.HostGuard{})
	_, port, _ := net.SplitHostPort(addr)
	for host, want := range map[string]int{
		"localhost:" + port:          http.StatusOK,
		"LOCALHOST":                  http.StatusOK,
		"localhost.":                 http.StatusOK,
		"api.localhost:" + port:      http.StatusOK,
		"127.0.0.1:" + port:          http.StatusOK,
		"[::1]:" + port:              http.StatusOK,
		"10.0.0.5":                   http.StatusOK,
		"rebind.attacker.example":    http.StatusForbidden,
		"attacker.example:" + port:   http.StatusForbidden,
		"localhost.attacker.example": http.StatusForbidden,
		"evillocalhost":              http.StatusForbidden,
	} {
		if got := statusWithHost(t, addr, host); got != want {
			t.Errorf("Host %q: %d, want %d", host, got, want)
		}
	}
}

// A listener on every interface serves what a deployment calls it by, unless names are
// listed: then only they (and loopback names and addresses) pass, there too.
func TestHostGuardElsewhere(t *testing.T) {
	open := serveGuarded(t, "0.0.0.0:0", httpapi.HostGuard{})
	_, port, _ := net.SplitHostPort(open)
	if got := statusWithHost(t, "127.0.0.1:"+port, "ratelimit.svc.cluster.local"); got != http.StatusOK {
		t.Errorf("a service name on a 0.0.0.0 listener without a list: %d, want 200", got)
	}
	listed := serveGuarded(t, "0.0.0.0:0", httpapi.HostGuard{Allowed: []string{"Ratelimit.internal"}})
	_, port, _ = net.SplitHostPort(listed)
	for host, want := range map[string]int{
		"ratelimit.internal:" + port: http.StatusOK,
		"RATELIMIT.INTERNAL.":        http.StatusOK,
		"localhost":                  http.StatusOK,
		"127.0.0.1":                  http.StatusOK,
		"rebind.attacker.example":    http.StatusForbidden,
	} {
		if got := statusWithHost(t, "127.0.0.1:"+port, host); got != want {
			t.Errorf("listed names, Host %q: %d, want %d", host, got, want)
		}
	}
}
