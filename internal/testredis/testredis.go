// Package testredis starts a private redis-server for tests: a free 127.0.0.1 port, no
// persistence, a temporary directory, stopped when the test ends. StartCluster and
// StartSentinel build a Redis Cluster and a Sentinel setup the same way. Tests that need
// Redis skip loudly when redis-server is not installed, and fail under CI=true.
package testredis

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const skipMessage = "REDIS SUITE SKIPPED: redis-server not found; install it with apt-get install redis-server or run make test"

// Server is one redis-server process owned by a test.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	port int
	tls  *TLSFiles
	ctls *tls.Config // for the readiness probe and Client

	// Cluster and Sentinel nodes (cluster.go, sentinel.go): a config file given as the
	// first argument, cluster mode with its bus port, and extra arguments.
	conf    string
	cluster bool
	busPort int
	extra   []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	waited chan struct{}
	log    *bytes.Buffer
	client *redis.Client
}

// Start starts redis-server on a free port and waits until it answers PING. It is
// stopped at t.Cleanup. Without redis-server on PATH the test is skipped, or failed when
// the environment has CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, nil, nil)
}

// TLSFiles are PEM files for a TLS-only server that requires client certificates.
type TLSFiles struct {
	CertFile, KeyFile string // the server's certificate and key
	CAFile            string // the CA that signed the client certificates
}

// StartTLS starts a server that accepts only TLS connections with a client certificate
// signed by files.CAFile; URL is then rediss://. client is the TLS configuration the
// readiness probe and Client use.
func StartTLS(t testing.TB, files TLSFiles, client *tls.Config) *Server {
	t.Helper()
	return start(t, &files, client)
}

func start(t testing.TB, files *TLSFiles, client *tls.Config) *Server {
	t.Helper()
	return launch(t, &Server{tls: files, ctls: client})
}

// lookPath finds a Redis binary: the test is skipped without it, or failed under CI=true.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("REDIS SUITE FAILED: %s not found and CI=true: %v (install it with apt-get install redis-server)", name, err)
		}
		t.Skip(skipMessage)
	}
	return bin
}

// launch starts s (its options set, the rest zero) on free ports.
func launch(t testing.TB, s *Server) *Server {
	t.Helper()
	s.t, s.bin, s.dir = t, lookPath(t, "redis-server"), t.TempDir()
	t.Cleanup(s.cleanup)
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("testredis: no free port: %v", err)
		}
		s.port = port
		if s.cluster {
			if s.busPort, err = freePort(); err != nil {
				t.Fatalf("testredis: no free port: %v", err)
			}
		}
		if lastErr = s.start(); lastErr == nil {
			return s
		}
	}
	t.Fatalf("testredis: redis-server did not start: %v", lastErr)
	return nil
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is redis://127.0.0.1:PORT/0 (rediss:// for a TLS server).
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr() + "/0"
	}
	return "redis://" + s.Addr() + "/0"
}

// Client returns a client for inspecting the server (closed at cleanup). It reconnects
// by itself after Restart.
func (s *Server) Client() *redis.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = redis.NewClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true, MaxRetries: -1, TLSConfig: s.ctls})
	}
	return s.client
}

// Kill ends the server at once (SIGKILL), as a crash would: no shutdown, no goodbye to
// replicas or the cluster. It is idempotent.
func (s *Server) Kill() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.waited
	s.cmd = nil
}

// Running reports whether the server process is up (started, not stopped or killed).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Stop terminates the server (SIGTERM, then SIGKILL after 5 s). It is idempotent.
func (s *Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// Restart stops the server and starts a new one on the same port (with empty data).
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	s.stopLocked()
	s.mu.Unlock()
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	s.t.Fatalf("testredis: restart on port %d failed: %v", s.port, err)
}

func (s *Server) start() error {
	var args []string
	if s.conf != "" {
		args = append(args, s.conf) // a config file must come first
	}
	args = append(args,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", "",
	)
	if s.tls != nil {
		args = append(args, "--port", "0", "--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.tls.CertFile, "--tls-key-file", s.tls.KeyFile,
			"--tls-ca-cert-file", s.tls.CAFile, "--tls-auth-clients", "yes")
	}
	if s.cluster {
		args = append(args, "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-node-timeout", "1000",
			"--cluster-port", strconv.Itoa(s.busPort))
	}
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	waited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(waited)
	}()
	s.mu.Lock()
	s.cmd, s.waited, s.log = cmd, waited, log
	s.mu.Unlock()
	if err := s.waitReady(waited); err != nil {
		s.mu.Lock()
		s.stopLocked()
		s.mu.Unlock()
		return fmt.Errorf("%w; server output:\n%s", err, log.String())
	}
	return nil
}

// waitReady polls PING until the server answers or exits.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server on port %d exited during startup", s.port)
		default:
		}
		if ping(s.Addr(), s.ctls) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on port %d did not answer PING within 10 s", s.port)
}

// ping sends one PING over a connection of its own. Not through go-redis, whose pool
// logs every refused dial while the server starts: those lines would land in the
// output of the tests and benchmarks that start servers (a benchmark's result line
// among them).
func ping(addr string, tc *tls.Config) error {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var c net.Conn
	var err error
	if tc != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing answers, as
// with a hung or partitioned Redis. Resume undoes it; cleanup resumes a paused server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot handle SIGTERM
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waited:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waited
	}
	s.cmd = nil
}

func (s *Server) cleanup() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		_ = s.client.Close()
		s.client = nil
	}
	s.stopLocked()
	if s.t.Failed() && s.log != nil && s.log.Len() > 0 {
		s.t.Logf("redis-server (port %d) output:\n%s", s.port, lastLines(s.log.String(), 40))
	}
	_ = os.RemoveAll(filepath.Join(s.dir, "dump.rdb"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
