//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// The graceful-shutdown contract these tests hold the real binary to
// (docs/operations.md#shutdown):
//   - on SIGTERM the process stops accepting connections and sends GOAWAY, then lets
//     every RPC it has already received finish: those get their normal answer;
//   - an RPC that arrives after shutdown began fails with UNAVAILABLE (connection
//     refused or refused stream), which Envoy's failure_mode_deny setting decides;
//     no other error code is ever seen;
//   - it exits 0 once drained, or 1 ("shutdown deadline passed") if RPCs are still in
//     flight after --shutdown-timeout, at which point they are cut off.

// built is this command compiled once for the tests that run it as a process.
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// buildBinary compiles this command on first use (into a directory TestMain removes)
// and returns its path; callers must not move or change it.
func buildBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		// go test puts the toolchain running this test first on PATH (Go 1.19 and later).
		gobin, err := exec.LookPath("go")
		if err != nil {
			built.err = fmt.Errorf("no go command on PATH to build the binary with: %v", err)
			return
		}
		if built.dir, built.err = os.MkdirTemp("", "rlx-cmd-test-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "ratelimit-ext")
		if out, err := exec.Command(gobin, "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// server is a running ratelimit-ext process.
type server struct {
	cmd                             *exec.Cmd
	grpcAddr, httpAddr, metricsAddr string // from its "serving" line
	exited                          chan struct{}
	exitErr                         error
	exitedAt                        time.Time

	mu    sync.Mutex
	lines []string // stderr, one log line each
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// startBinary runs bin serve with a temporary config (one generous limit on key k),
// unless flags name an xDS server, and the given flags, and waits for its "serving" line.
func startBinary(t *testing.T, bin string, flags ...string) *server {
	t.Helper()
	args := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}
	if !slices.Contains(flags, "--xds-server") { // beside it, --config-dir is refused
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {name: k, unit: hour, requests_per_unit: 1000000000}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "--config-dir", dir, "--watch=false")
	}
	args = append(args, flags...)
	var env []string
	for _, kv := range os.Environ() { // the test's own settings must not leak in
		if !strings.HasPrefix(kv, "RATELIMIT_EXT_") {
			env = append(env, kv)
		}
	}
	return startProcess(t, bin, env, args...)
}

// startProcess runs bin with args and exactly env (logging JSON), and waits for its
// "serving" line.
func startProcess(t *testing.T, bin string, env []string, args ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, exited: make(chan struct{})}
	type servingLine struct {
		Msg     string `json:"msg"`
		GRPC    string `json:"grpc"`
		HTTP    string `json:"http"`
		Metrics string `json:"metrics"`
	}
	serving := make(chan servingLine, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.lines = append(s.lines, line)
			s.mu.Unlock()
			var rec servingLine
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
				serving <- rec
			}
		}
	}()
	go func() {
		<-scanned // Wait after the pipe is drained
		s.exitErr = cmd.Wait()
		s.exitedAt = time.Now()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.log())
		}
	})
	select {
	case rec := <-serving:
		s.grpcAddr, s.httpAddr, s.metricsAddr = rec.GRPC, rec.HTTP, rec.Metrics
	case <-s.exited:
		t.Fatalf("server exited before serving: %v\n%s", s.exitErr, s.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("server did not log 'serving' within 20 s:\n%s", s.log())
	}
	return s
}

// waitExit waits for the process and returns its exit code and when it exited.
func (s *server) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(within):
		t.Fatalf("the process did not exit within %v of SIGTERM", within)
	}
	var ee *exec.ExitError
	switch {
	case s.exitErr == nil:
		return 0
	case errors.As(s.exitErr, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", s.exitErr)
	return -1
}

func rlsClient(t *testing.T, addr string) rlsv3.RateLimitServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

var shutdownReq = &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
	Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: "client"}}}}}

// outcome is one RPC as a client saw it.
type outcome struct {
	start, end time.Time
	code       codes.Code
}

