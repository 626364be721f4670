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
// rules are followed. The start is held at a known point after the rules are loaded
// and before they are followed: the gRPC client CA bundle is a FIFO, which the server
// reads while setting up its listeners, and which this test writes only after the
// signal was delivered.
func TestSIGHUPDuringStartUp(t *testing.T) {
	bin := buildBinary(t)
	ca, server, _ := newPKI(t)
	fifo := filepath.Join(t.TempDir(), "client-ca.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {name: k, unit: hour, requests_per_unit: 1000000000}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := launch(t, bin, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--config-dir", dir, "--log-format", "json", "--watch=false",
		"--grpc-tls-cert", server.CertFile, "--grpc-tls-key", server.KeyFile, "--grpc-tls-client-ca", fifo)

	// Opening the FIFO for writing without blocking succeeds once the server has it
	// open for reading: it is then waiting for the bundle.
	var w *os.File
	p.waitFor(t, "the server to open the client CA bundle", func() bool {
		f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		w = f
		return err == nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "the SIGHUP to be delivered", func() bool { return !sighupPending(p.cmd.Process.Pid) })
	writeCA(t, w, ca.File, p.hasExited)
	p.waitFor(t, "the reload the SIGHUP asked for", func() bool {
		return strings.Contains(p.log(), `"msg":"serving"`) && strings.Contains(p.log(), "SIGHUP: reloading rules")
	})
}

// writeCA writes the CA bundle caFile into the FIFO w and closes it. The server
// reads a CA bundle again when its modification time changes, as a write into the FIFO
// makes it, which would block the start for good: the time is set back before the
// server's read ends, at the close. An error is expected if the process has exited.
func writeCA(t *testing.T, w *os.File, caFile string, exited func() bool) {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := w.Stat()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Write(pem)
	if err == nil {
		err = os.Chtimes(w.Name(), fi.ModTime(), fi.ModTime())
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil && !exited() { // EPIPE: the server is gone, which the caller says
		t.Fatal(err)
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

// launch starts bin with args, without the test's own RATELIMIT_EXT_ settings, and
// kills it when the test ends.
func launch(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMIT_EXT_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
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
