package httpapi_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
	changes := make(chan error, 8) // the states OnChange reports, 3 if all goes well
	ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{
		Interval: 100 * time.Millisecond,
		Log:      slog.New(slog.NewTextHandler(logs, nil)),
		OnChange: func(err error) {
			report(err)
			m.SetReady(err)
			select {
			case changes <- err:
			default: // a flapping state; the count of log lines fails the test
			}
		},
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
	// nextChange waits for the next change of state and checks that gRPC health reports
	// it (OnChange has told the health server before the change reaches the channel).
	nextChange := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		select {
		case err := <-changes:
			if s := grpcStatus(); s != want {
				t.Fatalf("gRPC health %v after a change to %v, want %v; log:\n%s", s, err, want, logs)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no change of readiness within 5 s, want one to %v; log:\n%s", want, logs)
		}
	}

	nextChange(healthpb.HealthCheckResponse_SERVING) // the first check's
	if code, body := do(t, "GET", url, ""); code != 200 {
		t.Fatalf("/readyz %d %q with Redis up", code, body)
	}
	if s := grpcStatus(); s != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC health %v with Redis up", s)
	}

	srv.Stop()
	// The background watcher alone moves gRPC health (nobody asked /readyz yet) ...
	nextChange(healthpb.HealthCheckResponse_NOT_SERVING)
	// ... and /readyz says the same, with the reason.
	code, body := do(t, "GET", url, "")
	if code != 503 || !strings.Contains(body, "not ready") {
		t.Fatalf("/readyz %d %q with Redis stopped", code, body)
	}
	for range 3 { // several more failed checks, besides the watcher's: still one line
		if err := ready.Check(ctx); err == nil {
			t.Fatal("ready with Redis stopped")
		}
	}

	srv.Restart()
	nextChange(healthpb.HealthCheckResponse_SERVING)
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
// without a store that gets its rules says so, not that a store came back. The line that
// says it is ready again tells how long it was not (unready_for): since the first unready
// check, across changes of reason. The bubble's fake clock makes that duration exact.
func TestReadinessLogsEachReason(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		check := func(ready *httpapi.Readiness, wantErr bool) {
			t.Helper()
			if err := ready.Check(context.Background()); (err != nil) != wantErr {
				t.Fatalf("readiness %v, want an error: %v", err, wantErr)
			}
		}

		store := &stubPinger{MemoryEngine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1}), err: errStoreDown}
		t.Cleanup(func() { store.Close() })
		d := decide.New(nil, store, decide.Options{Keys: storekey.New("h:", 0)})
		logs := &testlog.Buffer{}
		var changes int
		ready := httpapi.NewReadiness(d, httpapi.ReadinessOptions{
			Log: slog.New(slog.NewTextHandler(logs, nil)), OnChange: func(error) { changes++ }})
		check(ready, true) // unready from here on
		time.Sleep(3 * time.Second)
		check(ready, true)
		d.SetRules(rs)
		check(ready, true) // another reason: the store fails
		time.Sleep(2 * time.Second)
		check(ready, true)
		store.err = nil
		check(ready, false)
		want := []string{"not ready: no rules loaded", "not ready: the store check failed", "ready: the store answers again"}
		if got := logMessages(logs.String()); !slices.Equal(got, want) || changes != 3 {
			t.Errorf("log %q and %d changes, want %q and 3", got, changes, want)
		}
		if got, want := logAttr(logs.String(), "unready_for"), []string{"", "", "5s"}; !slices.Equal(got, want) {
			t.Errorf("unready_for per line %q, want %q: the 3 s without rules and the 2 s with a failing store", got, want)
		}

		memory := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
		t.Cleanup(func() { memory.Close() })
		d = decide.New(nil, memory, decide.Options{Keys: storekey.New("h:", 0)})
		logs = &testlog.Buffer{}
		ready = httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: slog.New(slog.NewTextHandler(logs, nil))})
		check(ready, true)
		time.Sleep(1500 * time.Millisecond)
		d.SetRules(rs)
		check(ready, false)
		want = []string{"not ready: no rules loaded", "ready: rules loaded"}
		if got := logMessages(logs.String()); !slices.Equal(got, want) {
			t.Errorf("log %q, want %q", got, want)
		}
		if got, want := logAttr(logs.String(), "unready_for"), []string{"", "1.5s"}; !slices.Equal(got, want) {
			t.Errorf("unready_for per line %q, want %q", got, want)
		}
	})
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

// logAttr returns, for every line slog's text handler wrote, the value of its attribute
// key ("" in a line without it).
func logAttr(log, key string) []string {
	var vals []string
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		_, rest, _ := strings.Cut(line, " "+key+"=")
		val, _, _ := strings.Cut(rest, " ")
		vals = append(vals, val)
	}
	return vals
}

