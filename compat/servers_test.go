package compat

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reference"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// server is one rate-limit service under comparison: its process, its private Redis
// and a gRPC client.
type server struct {
	name   string
	redis  *testredis.Server
	client rlsv3.RateLimitServiceClient
	log    string // the process's output file, quoted on failure
}

// referenceBin is envoyproxy/ratelimit's service_cmd: $REFERENCE_BIN, else where
// `make compat` (and `make bench`) install the version the Makefile pins. The test is
// skipped without it, or failed under CI=true, like the Redis suites without Redis.
func referenceBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("REFERENCE_BIN")
	if bin == "" {
		bin = defaultReferenceBin(t)
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("!!! COMPAT SUITE SKIPPED: envoyproxy/ratelimit binary not found (%v); run make compat, or set REFERENCE_BIN", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(strings.Replace(msg, "SKIPPED", "FAILED under CI=true", 1))
		}
		t.Skip(msg)
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// defaultReferenceBin is the path the Makefile installs the reference at, with the
// version read from the Makefile itself so that the two cannot drift apart.
func defaultReferenceBin(t *testing.T) string {
	t.Helper()
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^REFERENCE_VERSION := (\S+)$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("../Makefile sets no REFERENCE_VERSION")
	}
	return filepath.Join("..", ".tools", "bench", "reference-"+string(m[1]), "service_cmd")
}

// buildOurs compiles cmd/ratelimit-ext into dir (the go command's build cache keeps a
// repeated run fast).
func buildOurs(t *testing.T, dir string) string {
	t.Helper()
	// go test puts the toolchain running this test first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH to build the service with: %v", err)
	}
	bin := filepath.Join(dir, "ratelimit-ext")
	out, err := exec.Command(gobin, "build", "-o", bin, "../cmd/ratelimit-ext").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ../cmd/ratelimit-ext: %v\n%s", err, out)
	}
	return bin
}

// envFunc is the environment a server starts with, given its Redis and listen
// addresses: reference.Env or reference.XDSEnv, the same for both servers (ours maps
// envoyproxy/ratelimit's variables, docs/migrating.md).
type envFunc func(redisAddr string, a reference.Addrs) []string

// fileRules is the environment of rules read from runtimeRoot/ratelimit/config.
func fileRules(runtimeRoot string) envFunc {
	return func(redisAddr string, a reference.Addrs) []string { return reference.Env(redisAddr, runtimeRoot, a) }
}

// startServer runs bin with env (envoyproxy/ratelimit's variables) on its own Redis and
// free loopback ports, and waits until its /healthcheck answers 200.
func startServer(t *testing.T, name, bin string, env envFunc) *server {
	t.Helper()
	rds := testredis.Start(t)
	addrs := reference.Addrs{GRPC: freeAddr(t), HTTP: freeAddr(t), Debug: freeAddr(t)}
	cmd := exec.Command(bin)
	// Only these settings: a variable left in the caller's shell (REDIS_AUTH,
	// LOCAL_CACHE_SIZE_IN_BYTES, RATELIMIT_EXT_...) would change what is compared.
	// And Redis read and write timeouts of a second for this service (the reference
	// ignores them): its own 8 ms, sized under Envoy's 20 ms, would turn a loaded
	// machine's scheduling delays into UNAVAILABLE answers, where the reference waits up
	// to its REDIS_TIMEOUT, 10 s. A store failure is not what is compared.
	cmd.Env = append(env(rds.Addr(), addrs), "RATELIMIT_EXT_REDIS_READ_TIMEOUT=1s", "RATELIMIT_EXT_REDIS_WRITE_TIMEOUT=1s")
	// The reference's stats, logged every 10 s, go to a file, quoted when something fails.
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // no orphan if the test dies
	p, err := startProc(cmd)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() { <-p.done; logFile.Close() }()
	t.Cleanup(p.stop)
	s := &server{name: name, redis: rds, log: logPath}
	if err := waitHealthy(addrs.ReadyURL(), p); err != nil {
		t.Fatalf("%s did not become ready: %v\n%s", name, err, s.tail())
	}
	conn, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.client = rlsv3.NewRateLimitServiceClient(conn)
	return s
}

// proc is a started process: done is closed once it has exited, and err then says how.
// Closing done, rather than sending on a channel, lets everyone who waits see the exit:
// waitHealthy, and stop after it.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop kills the process, if it still runs, and waits for it.
func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitHealthy polls url until it answers 200; the deadline only bounds a failure.
func waitHealthy(url string, p *proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shouldRateLimit sends req with a generous deadline (it bounds only a failure).
func (s *server) shouldRateLimit(req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.ShouldRateLimit(ctx, req)
}

// flush empties the server's Redis, so that a sequence starts from fresh counters.
// Neither server keeps counters of its own between calls (the reference's local cache
// is off unless LOCAL_CACHE_SIZE_IN_BYTES is set).
func (s *server) flush(t *testing.T) {
	t.Helper()
	if err := s.redis.Client().FlushAll(context.Background()).Err(); err != nil {
		t.Fatalf("%s: FLUSHALL: %v", s.name, err)
	}
}

// tail is the end of the server's log, without the reference's stats dumps.
func (s *server) tail() string {
	b, _ := os.ReadFile(s.log)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "gostats.loggingsink") {
			lines = append(lines, l)
		}
	}
	return fmt.Sprintf("--- %s log (%s), the last lines ---\n%s", s.name, s.log, strings.Join(lines[max(0, len(lines)-30):], "\n"))
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
