package rls

import (
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ServiceName is the RateLimitService's name as grpc.health.v1 clients ask for it.
var ServiceName = rlsv3.RateLimitService_ServiceDesc.ServiceName

// HealthReporter returns a readiness callback (nil error = ready) that sets the
// grpc.health.v1 status of the whole server (service "") and of the RateLimitService,
// plus any other services given, to SERVING or NOT_SERVING.
func HealthReporter(h *health.Server, services ...string) func(error) {
	names := append([]string{"", ServiceName}, services...)
	return func(err error) {
		st := healthpb.HealthCheckResponse_SERVING
		if err != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		for _, n := range names {
			h.SetServingStatus(n, st)
		}
	}
}
