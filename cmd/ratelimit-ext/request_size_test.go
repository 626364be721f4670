package main

import (
	"context"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Envoy copies a header's value into every descriptor that reads it, so a client's
// header at Envoy's default limit (60 KiB) in each of 64 descriptors (the default
// --max-descriptors) must still be decided: a refused message is an error Envoy lets
// past every limit. Above --max-request-bytes gRPC refuses it.
func TestDefaultRequestBoundTakesAHeaderInEveryDescriptor(t *testing.T) {
	bin := buildBinary(t)
	value := strings.Repeat("v", 60<<10)
	req := &rlsv3.RateLimitRequest{Domain: "edge"}
	for range 64 {
		req.Descriptors = append(req.Descriptors, &ratelimitv3.RateLimitDescriptor{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: value}}})
	}
	call := func(s *server) (*rlsv3.RateLimitResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return rlsClient(t, s.grpcAddr).ShouldRateLimit(ctx, req)
	}
	resp, err := call(startBinary(t, bin))
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[63].CurrentLimit.GetName() != "k" {
		t.Fatalf("64 descriptors of 60 KiB at the default bound: %v, %v; want them decided", resp, err)
	}
	if _, err := call(startBinary(t, bin, "--max-request-bytes", "262144")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("the same above --max-request-bytes 262144: %v, want ResourceExhausted", err)
	}
}
