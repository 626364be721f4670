package xdsrules

import (
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testlog"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

func edgeConfig(perMinute uint32) *cfgT {
	return &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{
		{Key: "user", RateLimit: named("per-user", limit(minute, perMinute))},
	}}
}

// The contract of the subscription, end to end: a go-control-plane server pushes a
// config, an update, a broken update and a fix; the subscriber ACKs, applies, NACKs
// (keeping the last good rules serving) and ACKs again, and ShouldRateLimit through
// the real RLS server answers by the rules in force at each step.
func TestConfigUpdateBrokenUpdateAndFix(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	svc := startService(t, cp.Addr, Options{
		NodeMetadata: map[string]string{"cluster": "edge-pool"},
		Headers:      map[string]string{"authorization": "Bearer t0ken"},
		UserAgent:    "ratelimit-ext",
	})

	// Before any rules arrive the service does not decide: Envoy's failure mode does.
	if code := svc.rpcError(t, "edge", "user", "alice"); code != codes.Unavailable {
		t.Fatalf("before the first config: %v, want Unavailable", code)
	}
	md, _ := cp.Streams.Next(t, "stream", nil)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer t0ken" {
		t.Errorf("stream metadata authorization = %q", got)
	}
	sub, _ := cp.Requests.Next(t, "subscription", nil)
	if sub.GetTypeUrl() != TypeURL || sub.GetVersionInfo() != "" || sub.GetResponseNonce() != "" || sub.GetErrorDetail() != nil {
		t.Fatalf("first request: %v", sub)
	}
	if len(sub.GetResourceNames()) != 0 {
		t.Errorf("first request names %v; want a wildcard subscription", sub.GetResourceNames())
	}
	n := sub.GetNode()
	if n.GetId() != nodeID || n.GetUserAgentName() != "ratelimit-ext" ||
		n.GetMetadata().GetFields()["cluster"].GetStringValue() != "edge-pool" {
		t.Errorf("node %v", n)
	}

	// (a) A config: ACK with its version and nonce, and the limit holds.
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	cp.ACK(t, cp.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "alice", ok, ok, over)

	// (b) An update: a higher limit and a new domain.
	cp.Set(t, nodeID, "v2", edgeConfig(3), &cfgT{Name: "api", Domain: "api", Descriptors: []*descT{
		{Key: "key", RateLimit: limit(hour, 1)}}})
	cp.ACK(t, cp.Response(t, "v2"))
	svc.decisions(t, "edge", "user", "bob", ok, ok, ok, over)
	svc.decisions(t, "api", "key", "k1", ok, over)

	// (c) A broken update (a limit without a unit): NACK naming the problem, with the
	// version last ACKed; v2 keeps serving.
	cp.Set(t, nodeID, "v3", &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{
		{Key: "user", RateLimit: &polT{RequestsPerUnit: 1}}}})
	bad := cp.Response(t, "v3")
	nack, _ := cp.Requests.Next(t, "NACK of v3", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetResponseNonce() == bad.GetNonce()
	})
	if nack.GetVersionInfo() != "v2" || nack.GetErrorDetail() == nil {
		t.Fatalf("reply to v3: version %q, error %v; want a NACK keeping v2", nack.GetVersionInfo(), nack.GetErrorDetail())
	}
	if d := nack.GetErrorDetail(); codes.Code(d.GetCode()) != codes.InvalidArgument ||
		!strings.Contains(d.GetMessage(), "xds:edge: descriptors[0].rate_limit.unit: missing") {
		t.Fatalf("NACK error_detail: %v", d)
	}
	svc.decisions(t, "edge", "user", "carol", ok, ok, ok, over)
	svc.decisions(t, "api", "key", "k2", ok, over)

	// (d) A good version again: ACKed and in force.
	cp.Set(t, nodeID, "v4", edgeConfig(1))
	cp.ACK(t, cp.Response(t, "v4"))
	svc.decisions(t, "edge", "user", "dave", ok, over)
	svc.decisions(t, "api", "key", "k3", ok) // the api domain is gone from v4: no limit

	if good, rejected := svc.loads.counts(); good != 3 || rejected < 1 {
		t.Errorf("OnLoad saw %d good and %d rejected updates, want 3 and at least 1", good, rejected)
	}
}

