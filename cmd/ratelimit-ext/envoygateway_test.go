//go:build unix

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// The binary as Envoy Gateway runs it: started as `ratelimit` with no arguments and
// only Envoy Gateway's environment, rules from an xDS server over mutual TLS, Redis, gRPC
// served over TLS to a client holding a certificate as Envoy does, /healthcheck for the
// probes (which a Redis outage does not fail), and /metrics on the Prometheus port.
func TestServeAsEnvoyGatewayRunsIt(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ratelimit") // the Deployment's command is /bin/ratelimit
	if err := os.Symlink(buildBinary(t), bin); err != nil {
		t.Fatal(err)
	}

	// One CA signs everything, as Envoy Gateway's certgen does: the service's
	// certificate (its Secret envoy-rate-limit, mounted at /certs) serves gRPC and is
	// the client certificate towards the xDS server.
	ca := testpki.New(t)
	rl := ca.Issue(t, "envoy-ratelimit", []string{"127.0.0.1", "envoy-ratelimit.envoy-gateway-system.svc.cluster.local"},
		x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth)
	xds := ca.Issue(t, "envoy-gateway", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(ca.ServerTLS(xds, true))))
	const domain = "default/eg/http"
	cp.Set(t, "envoy-ratelimit", "v1", &rlsconfv3.RateLimitConfig{Name: domain, Domain: domain, Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "user", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 2}}}})
	redis := testredis.Start(t)

	eg := envoyGatewayEnv()
	for _, k := range []string{"REDIS_TLS", "REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY"} {
		delete(eg, k) // the test's Redis speaks plaintext
	}
	files := map[string]string{"/certs/tls.crt": rl.CertFile, "/certs/tls.key": rl.KeyFile, "/certs/ca.crt": ca.File}
	for k, v := range eg {
		if f, ok := files[v]; ok {
			eg[k] = f
		}
	}
	eg["CONFIG_GRPC_XDS_SERVER_URL"] = cp.Addr
	eg["REDIS_URL"] = redis.Addr()
	eg["PROMETHEUS_ADDR"] = "127.0.0.1:0" // :19001 in the Deployment
	env := []string{
		// Loopback ports of the test's choosing instead of the image's 8081 and 8080,
		// and JSON logs for the harness.
		"RATELIMIT_EXT_GRPC_ADDR=127.0.0.1:0", "RATELIMIT_EXT_HTTP_ADDR=127.0.0.1:0", "RATELIMIT_EXT_LOG_FORMAT=json",
	}
	for k, v := range eg {
		env = append(env, k+"="+v)
	}
	s := startProcess(t, bin, env)

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + s.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	healthcheck := func() (int, string) { t.Helper(); return get("/healthcheck") }
	if code, body := healthcheck(); code != http.StatusOK || body != "OK" {
		t.Fatalf("/healthcheck: %d %q, want 200 OK", code, body)
	}

	// The rules arrive over mutual TLS and are ACKed once in use.
	cp.ACK(t, cp.Response(t, "v1"))

	envoy := ca.Issue(t, "envoy", []string{"envoy"}, x509.ExtKeyUsageClientAuth)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool, Certificates: []tls.Certificate{envoy.TLS}, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "alice"}}}}}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
		resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, req)
		cancel()
		if err != nil || resp.GetOverallCode() != want {
			t.Fatalf("call %d over TLS: %v (%v), want %v", i+1, resp.GetOverallCode(), err, want)
		}
	}

	plain, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := rlsv3.NewRateLimitServiceClient(plain).ShouldRateLimit(ctx, req); err == nil {
		t.Fatal("a plaintext call was answered: gRPC is not served over TLS")
	}

	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("metrics port: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `ratelimit_ext_decisions_total{`) {
		t.Fatalf("metrics port /metrics: %d\n%.2000s", resp.StatusCode, body)
	}

	// Recent Envoy Gateway releases probe /healthcheck for liveness too: with Redis
	// gone it keeps answering OK, as envoyproxy/ratelimit does by default, so the pod is
	// not restarted; /readyz says the store is unreachable.
	redis.Stop()
	if code, body := healthcheck(); code != http.StatusOK || body != "OK" {
		t.Fatalf("/healthcheck with Redis stopped: %d %q, want 200 OK (the pod stays live)", code, body)
	}
	// /readyz reuses an observation up to 100 ms old.
	code, text := get("/readyz")
	for deadline := time.Now().Add(2 * time.Second); code == http.StatusOK && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, text = get("/readyz")
	}
	if code != http.StatusServiceUnavailable || !strings.Contains(text, "not ready") {
		t.Fatalf("/readyz with Redis stopped: %d %q, want 503", code, text)
	}

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.waitExit(t, xdstest.Wait); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	for _, want := range []string{`"variable":"GRPC_SERVER_TLS_CERT","outcome":"mapped to`,
		`"variable":"GRPC_SERVER_TLS_CA_CERT","outcome":"ignored: `} {
		if !strings.Contains(s.log(), want) {
			t.Errorf("the startup notes lack %s", want)
		}
	}
}
