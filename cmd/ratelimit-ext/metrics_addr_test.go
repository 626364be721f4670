//go:build unix

package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