// SIGTERM under load on the memory engine: no error but UNAVAILABLE, exit 0 in time.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin := buildBinary(t)
	s := startBinary(t, bin, "--shutdown-timeout", "5s")
	client := rlsClient(t, s.grpcAddr)

	var mu sync.Mutex
	var outcomes []outcome
	count := func(match func(outcome) bool) (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range outcomes {
			if match(o) {
				n++
			}
		}
		return n
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				o := outcome{start: time.Now()}
				resp, err := client.ShouldRateLimit(ctx, shutdownReq)
				cancel()
				o.end, o.code = time.Now(), status.Code(err)
				if err == nil && resp.OverallCode != rlsv3.RateLimitResponse_OK {
					o.code = codes.Internal // not expected with a limit of 10^9
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if err != nil {
					time.Sleep(10 * time.Millisecond) // the server is going away
				}
			}
		}()
	}
	// Under load: SIGTERM once 100 RPCs have been answered.
	waitUntil(t, "100 RPCs answered before SIGTERM", func() bool {
		return count(func(o outcome) bool { return o.code == codes.OK }) >= 100
	})
	sigAt := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Exit code 0, not 1, says the drain ended before --shutdown-timeout (5 s); the
	// wait is longer only so that a loaded machine cannot fail it.
	code := s.waitExit(t, 20*time.Second)
	// The clients meet the closed port.
	waitUntil(t, "an RPC refused after the exit", func() bool {
		return count(func(o outcome) bool { return o.code == codes.Unavailable && o.start.After(s.exitedAt) }) > 0
	})
	stop.Store(true)
	wg.Wait()

	if code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	okBefore, unavailableAfter := 0, 0
	for _, o := range outcomes {
		switch {
		case o.code == codes.OK && o.start.Before(sigAt):
			okBefore++
		case o.code == codes.OK:
		case o.code == codes.Unavailable:
			if o.end.Before(sigAt) {
				t.Errorf("UNAVAILABLE before SIGTERM was sent (%v)", sigAt.Sub(o.end))
			}
			unavailableAfter++
		default:
			t.Errorf("an RPC failed with %v: only UNAVAILABLE is expected once shutdown began", o.code)
		}
	}
	if okBefore < 100 || unavailableAfter == 0 {
		t.Fatalf("%d OK before SIGTERM, %d UNAVAILABLE after: the load or the shutdown did not happen", okBefore, unavailableAfter)
	}
	log := s.log()
	// (durations as text, "10s", as in the text logs, not nanoseconds)
	if !strings.Contains(log, `"msg":"shutting down","timeout":"`) || strings.Contains(log, `"level":"ERROR"`) {
		t.Fatalf("log:\n%s", log)
	}
	// No log line per request at the default level: thousands of RPCs, a handful of lines.
	if n := strings.Count(log, "\n") + 1; n > 10 {
		t.Errorf("%d log lines for %d RPCs:\n%s", n, len(outcomes), log)
	}
	t.Logf("%d RPCs: %d OK before SIGTERM, %d UNAVAILABLE after; exited %v after SIGTERM",
		len(outcomes), okBefore, unavailableAfter, s.exitedAt.Sub(sigAt).Round(time.Millisecond))
}

