//go:build unix

package main

import (
	"context"
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

	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// --metrics-addr serves /metrics and nothing else: a port opened for scrapers must not
// offer /v1/decide (which charges quota) or the rules.
func TestMetricsAddrServesOnlyMetrics(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--metrics-addr", "127.0.0.1:0")
	if s.metricsAddr == "" || s.metricsAddr == s.httpAddr {
		t.Fatalf("metrics address %q (HTTP %q): want a listener of its own", s.metricsAddr, s.httpAddr)
	}
	get := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+s.metricsAddr+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("GET", "/metrics"); code != http.StatusOK || !strings.Contains(body, "ratelimit_ext_ready 1") {
		t.Fatalf("GET /metrics: %d\n%.1000s", code, body)
	}
	for _, p := range []struct{ method, path string }{{"POST", "/v1/decide"}, {"GET", "/debug/config"}, {"GET", "/readyz"}} {
		if code, _ := get(p.method, p.path); code != http.StatusNotFound {
			t.Errorf("%s %s on the metrics port: %d, want 404", p.method, p.path, code)
		}
	}
}

// The memory_* series follow the engine that holds state in this process: the memory
// engine, or on Redis the local store failure policy's engine (bounded by the same
// flags, and filling up during an outage); on Redis without it there is none.
func TestMemoryMetricsFollowTheLocalPolicy(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		flags []string
		want  bool
	}{
		{nil, true},
		{[]string{"--redis-url", "redis://127.0.0.1:1"}, false},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--store-failure-policy-domains", "edge=local"}, true},
	} {
		s := startBinary(t, bin, append([]string{"--metrics-addr", "127.0.0.1:0"}, tc.flags...)...)
		resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.Contains(string(body), "\nratelimit_ext_memory_bytes "); got != tc.want {
			t.Errorf("%v: ratelimit_ext_memory_bytes exported: %v, want %v", tc.flags, got, tc.want)
		}
	}
}

// The local over-limit cache serves the Redis engine: a key far over its limit is
// answered from it (its hits counted); the memory engine, which decides in-process and
// evicts keys under its bound, runs without it (no cache series at all).
func TestLocalCacheServesTheRedisEngineOnly(t *testing.T) {
	bin := buildBinary(t)
	rules := t.TempDir()
	if err := os.WriteFile(filepath.Join(rules, "edge.yaml"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testredis.Start(t)
	for _, tc := range []struct {
		engine []string
		hits   bool
	}{{nil, false}, {[]string{"--redis-url", srv.URL()}, true}} {
		s := startBinary(t, bin, append([]string{"--config-dir", rules, "--metrics-addr", "127.0.0.1:0"}, tc.engine...)...)
		client := rlsClient(t, s.grpcAddr)
		for range 20 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := client.ShouldRateLimit(ctx, shutdownReq)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		hits := regexp.MustCompile(`(?m)^ratelimit_ext_local_cache_hits_total (\d+)`).FindStringSubmatch(string(body))
		switch {
		case tc.hits && (hits == nil || hits[1] == "0"):
			t.Errorf("%v: 19 denials of one key and no cache hit counted: %v", tc.engine, hits)
		case !tc.hits && hits != nil:
			t.Errorf("%v: the memory engine has a local cache (%s)", tc.engine, hits[0])
		}
	}
}

// Every TLS file the service reads is reported under its use: the gRPC server's
// certificate and client CA, and the Redis client's (the engine is built at start,
// before Redis answers).
func TestTLSFilesAreReportedByUse(t *testing.T) {
	ca, server, client := newPKI(t)
	s := startBinary(t, buildBinary(t), "--metrics-addr", "127.0.0.1:0",
		"--grpc-tls-cert", server.CertFile, "--grpc-tls-key", server.KeyFile, "--grpc-tls-client-ca", ca.File,
		"--redis-url", "rediss://127.0.0.1:1", "--redis-tls-ca", ca.File,
		"--redis-tls-cert", client.CertFile, "--redis-tls-key", client.KeyFile)
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`ratelimit_ext_tls_certificate_expiry_timestamp_seconds{files="grpc_server"} %d`, server.TLS.Leaf.NotAfter.Unix()),
		fmt.Sprintf(`ratelimit_ext_tls_certificate_expiry_timestamp_seconds{files="redis_client"} %d`, client.TLS.Leaf.NotAfter.Unix()),
		`ratelimit_ext_tls_reload_failing{files="grpc_server"} 0`,
		`ratelimit_ext_tls_reload_failing{files="grpc_client_ca"} 0`,
		`ratelimit_ext_tls_reload_failing{files="redis_client"} 0`,
		`ratelimit_ext_tls_reload_failing{files="redis_ca"} 0`,
	} {
		// Prometheus writes large values in exponent notation: compare as numbers.
		if !hasSeries(string(body), want) {
			t.Errorf("no %s in /metrics", want)
		}
	}
}

// hasSeries reports whether the exposition holds the series of want ("name{labels}
// value") with that value.
func hasSeries(exposition, want string) bool {
	name, value, _ := strings.Cut(want, "} ")
	for _, line := range strings.Split(exposition, "\n") {
		got, v, ok := strings.Cut(line, "} ")
		if !ok || got != name {
			continue
		}
		a, errA := strconv.ParseFloat(v, 64)
		b, errB := strconv.ParseFloat(value, 64)
		return errA == nil && errB == nil && a == b
	}
	return false
}
