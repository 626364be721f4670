package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimit-ext/ratelimit-ext/internal/nooprls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
)

func mustTemplate(t *testing.T, s string) Template {
	t.Helper()
	tp, err := ParseTemplate(s)
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// The hand-written encoding is what the generated proto types decode.
func TestEncodeMatchesProto(t *testing.T) {
	e := encoder{
		domain:    "bench",
		templates: []Template{mustTemplate(t, "fw=k{key}"), mustTemplate(t, "a=x{d}y,b={key}-{d},c=plain{")},
		perReq:    3,
		cost:      7,
	}
	b := e.encode(nil, []int{42, 7, 99999}, 0)
	var got rlsv3.RateLimitRequest
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Domain != "bench" || got.HitsAddend != 7 || len(got.Descriptors) != 3 {
		t.Fatalf("decoded %v", &got)
	}
	want := [][]string{{"fw", "k42"}, {"a", "x1y", "b", "7-1", "c", "plain{"}, {"fw", "k99999"}}
	for i, d := range got.Descriptors {
		var kv []string
		for _, en := range d.Entries {
			kv = append(kv, en.Key, en.Value)
		}
		if strings.Join(kv, " ") != strings.Join(want[i], " ") {
			t.Errorf("descriptor %d: %v, want %v", i, kv, want[i])
		}
	}
	if e.cost = 0; bytes.Contains(e.encode(nil, []int{1, 2, 3}, 0), []byte{fieldRequestHitsAddend << 3}) {
		// cost 0 must leave hits_addend unset; the tag byte 0x18 cannot appear in
		// these short ASCII strings otherwise.
		t.Error("cost 0 still encodes hits_addend")
	}
}

// The reply's overall code is read, and whether any status names a limit.
func TestReadResponse(t *testing.T) {
	limit := &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 5, Unit: rlsv3.RateLimitResponse_RateLimit_MINUTE}
	for _, code := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_UNKNOWN, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		for _, statuses := range [][]*rlsv3.RateLimitResponse_DescriptorStatus{
			nil,
			{{Code: rlsv3.RateLimitResponse_OK, LimitRemaining: 3}},
			{{Code: rlsv3.RateLimitResponse_OK}, {Code: rlsv3.RateLimitResponse_OVER_LIMIT, CurrentLimit: limit}},
		} {
			resp := &rlsv3.RateLimitResponse{OverallCode: code, Statuses: statuses, RawBody: []byte("body")}
			b, err := proto.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			wantLimited := len(statuses) == 2
			got, limited, err := readResponse(b)
			if err != nil || got != int(code) || limited != wantLimited {
				t.Errorf("code %v, %d statuses: got %d, limited %v, %v; want limited %v", code, len(statuses), got, limited, err, wantLimited)
			}
		}
	}
	if _, _, err := readResponse([]byte{0x08}); err == nil {
		t.Error("truncated varint accepted")
	}
	if _, _, err := readResponse([]byte{0x12, 0x02, 0x12}); err == nil {
		t.Error("a truncated status accepted")
	}
}

