package e2e

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Helpers for tests that run their own ratelimit-ext replicas against their own
// redis-server, outside the docker-compose topology: the binary is the one TestMain built
// with the Dockerfile's command, the processes are the harness's Process.

// needBinary returns the ratelimit-ext binary TestMain built. It skips under -short and
// fails when the build failed.
func needBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no end-to-end processes are started")
	}
	if bld == nil {
		t.Fatalf("the service was not built: %v", setupErr)
	}
	return bld.Binary
}

// startRedis starts a private redis-server on a free loopback port, with no
// persistence, stopped at the end of the test (see startRestartableRedis).
func startRedis(t *testing.T) (url string) {
	t.Helper()
	return startRestartableRedis(t).url()
}

// replica is one ratelimit-ext process started by a test.
type replica struct {
	proc               *Process
	grpcPort, httpPort int
}

func (r *replica) grpcAddr() string { return "127.0.0.1:" + strconv.Itoa(r.grpcPort) }

// startReplicas starts n `ratelimit-ext serve` processes on free loopback ports with the
// given flags (e.g. --redis-url, --config-dir) and waits until each answers /readyz. They
// are stopped at the end of the test; their logs are printed when it failed.
func startReplicas(t *testing.T, n int, flags ...string) []*replica {
	t.Helper()
	bin := needBinary(t)
	dir := t.TempDir()
	out := make([]*replica, 0, n)
	for i := range n {
		var last error
		for attempt := 0; attempt < 5; attempt++ {
			gp, err1 := freePort()
			hp, err2 := freePort()
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("ratelimit-%d", i+1)
			p := &Process{Name: name, Path: bin,
				Args: append([]string{"serve", "--grpc-addr", "127.0.0.1:" + strconv.Itoa(gp),
					"--http-addr", "127.0.0.1:" + strconv.Itoa(hp), "--watch=false"}, flags...),
				Env:     cleanEnv(),
				LogPath: filepath.Join(dir, name+".log")}
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", hp)
			if last = waitUntil(p, 30*time.Second, func() error { return httpOK(readyz) }); last == nil {
				t.Cleanup(func() { stopLogged(t, p) })
				out = append(out, &replica{proc: p, grpcPort: gp, httpPort: hp})
				break
			}
			stopLogged(t, p) // a port may have been taken meanwhile: try others
			t.Logf("%s (attempt %d) did not become ready: %v", name, attempt+1, last)
		}
		if len(out) != i+1 {
			t.Fatalf("ratelimit-%d did not become ready: %v", i+1, last)
		}
	}
	return out
}

// waitUntil polls check every 20 ms until it succeeds, p exits, or timeout passes.
func waitUntil(p *Process, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	last := errors.New("not checked yet")
	for time.Now().Before(deadline) {
		if !p.Running() {
			return fmt.Errorf("%s exited during startup (log %s)", p.Name, p.LogPath)
		}
		if last = check(); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %v", p.Name, timeout, last)
}

// stopLogged stops p and, when the test failed, logs the end of its output.
func stopLogged(t *testing.T, p *Process) {
	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("%v", err)
	}
	if !t.Failed() {
		return
	}
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		t.Logf("%s: %v", p.Name, err)
		return
	}
	lines := strings.SplitAfter(string(data), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("%s (%s %q), end of log %s:\n%s", p.Name, p.Path, p.Args, p.LogPath, strings.Join(lines, ""))
}

// cleanEnv is this process's environment without RATELIMIT_EXT_ variables, so a
// developer's settings cannot change what a test's replicas do.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMIT_EXT_") {
			env = append(env, kv)
		}
	}
	return env
}
