package grpcopts

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// MaxCallTime bounds one unary call of the service (ShouldRateLimit, ext_authz Check,
// health Check), from its headers to its answer, when the client set no deadline or a
// longer one. Without it a client that never finishes sending its request holds the
// request's buffer and goroutine for as long as it keeps the connection open: up to
// --max-request-bytes for each of --grpc-max-concurrent-streams streams of a
// connection. Envoy sends its filter's timeout (20 ms by default) with every call, far
// below this, so its calls pay nothing for it.
const MaxCallTime = 10 * time.Second

// boundedMethods are the unary methods MaxCallTime applies to; streaming ones (health
// Watch, reflection) may rightly last as long as their connection.
var boundedMethods = map[string]bool{
	"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit": true,
	"/envoy.service.auth.v3.Authorization/Check":                   true,
	"/grpc.health.v1.Health/Check":                                 true,
}

// BoundCallTime is the server option that gives bounded methods a deadline of at most
// limit: the transport ends the call with DEADLINE_EXCEEDED then, reading or not.
func BoundCallTime(limit time.Duration) grpc.ServerOption {
	return grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
		return boundCall(ctx, info.FullMethodName, limit), nil
	})
}

func boundCall(ctx context.Context, method string, limit time.Duration) context.Context {
	// The deadline first: Envoy's calls stop here, without the method's lookup.
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= limit || !boundedMethods[method] {
		return ctx
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	// Not called here: the transport cancels the stream's context, this one's parent,
	// when the call ends, which stops the timer too.
	_ = cancel
	return ctx
}
