package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that sends a request's headers and then never its whole body is cut off
// after the read timeout instead of holding the connection for good.
func TestHTTPServerDropsAStalledBody(t *testing.T) {
	c := sendRaw(t, newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
	}), 200*time.Millisecond, 0), "POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second)) // the test's own bound, far above the server's
	_, err := io.ReadAll(c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server still held the connection after 5 s")
	}
}

// A client that asks for a response and then stops reading it is cut off after the
// write timeout instead of holding the handler for good.
func TestHTTPServerDropsAStalledReader(t *testing.T) {
	finished := make(chan error, 1)
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		var err error
		for i := 0; i < 1024 && err == nil; i++ { // up to 1 GiB: far more than socket buffers hold
			_, err = w.Write(chunk)
		}
		finished <- err
	}), time.Second, 300*time.Millisecond)
	sendRaw(t, srv, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	select { // never read the response
	case err := <-finished:
		if err == nil {
			t.Fatal("the handler wrote 1 GiB to a client that read nothing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a stalled client after 10 s")
	}
}

// sendRaw serves srv on a loopback port, writes raw to a connection of its own and
// returns the connection; both end with the test.
func sendRaw(t *testing.T, srv *http.Server, raw string) net.Conn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return c
}

// The running service on loopback refuses a request that names it by another host (a
// DNS-rebinding page), on the HTTP port, the metrics port and pprof alike, and answers
// localhost. With --http-allowed-hosts, a listener on every interface checks too.
func TestHTTPListenersRefuseOtherHostNames(t *testing.T) {
	bin := buildBinary(t)
	s := startBinary(t, bin, "--metrics-addr", "127.0.0.1:0", "--pprof-addr", "127.0.0.1:0")
	pprofAddr := loggedAddr(t, s, "pprof")
	urls := []string{"http://" + s.httpAddr + "/healthcheck", "http://" + s.metricsAddr + "/metrics", "http://" + pprofAddr + "/debug/pprof/"}
	for _, u := range urls {
		wantStatus(t, u, map[string]int{"localhost": http.StatusOK, "rebind.attacker.example": http.StatusForbidden})
	}

	open := startBinary(t, bin, "--http-addr", "0.0.0.0:0", "--http-allowed-hosts", "ratelimit.internal, other.internal")
	_, port, err := net.SplitHostPort(open.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "http://127.0.0.1:"+port+"/healthcheck", map[string]int{
		"ratelimit.internal": http.StatusOK, "other.internal": http.StatusOK, "127.0.0.1": http.StatusOK,
		"rebind.attacker.example": http.StatusForbidden})

	for _, bad := range []string{"ratelimit.internal:8080", "a?b", "*.internal", "http://x"} {
		if code, out := runStderr(t, "serve", "--http-allowed-hosts", bad); code != 2 || !strings.Contains(out, "--http-allowed-hosts") {
			t.Errorf("--http-allowed-hosts %q: exit %d, %q; want 2 naming the flag", bad, code, out)
		}
	}
}

// wantStatus requests u with each Host and checks the status.
func wantStatus(t *testing.T, u string, byHost map[string]int) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	for host, want := range byHost {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s with Host %s: %d, want %d", u, host, resp.StatusCode, want)
		}
	}
}

// loggedAddr is the addr of the server's first JSON log line with message msg.
func loggedAddr(t *testing.T, s *server, msg string) string {
	t.Helper()
	for _, line := range strings.Split(s.log(), "\n") {
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == msg && rec.Addr != "" {
			return rec.Addr
		}
	}
	t.Fatalf("no %q line with an addr in the log:\n%s", msg, s.log())
	return ""
}
