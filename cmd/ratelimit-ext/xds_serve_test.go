//go:build unix

package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// The binary with --config-source=xds, against a go-control-plane server: not ready
// and UNAVAILABLE until the first config; then the config's limits; a broken update is
// NACKed while the previous rules keep serving; SIGHUP does not end the process; and
// SIGTERM still exits cleanly with the subscription open.
func TestServeRulesFromXDS(t *testing.T) {
	bin := buildBinary(t)
	cp := xdstest.Start(t, "127.0.0.1:0")
	s := startBinary(t, bin, "--config-source", "xds", "--xds-server", cp.Addr, "--xds-node-id", "rl-test",
		"--xds-backoff-initial", "20ms", "--xds-backoff-max", "200ms")
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rlsv3.NewRateLimitServiceClient(conn)
	health := healthpb.NewHealthClient(conn)

	call := func(user string) (rlsv3.RateLimitResponse_Code, codes.Code) {
		ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
		defer cancel()
		resp, err := client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: user}}}}})
		return resp.GetOverallCode(), status.Code(err)
	}
	expect := func(user string, want ...rlsv3.RateLimitResponse_Code) {
		t.Helper()
		for i, w := range want {
			got, code := call(user)
			if code != codes.OK || got != w {
				t.Fatalf("%s call %d: %v (%v), want %v", user, i+1, got, code, w)
			}
		}
	}
	serving := func() healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}

	sub, _ := cp.Requests.Next(t, "subscription", nil)
	if sub.GetNode().GetId() != "rl-test" {
		t.Fatalf("node %v", sub.GetNode())
	}
	if st := serving(); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health before the first config: %v", st)
	}
	if _, code := call("alice"); code != codes.Unavailable {
		t.Fatalf("before the first config: %v, want Unavailable", code)
	}

	cp.Set(t, "rl-test", "v1", &rlsconfv3.RateLimitConfig{Name: "edge", Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "user", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 2}}}})
	cp.ACK(t, cp.Response(t, "v1"))
	expect("alice", rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT)
	for deadline := time.Now().Add(xdstest.Wait); serving() != healthpb.HealthCheckResponse_SERVING; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not SERVING %v after the first config", xdstest.Wait)
		}
	}

	cp.Set(t, "rl-test", "v2", &rlsconfv3.RateLimitConfig{Name: "edge", Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "user", RateLimit: &rlsconfv3.RateLimitPolicy{RequestsPerUnit: 5}}}}) // no unit
	bad := cp.Response(t, "v2")
	nack, _ := cp.Requests.Next(t, "NACK of v2", func(r *discoveryv3.DiscoveryRequest) bool { return r.GetResponseNonce() == bad.GetNonce() })
	if nack.GetVersionInfo() != "v1" || !strings.Contains(nack.GetErrorDetail().GetMessage(), "xds:edge: descriptors[0].rate_limit.unit: missing") {
		t.Fatalf("reply to v2: version %q, error %v; want a NACK keeping v1", nack.GetVersionInfo(), nack.GetErrorDetail())
	}
	expect("alice", rlsv3.RateLimitResponse_OVER_LIMIT)
	expect("bob", rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT)
	if st := serving(); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after a rejected update: %v, want SERVING on the previous rules", st)
	}

	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(xdstest.Wait); !strings.Contains(s.log(), "SIGHUP ignored"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no SIGHUP line within %v:\n%s", xdstest.Wait, s.log())
		}
	}
	expect("carol", rlsv3.RateLimitResponse_OK)

	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := s.waitExit(t, xdstest.Wait); code != 0 {
		t.Fatalf("exit code %d after SIGTERM:\n%s", code, s.log())
	}
}