// stubPinger is a memory engine whose Ping lasts p.takes and answers p.err,
// counting its calls; for one goroutine at a time. In a synctest bubble, takes passes
// on the bubble's fake clock, at once.
type stubPinger struct {
	*limiter.MemoryEngine
	takes time.Duration
	err   error
	pings int
}

func (p *stubPinger) Ping(context.Context) error {
	p.pings++
	time.Sleep(p.takes)
	return p.err
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
// a probe ended observes anew. The probe is held until each of the 200 checks has
// either returned or blocked (synctest.Wait): with one probe and none returned, every
// check but the probing one waits on that probe, by construction rather than by how
// fast the machine is. (Checks queued on a mutex never count as blocked: were probes
// serialized under a lock, the test would hang until go test's -timeout, whose
// goroutine dump shows them in Check.)
func TestReadinessChecksShareProbes(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		engine := &gatedPinger{MemoryEngine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})}
		t.Cleanup(func() { engine.Close() })
		d := decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)})
		const checks = 200
		// flood makes 200 concurrent checks. held: the store's probe is held until every
		// check has blocked, and must then be the only one, with no check returned.
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
				synctest.Wait()
				if n := engine.pings.Load() - pingsBefore; n != 1 {
					t.Errorf("%d probes under way with every check blocked, want 1", n)
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
	})
}

// MaxAge counts from when the probe that made an observation started, not from when it
// ended: a slow store does not keep its answer in the cache for longer. The first probe
// takes 0.8 s of a 1 s MaxAge; its observation answers until 1 s after it started, and
// a check then probes anew and sees that the store has failed meanwhile.
func TestMaxAgeCountsFromTheProbesStart(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		const maxAge, takes = time.Second, 800 * time.Millisecond
		store := &stubPinger{MemoryEngine: limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1}), takes: takes}
		t.Cleanup(func() { store.Close() })
		ready := httpapi.NewReadiness(decide.New(rs, store, decide.Options{Keys: storekey.New("h:", 0)}),
			httpapi.ReadinessOptions{Log: quiet(), MaxAge: maxAge, Timeout: time.Minute})
		start := time.Now()
		if err := ready.Check(context.Background()); err != nil {
			t.Fatalf("first check: %v, want ready", err)
		}
		store.err = errStoreDown
		time.Sleep(maxAge - takes - time.Millisecond)
		if err := ready.Check(context.Background()); err != nil || store.pings != 1 {
			t.Errorf("a check %v after the first probe started: %v after %d probes, want the cached ready after 1",
				time.Since(start), err, store.pings)
		}
		time.Sleep(time.Millisecond)
		if err := ready.Check(context.Background()); !errors.Is(err, errStoreDown) || store.pings != 2 {
			t.Errorf("a check %v after the first probe started: %v after %d probes, want a new probe's %v",
				time.Since(start), err, store.pings, errStoreDown)
		}
	})
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

// Run observes readiness every Interval with nobody asking: a store that fails is
// noticed at the next tick, one that answers again at the tick after that, and Run
// returns when its context ends. On the bubble's fake clock the ticks are exact.
func TestRunObservesEveryInterval(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		memory := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
		t.Cleanup(func() { memory.Close() })
		var failing atomic.Bool
		var mu sync.Mutex
		var states []bool // ready per change OnChange reported
		ready := httpapi.NewReadiness(decide.New(rs, pingFunc{memory, func() error {
			if failing.Load() {
				return errStoreDown
			}
			return nil
		}}, decide.Options{Keys: storekey.New("h:", 0)}), httpapi.ReadinessOptions{
			Interval: time.Second, Log: quiet(),
			OnChange: func(err error) { mu.Lock(); states = append(states, err == nil); mu.Unlock() },
		})
		ctx, cancel := context.WithCancel(context.Background())
		stopped := make(chan struct{})
		go func() { ready.Run(ctx); close(stopped) }()
		expect := func(at string, want ...bool) {
			t.Helper()
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(states, want) {
				t.Errorf("%s: changes (ready?) %v, want %v", at, states, want)
			}
		}
		time.Sleep(500 * time.Millisecond)
		expect("before the first tick")
		time.Sleep(time.Second)
		expect("after the first tick", true)
		failing.Store(true)
		time.Sleep(time.Second)
		expect("a tick after the store failed", true, false)
		failing.Store(false)
		time.Sleep(time.Second)
		expect("a tick after it came back", true, false, true)
		cancel()
		<-stopped
	})
}

// pingFunc is an engine whose store answers a ping with ping().
type pingFunc struct {
	limiter.Engine
	ping func() error
}

func (p pingFunc) Ping(context.Context) error { return p.ping() }
