package httpapi_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testlog"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// quickRedisEngine is a Redis engine on srv whose calls give up after 200 ms.
func quickRedisEngine(t *testing.T, srv *testredis.Server) *limiter.RedisEngine {
	t.Helper()
	engine, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(),
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	return engine
}

// /readyz and grpc.health.v1 follow a real Redis that stops and comes back, and the
// readiness watcher logs exactly one line per change however often it checks.
func TestReadinessFollowsRedis(t *testing.T) {
	srv := testredis.Start(t)
	engine := quickRedisEngine(t, srv)
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	d := decide.New(rs, m.Engine("redis", engine), decide.Options{Keys: storekey.New("h:", 0)})

	health := grpchealth.NewServer()
	conn := testgrpc.Serve(t, func(gs *grpc.Server) { healthpb.RegisterHealthServer(gs, health) })
	hc := healthpb.NewHealthClient(conn)

	logs := &testlog.Buffer{}
	report := rls.HealthReporter(health)
	ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{
		Interval: 100 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(logs, nil)),
		OnChange: func(err error) { report(err); m.SetReady(err) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := ready.Check(ctx); err != nil {
		t.Fatalf("not ready with Redis up: %v", err)
	}
	go ready.Run(ctx)
	a := httpapi.New(d, slog.New(slog.NewTextHandler(logs, nil)), nil)
	a.UseReadiness(ready)
	url := serveAPI(t, a) + "/readyz"

	// grpcStatus asks grpc.health.v1 about the server and the RLS: the state they report
	// when they agree, else UNKNOWN (a change can land between the two calls).
	grpcStatus := func() healthpb.HealthCheckResponse_ServingStatus {
		var got []healthpb.HealthCheckResponse_ServingStatus
		for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService"} {
			resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("health check %q: %v", svc, err)
			}
			got = append(got, resp.Status)
		}
		if got[0] != got[1] {
			return healthpb.HealthCheckResponse_UNKNOWN
		}
		return got[0]
	}
	waitGRPC := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for grpcStatus() != want {
			if time.Now().After(deadline) {
				t.Fatalf("gRPC health not %v for both services after 5 s; log:\n%s", want, logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if code, body := do(t, "GET", url, ""); code != 200 {
		t.Fatalf("/readyz %d %q with Redis up", code, body)
	}
	if s := grpcStatus(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health %v with Redis up", s)
	}

	srv.Stop()
	// The background watcher alone moves gRPC health (nobody asked /readyz yet) ...
	waitGRPC(healthpb.HealthCheckResponse_NOT_SERVING)
	// ... and /readyz says the same, with the reason.
	code, body := do(t, "GET", url, "")
	if code != 503 || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz %d %q with Redis stopped", code, body)
	}
	time.Sleep(300 * time.Millisecond) // several more failed checks: still one line

	srv.Restart()
	waitGRPC(healthpb.HealthCheckResponse_SERVING)
	if code, body := do(t, "GET", url, ""); code != 200 {
		t.Fatalf("/readyz %d %q after Redis came back", code, body)
	}

	log := logs.String()
	if n := strings.Count(log, "not ready: the store check failed"); n != 1 {
		t.Errorf("%d 'unreachable' lines for one outage, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, "ready: the store answers again"); n != 1 {
		t.Errorf("%d 'reachable again' lines for one recovery, want 1:\n%s", n, log)
	}
	if n := strings.Count(log, "\n"); n != 2 {
		t.Errorf("%d log lines, want exactly 2:\n%s", n, log)
	}
}

// /readyz checks at once: a probe right after the store went away sees it, even before
// the background watcher's next tick, and gRPC health follows that observation.
func TestReadyzChecksNow(t *testing.T) {
	srv := testredis.Start(t)
	// Timeouts a loaded test machine meets (the 8 ms defaults are not the subject); a
	// stopped Redis refuses the connection at once.
	engine, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { engine.Close() })
	rs, _ := descriptors.Parse("web.yaml", []byte(rules))
	d := decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)})
	var changes []bool
	ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{Interval: time.Hour, Log: quiet(),
		OnChange: func(err error) { changes = append(changes, err == nil) }})
	a := httpapi.New(d, quiet(), nil)
	a.UseReadiness(ready)
	url := serveAPI(t, a) + "/readyz"
	if code, _ := do(t, "GET", url, ""); code != 200 {
		t.Fatal("not ready with Redis up")
	}
	srv.Stop()
	if code, _ := do(t, "GET", url, ""); code != 503 {
		t.Fatal("/readyz did not see Redis stop")
	}
	if ready.Err() == nil {
		t.Fatal("the shared state did not follow /readyz")
	}
	if len(changes) != 2 || !changes[0] || changes[1] {
		t.Fatalf("state changes %v, want [ready, not ready]", changes)
	}
	// envoyproxy/ratelimit's endpoint, which Envoy Gateway probes for liveness too, does
	// not follow the store (as there by default): a Redis outage restarts no pod. It
	// observes nothing either: the shared state stays as /readyz left it.
	healthcheck := strings.TrimSuffix(url, "/readyz") + "/healthcheck"
	if code, body := do(t, "GET", healthcheck, ""); code != 200 || body != "OK" {
		t.Fatalf("/healthcheck with Redis stopped: %d %q, want 200 OK", code, body)
	}
	if len(changes) != 2 || ready.Err() == nil {
		t.Fatalf("state changes %v after /healthcheck, want it to record nothing", changes)
	}
}

