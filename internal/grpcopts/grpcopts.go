// Package grpcopts holds the gRPC server settings of the rate-limit hot path, shared by
// the service and the do-nothing ceiling of the benchmarks (docs/performance.md), so the
// two are measured on equal terms.
package grpcopts

import (
	"math"
	"runtime"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/utf8codec"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// Server returns the server options for serving ShouldRateLimit under load.
//
// Stream workers: by default grpc-go starts a goroutine per RPC, whose small stack grows
// (runtime.morestack, copying the stack) on every request that goes deep, as one that
// waits on Redis does; that showed as about a tenth of the service's CPU. A pool of
// long-lived workers keeps grown stacks (grpc-go renews a worker after 65,536 RPCs). An
// RPC that finds every worker busy (they block while a request waits on the store) gets
// its own goroutine as before, so the pool never queues requests: it is sized for the
// usual concurrency, 16 per CPU.
//
// Codec: utf8codec reads a request whose strings are not UTF-8 instead of failing it
// (a failed call lets Envoy pass the request unlimited); it costs nothing otherwise.
//
// Call time: at most MaxCallTime per unary call (BoundCallTime, the server's one
// InTapHandle: grpc-go takes only one).
//
// Keepalive: clients' pings are tolerated every KeepaliveMinTime, idle connections
// included. The server's own pings and connection ageing are KeepaliveParams, given
// apart (the benchmark ceiling leaves them out).
func Server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(utf8codec.Codec{}),
		BoundCallTime(MaxCallTime),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
	}
}

// KeepaliveMinTime is the shortest interval between a client's keepalive pings that the
// server tolerates, with or without calls open on the connection. grpc-go's default
// (one ping per 5 minutes, none on a connection without calls) answers the third
// quicker ping with GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and closes the
// connection: that is what Envoy's connection_keepalive (which pings idle connections
// too, commonly every 30 s or less) and grpc-go clients' keepalive (10 s at least) met.
// A ping is one small frame; a client pinging faster than this is still cut off.
const KeepaliveMinTime = 5 * time.Second

// DefaultKeepaliveTime is how long a connection may be idle before the server pings
// it. An L4 load balancer or NAT between Envoy and the service forgets a connection
// idle past its timeout without telling either end (AWS NLB and NAT gateways after
// 350 s, Azure's load balancer after 4 minutes by default, many firewalls after 5), and
// the next call on it fails: Envoy's failure mode then decides the request. grpc-go
// pings after 2 hours by default. A minute stays well under those timeouts and costs
// one 17-byte frame each way per idle connection per minute; a connection carrying
// calls is never pinged.
const DefaultKeepaliveTime = time.Minute

// KeepaliveTimeout is how long a ping may go unanswered before the server closes the
// connection (grpc-go's default, also its TCP_USER_TIMEOUT): the peer, or the path to
// it, is gone. Envoy answers a ping as soon as it reads it.
const KeepaliveTimeout = 20 * time.Second

// KeepaliveParams is the server's grpc.KeepaliveParams option: grpc-go keeps only the
// last one given, so the ping interval and the connection age go together. pingIdle
// is how long a connection may be idle before the server pings it (0: never, not
// grpc-go's 2 h default); maxAge and maxAgeGrace are grpc-go's (0: no limit).
func KeepaliveParams(pingIdle, maxAge, maxAgeGrace time.Duration) grpc.ServerOption {
	return grpc.KeepaliveParams(serverParameters(pingIdle, maxAge, maxAgeGrace))
}

func serverParameters(pingIdle, maxAge, maxAgeGrace time.Duration) keepalive.ServerParameters {
	p := keepalive.ServerParameters{Time: pingIdle, Timeout: KeepaliveTimeout,
		MaxConnectionAge: maxAge, MaxConnectionAgeGrace: maxAgeGrace}
	if pingIdle == 0 {
		p.Time = math.MaxInt64 // grpc-go's "infinity": no timer ever fires
	}
	return p
}
