// Package grpcopts holds the gRPC server settings of the rate-limit hot path, shared by
// the service and the do-nothing ceiling of the benchmarks (docs/performance.md), so the
// two are measured on equal terms.
package grpcopts

import (
	"runtime"

	"github.com/ratelimit-ext/ratelimit-ext/internal/utf8codec"
	"google.golang.org/grpc"
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
func Server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(16 * runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(utf8codec.Codec{}),
		BoundCallTime(MaxCallTime),
	}
}