// The stream breaks (the server goes away) and comes back: the last good rules keep
// serving meanwhile, and the new stream asks for whatever the server has (an empty
// version): a restarted server that counts its versions from the start again and
// lands on the version served here, with other content, still gets its rules applied.
func TestReconnectKeepsServingAndResubscribes(t *testing.T) {
	// Nothing listens yet: the subscriber retries until the server appears.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	svc := startService(t, addr, Options{})
	svc.log.WaitLine(t, xdstest.Wait, "xDS stream ended", "retry_in")
	if svc.up.Load() != 0 || svc.ups.Load() != 0 {
		t.Fatal("OnStream reported a stream up while nothing listens")
	}

	cp := xdstest.Start(t, addr)
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	cp.ACK(t, cp.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "alice", ok, ok, over)

	if svc.up.Load() != 1 {
		t.Fatal("OnStream did not report the stream up after its first response")
	}
	cp.Stop() // the stream breaks
	svc.log.WaitLine(t, xdstest.Wait, "xDS stream ended", "acked_version=v1")
	if svc.up.Load() != 0 {
		t.Fatal("OnStream did not report the stream down when it broke")
	}
	svc.decisions(t, "edge", "user", "bob", ok, ok, over)

	restarted := xdstest.Start(t, addr)
	first, _ := restarted.Requests.Next(t, "subscription on the new stream", nil)
	if first.GetVersionInfo() != "" || first.GetResponseNonce() != "" || first.GetNode().GetId() != nodeID {
		t.Fatalf("resubscription: version %q, nonce %q, node %v; want no version, no nonce, the node",
			first.GetVersionInfo(), first.GetResponseNonce(), first.GetNode())
	}
	restarted.Set(t, nodeID, "v1", edgeConfig(3)) // the same version name, other rules
	restarted.ACK(t, restarted.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "carol", ok, ok, ok, over)
}

// A server that answers each NACK by sending the same broken version again (as
// go-control-plane's snapshot cache does) is answered at the backoff's pace, not in a
// busy loop.
func TestRepeatedNACKsArePaced(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	pace := 50 * time.Millisecond
	svc := startService(t, cp.Addr, Options{Backoff: Backoff{Initial: pace, Max: pace}})
	cp.Set(t, nodeID, "broken", &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{{Key: "k"}, {Key: "k"}}})
	isNACK := func(r *discoveryv3.DiscoveryRequest) bool { return r.GetErrorDetail() != nil }
	_, prev := cp.Requests.Next(t, "first NACK", isNACK)
	for i := range 3 {
		_, at := cp.Requests.Next(t, "repeated NACK", isNACK)
		// Each repeat is caused by the previous NACK reaching the server, so the gap
		// cannot be shorter than the pause the subscriber takes before answering.
		if gap := at.Sub(prev); gap < pace {
			t.Fatalf("NACK %d came %v after the previous one, want at least %v", i+2, gap, pace)
		}
		prev = at
	}
	// One rejected update, however often the server sent it (config_loads_total).
	if good, rejected := svc.loads.counts(); good != 0 || rejected != 1 {
		t.Errorf("OnLoad saw %d good and %d rejected updates, want 0 and 1", good, rejected)
	}
}

// The subscription pings the server after Options.Keepalive without anything read
// from it, so a dead link (or a dead server behind a proxy that keeps the TCP
// connection up) is found within Keepalive plus the ping's timeout, not when TCP gives
// up: until then rule updates stop without a word. grpc-go's keepalive pings carry
// zero data, which tells them from its flow-control (BDP) pings. The wait is gRPC's
// floor of 10 s; the test runs alongside the others.
func TestKeepalivePingsTheServer(t *testing.T) {
	t.Parallel()
	cp := xdstest.Start(t, "127.0.0.1:0")
	cp.Set(t, nodeID, "v1", edgeConfig(1))
	startService(t, cp.Addr, Options{Keepalive: MinKeepalive})
	cp.ACK(t, cp.Response(t, "v1"))
	cp.Pings.NextWithin(t, "keepalive ping", func(data [8]byte) bool { return data == [8]byte{} }, MinKeepalive+xdstest.Wait)
}

// The default keepalive is within what grpc-go servers accept by default: pings at
// most once per 5 minutes, which a control plane built on grpc-go (go-control-plane's,
// Envoy Gateway's) keeps unless told otherwise; a client pinging more often gets
// GOAWAY too_many_pings at the third ping.
func TestDefaultKeepaliveSuitsGRPCGoServers(t *testing.T) {
	if DefaultKeepalive < 5*time.Minute {
		t.Fatalf("DefaultKeepalive %v is below grpc-go's default enforcement (5m)", DefaultKeepalive)
	}
}

