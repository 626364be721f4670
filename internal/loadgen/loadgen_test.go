package loadgen

import (
	"bytes"
	"context"
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
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimit-ext/ratelimit-ext/internal/nooprls"
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

// The open loop sends at the target rate and charges a slow server's queueing to
// latency measured from the intended send time.
func TestOpenLoopRateAndQueueing(t *testing.T) {
	srv := &scripted{keys: map[string]bool{}, delay: 20 * time.Millisecond}
	addr := serve(t, srv)
	rep, err := Run(context.Background(), Config{
		Targets: []string{addr}, Rate: 400, Duration: 500 * time.Millisecond, MaxInFlight: 2,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "open" || rep.Queue == nil || rep.Service == nil {
		t.Fatalf("not an open-loop report: %+v", rep)
	}
	// Two senders of 20 ms requests serve at most 100/s: due requests queue up, so
	// latency from the intended time far exceeds the service time.
	if rep.Service.P50 < 19 || rep.Latency.P99 < 100 || rep.Queue.P99 < 80 {
		t.Errorf("queueing not charged: latency %+v queue %+v service %+v", rep.Latency, *rep.Queue, *rep.Service)
	}
	// The requests due and never sent are reported: 200 were due in 0.5 s, 192 outside
	// the phase's first and last 10 ms.
	if rep.Unsent < 100 || rep.Requests+rep.Unsent < 185 || rep.Requests+rep.Unsent > 205 { // 10 ms at each end are not counted
		t.Errorf("%d answered and %d unsent of the 200 due", rep.Requests, rep.Unsent)
	}
	var text bytes.Buffer
	if err := rep.Text(&text); err != nil || !strings.Contains(text.String(), "NOT SUSTAINED") {
		t.Errorf("the text report does not say the rate was not sustained: %v\n%s", err, text.String())
	}

	// A fast server keeps up: the achieved rate is the target rate (one a loaded test
	// machine sustains; the deadline only guards against a hang).
	fast := serve(t, nooprls.Server{})
	rep, err = Run(context.Background(), Config{
		Targets: []string{fast}, Rate: 200, Duration: time.Second, Warmup: 100 * time.Millisecond, Timeout: 10 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v{key}")}, Keys: 1000, PerRequest: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.RPS < 180 || rep.RPS > 220 || rep.OK != rep.Requests {
		t.Errorf("open loop at 200/s achieved %.0f/s, OK %d of %d, errors %v, unsent %d", rep.RPS, rep.OK, rep.Requests, rep.Errors, rep.Unsent)
	}
}

// slowValue answers one descriptor value after a delay, every other at once.
type slowValue struct {
	rlsv3.UnimplementedRateLimitServiceServer
	value string
	delay time.Duration
}

func (s slowValue) ShouldRateLimit(_ context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if in.Descriptors[0].Entries[0].Value == s.value {
		time.Sleep(s.delay)
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

// In the open loop a slow answer delays no other request while senders are free: one
// request in 20 takes a second, and the others' latency stays their own service time
// (requests used to belong to one sender each, and a slow one delayed the requests
// queued behind it on that sender: about six of them at this rate, a third of all
// requests). The rate and the margin leave room for a loaded test machine.
func TestOpenLoopSlowAnswersDelayNoOthers(t *testing.T) {
	addr := serve(t, slowValue{value: "v7", delay: time.Second})
	rep, err := Run(context.Background(), Config{
		Targets: []string{addr}, Rate: 200, Duration: 2 * time.Second, MaxInFlight: 32, Timeout: 10 * time.Second,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v{key}")}, Keys: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Latency.P90 > 200 {
		t.Errorf("latency p90 %.1f ms with 5%% of answers slow: fast requests waited behind slow ones (queueing %+v)", rep.Latency.P90, *rep.Queue)
	}
}

// A request is measured when it is due in the measured phase: a backlog built in the
// warm-up and sent during the measured phase is not measured (its latency would be
// longer than the phase).
func TestOpenLoopMeasuresByDueTime(t *testing.T) {
	addr := serve(t, &scripted{keys: map[string]bool{}, delay: 20 * time.Millisecond})
	rep, err := Run(context.Background(), Config{
		Targets: []string{addr}, Rate: 400, Warmup: 500 * time.Millisecond, Duration: 500 * time.Millisecond, MaxInFlight: 2,
		Domain: "d", Descriptors: []Template{mustTemplate(t, "k=v2")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Latency.Max > 600 || rep.Unsent < 150 {
		t.Errorf("latency max %.0f ms, %d unsent: requests due in the warm-up were measured", rep.Latency.Max, rep.Unsent)
	}
}

func TestConfigErrors(t *testing.T) {
	tp := []Template{{}}
	for _, c := range []Config{
		{},
		{Targets: []string{"x"}, Domain: "d", Descriptors: tp},
		{Targets: []string{"x"}, Workers: 1, Descriptors: tp},
		{Targets: []string{"x"}, Workers: 1, Domain: "d"},
		{Targets: []string{"x"}, Rate: -1, Domain: "d", Descriptors: tp},
		{Targets: []string{"x", "y"}, Conns: 3, Workers: 3, Domain: "d", Descriptors: tp}, // an uneven share
		{Targets: []string{"x"}, Conns: 4, Workers: 2, Domain: "d", Descriptors: tp},      // idle connections
		{Targets: []string{"x"}, Rate: math.NaN(), Domain: "d", Descriptors: tp},
		{Targets: []string{"x"}, Rate: math.Inf(1), Domain: "d", Descriptors: tp},
		{Targets: []string{"x"}, Rate: 10, MaxInFlight: MaxInFlightLimit + 1, Domain: "d", Descriptors: tp},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v accepted", c)
		}
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
	st := newStats(false)
	s := &sender{r: &runner{}, st: st}
	s.record(context.Background(), nil, 90*time.Second, 0, 0)
	s.record(context.Background(), nil, time.Millisecond, 0, 0)
	r := &runner{shards: []*stats{st}, cfg: &Config{}}
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
	// Each worker sends at most one request per errorPause: 2 × (300 / 10 + 1).
	if n := srv.calls.Load(); n > 62 || rep.Errors["Unavailable"] != rep.Requests || rep.Requests == 0 {
		t.Errorf("the server got %d calls in 0.3 s from 2 workers (want at most 62); errors %v of %d", n, rep.Errors, rep.Requests)
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
