package main

import (
	"strings"
	"testing"
)

// Settings the load generator would quietly replace by a default are refused, naming
// the flag, before anything is sent.
func TestBenchRefusesSettingsItWouldReplace(t *testing.T) {
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--keys", "0"}, "--keys 0"},
		{[]string{"--workers", "0"}, "--workers 0"},
		{[]string{"--requests", "-1"}, "--requests -1"},
		{[]string{"--duration", "-1s"}, "--duration"},
		{[]string{"--timeout", "0s"}, "--timeout"},
		{[]string{"--duration", "0s"}, "never end"},
	} {
		args := append([]string{"bench", "--target", "127.0.0.1:1"}, tc.args...)
		code, out := runStderr(t, args...)
		if code != 2 || !strings.Contains(out, tc.says) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, out, tc.says)
		}
	}
}

// Against a service that serves gRPC over mutual TLS, the load generator connects with
// --tls-ca and a client certificate and reports answers; without the certificate it
// cannot connect, and says so.
func TestBenchOverMutualTLS(t *testing.T) {
	ca, server, client := newPKI(t)
	s := startBinary(t, buildBinary(t), "--grpc-tls-cert", server.CertFile, "--grpc-tls-key", server.KeyFile, "--grpc-tls-client-ca", ca.File)
	bench := func(extra ...string) (int, string) {
		args := append([]string{"bench", "--target", s.grpcAddr, "--descriptor", "k=v{key}", "--workers", "2",
			"--warmup", "0s", "--duration", "0s", "--requests", "50", "--json"}, extra...)
		return runStdout(t, args...)
	}
	code, out := bench("--tls-ca", ca.File, "--tls-cert", client.CertFile, "--tls-key", client.KeyFile)
	if code != 0 || !strings.Contains(out, `"ok": 50`) {
		t.Errorf("over mutual TLS: exit %d\n%.1500s", code, out)
	}
	if code, out := bench("--tls-ca", ca.File); code == 0 {
		t.Errorf("without a client certificate: exit 0\n%.1500s", out)
	}
	if code, out := runStderr(t, "bench", "--target", s.grpcAddr, "--tls-cert", client.CertFile); code != 2 || !strings.Contains(out, "--tls-cert and --tls-key go together") {
		t.Errorf("a certificate without its key: exit %d, %q", code, out)
	}
}