// A control plane that ends the stream after each NACK (and the client's reply to
// anything) gets its reconnects paced by a growing backoff, not one every
// --xds-backoff-initial forever: a stream whose responses were all rejected is a
// failed attempt. The backoff starts over after a stream that delivered rules this
// client accepted. The waits are the ones the subscriber computes (no jitter here),
// recorded in place of sleeping.
func TestBackoffGrowsWhileStreamsEndAfterNACKs(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	cp.CloseAfterReplies(true)
	broken := &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{{Key: "k"}, {Key: "k"}}}
	cp.Set(t, nodeID, "broken-1", broken)
	pauses := startPaused(t, cp.Addr, Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond})
	for i, want := range []time.Duration{10, 20, 40, 80, 80} {
		if i > 0 {
			pauses.resume()
		}
		if got := pauses.next(t); got != want*time.Millisecond {
			t.Fatalf("wait %d after a stream that only NACKed: %v, want %v", i+1, got, want*time.Millisecond)
		}
	}
	cp.Set(t, nodeID, "good", edgeConfig(1)) // the next stream delivers rules
	pauses.resume()
	if got := pauses.next(t); got != 10*time.Millisecond {
		t.Fatalf("wait after a stream that delivered accepted rules: %v, want the initial 10ms", got)
	}
	cp.Set(t, nodeID, "broken-2", broken)
	pauses.resume()
	if got := pauses.next(t); got != 20*time.Millisecond {
		t.Fatalf("wait after the next stream, which only NACKed: %v, want 20ms", got)
	}
	pauses.resume()
}

// pauses receives each wait of a subscriber's reconnect loop, which holds until resume.
type pauses struct {
	waits   chan time.Duration
	proceed chan struct{}
}

func (p *pauses) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-p.waits:
		return d
	case <-time.After(xdstest.Wait):
		t.Fatalf("no reconnect within %v", xdstest.Wait)
		return 0
	}
}

func (p *pauses) resume() { p.proceed <- struct{}{} }

// startPaused starts a subscriber to server whose waits between streams go to the
// returned pauses instead of sleeping; it is closed when the test ends.
func startPaused(t *testing.T, server string, b Backoff) *pauses {
	t.Helper()
	p := &pauses{waits: make(chan time.Duration), proceed: make(chan struct{})}
	s, err := newSubscriber(Options{Server: server, NodeID: nodeID, Backoff: b, Log: quiet}, func(*descriptors.RuleSet) {})
	if err != nil {
		t.Fatal(err)
	}
	s.pause = func(ctx context.Context, d time.Duration) bool {
		select {
		case p.waits <- d:
		case <-ctx.Done():
			return false
		}
		select {
		case <-p.proceed:
			return true
		case <-ctx.Done():
			return false
		}
	}
	s.start(context.Background())
	t.Cleanup(func() { _ = s.Close() })
	return p
}

// A broken version is logged and counted once however often it comes, on its stream
// or on a new one after a reconnect; its repeats on a stream wait at most
// maxRenackWait, jitter included, and the first NACK on a new stream goes at once.
func TestNACKsCountedOncePerVersion(t *testing.T) {
	l := &loads{}
	s := &Subscriber{opts: Options{Log: quiet, OnLoad: l.onLoad}, node: &corev3.Node{Id: nodeID},
		renacks: retries{b: renackBackoff(Backoff{Initial: time.Hour, Max: time.Hour, Jitter: 0.9})}}
	broken := &discoveryv3.DiscoveryResponse{VersionInfo: "v2", TypeUrl: TypeURL,
		Resources: []*anypb.Any{mustAny(t, &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{{Key: "k"}, {Key: "k"}}})}}
	if _, d := s.handle(broken); d != 0 {
		t.Fatalf("the first NACK waits %v, want none", d)
	}
	for range 5 {
		if _, d := s.handle(broken); d <= 0 || d > maxRenackWait {
			t.Fatalf("a repeated NACK waits %v, want more than 0 and at most %v", d, maxRenackWait)
		}
	}
	s.streamNack = nack{} // a new stream (Subscriber.stream)
	if _, d := s.handle(broken); d != 0 {
		t.Fatalf("the first NACK on a new stream waits %v, want none", d)
	}
	if good, rejected := l.counts(); good != 0 || rejected != 1 {
		t.Errorf("OnLoad saw %d good and %d rejected, want one rejected version", good, rejected)
	}
}

