package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// rawCodec sends a request's wire bytes as they are and reads replies as protos: a
// client that, like Envoy, does not check that strings are UTF-8.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return proto.Unmarshal(data.Materialize(), v.(proto.Message))
}

// A descriptor value that is not UTF-8 (a Latin-1 header byte, which Envoy forwards as
// is) is limited like any other value, not failed: a failed call lets Envoy pass the
// request unlimited by default.
func TestDescriptorValueNotUTF8IsLimited(t *testing.T) {
	s := startBinary(t, buildBinary(t))
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The binary's rule: domain edge, key k, any value.
	wire, err := proto.Marshal(&rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: "cafΩ"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	wire = bytes.ReplaceAll(wire, []byte("Ω"), []byte{0xe9, 0xe9}) // two Latin-1 bytes, same length
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var resp rlsv3.RateLimitResponse
	err = conn.Invoke(ctx, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", wire, &resp, grpc.ForceCodecV2(rawCodec{}))
	if err != nil {
		t.Fatalf("ShouldRateLimit: %v", err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 1 || resp.Statuses[0].CurrentLimit == nil {
		t.Errorf("got %v, want OK from the rule on k (a current_limit)", fmt.Sprint(&resp))
	}
}