func TestParseTemplate(t *testing.T) {
	for _, bad := range []string{"", "novalue", "=v"} {
		if _, err := ParseTemplate(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tp := mustTemplate(t, "remote_address=10.0.{key},path=/p{d}")
	if tp.String() != "remote_address=10.0.{key},path=/p{d}" || !tp.usesKey() {
		t.Errorf("round trip: %s", tp)
	}
}

// scripted answers OVER_LIMIT for descriptor values ending in "0", fails those
// ending in "1" with Unavailable, and counts what it saw.
type scripted struct {
	rlsv3.UnimplementedRateLimitServiceServer
	calls atomic.Int64
	mu    sync.Mutex
	keys  map[string]bool
	delay time.Duration
}

func (s *scripted) ShouldRateLimit(_ context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.calls.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	v := in.Descriptors[0].Entries[0].Value
	s.mu.Lock()
	s.keys[v] = true
	s.mu.Unlock()
	switch v[len(v)-1] {
	case '0':
		return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OVER_LIMIT}, nil
	case '1':
		return nil, status.Error(codes.Unavailable, "store down")
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func serve(t *testing.T, impl rlsv3.RateLimitServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rlsv3.RegisterRateLimitServiceServer(gs, impl)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func TestClosedLoopCountsAndCodes(t *testing.T) {
	srv := &scripted{keys: map[string]bool{}}
	a1, a2 := serve(t, srv), serve(t, srv)
	rep, err := Run(context.Background(), Config{
		Targets: []string{a1, a2}, Conns: 4, Workers: 8, Requests: 2000, Warmup: 50 * time.Millisecond,
		Timeout: 30 * time.Second, // the test counts answers by code; a deadline would add one
		Domain:  "d", Descriptors: []Template{mustTemplate(t, "k=v{key}")}, Keys: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 2000 {
		t.Errorf("measured %d requests, want 2000", rep.Requests)
	}
	if sum := rep.OK + rep.OverLimit + rep.Errors["Unavailable"]; sum != rep.Requests || len(rep.Errors) != 1 {
		t.Errorf("OK %d + OVER_LIMIT %d + errors %v != %d", rep.OK, rep.OverLimit, rep.Errors, rep.Requests)
	}
	// 20 keys: 2 end in 0 (over limit), 2 in 1 (errors), so about a tenth each.
	for name, n := range map[string]int64{"over": rep.OverLimit, "unavailable": rep.Errors["Unavailable"]} {
		if n < 100 || n > 320 {
			t.Errorf("%s: %d of 2000, want about 200", name, n)
		}
	}
	if len(srv.keys) != 20 {
		t.Errorf("server saw %d distinct keys, want 20", len(srv.keys))
	}
	if rep.RPS <= 0 || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Errorf("latency/rate not filled: %+v", rep)
	}
	// The answered rate leaves the errors out; the request rate counts them: the two
	// differ by the errors' share of the requests.
	answered := rep.RPS * float64(rep.Requests-rep.Errors["Unavailable"]) / float64(rep.Requests)
	if math.Abs(rep.Answered-answered) > 1e-6*answered || rep.Answered >= rep.RPS {
		t.Errorf("answered %.1f/s of %.1f/s, want %.1f/s", rep.Answered, rep.RPS, answered)
	}
	if rep.ClientCPU.Unsupported || rep.ClientCPU.PerRequestUs <= 0 {
		t.Errorf("client CPU not measured: %+v", rep.ClientCPU)
	}
	var text, js bytes.Buffer
	if err := rep.Text(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.JSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"requests/s", "answered (the rest errors)", "OVER_LIMIT", "Unavailable", "p99.9", "20 keys"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if !strings.Contains(js.String(), `"requestsPerSecond"`) || !strings.Contains(js.String(), `"answeredPerSecond"`) || !strings.Contains(js.String(), `"warmupSeconds": 0.05`) {
		t.Errorf("JSON report: %s", js.String())
	}
}

// fakeClock is a clock the test steps (Set). Timers fire when the clock reaches them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c  *fakeClock
	ch chan time.Time
	at time.Time
	on bool
}

// t0 is when the fake clocks start.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	t.armLocked(d)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) ResetAt(at time.Time) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drainLocked()
	t.armLocked(at.Sub(t.c.now))
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.on
	t.on = false
	t.drainLocked()
	return was
}

func (t *fakeTimer) armLocked(d time.Duration) {
	t.at, t.on = t.c.now.Add(d), true
	if d <= 0 {
		t.fireLocked()
	}
}

func (t *fakeTimer) fireLocked() {
	t.on = false
	select {
	case t.ch <- t.c.now:
	default:
	}
}

func (t *fakeTimer) drainLocked() {
	select {
	case <-t.ch:
	default:
	}
}

// Set moves the clock to t0+d and fires the timers due by then.
func (c *fakeClock) Set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t0.Add(d)
	for _, t := range c.timers {
		if t.on && !t.at.After(c.now) {
			t.fireLocked()
		}
	}
}

// waitTimer waits until a timer is armed for t0+d: the run has reached the point that
// arms it.
func (c *fakeClock) waitTimer(t *testing.T, d time.Duration, what string) {
	t.Helper()
	waitFor(t, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, tm := range c.timers {
			if tm.on && tm.at.Equal(t0.Add(d)) {
				return true
			}
		}
		return false
	})
}

// waitFor polls cond; the deadline only keeps a broken generator from hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// gate holds requests until the test releases them and counts their arrivals. hold
// picks the requests held by their first descriptor value (nil: all).
type gate struct {
	rlsv3.UnimplementedRateLimitServiceServer
	hold    func(value string) bool
	arrived atomic.Int64
	mu      sync.Mutex
	open    chan struct{} // closed by release: the requests held so far go
	passAll bool
}

func newGate(hold func(string) bool) *gate { return &gate{hold: hold, open: make(chan struct{})} }

func (g *gate) ShouldRateLimit(ctx context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	g.mu.Lock()
	open, passAll := g.open, g.passAll
	g.mu.Unlock()
	g.arrived.Add(1) // after reading open: a release once this arrival is seen frees it
	if !passAll && (g.hold == nil || g.hold(in.Descriptors[0].Entries[0].Value)) {
		select {
		case <-open:
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// release lets the requests held so far go; later ones are held until the next release.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.open)
	g.open = make(chan struct{})
}

// releaseAll lets every request go, now and from now on.
func (g *gate) releaseAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.passAll = true
	close(g.open)
	g.open = make(chan struct{})
}

// waitArrived waits until n requests have arrived, and fails if more did: each arrives
// only once the clock reaches its due time.
func (g *gate) waitArrived(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("request %d to arrive (%d so far)", n, g.arrived.Load()), func() bool { return g.arrived.Load() >= n })
	if got := g.arrived.Load(); got != n {
		t.Fatalf("%d requests arrived, want %d: one was sent before it was due", got, n)
	}
}

// runAsync starts Run and returns a function that waits for its report.
func runAsync(t *testing.T, cfg Config) func() *Report {
	t.Helper()
	type result struct {
		rep *Report
		err error
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan result, 1)
	go func() {
		rep, err := Run(ctx, cfg)
		done <- result{rep, err}
	}()
	return func() *Report {
		t.Helper()
		select {
		case res := <-done:
			if res.err != nil {
				t.Fatal(res.err)
			}
			return res.rep
		case <-time.After(10 * time.Second):
			t.Fatal("the run did not end within 10 s")
			return nil
		}
	}
}

// near reports whether an HDR percentile (3 significant digits) is v ms.
func near(got, v float64) bool { return math.Abs(got-v) <= 0.002*v+0.002 }

// The open loop charges a slow server's queueing to latency measured from each
// request's intended send time. On a stepped clock, at 400/s (due every 2.5 ms) with 2
// senders: requests 0 and 1 are sent when due and held until 100 ms; 2 and 3 (due at
// 5 and 7.5 ms) wait for a sender until then and are held until 200 ms.
func TestOpenLoopChargesLatencyFromTheIntendedSendTime(t *testing.T) {
	srv, clk := newGate(nil), newFakeClock()
	wait := runAsync(t, Config{
		Targets: []string{serve(t, srv)}, Rate: 400, MaxInFlight: 2, Requests: 4, Timeout: time.Minute, clock: clk,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	srv.waitArrived(t, 1)
	clk.Set(2500 * time.Microsecond)
	srv.waitArrived(t, 2)
	clk.Set(100 * time.Millisecond)
	srv.release()
	srv.waitArrived(t, 4)
	clk.Set(200 * time.Millisecond)
	srv.release()
	rep := wait()

	if rep.Mode != "open" || rep.Queue == nil || rep.Service == nil || rep.Requests != 4 || rep.OK != 4 {
		t.Fatalf("not an open-loop report of 4 answers: %+v", rep)
	}
	// Request 2: due at 5 ms, sent at 100 (queueing 95), answered at 200 (service 100):
	// latency 195 ms, from the intended time, not the 100 ms from the send.
	if !near(rep.Queue.Max, 95) || !near(rep.Service.Max, 100) || !near(rep.Latency.Max, 195) {
		t.Errorf("queueing not charged from the intended time: latency %+v, queueing %+v, service %+v", rep.Latency, *rep.Queue, *rep.Service)
	}
	if rep.Unsent != 0 || !near(rep.Seconds, 0.2) {
		t.Errorf("%d unsent, %.3f s; want 0 and the 200 ms to the last answer", rep.Unsent, rep.Seconds)
	}
}

// Requests due in the measured phase and never sent are reported as unsent, leaving
// out those due in its first and last 10 ms (unsentGrace). On a stepped clock: 400/s
// for 50 ms, 2 senders; requests 0 and 1 are answered at 10 ms, 2 and 3 (due at 5 and
// 7.5 ms, sent late at 10 ms) are still held when the phase ends and are cut off at
// its end. Due from 10 to 40 ms: 12 (requests 4 to 15), none of them sent: 12 unsent.
// (The count once subtracted every request sent, 2 and 3 too, which were due in the
// first 10 ms, and said 8.)
func TestOpenLoopReportsUnsent(t *testing.T) {
	srv, clk := newGate(nil), newFakeClock()
	wait := runAsync(t, Config{
		Targets: []string{serve(t, srv)}, Rate: 400, Duration: 50 * time.Millisecond, MaxInFlight: 2, Timeout: time.Minute, clock: clk,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	clk.waitTimer(t, 50*time.Millisecond, "the end of the phase to be scheduled")
	srv.waitArrived(t, 1)
	clk.Set(2500 * time.Microsecond)
	srv.waitArrived(t, 2)
	clk.Set(10 * time.Millisecond)
	srv.release()
	srv.waitArrived(t, 4)
	clk.Set(50 * time.Millisecond) // the phase ends with requests 2 and 3 held
	// Run waits Timeout + 1 s for them, then cuts them off.
	clk.waitTimer(t, 50*time.Millisecond+time.Minute+time.Second, "the wait for the requests in flight")
	clk.Set(50*time.Millisecond + time.Minute + time.Second)
	rep := wait()

	if rep.Requests != 2 || rep.Unsent != 12 || !near(rep.Seconds, 0.05) {
		t.Errorf("%d answered, %d unsent in %.3f s; want 2 answered and the 12 due inside the phase's grace unsent, in 0.05 s",
			rep.Requests, rep.Unsent, rep.Seconds)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil || !strings.Contains(text.String(), "NOT SUSTAINED: 12 requests") {
		t.Errorf("the text report does not say the rate was not sustained: %v\n%s", err, text.String())
	}
}

// With --requests and --duration both, a run whose duration ends while the requests
// asked for are still unanswered sent what it was asked to: nothing is unsent, though
// the senders stopped taking requests once the last was sent. On a stepped clock:
// 400/s, 3 requests, 4 senders, every answer held past the 50 ms duration.
func TestOpenLoopCountSentIsNotUnsent(t *testing.T) {
	srv, clk := newGate(func(string) bool { return true }), newFakeClock()
	wait := runAsync(t, Config{
		Targets: []string{serve(t, srv)}, Rate: 400, Requests: 3, Duration: 50 * time.Millisecond, MaxInFlight: 4, Timeout: time.Minute, clock: clk,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	clk.waitTimer(t, 50*time.Millisecond, "the end of the phase to be scheduled")
	for k := int64(0); k < 3; k++ {
		clk.Set(time.Duration(k) * 2500 * time.Microsecond)
		srv.waitArrived(t, k+1)
	}
	clk.Set(50 * time.Millisecond) // the duration ends with the 3 held
	clk.waitTimer(t, 50*time.Millisecond+time.Minute+time.Second, "the wait for the requests in flight")
	srv.releaseAll()
	rep := wait()
	if rep.Unsent != 0 {
		t.Errorf("%d unsent; want none: the 3 requests asked for were sent", rep.Unsent)
	}
}

// In the open loop a slow answer delays no other request while senders are free, and
// requests are sent when due, not before: on a stepped clock at 1000/s with 4 senders,
// every request arrives at its due time (the clock is only moved on once it has) while
// the answers to "v0", 2 of the 40, are held to the end; so the queueing is nil.
// (Requests used to belong to one sender each, and a slow one held back the requests
// queued behind it on that sender: here request 4, behind request 0.)
func TestOpenLoopSlowAnswersDelayNoOthers(t *testing.T) {
	srv, clk := newGate(func(v string) bool { return v == "v0" }), newFakeClock()
	templates := make([]Template, 20)
	for i := range templates {
		templates[i] = mustTemplate(t, fmt.Sprintf("k=v%d", i))
	}
	wait := runAsync(t, Config{
		Targets: []string{serve(t, srv)}, Rate: 1000, MaxInFlight: 4, Requests: 40, Timeout: time.Minute, clock: clk,
		Domain: "d", Descriptors: templates, PerRequest: 1,
	})
	for k := int64(0); k < 40; k++ {
		clk.Set(time.Duration(k) * time.Millisecond)
		srv.waitArrived(t, k+1)
	}
	srv.releaseAll()
	rep := wait()
	if rep.Requests != 40 || rep.OK != 40 || rep.Queue.Max > 0.001 {
		t.Errorf("%d requests, %d OK, queueing %+v; want 40, 40 and none", rep.Requests, rep.OK, *rep.Queue)
	}
	if !near(rep.Seconds, 0.039) {
		t.Errorf("the phase lasted %.4f s, want the schedule's 39 ms to the last answer", rep.Seconds)
	}
}

// A request is measured when it is due in the measured phase: a backlog built in the
// warm-up and sent during the measured phase is not measured (its latency would be
// longer than the phase). On a stepped clock at 400/s with 2 senders: requests 0 and 1
// are held through a 51 ms warm-up; then the backlog, requests 2 to 20 (due by 50 ms),
// goes out at 51 ms, and requests 21 to 40 (due 52.5 to 100 ms) go out when due.
func TestOpenLoopMeasuresByDueTime(t *testing.T) {
	srv, clk := newGate(nil), newFakeClock()
	wait := runAsync(t, Config{
		Targets: []string{serve(t, srv)}, Rate: 400, Warmup: 51 * time.Millisecond, Duration: 50 * time.Millisecond,
		MaxInFlight: 2, Timeout: time.Minute, clock: clk,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	clk.waitTimer(t, 51*time.Millisecond, "the end of the warm-up to be scheduled")
	srv.waitArrived(t, 1)
	clk.Set(2500 * time.Microsecond)
	srv.waitArrived(t, 2)
	clk.Set(51 * time.Millisecond)
	clk.waitTimer(t, 101*time.Millisecond, "the measured phase to begin")
	srv.releaseAll()
	srv.waitArrived(t, 21)
	for k := int64(21); k <= 40; k++ {
		clk.Set(time.Duration(k) * 2500 * time.Microsecond)
		srv.waitArrived(t, k+1)
	}
	clk.Set(101 * time.Millisecond)
	rep := wait()
	if rep.Requests != 20 || rep.Queue.Max > 0.001 || rep.Unsent != 0 {
		t.Errorf("%d requests measured (queueing %+v), %d unsent; want the 20 due in the phase, sent when due, none unsent",
			rep.Requests, *rep.Queue, rep.Unsent)
	}
}

// A Config that cannot run is refused, by Validate and by Run before it connects, as a
// *ConfigError naming the field at fault; one whose zero fields take defaults is not.
func TestConfigErrors(t *testing.T) {
	tp := []Template{{}}
	for _, tc := range []struct {
		c     Config
		field string
	}{
		{Config{}, "Targets"},
		{Config{Targets: []string{"x"}, Domain: "d", Descriptors: tp}, "Workers"},
		{Config{Targets: []string{"x"}, Workers: 1, Descriptors: tp}, "Domain"},
		{Config{Targets: []string{"x"}, Workers: 1, Domain: "d"}, "Descriptors"},
		{Config{Targets: []string{"x"}, Rate: -1, Domain: "d", Descriptors: tp}, "Rate"},
		{Config{Targets: []string{"x", "y"}, Conns: 3, Workers: 3, Domain: "d", Descriptors: tp}, "Conns"}, // an uneven share
		{Config{Targets: []string{"x"}, Conns: 4, Workers: 2, Domain: "d", Descriptors: tp}, "Workers"},    // idle connections
		{Config{Targets: []string{"x"}, Rate: math.NaN(), Domain: "d", Descriptors: tp}, "Rate"},
		{Config{Targets: []string{"x"}, Rate: math.Inf(1), Domain: "d", Descriptors: tp}, "Rate"},
		{Config{Targets: []string{"x"}, Rate: 10, MaxInFlight: MaxInFlightLimit + 1, Domain: "d", Descriptors: tp}, "MaxInFlight"},
		{Config{Targets: []string{"x"}, Workers: 1, MaxInFlight: MaxInFlightLimit + 1, Domain: "d", Descriptors: tp}, "MaxInFlight"},
	} {
		var ce *ConfigError
		if err := tc.c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%+v: Validate says %v, want a *ConfigError on %s", tc.c, err, tc.field)
		}
		if _, err := Run(context.Background(), tc.c); !errors.As(err, &ce) || ce.Field != tc.field {
			t.Errorf("%+v: Run says %v, want a *ConfigError on %s", tc.c, err, tc.field)
		}
	}
	for _, c := range []Config{
		{Targets: []string{"x"}, Workers: 1, Domain: "d", Descriptors: tp},
		{Targets: []string{"x", "y"}, Rate: 5, Domain: "d", Descriptors: tp},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v, with defaults to take: %v", c, err)
		}
	}
}

// A ConfigError names its field by the name it is given: a command names its flags.
func TestConfigErrorNamesTheFieldAsAsked(t *testing.T) {
	err := Config{Targets: []string{"x"}, Conns: 4, Workers: 2, Domain: "d", Descriptors: []Template{{}}}.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("%v: not a *ConfigError", err)
	}
	const want = "at least one per connection (4), or connections sit idle"
	if got := err.Error(); got != "loadgen: Workers 2: want "+want {
		t.Errorf("Error() = %q", got)
	}
	if got := ce.Describe("--workers"); got != "--workers 2: want "+want {
		t.Errorf("Describe(--workers) = %q", got)
	}
}

// Without a warm-up, Requests is every request the run sends: an operator who sends
// 5 requests against a limit of 5 must not spend a sixth (workers used to start before
// the measured phase and send warm-up requests).
func TestRequestsWithoutWarmupSendsExactlyThatMany(t *testing.T) {
	for _, cfg := range []Config{
		{Workers: 8, Requests: 5},
		{Workers: 1, Requests: 1},
		{Rate: 1000, Requests: 7},
	} {
		srv := &scripted{keys: map[string]bool{}}
		cfg.Targets = []string{serve(t, srv)}
		cfg.Domain, cfg.Descriptors, cfg.Keys = "d", []Template{mustTemplate(t, "k=v{key}")}, 3
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := srv.calls.Load(); got != cfg.Requests || rep.Requests != cfg.Requests {
			t.Errorf("workers %d rate %v requests %d: the server got %d, the report counts %d",
				cfg.Workers, cfg.Rate, cfg.Requests, got, rep.Requests)
		}
	}
}

// A latency above the histograms' minute is recorded as a minute, and counted and
// reported as clamped rather than passed off as a minute.
func TestClampedLatenciesAreReported(t *testing.T) {
	st := newStats(false, 1)
	s := &sender{r: &runner{}, st: st}
	s.record(context.Background(), nil, 90*time.Second, 0, 0)
	s.record(context.Background(), nil, time.Millisecond, 0, 0)
	r := &runner{shards: []*stats{st}, cfg: &Config{Targets: []string{"x"}}}
	rep := r.report(time.Second, cpuSample{}, nil)
	if rep.Clamped != 1 || rep.Latency.Max < 59_000 || rep.Latency.Max > 61_000 {
		t.Fatalf("clamped %d, max %.0f ms; want 1 clamped at about a minute", rep.Clamped, rep.Latency.Max)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "CLAMPED: 1 latencies above a minute") {
		t.Errorf("text report does not say so:\n%s", text.String())
	}
}

// Templates without {key} send the same values every request, whatever --keys says:
// the report says so instead of claiming the key count.
func TestReportWithoutKeyPlaceholder(t *testing.T) {
	addr := serve(t, &scripted{keys: map[string]bool{}})
	rep, err := Run(context.Background(), Config{
		Targets: []string{addr}, Workers: 2, Requests: 20, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=hot")}, Keys: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil {
		t.Fatal(err)
	}
	if rep.Keys != 0 || !strings.Contains(text.String(), "no {key}") || strings.Contains(text.String(), "1000 keys") {
		t.Errorf("keys %d, text:\n%s", rep.Keys, text.String())
	}
}

// templateCounter counts requests by their first descriptor's key and answers OK,
// naming a limit when limited is set.
type templateCounter struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu      sync.Mutex
	byKey   map[string]int
	limited bool
	delay   time.Duration
}

func (s *templateCounter) ShouldRateLimit(_ context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	s.byKey[in.Descriptors[0].Entries[0].Key]++
	s.mu.Unlock()
	st := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	if s.limited {
		st.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{RequestsPerUnit: 10, Unit: rlsv3.RateLimitResponse_RateLimit_SECOND}
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: []*rlsv3.RateLimitResponse_DescriptorStatus{st}}, nil
}

// Fewer descriptors per request than templates: requests take the templates in turn,
// whichever worker or sender sends them, so every template is sent (requests used to
// start at the first template each time, and the others were never sent).
func TestTemplatesTakeTurnsAcrossRequests(t *testing.T) {
	for _, load := range []Config{{Workers: 8}, {Rate: 2000, MaxInFlight: 64}} {
		srv := &templateCounter{byKey: map[string]int{}, limited: true}
		cfg := load
		cfg.Targets, cfg.Requests, cfg.Timeout = []string{serve(t, srv)}, 90, 30*time.Second
		cfg.Domain, cfg.PerRequest = "d", 1
		cfg.Descriptors = []Template{mustTemplate(t, "a=1"), mustTemplate(t, "b=2"), mustTemplate(t, "c=3")}
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if srv.byKey["a"] != 30 || srv.byKey["b"] != 30 || srv.byKey["c"] != 30 || rep.NoLimit != 0 {
			t.Errorf("workers %d rate %v: first descriptors %v (want 30 each), %d answers naming no limit (want 0)",
				load.Workers, load.Rate, srv.byKey, rep.NoLimit)
		}
	}
}

// A run whose answers never name a limit says so: the domain or the descriptors match
// no rule, and the server allows everything.
func TestAnswersNamingNoLimitAreReported(t *testing.T) {
	rep, err := Run(context.Background(), Config{
		Targets: []string{serve(t, nooprls.Server{})}, Workers: 2, Requests: 20, Timeout: 30 * time.Second,
		Domain: "nosuch", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil {
		t.Fatal(err)
	}
	if rep.NoLimit != 20 || !strings.Contains(text.String(), "NO LIMIT MATCHED") {
		t.Errorf("%d of 20 answers naming no limit; text:\n%s", rep.NoLimit, text.String())
	}
}

// With Requests, the measured phase lasts until the last of them is answered, not
// until it is sent: its time covers every answer.
func TestRequestsPhaseEndsAtTheLastAnswer(t *testing.T) {
	srv := &templateCounter{byKey: map[string]int{}, delay: 100 * time.Millisecond}
	rep, err := Run(context.Background(), Config{
		Targets: []string{serve(t, srv)}, Workers: 4, Requests: 4, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Requests != 4 || rep.Seconds < 0.09 {
		t.Errorf("%d requests in %.3f s; want 4 in at least the server's 0.1 s", rep.Requests, rep.Seconds)
	}
}

// refuser fails every request at once.
type refuser struct {
	rlsv3.UnimplementedRateLimitServiceServer
	calls atomic.Int64
}

func (s *refuser) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	s.calls.Add(1)
	return nil, status.Error(codes.Unavailable, "down")
}

// A closed-loop worker pauses after a failure instead of retrying at once, and the
// report gives the answers' latency apart from the failures'.
func TestClosedLoopPausesAfterFailures(t *testing.T) {
	srv := &refuser{}
	rep, err := Run(context.Background(), Config{
		Targets: []string{serve(t, srv)}, Workers: 2, Duration: 300 * time.Millisecond, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Each worker sends at most one request per 10 ms (errorPause) of the phase, and one
	// more (at its start and the one begun as it ended): by the phase's own length,
	// which a busy machine may stretch past the 300 ms asked for.
	if n, most := srv.calls.Load(), 2*int64(rep.Seconds/0.010+2); n > most || rep.Errors["Unavailable"] != rep.Requests || rep.Requests == 0 {
		t.Errorf("the server got %d calls in %.3f s from 2 workers (want at most %d); errors %v of %d", n, rep.Seconds, most, rep.Errors, rep.Requests)
	}
	if rep.AnsweredLatency == nil {
		t.Error("no answered latency beside the errors")
	}

	ok, err := Run(context.Background(), Config{
		Targets: []string{serve(t, nooprls.Server{})}, Workers: 1, Requests: 5, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok.AnsweredLatency != nil || len(ok.Errors) != 0 {
		t.Errorf("without errors: answered latency %+v, errors %v", ok.AnsweredLatency, ok.Errors)
	}
}

// canceler answers OK and cancels the run's context at its tenth request.
type canceler struct {
	rlsv3.UnimplementedRateLimitServiceServer
	calls  atomic.Int64
	cancel func()
}

func (s *canceler) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if s.calls.Add(1) == 10 {
		s.cancel()
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// A run stopped from outside reports what it measured, marked as interrupted; a run
// that ends by itself is not.
func TestInterruptedRunIsMarked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep, err := Run(ctx, Config{
		Targets: []string{serve(t, &canceler{cancel: cancel})}, Workers: 1, Duration: time.Minute, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err == nil || rep == nil || !rep.Interrupted {
		t.Fatalf("report %v, error %v: want an interrupted report", rep, err)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil || !strings.Contains(text.String(), "INTERRUPTED") {
		t.Errorf("text report: %v\n%s", err, text.String())
	}
	done, err := Run(context.Background(), Config{
		Targets: []string{serve(t, nooprls.Server{})}, Workers: 1, Requests: 10, Timeout: 30 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err != nil || done.Interrupted {
		t.Errorf("a run that ended by itself: error %v, interrupted %v", err, done.Interrupted)
	}
}

// An open loop given a request count that its duration cuts short still reports the
// requests due and never sent, and says the count was not reached.
func TestDurationBeforeRequestsStillReportsUnsent(t *testing.T) {
	addr := serve(t, &scripted{keys: map[string]bool{}, delay: 20 * time.Millisecond})
	rep, err := Run(context.Background(), Config{
		Targets: []string{addr}, Rate: 400, Requests: 10_000, Duration: 500 * time.Millisecond, MaxInFlight: 2,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil {
		t.Fatal(err)
	}
	if rep.Unsent < 100 || !strings.Contains(text.String(), "the duration ended the run after") {
		t.Errorf("%d unsent (want 100 or more of the 200 due); text:\n%s", rep.Unsent, text.String())
	}
}

// A target that is not ready is reported with gRPC's reason, not only its state.
func TestUnreadyTargetSaysWhy(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	_, err = Run(context.Background(), Config{
		Targets: []string{addr}, Workers: 1, Requests: 1, ConnectTimeout: 300 * time.Millisecond,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %v: want the reason, connection refused", err)
	}
}

// A run stopped while it waits for a connection says so, rather than that the target
// was not ready within --connect-timeout, which had not passed (a Ctrl-C at a target
// that never answers used to read "not ready within 5s").
func TestStoppedWhileConnectingSaysSo(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0") // never accepts: the connection stays unready
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = Run(ctx, Config{
		Targets: []string{lis.Addr().String()}, Workers: 1, Requests: 1, ConnectTimeout: time.Hour,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")},
	})
	if err == nil || strings.Contains(err.Error(), "not ready within") || !strings.Contains(err.Error(), "stopped while connecting") {
		t.Errorf("error %v: want it to say the run was stopped while connecting", err)
	}
}

// authorityRecorder answers OK and keeps the :authority of the last request.
type authorityRecorder struct {
	rlsv3.UnimplementedRateLimitServiceServer
	mu        sync.Mutex
	authority string
}

func (s *authorityRecorder) ShouldRateLimit(ctx context.Context, _ *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	s.mu.Lock()
	s.authority = strings.Join(md[":authority"], ",")
	s.mu.Unlock()
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// Over TLS, the name verified (TLS.ServerName, --tls-server-name) and the :authority
// sent (Authority, --authority) are set apart, as a mesh's routing name asks: gRPC
// takes TLS credentials' server name as the authority, and refused a different one
// ("authority from transport creds ... and dial option ... don't match"). The
// certificate is still verified against the name given.
func TestTLSServerNameAndAuthorityApart(t *testing.T) {
	ca := testpki.New(t)
	srv := &authorityRecorder{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(ca.Issue(t, "rls", []string{"rls.internal"}, x509.ExtKeyUsageServerAuth), false))))
	rlsv3.RegisterRateLimitServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	for _, tc := range []struct {
		serverName, authority, wantAuthority string // wantAuthority "": the connection fails
	}{
		{"rls.internal", "mesh.route:8081", "mesh.route:8081"},
		{"wrong.name", "mesh.route:8081", ""},
		{"", "rls.internal", "rls.internal"},
		{"rls.internal", "", "rls.internal"},
		{"rls.internal", "rls.internal", "rls.internal"},
	} {
		connect := 5 * time.Second
		if tc.wantAuthority == "" {
			connect = 300 * time.Millisecond // to be refused: no need to wait long
		}
		rep, err := Run(context.Background(), Config{
			Targets: []string{lis.Addr().String()}, Workers: 1, Requests: 1, ConnectTimeout: connect,
			TLS:    &tls.Config{RootCAs: ca.Pool, ServerName: tc.serverName, MinVersion: tls.VersionTLS12},
			Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v")}, Authority: tc.authority,
		})
		srv.mu.Lock()
		got := srv.authority
		srv.authority = ""
		srv.mu.Unlock()
		if tc.wantAuthority == "" {
			if err == nil || !strings.Contains(err.Error(), "wrong.name") {
				t.Errorf("name %q: error %v, want the certificate refused for the name", tc.serverName, err)
			}
			continue
		}
		if err != nil || rep.OK != 1 || got != tc.wantAuthority {
			t.Errorf("name %q, authority %q: error %v, server saw :authority %q; want one answer to %q",
				tc.serverName, tc.authority, err, got, tc.wantAuthority)
		}
	}
}

// With several targets the report gives each its requests, answers, errors by code and
// mean latency, so that a replica failing (or slower than the others) shows as such
// instead of in the totals only. The first target answers, the second fails every
// request; in both loops the load goes to both.
func TestReportByTarget(t *testing.T) {
	for _, load := range []Config{{Workers: 4}, {Rate: 2000, MaxInFlight: 8}} {
		good, bad := serve(t, nooprls.Server{}), serve(t, &refuser{})
		cfg := load
		cfg.Targets, cfg.Requests, cfg.Timeout = []string{good, bad}, 200, 30*time.Second
		cfg.Domain, cfg.Descriptors = "d", []Template{mustTemplate(t, "k=v")}
		rep, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.ByTarget) != 2 {
			t.Fatalf("workers %d rate %v: %d targets in the report, want 2", load.Workers, load.Rate, len(rep.ByTarget))
		}
		g, b := rep.ByTarget[0], rep.ByTarget[1]
		if g.Target != good || g.Requests == 0 || g.Answered != g.Requests || len(g.Errors) != 0 || g.MeanLatency <= 0 {
			t.Errorf("workers %d rate %v: the answering target: %+v", load.Workers, load.Rate, g)
		}
		if b.Target != bad || b.Requests == 0 || b.Answered != 0 || b.Errors["Unavailable"] != b.Requests {
			t.Errorf("workers %d rate %v: the failing target: %+v", load.Workers, load.Rate, b)
		}
		if g.Requests+b.Requests != rep.Requests {
			t.Errorf("workers %d rate %v: %d + %d requests by target, %d in all", load.Workers, load.Rate, g.Requests, b.Requests, rep.Requests)
		}
		var text bytes.Buffer
		if err := rep.Text(&text); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{good + ": " + fmt.Sprint(g.Requests) + " requests, errors 0", bad + ": " + fmt.Sprint(b.Requests) + " requests, errors: Unavailable"} {
			if !strings.Contains(text.String(), want) {
				t.Errorf("workers %d rate %v: the text report lacks %q:\n%s", load.Workers, load.Rate, want, text.String())
			}
		}
	}
}

// The open loop's schedule stays in order at rates so low that a request's offset
// overflows a time.Duration: it used to wrap to the far past, and every request was
// sent at once, at the fastest rate the senders could.
func TestOpenLoopScheduleSaturates(t *testing.T) {
	for _, rate := range []float64{1, 1e-10, 1e-300} {
		r := &runner{openStart: t0, interval: float64(time.Second) / rate}
		if d0, d1, d2 := r.due(0), r.due(1), r.due(2); !d0.Equal(t0) || !d1.After(d0) || d2.Before(d1) {
			t.Errorf("rate %v/s: requests due at %v, %v, %v; want the first at the start and the others after it, in order", rate, d0, d1, d2)
		}
	}
}
