// Package nooprls holds a RateLimitService that answers every request OK and does
// nothing else: no matching, no keys, no store. It is the throughput ceiling that the
// benchmarks (`make bench`, docs/performance.md) put beside the service, served with
// the same gRPC server settings, and a cheap endpoint for tests of load tooling.
package nooprls

import (
	"context"
	"net"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
)

// Server answers OK with one OK status per request descriptor, the smallest valid answer.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	// Before, when set, runs first and its error is the answer. The benchmark puts one
	// trivial store round trip here, to measure what waiting on a store costs by itself.
	Before func(context.Context) error
}

// ShouldRateLimit implements rlsv3.RateLimitServiceServer.
func (s Server) ShouldRateLimit(ctx context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if s.Before != nil {
		if err := s.Before(ctx); err != nil {
			return nil, err
		}
	}
	n := len(in.GetDescriptors())
	statuses := make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
	all := make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
	for i := range statuses {
		all[i].Code = rlsv3.RateLimitResponse_OK
		statuses[i] = &all[i]
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: statuses}, nil
}

// Serve registers s on a new gRPC server built with opts and serves lis until the
// returned server is stopped.
func Serve(lis net.Listener, s Server, opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(opts...)
	rlsv3.RegisterRateLimitServiceServer(gs, s)
	go func() { _ = gs.Serve(lis) }()
	return gs
}
