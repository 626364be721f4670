package main

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
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
		{[]string{"--rate", "NaN"}, "--rate NaN"},
		{[]string{"--rate", "+Inf"}, "--rate +Inf"},
		{[]string{"--rate", "-5"}, "--rate -5"},
		{[]string{"--rate", "100", "--max-in-flight", "0"}, "--max-in-flight 0"},
		{[]string{"--rate", "100", "--max-in-flight", "100001"}, "--max-in-flight 100001"},
		{[]string{"--conns", "-1"}, "--conns"},
		{[]string{"--descriptors-per-request", "-1"}, "--descriptors-per-request"},
		{[]string{"--connect-timeout", "0s"}, "--connect-timeout"},
		{[]string{"--target", ""}, "--target"},
		// Settings the load generator itself refuses are mistakes in the flags too.
		{[]string{"--domain="}, "--domain"},
		{[]string{"--workers", "1", "--conns", "2"}, "--workers 1"},
		{[]string{"--target", "127.0.0.1:1,127.0.0.1:2", "--conns", "3"}, "--conns 3"},
		{[]string{"--max-in-flight", "100001"}, "--max-in-flight 100001"}, // refused in a closed loop too
	} {
		args := append([]string{"bench", "--target", "127.0.0.1:1"}, tc.args...)
		if tc.args[0] == "--target" {
			args = append([]string{"bench"}, tc.args...)
		}
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

// --requests alone ends the run by its count; the default --duration applies only when
// given (it used to cut a long request count short at 10 s).
func TestBenchRequestsAloneHasNoDuration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{
		{[]string{"--requests", "100000"}, 0},
		{[]string{"--requests", "100000", "--duration", "3s"}, 3 * time.Second},
		{nil, 10 * time.Second},
	} {
		b, code := parseBench(tc.args)
		if b == nil {
			t.Fatalf("%v: exit %d", tc.args, code)
		}
		if b.cfg.Duration != tc.want {
			t.Errorf("%v: duration %v, want %v", tc.args, b.cfg.Duration, tc.want)
		}
	}
}

// The exit status tells a script whether the run measured cleanly: requests that all
// failed (a deadline no answer can meet) exit 1 after the report; a clean run exits 0
// and warns when no answer named a limit (a domain that no rule has).
func TestBenchExitStatus(t *testing.T) {
	s := startBinary(t, buildBinary(t))
	bench := func(extra ...string) (int, string) {
		args := append([]string{"bench", "--target", s.grpcAddr, "--descriptor", "k=v{key}", "--workers", "2",
			"--warmup", "0s", "--requests", "20"}, extra...)
		return runStdout(t, args...)
	}
	if code, out := bench("--domain", "edge"); code != 0 || strings.Contains(out, "NO LIMIT MATCHED") {
		t.Errorf("a clean run: exit %d\n%s", code, out)
	}
	if code, out := bench("--domain", "nosuch"); code != 0 || !strings.Contains(out, "NO LIMIT MATCHED") {
		t.Errorf("a domain without rules: exit %d\n%s", code, out)
	}
	if code, out := bench("--domain", "edge", "--timeout", "1ns"); code != 1 || !strings.Contains(out, "DeadlineExceeded 20") {
		t.Errorf("every request past its deadline: exit %d\n%s", code, out)
	}
}

// --tls=false beside a TLS file or name, each of which turns TLS on, is refused (exit
// 2, with serve's message for --xds-tls: TestXDSTLSOffBesideOurFilesIsRefused); the
// file alone still implies TLS.
func TestBenchTLSOffBesideFilesIsRefused(t *testing.T) {
	ca := testpki.New(t)
	for _, args := range [][]string{{"--tls=false", "--tls-ca", ca.File}, {"--tls-server-name", "rls.internal", "--tls=false"}} {
		if _, code := parseBench(args); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	b, code := parseBench([]string{"--tls-ca", ca.File})
	if code != 0 || b.cfg.TLS == nil {
		t.Errorf("--tls-ca alone: exit %d, want TLS", code)
	}
}

// With --json, a run that cannot start still prints JSON on stdout, naming the error,
// so that a script reading the report gets one (it used to get nothing, and an error
// on stderr only).
func TestBenchJSONOnFailure(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now: connections are refused
	code, out := runStdout(t, "bench", "--target", addr, "--json", "--requests", "1", "--connect-timeout", "300ms")
	var got struct{ Error string }
	if err := json.Unmarshal([]byte(out), &got); err != nil || code != 1 || !strings.Contains(got.Error, "connection refused") {
		t.Errorf("exit %d, stdout %q (%v); want 1 and JSON naming the refused connection", code, out, err)
	}
}

// Every flag that bench names for a loadgen.Config field is one of bench's flags.
func TestBenchFlagOfNamesBenchFlags(t *testing.T) {
	fs, _ := benchFlags(&benchCommand{})
	for field, name := range benchFlagOf {
		if fs.Lookup(strings.TrimPrefix(name, "--")) == nil {
			t.Errorf("Config.%s is named %s, which is not a bench flag", field, name)
		}
	}
}
