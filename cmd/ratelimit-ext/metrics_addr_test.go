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