// A broken response without a version_info (a server need not set one) is the first
// rejected update like any other: logged at error level and counted, and NACKed at
// once. An empty version is not "nothing NACKed yet", nor "the version last NACKed"
// after a good update.
func TestNACKOfAnUnversionedResponse(t *testing.T) {
	l := &loads{}
	s := &Subscriber{opts: Options{Log: quiet, OnLoad: l.onLoad}, node: &corev3.Node{Id: nodeID}, apply: func(*descriptors.RuleSet) {},
		renacks: retries{b: renackBackoff(Backoff{Initial: time.Hour, Max: time.Hour})}}
	broken := &discoveryv3.DiscoveryResponse{TypeUrl: TypeURL,
		Resources: []*anypb.Any{mustAny(t, &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{{Key: "k"}, {Key: "k"}}})}}
	if reply, d := s.handle(broken); d != 0 || reply.GetErrorDetail() == nil {
		t.Fatalf("the first NACK of an unversioned response: wait %v, error_detail %v; want a NACK at once", d, reply.GetErrorDetail())
	}
	if good, rejected := l.counts(); good != 0 || rejected != 1 {
		t.Fatalf("OnLoad saw %d good and %d rejected, want the rejected update counted", good, rejected)
	}
	if _, d := s.handle(broken); d <= 0 {
		t.Fatalf("the same unversioned response again is NACKed after %v, want a pause", d)
	}
	// A good unversioned response, then the broken one again: a new rejection.
	good := &discoveryv3.DiscoveryResponse{TypeUrl: TypeURL, Resources: []*anypb.Any{mustAny(t, edgeConfig(1))}}
	if reply, _ := s.handle(good); reply.GetErrorDetail() != nil {
		t.Fatalf("good response NACKed: %v", reply.GetErrorDetail())
	}
	if _, d := s.handle(broken); d != 0 {
		t.Fatalf("a broken update after a good one waits %v, want none", d)
	}
	if good, rejected := l.counts(); good != 1 || rejected != 2 {
		t.Errorf("OnLoad saw %d good and %d rejected, want 1 and 2", good, rejected)
	}
}

// A restarted server may count its versions from the start again: a version NACKed
// before that comes back with other broken content, which is a new rejection, logged
// at error level with its own error and counted, not a repeat of the old one.
func TestNACKOfAReusedVersionWithOtherContent(t *testing.T) {
	l := &loads{}
	log := &testlog.Buffer{}
	s := &Subscriber{opts: Options{Log: slog.New(slog.NewTextHandler(log, nil)), OnLoad: l.onLoad}, node: &corev3.Node{Id: nodeID},
		renacks: retries{b: renackBackoff(fastBackoff)}}
	broken := func(key string) *discoveryv3.DiscoveryResponse {
		return &discoveryv3.DiscoveryResponse{VersionInfo: "2", TypeUrl: TypeURL,
			Resources: []*anypb.Any{mustAny(t, &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{{Key: key}, {Key: key}}})}}
	}
	s.handle(broken("old"))
	s.streamNack = nack{} // the server restarted: a new stream
	s.handle(broken("new"))
	if good, rejected := l.counts(); good != 0 || rejected != 2 {
		t.Errorf("OnLoad saw %d good and %d rejected, want two rejected updates", good, rejected)
	}
	if !strings.Contains(log.String(), `key \"new\"`) {
		t.Errorf("the new content's error was not logged at error level:\n%s", log)
	}
}

// The pause before a repeated NACK follows the stream's backoff but never passes
// maxRenackWait: the server sends the fix only once it has the NACK, so a pause of the
// stream's longest backoff (a minute by default) would hold the fix back as long.
func TestRenackPauseIsCapped(t *testing.T) {
	for _, b := range []Backoff{DefaultBackoff, {Initial: 10 * time.Second, Max: time.Hour, Jitter: 0.5}} {
		r := retries{b: renackBackoff(b)}
		for i := range 20 {
			if d := r.next(); d > time.Duration(float64(maxRenackWait)*(1+b.Jitter)) {
				t.Fatalf("backoff %+v: repeat %d waits %v, past %v", b, i+1, d, maxRenackWait)
			}
		}
	}
	if r := (retries{b: renackBackoff(Backoff{Initial: 50 * time.Millisecond, Max: time.Hour})}); r.next() != 50*time.Millisecond {
		t.Errorf("a short initial backoff is not kept for the first repeat")
	}
}

// A response larger than MaxMessageBytes is refused by the transport: the stream ends
// with that error and nothing is applied.
func TestMessageSizeBound(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	svc := startService(t, cp.Addr, Options{MaxMessageBytes: 1024})
	cp.Set(t, nodeID, "big", &cfgT{Name: "edge", Domain: "edge", Descriptors: []*descT{
		{Key: "user", Value: strings.Repeat("x", 2048), RateLimit: limit(minute, 1)}}})
	svc.log.WaitLine(t, xdstest.Wait, "xDS stream ended", "ResourceExhausted")
	if good, rejected := svc.loads.counts(); good != 0 || rejected != 0 {
		t.Fatalf("OnLoad saw %d good and %d rejected updates; the response should not have been read", good, rejected)
	}
	if code := svc.rpcError(t, "edge", "user", "x"); code != codes.Unavailable {
		t.Fatalf("after an oversized response: %v, want Unavailable (still no rules)", code)
	}
}

