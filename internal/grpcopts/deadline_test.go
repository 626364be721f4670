package grpcopts

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ratelimit-ext/ratelimit-ext/internal/nooprls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"
)

// A client that sends the start of a ShouldRateLimit request and never the rest is cut
// off after the call-time bound, with DEADLINE_EXCEEDED, whether it asked for no
// deadline or a longer one: its buffer and goroutine are not held for as long as it
// keeps the connection.
func TestUnfinishedRequestIsCutOff(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := nooprls.Serve(lis, nooprls.Server{}, BoundCallTime(200*time.Millisecond))
	t.Cleanup(gs.Stop)
	for _, timeout := range []string{"", "1H"} {
		start := time.Now()
		code := unfinishedCall(t, lis.Addr().String(), timeout)
		if code != "4" { // DEADLINE_EXCEEDED
			t.Errorf("grpc-timeout %q: grpc-status %q, want 4", timeout, code)
		}
		if took := time.Since(start); took < 200*time.Millisecond {
			t.Errorf("grpc-timeout %q: cut off after %v, before the bound", timeout, took)
		}
	}
}

// unfinishedCall opens an HTTP/2 connection, starts a ShouldRateLimit call (with a
// grpc-timeout header unless timeout is empty) whose message declares 100 bytes but
// sends 10, and returns the grpc-status the server ends the call with.
func unfinishedCall(t *testing.T, addr, timeout string) string {
	t.Helper()
	fr := testgrpc.RawHTTP2(t, addr)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
		{":path", "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"},
		{"content-type", "application/grpc"}, {"te", "trailers"}, {"grpc-timeout", timeout}} {
		if f[1] != "" {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// A message of 100 bytes (uncompressed), of which 10 are sent.
	if err := fr.WriteData(1, false, append([]byte{0, 0, 0, 0, 100}, make([]byte, 10)...)); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no end of the call: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			fields, err := dec.DecodeFull(f.HeaderBlockFragment())
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range fields {
				if h.Name == "grpc-status" {
					return h.Value
				}
			}
		case *http2.RSTStreamFrame:
			t.Fatalf("stream reset (%v) without a status", f.ErrCode)
		}
	}
}

// Calls that Envoy makes (a deadline within the bound) keep their context; streaming
// methods are not bounded.
func TestBoundCallLeavesShortDeadlinesAndStreams(t *testing.T) {
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got := boundCall(short, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", time.Second); got != short {
		t.Error("a call with Envoy's 20 ms deadline got a new context")
	}
	if _, ok := boundCall(context.Background(), "/grpc.health.v1.Health/Watch", time.Second).Deadline(); ok {
		t.Error("health Watch got a deadline")
	}
	dl, ok := boundCall(context.Background(), "/envoy.service.auth.v3.Authorization/Check", time.Second).Deadline()
	if !ok || time.Until(dl) > time.Second {
		t.Errorf("ext_authz Check without a deadline: deadline %v, %v; want within 1 s", dl, ok)
	}
}
