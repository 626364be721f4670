// Package xdstest runs a real xDS management server for tests: go-control-plane's ADS
// server and snapshot cache on a loopback port, recording every request it receives,
// every response it sends and the metadata each stream opened with.
package xdstest

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"
)

// Wait bounds every wait of this package: tests wait on conditions, never sleep.
const Wait = 10 * time.Second

// Log is an append-only record that a test reads in order, waiting for entries.
type Log[T any] struct {
	mu     sync.Mutex
	items  []T
	at     []time.Time
	cursor int
	signal chan struct{}
}

func newLog[T any]() *Log[T] { return &Log[T]{signal: make(chan struct{}, 1)} }

func (l *Log[T]) add(v T) {
	l.mu.Lock()
	l.items = append(l.items, v)
	l.at = append(l.at, time.Now())
	l.mu.Unlock()
	select {
	case l.signal <- struct{}{}:
	default:
	}
}

// Next returns the next unread entry that match accepts (any entry when match is nil),
// skipping the others, and when it was recorded. It fails the test after Wait.
func (l *Log[T]) Next(t testing.TB, what string, match func(T) bool) (T, time.Time) {
	t.Helper()
	return l.NextWithin(t, what, match, Wait)
}

// NextWithin is Next waiting up to wait, for what takes longer than Wait to come.
func (l *Log[T]) NextWithin(t testing.TB, what string, match func(T) bool, wait time.Duration) (T, time.Time) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for l.cursor < len(l.items) {
			v, at := l.items[l.cursor], l.at[l.cursor]
			l.cursor++
			if match == nil || match(v) {
				l.mu.Unlock()
				return v, at
			}
		}
		l.mu.Unlock()
		select {
		case <-l.signal:
		case <-deadline.C:
			t.Fatalf("xdstest: no %s within %v", what, wait)
			var zero T
			return zero, time.Time{}
		}
	}
}

// ControlPlane is a running management server.
type ControlPlane struct {
	Addr      string
	Cache     cachev3.SnapshotCache
	Requests  *Log[*discoveryv3.DiscoveryRequest]
	Responses *Log[*discoveryv3.DiscoveryResponse]
	Streams   *Log[metadata.MD] // the metadata of each stream, as it opened
	Pings     *Log[[8]byte]     // the data of each HTTP/2 PING a client sent (not the ACKs)
	gs        *grpc.Server

	closeAfterReplies atomic.Bool
}

// CloseAfterReplies makes the server end each stream, with an error, as soon as the
// client replies (ACK or NACK) to a response on it, as some control planes do after
// a NACK; the reply is still recorded.
func (cp *ControlPlane) CloseAfterReplies(on bool) { cp.closeAfterReplies.Store(on) }

// Start serves on addr ("127.0.0.1:0" for any port; the address of a stopped server to
// restart it there) with an empty cache. The server stops when the test ends.
func Start(t testing.TB, addr string, opts ...grpc.ServerOption) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{
		Cache:    cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		Requests: newLog[*discoveryv3.DiscoveryRequest](), Responses: newLog[*discoveryv3.DiscoveryResponse](),
		Streams: newLog[metadata.MD](), Pings: newLog[[8]byte](),
	}
	callbacks := serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			cp.Streams.add(md)
			return nil
		},
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			cp.Requests.add(proto.Clone(req).(*discoveryv3.DiscoveryRequest))
			if req.GetResponseNonce() != "" && cp.closeAfterReplies.Load() {
				return errors.New("xdstest: closing the stream after the client's reply")
			}
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
			cp.Responses.add(proto.Clone(resp).(*discoveryv3.DiscoveryResponse))
		},
	}
	var lis net.Listener
	var err error
	for deadline := time.Now().Add(Wait); ; time.Sleep(10 * time.Millisecond) {
		// A restarted server may find its port not quite released yet.
		if lis, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	cp.Addr = lis.Addr().String()
	cp.gs = grpc.NewServer(opts...)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(cp.gs, serverv3.NewServer(context.Background(), cp.Cache, callbacks))
	go cp.gs.Serve(pingListener{lis, cp.Pings})
	t.Cleanup(cp.gs.Stop)
	return cp
}

// Stop stops the server at once, breaking every stream.
func (cp *ControlPlane) Stop() { cp.gs.Stop() }

// Set publishes a version of the rate-limit configs for node.
func (cp *ControlPlane) Set(t testing.TB, node, version string, configs ...*rlsconfv3.RateLimitConfig) {
	t.Helper()
	res := make([]cachetypes.Resource, len(configs))
	for i, c := range configs {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resourcev3.Type][]cachetypes.Resource{resourcev3.RateLimitConfigType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// Response waits for the server to send version.
func (cp *ControlPlane) Response(t testing.TB, version string) *discoveryv3.DiscoveryResponse {
	t.Helper()
	resp, _ := cp.Responses.Next(t, "response with version "+version, func(r *discoveryv3.DiscoveryResponse) bool {
		return r.GetVersionInfo() == version
	})
	return resp
}

// Reply waits for the client's reply to resp: the request carrying resp's nonce.
func (cp *ControlPlane) Reply(t testing.TB, resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	t.Helper()
	req, _ := cp.Requests.Next(t, "reply to version "+resp.GetVersionInfo(), func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetResponseNonce() == resp.GetNonce()
	})
	return req
}

// ACK waits for the reply to resp and fails the test unless it is an ACK: resp's
// version and type, no error.
func (cp *ControlPlane) ACK(t testing.TB, resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	t.Helper()
	req := cp.Reply(t, resp)
	if req.GetErrorDetail() != nil || req.GetVersionInfo() != resp.GetVersionInfo() || req.GetTypeUrl() != resp.GetTypeUrl() {
		t.Fatalf("xdstest: reply to version %s (nonce %s): version %q, type %q, error %v; want an ACK",
			resp.GetVersionInfo(), resp.GetNonce(), req.GetVersionInfo(), req.GetTypeUrl(), req.GetErrorDetail())
	}
	return req
}

// pingListener records the PINGs its connections' clients send.
type pingListener struct {
	net.Listener
	pings *Log[[8]byte]
}

func (l pingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return testgrpc.WatchPings(conn, true, l.pings.add), nil
}
