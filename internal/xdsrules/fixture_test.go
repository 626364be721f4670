package xdsrules

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testlog"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

const nodeID = "test-node"

// loads records OnLoad outcomes.
type loads struct {
	mu             sync.Mutex
	good, rejected int
}

func (l *loads) onLoad(_ *descriptors.RuleSet, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.rejected++
	} else {
		l.good++
	}
}

func (l *loads) counts() (good, rejected int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.good, l.rejected
}

// service is the rate-limit service under test: a decider with no rules fed by a
// Subscriber, behind the real RLS gRPC server on loopback.
type service struct {
	sub    *Subscriber
	client rlsv3.RateLimitServiceClient
	log    *testlog.Buffer
	loads  *loads
	up     atomic.Int32 // OnStream: 1 while a stream is up
	ups    atomic.Int32 // OnStream(true) calls
}

// fastBackoff keeps reconnects and repeated NACKs quick in tests.
var fastBackoff = Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Jitter: 0.2}

// startService starts the service subscribed to server; o's Server, NodeID, Log and
// OnLoad are filled in when empty.
func startService(t *testing.T, server string, o Options) *service {
	t.Helper()
	// A fixed clock: fixed windows are epoch-aligned, so a real clock could cross a
	// minute boundary between two calls of one assertion.
	engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return 1_700_000_040_000 }})
	t.Cleanup(func() { engine.Close() })
	d := decide.New(nil, engine, decide.Options{Keys: storekey.New("t:", 0)})
	conn := testgrpc.Serve(t, func(gs *grpc.Server) {
		rlsv3.RegisterRateLimitServiceServer(gs, rls.New(d, ratelimitheaders.Options{}, nil))
	})

	s := &service{client: rlsv3.NewRateLimitServiceClient(conn), log: &testlog.Buffer{}, loads: &loads{}}
	if o.Server == "" {
		o.Server = server
	}
	if o.NodeID == "" {
		o.NodeID = nodeID
	}
	if o.Backoff == (Backoff{}) {
		o.Backoff = fastBackoff
	}
	o.Log = slog.New(slog.NewTextHandler(s.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.OnLoad = s.loads.onLoad
	o.OnStream = func(up bool) {
		if up {
			s.ups.Add(1)
			s.up.Store(1)
		} else {
			s.up.Store(0)
		}
	}
	var err error
	s.sub, err = Start(context.Background(), o, d.SetRules)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.sub.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if t.Failed() {
			t.Logf("subscriber log:\n%s", s.log)
		}
	})
	return s
}

// decisions sends one ShouldRateLimit per expected code for descriptor key=value and
// checks each overall code.
func (s *service) decisions(t *testing.T, domain, key, value string, want ...rlsv3.RateLimitResponse_Code) {
	t.Helper()
	for i, w := range want {
		ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
		resp, err := s.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
		cancel()
		if err != nil {
			t.Fatalf("%s %s=%s call %d: %v", domain, key, value, i+1, err)
		}
		if resp.GetOverallCode() != w {
			t.Fatalf("%s %s=%s call %d: %v, want %v", domain, key, value, i+1, resp.GetOverallCode(), w)
		}
	}
}

// rpcError sends one ShouldRateLimit and returns its gRPC code.
func (s *service) rpcError(t *testing.T, domain, key, value string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
	defer cancel()
	_, err := s.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
	return status.Code(err)
}

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)
