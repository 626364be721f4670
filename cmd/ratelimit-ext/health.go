package main

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc-go's grpc.health.v1 service, except that its Watch streams end
// when the server shuts down. A Watch stays open for as long as its client wants, and
// a graceful stop waits for every stream: one watching client (a gRPC load balancer's
// health checks) used to hold every shutdown for the whole --shutdown-timeout and make
// it exit 1.
type healthServer struct {
	*grpchealth.Server
	stopping chan struct{} // closed by Shutdown
	once     sync.Once
}

func newHealthServer() *healthServer {
	return &healthServer{Server: grpchealth.NewServer(), stopping: make(chan struct{})}
}

// Shutdown reports NOT_SERVING for every service from now on and ends the Watch
// streams, each with a last NOT_SERVING.
func (h *healthServer) Shutdown() {
	h.Server.Shutdown()
	h.once.Do(func() { close(h.stopping) })
}

// Watch is the health service's Watch until the server shuts down.
func (h *healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := h.Server.Watch(req, &watchStream{Health_WatchServer: stream, ctx: ctx})
	select {
	case <-h.stopping:
		if stream.Context().Err() == nil {
			// The inner Watch may have seen the end before Shutdown's NOT_SERVING:
			// say it once more (a repeated status is harmless), then end the stream.
			_ = stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
			return status.Error(codes.Unavailable, "the server is shutting down")
		}
	default:
	}
	return err
}

// watchStream is a Watch stream whose context also ends at shutdown.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (s *watchStream) Context() context.Context { return s.ctx }
