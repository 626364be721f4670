//go:build unix

package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"
)

// The server pings a gRPC connection idle for --grpc-keepalive-time, so that an L4
// load balancer with a short idle timeout between Envoy and the service does not drop
// it silently (the next call on it would fail). A real gRPC client makes one call and
// then stays idle; the server's PING reaches it. grpc-go's keepalive pings carry zero
// data, which tells them from its flow-control (BDP) pings.
func TestIdleConnectionsArePinged(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--grpc-keepalive-time", "1s")
	pings := make(chan [8]byte, 16)
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return testgrpc.WatchPings(c, false, func(data [8]byte) {
				select {
				case pings <- data:
				default:
				}
			}), nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, shutdownReq); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case data := <-pings:
			if data == [8]byte{} {
				return
			}
		case <-deadline:
			t.Fatal("no keepalive PING from the server on a connection idle for 10 s, with --grpc-keepalive-time 1s")
		}
	}
}

// --grpc-keepalive-time is 0 (never) or at least grpc-go's floor of 1 s (below it
// grpc-go would quietly ping every second); a negative value is refused, not read as 0.
func TestKeepaliveTimeIsChecked(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		value string
		ok    bool
	}{{"-1s", false}, {"500ms", false}, {"0", true}, {"1s", true}, {"2m", true}} {
		_, err := loadServeConfig([]string{"--grpc-keepalive-time", tc.value})
		if ok := err == nil; ok != tc.ok {
			t.Errorf("--grpc-keepalive-time %s: error %v, want accepted %v", tc.value, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--grpc-keepalive-time ") {
			t.Errorf("--grpc-keepalive-time %s: error %q does not name the flag", tc.value, err)
		}
	}
}
