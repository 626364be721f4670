package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The ext_authz door through a real Envoy: a second Envoy runs envoy/ext_authz.yaml
// (envoy.filters.http.ext_authz, gRPC) against the SAME ratelimit-ext replicas and Redis
// as the compose topology's Envoy (envoy/envoy.yaml, the rate-limit filter). The
// descriptors come from the ext_authz section of config/edge.yaml. Expectations follow
// SPEC §4 and the rules, as in e2e_test.go.

// extAuthzStats prefixes the ext_authz filter's counters in envoy/ext_authz.yaml.
const extAuthzStats = "http.ingress_ext_authz.ext_authz."

// eaEnvoy is the running ext_authz Envoy.
type eaEnvoy struct {
	proc       *Process
	url, admin string
}

// startExtAuthzEnvoy maps envoy/ext_authz.yaml onto the running topology the way the
// harness maps envoy/envoy.yaml: compose hosts become the local ports of those services,
// listen addresses become free loopback ports.
func startExtAuthzEnvoy(t *testing.T) *eaEnvoy {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(inputs.Root, "envoy", "ext_authz.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	admin, listeners, err := envoyListenPorts(data)
	if err != nil || len(listeners) != 1 {
		t.Fatalf("envoy/ext_authz.yaml: admin %d, listeners %v, %v (want one listener)", admin, listeners, err)
	}
	// Up to 3 tries, each with ports of its own, when a port found free was taken
	// before Envoy bound it.
	for attempt := 1; ; attempt++ {
		e, logPath, err := tryExtAuthzEnvoy(t, data, admin, listeners[0], attempt)
		if err == nil {
			extAuthzAdmin = e.admin // its counters start at 0, below any baseline
			t.Cleanup(func() { extAuthzAdmin = "" })
			return e
		}
		if attempt == 3 || !portTaken(err, logPath) {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; trying other ports", attempt, err)
	}
}

// tryExtAuthzEnvoy starts one Envoy on envoy/ext_authz.yaml (data) with fresh listen
// ports and waits until it is ready.
func tryExtAuthzEnvoy(t *testing.T, data []byte, admin, listener, attempt int) (_ *eaEnvoy, logPath string, _ error) {
	t.Helper()
	local := map[int]int{}
	cfg, err := rewriteEnvoy(data, func(host string, port int) (string, int, error) {
		if host == "0.0.0.0" {
			if local[port] == 0 {
				p, err := freePort()
				if err != nil {
					return "", 0, err
				}
				local[port] = p
			}
			return "127.0.0.1", local[port], nil
		}
		if p := topo.Plan.Port(host, port); p != 0 {
			return "127.0.0.1", p, nil
		}
		return "", 0, fmt.Errorf("%s:%d is not a port of a compose service", host, port)
	})
	if err != nil {
		t.Fatalf("envoy/ext_authz.yaml: %v", err)
	}
	dir := filepath.Join(topo.WorkDir, "envoy-ext-authz-"+strconv.Itoa(attempt))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ext_authz.yaml")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &eaEnvoy{
		url:   "http://127.0.0.1:" + strconv.Itoa(local[listener]),
		admin: "http://127.0.0.1:" + strconv.Itoa(local[admin]),
		proc: &Process{Name: "envoy-ext-authz", Path: inputs.Binaries[kindEnvoy],
			Args:    []string{"-c", path, "--use-dynamic-base-id", "--log-level", "info"},
			LogPath: filepath.Join(dir, "envoy.log")},
	}
	if err := e.proc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := os.ReadFile(e.proc.LogPath); err == nil {
				lines := strings.Split(string(log), "\n")
				t.Logf("envoy-ext-authz log (last lines of %s):\n%s", e.proc.LogPath, strings.Join(lines[max(0, len(lines)-60):], "\n"))
			}
		}
		_ = e.proc.Stop(10 * time.Second)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if !e.proc.Running() {
			return nil, e.proc.LogPath, fmt.Errorf("envoy-ext-authz exited during startup (log: %s)", e.proc.LogPath)
		}
		if err = httpOK(e.admin + "/ready"); err == nil {
			return e, e.proc.LogPath, nil
		}
		if time.Now().After(deadline) {
			_ = e.proc.Stop(10 * time.Second)
			return nil, e.proc.LogPath, fmt.Errorf("envoy-ext-authz not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *eaEnvoy) send(t *testing.T, method, path string, hdr ...string) reply {
	t.Helper()
	return sendTo(t, e.url, method, path, hdr...)
}

func (e *eaEnvoy) get(t *testing.T, path string, hdr ...string) reply {
	t.Helper()
	return e.send(t, http.MethodGet, path, hdr...)
}

// stat reads one counter of the ext_authz Envoy (0 when it does not exist yet).
func (e *eaEnvoy) stat(t *testing.T, name string) int {
	t.Helper()
	resp, err := client.Get(e.admin + "/stats?filter=^" + regexp.QuoteMeta(name) + "$")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	_, v, ok := strings.Cut(strings.TrimSpace(string(body)), ": ")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("stat %s: %q", name, body)
	}
	return n
}

// waitDeciding waits until every replica decides on the store again: /readyz turns
// green as soon as Redis answers, but a replica whose store circuit breaker opened
// keeps answering with the failure policy until its next probe. Each probe charges a
// throwaway API key once.
func waitDeciding(t *testing.T) {
	t.Helper()
	for _, sp := range topo.Services(kindRatelimit) {
		url := fmt.Sprintf("http://127.0.0.1:%d/v1/decide", sp.Ports[sp.HTTP])
		deadline := time.Now().Add(15 * time.Second)
		for i := 0; ; i++ {
			body := fmt.Sprintf(`{"domain":"edge","descriptors":[{"entries":[{"key":"api_key","value":"e2e-probe-%d-%d"}]}]}`, time.Now().UnixNano(), i)
			resp, err := client.Post(url, "application/json", strings.NewReader(body))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
				err = fmt.Errorf("POST /v1/decide: %s", resp.Status)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not decide on the store: %v", sp.Name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// noRateLimitHeaders fails when an answer carries rate-limit headers.
func noRateLimitHeaders(t *testing.T, what string, r reply) {
	t.Helper()
	for _, h := range []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"} {
		if v := r.h.Get(h); v != "" {
			t.Errorf("%s: %s: %q, want none", what, h, v)
		}
	}
}

func TestExtAuthz(t *testing.T) {
	needTopology(t)
	// An earlier test may have restarted Redis: start from a topology that answers.
	for _, sp := range append(topo.Services(kindRedis), topo.Services(kindRatelimit)...) {
		if err := topo.WaitReady(sp.Name, 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	waitDeciding(t)
	ea := startExtAuthzEnvoy(t)
	const prefix = extAuthzStats
	errorsBefore := ea.stat(t, prefix+"error") + ea.stat(t, prefix+"failure_mode_allowed")

	// Envoy is ready once its first health checks are done: both replicas passed them,
	// so they serve the service envoy/ext_authz.yaml's health check asks about.
	t.Run("HealthChecked", func(t *testing.T) {
		for _, sp := range topo.Services(kindRatelimit) {
			addr := "127.0.0.1:" + strconv.Itoa(sp.Ports[sp.GRPC])
			if flags := rlsHealthAt(t, ea.admin, addr); flags != "healthy" {
				t.Errorf("%s: %q in the ext_authz Envoy, want healthy", sp.Name, flags)
			}
		}
	})

	// Per client address through ext_authz: per-ip, sliding_window_log, 5 per 60 s. The
	// client comes from X-Forwarded-For (one trusted hop), like the rate-limit filter's.
	t.Run("PerClientIP", func(t *testing.T) {
		ip := newIP()
		var rs []reply
		for range 6 {
			rs = append(rs, ea.get(t, "/ip", xff(ip)...))
		}
		wantCodes(t, "6 requests from "+ip, rs, 200, 200, 200, 200, 200, 429)
		// Allowed answers reach the upstream; the 429 comes from the service (not the
		// upstream), with the same fields TestPerClientIP gets through the rate-limit filter.
		for i, r := range rs[:5] {
			if strings.TrimSpace(r.body) != "ok" {
				t.Errorf("request %d: body %q, want the upstream's", i, r.body)
			}
		}
		wantPerIPHeaders(t, rs)
		deny := rs[5]
		if strings.TrimSpace(deny.body) == "ok" {
			t.Error("the denied request reached the upstream")
		}
		// The same path spelt otherwise meets the same `when.path` (normalize_path,
		// merge_slashes in envoy/ext_authz.yaml): still over the limit.
		for _, p := range []string{"//ip", "/./ip", "/x/../ip"} {
			wantCodes(t, p+" from "+ip, []reply{ea.get(t, p, xff(ip)...)}, 429)
		}
		other := ea.get(t, "/ip", xff(newIP())...)
		wantCodes(t, "another address", []reply{other}, 200)
		header(t, other, "x-ratelimit-remaining", "4")
	})

	// A second line of a header an entry reads, made up anew each time, does not make a
	// fresh counter: the entry takes the first line (encode_raw_headers: true), as the
	// rate-limit filter does. On llm-tokens (1000 a minute), one request spends it all.
	t.Run("RepeatedHeader", func(t *testing.T) {
		windowRoom(t, time.Minute, 5*time.Second)
		tenant := "ea-twice-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var rs []reply
		for i, cost := range []string{"1000", "1", "1"} {
			rs = append(rs, ea.get(t, "/llm", "x-tenant", tenant, "x-tenant", "made-up-"+strconv.Itoa(i), "x-cost", cost))
		}
		wantCodes(t, "a tenant's whole budget, then two more with a made-up second line", rs, 200, 429, 429)
	})

	// Per API key: api_key=<x-api-key> → per-key-burst (token bucket, 3) + per-key-daily.
	t.Run("PerHeader", func(t *testing.T) {
		key := "ea-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		var rs []reply
		for range 4 {
			rs = append(rs, ea.get(t, "/key", "x-api-key", key))
		}
		wantCodes(t, "4 requests with one key", rs, 200, 200, 200, 429)
		if e := rs[3].recv.Sub(rs[0].sent); e >= time.Second {
			t.Fatalf("the burst took %v; the bucket refilled a token meanwhile (machine too slow for this test)", e)
		}
		limit := `3, 3;w=3;name="per-key-burst"`
		for i, r := range rs[:3] {
			header(t, r, "x-ratelimit-limit", limit)
			header(t, r, "x-ratelimit-remaining", strconv.Itoa(2-i))
		}
		header(t, rs[3], "x-ratelimit-remaining", "0")
		header(t, rs[3], "retry-after", "1")
		// No header, no descriptor (as Envoy's request_headers action): not limited.
		for range 5 {
			r := ea.get(t, "/key")
			wantCodes(t, "without x-api-key", []reply{r}, 200)
			noRateLimitHeaders(t, "without x-api-key", r)
		}
		// A premium key reaches per-premium-key (gcra, burst 20).
		prem := ea.get(t, "/key", "x-api-key", "premium-"+key)
		header(t, prem, "x-ratelimit-limit", `20, 20;w=2;name="per-premium-key"`)
		header(t, prem, "x-ratelimit-remaining", "19")
	})

	// The same descriptor through both doors is one counter (one storage key): three
	// requests through the rate-limit filter, then the ext_authz Envoy sees two left.
	t.Run("SharedAcrossDoors", func(t *testing.T) {
		ip := newIP()
		var viaRLS []reply
		for range 3 {
			viaRLS = append(viaRLS, get(t, "/ip", xff(ip)...))
		}
		wantCodes(t, "rate-limit filter", viaRLS, 200, 200, 200)
		header(t, viaRLS[2], "x-ratelimit-remaining", "2")
		var viaAuthz []reply
		for range 3 {
			viaAuthz = append(viaAuthz, ea.get(t, "/ip", xff(ip)...))
		}
		wantCodes(t, "ext_authz after 3 through the rate-limit filter", viaAuthz, 200, 200, 429)
		header(t, viaAuthz[0], "x-ratelimit-remaining", "1")
		header(t, viaAuthz[1], "x-ratelimit-remaining", "0")
		// Both doors render the same X-RateLimit-Limit for the same rule.
		if a, b := viaRLS[0].h.Get("x-ratelimit-limit"), viaAuthz[0].h.Get("x-ratelimit-limit"); a != b || a == "" {
			t.Errorf("X-RateLimit-Limit: rate-limit filter %q, ext_authz %q", a, b)
		}
		// And back: the rate-limit filter sees the quota the ext_authz door used.
		wantCodes(t, "rate-limit filter after ext_authz", []reply{get(t, "/ip", xff(ip)...)}, 429)
	})

	// hits_addend from x-cost: llm-tokens, a token_budget of 1000 per minute.
	t.Run("Cost", func(t *testing.T) {
		windowRoom(t, time.Minute, 5*time.Second)
		tenant := "ea-tenant-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		call := func(cost ...string) reply {
			h := []string{"x-tenant", tenant}
			if len(cost) > 0 {
				h = append(h, "x-cost", cost[0])
			}
			return ea.get(t, "/llm", h...)
		}
		r1 := call("600")
		wantCodes(t, "first 600", []reply{r1}, 200)
		header(t, r1, "x-ratelimit-limit", `1000, 1000;w=60;name="llm-tokens"`)
		header(t, r1, "x-ratelimit-remaining", "400")
		peek := call("0") // check-only
		wantCodes(t, "check-only", []reply{peek}, 200)
		header(t, peek, "x-ratelimit-remaining", "400")
		r2 := call("600")
		wantCodes(t, "second 600", []reply{r2}, 200)
		header(t, r2, "x-ratelimit-remaining", "0")
		r3 := call("600")
		wantCodes(t, "third 600", []reply{r3}, 429)
		lo, hi := windowRetry(r3, 60000)
		headerIn(t, r3, "retry-after", lo, hi)
		// A missing or malformed cost drops the descriptor, as Envoy's hits_addend does.
		for _, r := range []reply{call(), call("lots")} {
			wantCodes(t, "without a usable x-cost", []reply{r}, 200)
			noRateLimitHeaders(t, "without a usable x-cost", r)
		}
	})

	// A gRPC request over the limit fails with RESOURCE_EXHAUSTED (8), not the
	// UNAVAILABLE (14) Envoy maps a 429 to for gRPC, which clients retry at once: the
	// service puts grpc-status among the denied headers, and Envoy's trailers-only
	// answer keeps it. An HTTP request over the same limit still gets a plain 429.
	t.Run("GRPCDenial", func(t *testing.T) {
		ip := newIP()
		var rs []reply
		for range 6 {
			rs = append(rs, sendGRPC(t, ea.url, "/ip", xff(ip)...))
		}
		wantCodes(t, "6 gRPC requests from "+ip, rs, 200, 200, 200, 200, 200, 200)
		for i, r := range rs[:5] {
			if v := r.h.Get("grpc-status"); v != "" {
				t.Errorf("allowed gRPC request %d: grpc-status %q from Envoy, want the upstream's answer", i, v)
			}
		}
		deny := rs[5]
		header(t, deny, "content-type", "application/grpc")
		header(t, deny, "grpc-status", "8")
		header(t, deny, "x-ratelimit-remaining", "0")
		if deny.h.Get("retry-after") == "" {
			t.Error("the gRPC denial has no retry-after")
		}
		r := ea.get(t, "/ip", xff(ip)...)
		wantCodes(t, "an HTTP request after the gRPC ones", []reply{r}, 429)
		if v := r.h.Get("grpc-status"); v != "" {
			t.Errorf("HTTP denial: grpc-status %q, want none", v)
		}
	})

	// Requests no descriptor applies to, and routes with the check disabled, pass
	// without rate-limit headers.
	t.Run("Unlimited", func(t *testing.T) {
		for _, path := range []string{"/", "/health", "/ipv6", "/ip/x"} {
			r := ea.get(t, path, xff(newIP())...)
			wantCodes(t, path, []reply{r}, 200)
			noRateLimitHeaders(t, path, r)
		}
	})

	// Every decision above came from the service: no check failed open.
	if n := ea.stat(t, prefix+"error") + ea.stat(t, prefix+"failure_mode_allowed") - errorsBefore; n != 0 {
		t.Errorf("%d ext_authz checks failed (error or failure_mode_allowed)", n)
	}
	if n := ea.stat(t, prefix+"denied"); n == 0 {
		t.Error("the ext_authz filter counted no denied check")
	}
}

// h2cClient speaks HTTP/2 without TLS (prior knowledge), as gRPC clients do to Envoy.
var h2cClient = func() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}
}()

// sendGRPC sends a request shaped like a gRPC call (HTTP/2 POST, content-type
// application/grpc, an empty message) to the Envoy at base. Envoy answers a denied
// one with a trailers-only gRPC response: HTTP 200 and grpc-status among the headers.
func sendGRPC(t *testing.T, base, path string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader("\x00\x00\x00\x00\x00"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	r := reply{sent: time.Now()}
	resp, err := h2cClient.Do(req)
	if err != nil {
		t.Fatalf("gRPC-shaped POST %s%s: %v", base, path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.recv = time.Now()
	if resp.ProtoMajor != 2 {
		t.Fatalf("POST %s%s: answered over %s, want HTTP/2", base, path, resp.Proto)
	}
	r.code, r.h, r.body = resp.StatusCode, resp.Header, string(body)
	return r
}