// Each change of the reason for not being ready is logged once, with the reason that
// holds now: no rules, then rules but a store that fails, then ready; and a service
// without a store that gets its rules says so, not that a store came back.
func TestReadinessLogsEachReason(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	check := func(ready *httpapi.Readiness, wantErr bool) {
		t.Helper()
		if err := ready.Check(context.Background()); (err != nil) != wantErr {
			t.Fatalf("readiness %v, want an error: %v", err, wantErr)
		}
	}

	srv := testredis.Start(t)
	engine := quickRedisEngine(t, srv)
	srv.Stop()
	d := decide.New(nil, engine, decide.Options{Keys: storekey.New("h:", 0)})
	logs := &testlog.Buffer{}
	var changes int
	ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{
		Log: slog.New(slog.NewTextHandler(logs, nil)), OnChange: func(error) { changes++ }})
	check(ready, true)
	check(ready, true)
	const beforeRules = 100 * time.Millisecond
	time.Sleep(beforeRules)
	d.SetRules(rs)
	check(ready, true)
	check(ready, true)
	srv.Restart()
	check(ready, false)
	want := []string{"not ready: no rules loaded", "not ready: the store check failed", "ready: the store answers again"}
	if got := logMessages(logs.String()); !slices.Equal(got, want) || changes != 3 {
		t.Errorf("log %q and %d changes, want %q and 3", got, changes, want)
	}
	// unready_for counts from the first unready check, across the change of reason.
	_, after, _ := strings.Cut(logs.String(), "unready_for=")
	field, _, _ := strings.Cut(after, "\n")
	if d, err := time.ParseDuration(field); err != nil || d < beforeRules {
		t.Errorf("unready_for=%q, want at least the %v without rules", field, beforeRules)
	}

	memory := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { memory.Close() })
	d = decide.New(nil, memory, decide.Options{Keys: storekey.New("h:", 0)})
	logs = &testlog.Buffer{}
	ready = httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: slog.New(slog.NewTextHandler(logs, nil))})
	check(ready, true)
	d.SetRules(rs)
	check(ready, false)
	want = []string{"not ready: no rules loaded", "ready: rules loaded"}
	if got := logMessages(logs.String()); !slices.Equal(got, want) {
		t.Errorf("log %q, want %q", got, want)
	}
}

// logMessages returns the msg of every line slog's text handler wrote.
func logMessages(log string) []string {
	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		if _, rest, ok := strings.Cut(line, `msg="`); ok {
			msg, _, _ := strings.Cut(rest, `"`)
			msgs = append(msgs, msg)
		}
	}
	return msgs
}