func TestOptionsAreValidated(t *testing.T) {
	apply := func(*descriptors.RuleSet) {}
	for _, c := range []struct {
		name string
		o    Options
		want string
	}{
		{"no server", Options{NodeID: "n"}, "no server"},
		{"no node id", Options{Server: "localhost:1"}, "node id"},
		{"negative message bound", Options{Server: "localhost:1", NodeID: "n", MaxMessageBytes: -1}, "must be positive"},
		{"zero initial backoff", Options{Server: "localhost:1", NodeID: "n", Backoff: Backoff{Max: time.Second}}, "initial wait"},
		{"max below initial", Options{Server: "localhost:1", NodeID: "n", Backoff: Backoff{Initial: time.Second, Max: time.Millisecond}}, "longest wait"},
		{"jitter of 1", Options{Server: "localhost:1", NodeID: "n", Backoff: Backoff{Initial: time.Second, Max: time.Second, Jitter: 1}}, "jitter"},
		{"negative keepalive", Options{Server: "localhost:1", NodeID: "n", Keepalive: -time.Second}, "keepalive"},
		{"keepalive below gRPC's floor", Options{Server: "localhost:1", NodeID: "n", Keepalive: 5 * time.Second}, "keepalive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := Start(context.Background(), c.o, apply)
			if err == nil {
				s.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want one mentioning %q", err, c.want)
			}
		})
	}
}

// Close ends the subscription whether it is connected, waiting out a backoff, or
// blocked on a server that never answers, and leaves no goroutine behind.
func TestCloseLeavesNothingRunning(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		// Connected, with rules.
		cp := xdstest.Start(t, "127.0.0.1:0")
		cp.Set(t, nodeID, "v1", edgeConfig(2))
		connected, err := Start(context.Background(), Options{Server: cp.Addr, NodeID: nodeID, Backoff: fastBackoff, Log: quiet}, func(*descriptors.RuleSet) {})
		if err != nil {
			t.Fatal(err)
		}
		cp.ACK(t, cp.Response(t, "v1"))
		// Retrying against nothing, with a long backoff.
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := lis.Addr().String()
		lis.Close()
		retrying, err := Start(context.Background(), Options{Server: dead, NodeID: nodeID, Backoff: Backoff{Initial: time.Hour, Max: time.Hour}, Log: quiet}, func(*descriptors.RuleSet) {})
		if err != nil {
			t.Fatal(err)
		}
		// Connected to a server that accepts the stream and never answers (no snapshot).
		silent := xdstest.Start(t, "127.0.0.1:0")
		waiting, err := Start(context.Background(), Options{Server: silent.Addr, NodeID: nodeID, Backoff: fastBackoff, Log: quiet}, func(*descriptors.RuleSet) {})
		if err != nil {
			t.Fatal(err)
		}
		silent.Requests.Next(t, "subscription", nil)
		for _, s := range []*Subscriber{connected, retrying, waiting} {
			done := make(chan error, 1)
			go func() { done <- s.Close() }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Close: %v", err)
				}
			case <-time.After(xdstest.Wait):
				t.Fatalf("Close did not return within %v", xdstest.Wait)
			}
		}
		cp.Stop()
		silent.Stop()
	}()
	deadline := time.Now().Add(xdstest.Wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestBackoffDoublesToMaxAndResets(t *testing.T) {
	r := retries{b: Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}}
	var got []time.Duration
	for range 6 {
		got = append(got, r.next())
	}
	want := []time.Duration{10, 20, 40, 80, 100, 100}
	for i := range want {
		if got[i] != want[i]*time.Millisecond {
			t.Fatalf("waits %v, want %v ms", got, want)
		}
	}
	r.reset()
	if d := r.next(); d != 10*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
	j := retries{b: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}}
	for range 100 {
		if d := j.next(); d < 50*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("jittered wait %v out of bounds", d)
		}
	}
	huge := retries{b: Backoff{Initial: time.Nanosecond, Max: 1<<63 - 1}}
	for range 100 {
		if d := huge.next(); d <= 0 {
			t.Fatalf("wait overflowed: %v", d)
		}
	}
}
