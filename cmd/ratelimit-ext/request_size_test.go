package main

import (
	"context"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"
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

// Each gRPC connection may carry at most --grpc-max-concurrent-streams RPCs at once:
// the server says so in its HTTP/2 SETTINGS (so Envoy opens another connection rather
// than exceed it), 1024 by default. Without it one connection could hold any number of
// unfinished requests, each with its goroutine and buffer.
func TestServerAdvertisesItsStreamBound(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		flags []string
		want  uint32
	}{{nil, 1024}, {[]string{"--grpc-max-concurrent-streams", "3"}, 3}} {
		s := startBinary(t, bin, tc.flags...)
		if got := maxConcurrentStreamsOf(t, s.grpcAddr); got != tc.want {
			t.Errorf("%v: SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", tc.flags, got, tc.want)
		}
	}
}

// A connection is aged out after --grpc-max-connection-age (±10%): the server sends a
// GOAWAY, so that Envoy opens a new connection, which may reach a replica added since.
func TestConnectionsAreAgedOut(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--grpc-max-connection-age", "500ms", "--grpc-max-connection-age-grace", "100ms")
	fr := testgrpc.RawHTTP2(t, s.grpcAddr) // reads fail after 10 s
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no GOAWAY on a connection older than --grpc-max-connection-age: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		}
		if _, ok := f.(*http2.GoAwayFrame); ok {
			return
		}
	}
}

// maxConcurrentStreamsOf opens a plaintext HTTP/2 connection to addr and returns the
// SETTINGS_MAX_CONCURRENT_STREAMS of the server's first SETTINGS frame (0: not sent).
func maxConcurrentStreamsOf(t *testing.T, addr string) uint32 {
	t.Helper()
	fr := testgrpc.RawHTTP2(t, addr)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, _ := sf.Value(http2.SettingMaxConcurrentStreams)
			return v
		}
	}
}
