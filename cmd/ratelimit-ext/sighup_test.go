//go:build unix

package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A SIGHUP sent while the server starts (an operator, or a config-management tool that
// reloads whatever it just deployed) neither ends the process, which is Go's default
// until the signal is asked for, nor is lost: the reload it asks for runs once the
// rules are followed.
//
// The start is held at a known point from outside, with no hook in the server: its
// first log line, a warning that a README in the config directory is not a rule file,
// logged after the rules are loaded and the listeners set up, just before the rules are
// followed. TZ names a FIFO, and Go reads the time-zone file TZ names once, when a time
// is first shown in local time: here the time stamp of that first line. The test sees
// the server open the FIFO, sends the signal, and closes the FIFO only once the signal
// was delivered (an empty zone file: Go then shows times in UTC).
func TestSIGHUPDuringStartUp(t *testing.T) {
	bin := buildBinary(t)
	zone := filepath.Join(t.TempDir(), "zone")
	if err := syscall.Mkfifo(zone, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"edge.yaml": "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {name: k, unit: hour, requests_per_unit: 1000000000}\n",
		"README":    "not a rule file: the server warns of it before it follows the rules\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := launch(t, bin, []string{"TZ=" + zone}, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--config-dir", dir, "--log-format", "json", "--watch=false")

	// Opening the FIFO for writing without blocking succeeds once the server has it
	// open for reading: it is then waiting for the zone file, its first line unwritten.
	var w *os.File
	p.waitFor(t, "the server to open the zone file", func() bool {
		f, err := os.OpenFile(zone, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		w = f
		return err == nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the SIGHUP to be delivered", func() bool { return !sighupPending(p.cmd.Process.Pid) })
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the reload the SIGHUP asked for", func() bool {
		return strings.Contains(p.log(), `"msg":"serving"`) && strings.Contains(p.log(), "SIGHUP: reloading rules")
	})
	// The hold was at the README's warning, before the rules were followed, only if
	// no line came before it (every line waits for the zone file).
	if first, _, _ := strings.Cut(p.log(), "\n"); !strings.Contains(first, "README") {
		t.Errorf("the first log line is %s, want the warning naming README: the start was held at another point than the one between loading the rules and following them", first)
	}
}

// sighupPending says whether SIGHUP is pending for process pid (Linux: its
// /proc/PID/status; elsewhere this cannot be told, and it says no).
func sighupPending(pid int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		name, mask, ok := strings.Cut(line, ":")
		if !ok || (name != "SigPnd" && name != "ShdPnd") {
			continue
		}
		bits, err := strconv.ParseUint(strings.TrimSpace(mask), 16, 64)
		if err == nil && bits&(1<<(syscall.SIGHUP-1)) != 0 {
			return true
		}
	}
	return false
}

// process is a running command whose stderr is kept, one line each.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error

	mu    sync.Mutex
	lines []string
}

// launch starts bin with args and exactly env (KEY=value), and kills it when the test
// ends. Nothing of the test's own environment is passed on: an envoyproxy/ratelimit
// variable there (LOG_LEVEL, PORT, REDIS_URL) would be mapped and logged, and a line
// logged before the one a test holds the start at moves the hold.
func launch(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = append([]string{}, env...) // not nil, which would pass the test's on
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.exitErr = p.cmd.Wait() // after the pipe is drained
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.hasExited() {
			_ = p.cmd.Process.Kill()
		}
		<-p.exited
		if t.Failed() {
			t.Logf("server log:\n%s", p.log())
		}
	})
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// waitFor waits for cond, failing the test if the process ends first or 20 s pass.
func (p *process) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if p.hasExited() {
			var ee *exec.ExitError
			if errors.As(p.exitErr, &ee) {
				t.Fatalf("waiting for %s, the process ended: %v", what, ee.ProcessState)
			}
			t.Fatalf("waiting for %s, the process ended: %v", what, p.exitErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