// gatedPinger is a memory engine whose Ping waits until release is closed, and counts
// its calls.
type gatedPinger struct {
	*limiter.MemoryEngine
	release chan struct{}
	pings   atomic.Int64
}

func (p *gatedPinger) Ping(context.Context) error {
	p.pings.Add(1)
	<-p.release
	return nil
}

// A flood of readiness checks neither queues probes behind each other (a 20 ms probe
// taken 200 times in a row would keep a caller waiting 4 s, past any probe's timeout)
// nor sends the store a probe per request: checks made while a probe runs share it, and
// with MaxAge an observation that young answers alone. Without MaxAge every check after
// a probe ended observes anew. The probe is held until all 200 checks are under way
// and every one but its own waits on it: they run at once, on one probe, by
// construction rather than by how fast the machine is.
func TestReadinessChecksShareProbes(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	engine := &gatedPinger{MemoryEngine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})}
	t.Cleanup(func() { engine.Close() })
	d := decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)})
	const checks = 200
	// flood makes 200 concurrent checks. held: the store's probe is held until one
	// check probes and the other 199 wait on that probe, none having returned.
	flood := func(ready *httpapi.Readiness, held bool) {
		t.Helper()
		if held {
			engine.release = make(chan struct{})
		}
		pingsBefore := engine.pings.Load()
		var wg sync.WaitGroup
		var returned atomic.Int64
		for range checks {
			wg.Go(func() {
				if err := ready.Check(context.Background()); err != nil {
					t.Errorf("check: %v", err)
				}
				returned.Add(1)
			})
		}
		if held {
			deadline := time.Now().Add(10 * time.Second)
			for engine.pings.Load() != pingsBefore+1 || ready.ProbeWaiters() != checks-1 {
				if time.Now().After(deadline) {
					close(engine.release)
					wg.Wait()
					t.Fatalf("probes %d, checks waiting on the one under way %d, after 10 s; want 1 probe and %d waiting",
						engine.pings.Load()-pingsBefore, ready.ProbeWaiters(), checks-1)
				}
				time.Sleep(time.Millisecond)
			}
			if n := returned.Load(); n != 0 {
				t.Errorf("%d checks returned while the probe was held", n)
			}
			close(engine.release)
		}
		wg.Wait()
	}
	ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: quiet(), MaxAge: time.Hour, Timeout: time.Minute})
	if flood(ready, true); engine.pings.Load() != 1 {
		t.Errorf("200 concurrent checks with MaxAge: %d probes, want 1", engine.pings.Load())
	}
	flood(ready, false)
	if n := engine.pings.Load(); n != 1 {
		t.Errorf("a second flood within MaxAge: %d probes in all, want still 1", n)
	}

	engine.pings.Store(0)
	ready = httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: quiet(), Timeout: time.Minute})
	if flood(ready, true); engine.pings.Load() != 1 {
		t.Errorf("200 concurrent checks without MaxAge: %d probes, want them to share 1", engine.pings.Load())
	}
	before := engine.pings.Load()
	ready.Check(context.Background())
	if engine.pings.Load() != before+1 {
		t.Error("a check after the flood did not probe anew (no MaxAge)")
	}
}

// panickyPinger is a memory engine whose Ping panics (a bug in an engine).
type panickyPinger struct{ *limiter.MemoryEngine }

func (panickyPinger) Ping(context.Context) error { panic("engine bug") }

// A probe that panics reports not ready and leaves readiness working: later checks do
// not wait for a probe that never finished.
func TestReadinessSurvivesAPanickingProbe(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	engine := panickyPinger{limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})}
	t.Cleanup(func() { engine.Close() })
	ready := httpapi.NewReadiness(decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)}), httpapi.ReadinessOptions{Log: quiet()})
	for i := range 2 {
		done := make(chan error, 1)
		go func() { done <- ready.Check(context.Background()) }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Fatalf("check %d: %v, want the panic as not ready", i+1, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("check %d did not return: readiness is stuck behind the panicked probe", i+1)
		}
	}
}