// waitUntil polls cond until it holds; the deadline only keeps a broken shutdown from
// hanging the test.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdRedisWrites holds every script call Redis receives (CLIENT PAUSE ... WRITE holds
// EVAL and EVALSHA, and lets CLIENT LIST through) until the test calls the function it
// returns, or ends: RPCs the server has received then wait inside it, in flight, for as
// long as the test likes.
func holdRedisWrites(t *testing.T, srv *testredis.Server) (release func()) {
	t.Helper()
	ctx := context.Background()
	if err := srv.Client().Do(ctx, "CLIENT", "PAUSE", (10 * time.Minute).Milliseconds(), "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE ... WRITE (Redis 6.2 or later): %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if err := srv.Client().Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Errorf("CLIENT UNPAUSE: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// waitHeldInRedis waits until n script calls are held in the paused Redis: n RPCs have
// reached the server and wait on Redis (one call each: see the callers' flags).
func waitHeldInRedis(t *testing.T, srv *testredis.Server, n int) {
	t.Helper()
	held := 0
	waitUntil(t, fmt.Sprintf("%d script calls held in Redis", n), func() bool {
		list, err := srv.Client().ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		held = 0
		for _, line := range strings.Split(list, "\n") {
			var flags, cmd string
			for _, field := range strings.Fields(line) {
				k, v, _ := strings.Cut(field, "=")
				switch k {
				case "flags":
					flags = v
				case "cmd":
					cmd = v
				}
			}
			if strings.Contains(flags, "b") && strings.HasPrefix(cmd, "eval") {
				held++
			}
		}
		return held >= n
	})
	if held != n {
		t.Fatalf("%d script calls held in Redis, want %d", held, n)
	}
}

// waitShutdownBegan waits until s logged that it is shutting down and no longer
// accepts connections: an RPC sent from then on is one that arrived after shutdown
// began.
func waitShutdownBegan(t *testing.T, s *server) {
	t.Helper()
	waitUntil(t, "the 'shutting down' log line", func() bool { return strings.Contains(s.log(), `"msg":"shutting down"`) })
	waitUntil(t, "the gRPC listener to close", func() bool {
		c, err := net.Dial("tcp", s.grpcAddr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
}

// inFlight starts n RPCs and returns their outcomes when all have ended.
func inFlight(client rlsv3.RateLimitServiceClient, n int) func() []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out[i].start = time.Now()
			_, err := client.ShouldRateLimit(ctx, shutdownReq)
			out[i].end, out[i].code = time.Now(), status.Code(err)
		}()
	}
	return func() []outcome { wg.Wait(); return out }
}

// RPCs in flight when SIGTERM arrives (held in a paused Redis) complete with their
// normal answer after it; a new RPC is refused with UNAVAILABLE; the process exits 0
// once they are done, not before. The RPCs are held until the test lets Redis go, so
// every step waits on an event (the RPCs held in Redis, the listener closed), not on
// a sleep. Batching stays on, with a lane per RPC so that each is its own script call
// and the test can see in Redis that all have reached the server.
func TestSIGTERMDrainsInFlightRPCs(t *testing.T) {
	srv := testredis.Start(t)
	bin := buildBinary(t)
	s := startBinary(t, bin, "--redis-url", srv.URL(), "--redis-read-timeout", "1m",
		"--redis-write-timeout", "1m", "--redis-batch-lanes", "8", "--shutdown-timeout", "1m")
	client := rlsClient(t, s.grpcAddr)
	if _, err := client.ShouldRateLimit(context.Background(), shutdownReq); err != nil {
		t.Fatalf("warm-up: %v", err)
	}

	release := holdRedisWrites(t, srv)
	wait := inFlight(client, 8)
	waitHeldInRedis(t, srv, 8) // the RPCs reached the server and wait on Redis
	sigAt := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitShutdownBegan(t, s)
	// Shutdown began: a new RPC is refused.
	late := inFlight(rlsClient(t, s.grpcAddr), 1)()
	if late[0].code != codes.Unavailable {
		t.Errorf("an RPC after SIGTERM got %v, want UNAVAILABLE", late[0].code)
	}
	select {
	case <-s.exited:
		t.Fatalf("the process exited (%v) with 8 RPCs in flight", s.exitErr)
	default:
	}
	releasedAt := time.Now()
	release()

	outs := wait()
	code := s.waitExit(t, 20*time.Second)
	for i, o := range outs {
		if o.code != codes.OK {
			t.Errorf("in-flight RPC %d ended with %v, want its normal answer", i, o.code)
		}
		if o.end.Before(releasedAt) {
			t.Errorf("in-flight RPC %d ended before Redis was let go: it was not held in flight", i)
		}
	}
	// Each RPC's OK (above) shows the process answered it before exiting: one that
	// exited first would have left it UNAVAILABLE. (Comparing when this test saw the
	// exit with when a client goroutine saw its answer only measures the scheduler.)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if s.exitedAt.Before(releasedAt) {
		t.Errorf("the process exited %v before the RPCs it held could finish", releasedAt.Sub(s.exitedAt))
	}
	t.Logf("exited %v after SIGTERM", s.exitedAt.Sub(sigAt).Round(time.Millisecond))
}

// RPCs still in flight at --shutdown-timeout are cut off: exit 1, once the deadline
// has passed. Redis holds the RPCs until the test ends, so only the deadline can end
// the drain.
func TestSIGTERMDeadlinePassed(t *testing.T) {
	srv := testredis.Start(t)
	bin := buildBinary(t)
	s := startBinary(t, bin, "--redis-url", srv.URL(), "--redis-read-timeout", "1m",
		"--redis-write-timeout", "1m", "--redis-batch-lanes", "4", "--shutdown-timeout", "500ms")
	client := rlsClient(t, s.grpcAddr)
	if _, err := client.ShouldRateLimit(context.Background(), shutdownReq); err != nil {
		t.Fatalf("warm-up: %v", err)
	}
	holdRedisWrites(t, srv)
	wait := inFlight(client, 4)
	waitHeldInRedis(t, srv, 4)
	sigAt := time.Now()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code := s.waitExit(t, 20*time.Second)
	if code != 1 {
		t.Fatalf("exit code %d with RPCs stuck past the deadline, want 1", code)
	}
	if took := s.exitedAt.Sub(sigAt); took < 500*time.Millisecond {
		t.Errorf("exited %v after SIGTERM, before the 500 ms deadline", took)
	}
	for i, o := range wait() {
		if o.code != codes.Unavailable {
			t.Errorf("cut-off RPC %d ended with %v, want UNAVAILABLE", i, o.code)
		}
	}
	if !strings.Contains(s.log(), "shutdown deadline passed") {
		t.Fatalf("the forced stop is not logged:\n%s", s.log())
	}
}

// A client watching grpc.health.v1 does not hold the shutdown: its Watch sees
// NOT_SERVING and ends, and the process exits 0 without waiting for the deadline.
func TestSIGTERMEndsHealthWatches(t *testing.T) {
	bin := buildBinary(t)
	s := startBinary(t, bin, "--shutdown-timeout", "20s")
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status: %v %v, want SERVING", r, err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var seen []healthpb.HealthCheckResponse_ServingStatus
	for {
		r, err := watch.Recv()
		if err != nil {
			break
		}
		seen = append(seen, r.Status)
	}
	if len(seen) == 0 || seen[len(seen)-1] != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("statuses after SIGTERM: %v, want NOT_SERVING last", seen)
	}
	if code := s.waitExit(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d with a health Watch open, want 0", code)
	}
}

// grpc.health.v1 answers for every service the gRPC port serves: the whole server, the
// RateLimitService and the ext_authz door's Authorization (an Envoy cluster's gRPC
// health check names the service it checks).
func TestHealthNamesEveryService(t *testing.T) {
	s := startBinary(t, buildBinary(t))
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	for _, service := range []string{"", "envoy.service.ratelimit.v3.RateLimitService", "envoy.service.auth.v3.Authorization"} {
		var resp *healthpb.HealthCheckResponse
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			resp, err = health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING || time.Now().After(deadline) {
				break
			}
		}
		if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q: %v, %v; want SERVING", service, resp, err)
		}
	}
}
