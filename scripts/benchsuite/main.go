// Command benchsuite runs the standard benchmark of `make bench` (docs/performance.md):
// it starts a private redis-server on a free loopback port, the service on the memory
// engine and on the Redis engine (with and without batching and the local over-limit
// cache), the do-nothing ceiling server (internal/nooprls), two ceilings that wait
// on a do-nothing Redis script (ceiling.go) and, when given its binary, envoyproxy/ratelimit
// on the same Redis (reference.go); runs the standard scenarios against each with the
// load generator (internal/loadgen), and prints one table with every number beside the
// ceiling of the same run.
//
//	go run ./scripts/benchsuite -bin PATH/ratelimit-ext [-reference PATH/service_cmd] [-duration 10s] [-json out.json] [-profile DIR]
//
// Everything runs on this machine and talks only to 127.0.0.1; every process it starts
// is stopped when it ends.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/loadgen"
)

// benchRules are the rules every service instance serves: limits that are never hit
// for the throughput scenarios, and one far exceeded for the hot key.
const benchRules = `domain: bench
descriptors:
  - key: fw
    rate_limit: {unit: hour, requests_per_unit: 1000000000, algorithm: fixed_window}
  - key: tb
    rate_limit: {unit: second, requests_per_unit: 1000000, algorithm: token_bucket}
  - key: sw
    rate_limit: {unit: hour, requests_per_unit: 1000000000, algorithm: sliding_window}
  - key: hot
    rate_limit: {unit: hour, requests_per_unit: 10, algorithm: fixed_window}
`

type scenario struct {
	name    string
	desc    []string // descriptor templates
	perReq  int
	keys    int
	rate    float64 // > 0: open loop
	servers []string
}

// The servers: the ceiling, the memory engine, the Redis engine with the serving
// defaults (batching and the local cache on), and Redis with each switched off.
const (
	srvCeiling = "ceiling"
	// The ceiling that also waits for a Redis script call that does nothing (return
	// 1): one per request, or shared by the requests that arrive together the way the
	// engine batches. What waiting on Redis costs before any rate limiting.
	srvRoundTrip   = "ceiling with a Redis round trip"
	srvBatchedTrip = "ceiling with batched Redis round trips"
	srvMemory      = "memory"
	srvRedis       = "redis"
	srvNoBatch     = "redis, no batching"
	srvNoCache     = "redis, no local cache"
	srvUnix        = "redis over a unix socket"
	// envoyproxy/ratelimit with its default settings on the same Redis: the project
	// issue 7 measures this one against. Fixed windows only (its one algorithm).
	srvReference = "envoyproxy/ratelimit"
)

var scenarios = []scenario{
	{name: "1 descriptor, 100,000 keys (fixed_window)", desc: []string{"fw={key}"}, keys: 100_000,
		servers: []string{srvCeiling, srvRoundTrip, srvBatchedTrip, srvMemory, srvRedis, srvNoBatch, srvUnix, srvReference}},
	{name: "1 descriptor, 1,000 keys", desc: []string{"fw={key}"}, keys: 1000,
		servers: []string{srvCeiling, srvMemory, srvRedis}},
	{name: "3 descriptors per request", desc: []string{"fw={key}"}, perReq: 3, keys: 100_000,
		servers: []string{srvCeiling, srvMemory, srvRedis, srvNoBatch, srvReference}},
	{name: "hot key far over its limit", desc: []string{"hot=1"}, keys: 1,
		servers: []string{srvCeiling, srvMemory, srvRedis, srvNoCache, srvReference}},
	{name: "token_bucket, 100,000 keys", desc: []string{"tb={key}"}, keys: 100_000,
		servers: []string{srvCeiling, srvMemory, srvRedis}},
	{name: "sliding_window, 100,000 keys", desc: []string{"sw={key}"}, keys: 100_000,
		servers: []string{srvCeiling, srvMemory, srvRedis}},
	{name: "open loop 8,000/s, 1 descriptor, 100,000 keys", desc: []string{"fw={key}"}, keys: 100_000, rate: 8000,
		servers: []string{srvCeiling, srvRoundTrip, srvBatchedTrip, srvMemory, srvRedis, srvNoBatch, srvReference}},
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	grpc   string        // gRPC address
	ready  string        // URL that answers 200 once it serves (services)
	redis  bool          // talks to Redis (the Redis engine, or a ceiling waiting on it): its CPU is measured
	pprof  string        // --pprof-addr of a service when profiles are taken
	exited chan struct{} // closed when the process has ended (start waits for it)
}

type row struct {
	Scenario string          `json:"scenario"`
	Server   string          `json:"server"`
	Report   *loadgen.Report `json:"report"`
	Ceiling  float64         `json:"ceilingRequestsPerSecond"`
	// Redis, over the measured phase: commands and read events (one per batch of
	// requests the server reads: round trips) per request.
	RedisCommands   float64 `json:"redisCommandsPerRequest,omitempty"`
	RedisRoundTrips float64 `json:"redisRoundTripsPerRequest,omitempty"`
}

func main() {
	if len(os.Args) >= 3 && os.Args[1] == "-serve-ceiling" {
		serveCeiling(os.Args[2:])
		return
	}
	bin := flag.String("bin", "", "the ratelimit-ext binary to benchmark (required)")
	reference := flag.String("reference", "", "envoyproxy/ratelimit's service_cmd binary, to measure it beside this project (rows left out without it)")
	duration := flag.Duration("duration", 10*time.Second, "measured phase of each run")
	warmup := flag.Duration("warmup", 2*time.Second, "warm-up of each run")
	workers := flag.Int("workers", 32, "closed-loop workers")
	conns := flag.Int("conns", 2, "gRPC connections of the load generator")
	jsonOut := flag.String("json", "", "also write every report to this JSON file")
	profile := flag.String("profile", "", "write CPU and allocation profiles of the services to this directory")
	only := flag.String("only", "", "run only scenarios whose name contains this")
	onlyServers := flag.String("servers", "", "run only these servers (names separated by \"+\", e.g. ceiling+redis)")
	redisFlags := flag.String("redis-flags", "", "extra service flags for the \"redis\" server (space-separated), to try settings")
	flag.Parse()
	if *bin == "" {
		fmt.Fprintln(os.Stderr, "benchsuite: -bin is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := options{bin: *bin, reference: *reference, duration: *duration, warmup: *warmup, workers: *workers, conns: *conns,
		jsonOut: *jsonOut, profileDir: *profile, only: *only, onlyServers: *onlyServers, redisFlags: strings.Fields(*redisFlags)}
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchsuite:", err)
		os.Exit(1)
	}
}

// handedOut are the addresses freeAddr has given: the kernel may offer a closed port
// again, and two of the suite's servers must never be told to listen on one port.
var handedOut = map[string]bool{}

// freeAddr returns a loopback address that was free a moment ago and that this run
// has not handed out before.
func freeAddr() (string, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		l.Close()
		if !handedOut[addr] {
			handedOut[addr] = true
			return addr, nil
		}
	}
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// options are the command line's settings.
type options struct {
	bin, reference      string
	duration, warmup    time.Duration
	workers, conns      int
	jsonOut, profileDir string
	only, onlyServers   string
	redisFlags          []string
}

// suite is one run: its temporary directory, the processes it started (all stopped by
// close) and the servers under test by name.
type suite struct {
	opts      options
	dir       string // temporary; holds the rules, Redis's socket and the reference's files
	cfgDir    string
	procs     []*proc
	servers   map[string]*proc
	redis     *proc
	redisAddr string
	redisSock string
	rdb       *redis.Client
}

func run(ctx context.Context, o options) error {
	s, err := newSuite(o)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.startRedis(ctx); err != nil {
		return err
	}
	if err := s.startCeilings(); err != nil {
		return err
	}
	if err := s.startServices(); err != nil {
		return err
	}
	if err := s.startReference(); err != nil {
		return err
	}
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	rows, err := s.measureAll(ctx)
	if err != nil {
		return err
	}
	printTable(os.Stdout, rows)
	printAgainstReference(os.Stdout, rows)
	if o.jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(o.jsonOut, b, 0o644)
}

// newSuite makes the run's directory and writes the rules every service serves.
func newSuite(o options) (*suite, error) {
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		return nil, err
	}
	o.bin = bin
	dir, err := os.MkdirTemp("", "rlx-bench-")
	if err != nil {
		return nil, err
	}
	s := &suite{opts: o, dir: dir, cfgDir: filepath.Join(dir, "config"), servers: map[string]*proc{}}
	if err := os.MkdirAll(s.cfgDir, 0o755); err != nil {
		s.close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.cfgDir, "bench.yaml"), []byte(benchRules), 0o644); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// close stops every process the run started and removes its directory.
func (s *suite) close() {
	if s.rdb != nil {
		s.rdb.Close()
	}
	for _, p := range s.procs {
		stopProc(p)
	}
	os.RemoveAll(s.dir)
}

// start starts p, killed with this program (Pdeathsig) and stopped by close.
func (s *suite) start(p *proc) error {
	if p.cmd.Stderr == nil {
		p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	p.exited = make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	s.procs = append(s.procs, p)
	return nil
}

// startRedis starts a private redis-server: no persistence, a free loopback port, and
// a unix socket for the co-located deployment's row.
func (s *suite) startRedis(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(addr)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return errors.New("redis-server not found (apt-get install redis-server, or make deps)")
	}
	s.redisAddr, s.redisSock = addr, filepath.Join(s.dir, "redis.sock")
	s.redis = &proc{name: "redis-server", cmd: exec.Command(bin, "--port", port, "--bind", "127.0.0.1",
		"--unixsocket", s.redisSock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no", "--logfile", "")}
	if err := s.start(s.redis); err != nil {
		return err
	}
	s.rdb = redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	if err := waitFor(ctx, s.redis, func() error { return s.rdb.Ping(ctx).Err() }); err != nil {
		return fmt.Errorf("redis-server did not start: %w", err)
	}
	return nil
}

// startCeilings starts the do-nothing ceiling (this program again, serving nooprls) and
// the two ceilings that wait on a do-nothing Redis script.
func (s *suite) startCeilings() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, c := range []struct{ name, mode string }{{srvCeiling, ""}, {srvRoundTrip, "each"}, {srvBatchedTrip, "batched"}} {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		args := []string{"-serve-ceiling", addr}
		if c.mode != "" {
			args = append(args, c.mode, s.redisAddr)
		}
		p := &proc{name: c.name, grpc: addr, redis: c.mode != "", cmd: exec.Command(self, args...)}
		if err := s.start(p); err != nil {
			return err
		}
		s.servers[c.name] = p
	}
	return nil
}

// startServices starts the service under test: the memory engine, the Redis engine with
// the serving defaults (plus -redis-flags), and the Redis engine with batching off, with
// the local cache off and over the unix socket.
func (s *suite) startServices() error {
	tcp := "redis://" + s.redisAddr + "/0"
	for _, v := range []struct {
		name, redisURL string
		flags          []string
	}{
		{srvMemory, "", nil},
		{srvRedis, tcp, append([]string{"--redis-batch=true", "--local-cache=true"}, s.opts.redisFlags...)},
		{srvNoBatch, tcp, []string{"--redis-batch=false", "--local-cache=true"}},
		{srvNoCache, tcp, []string{"--redis-batch=true", "--local-cache=false"}},
		{srvUnix, "unix://" + s.redisSock + "?db=0", []string{"--redis-batch=true", "--local-cache=true"}},
	} {
		if err := s.startService(v.name, v.redisURL, v.flags); err != nil {
			return err
		}
	}
	return nil
}

func (s *suite) startService(name, redisURL string, extra []string) error {
	g, err := freeAddr()
	if err != nil {
		return err
	}
	h, err := freeAddr()
	if err != nil {
		return err
	}
	args := []string{"serve", "--config-dir", s.cfgDir, "--grpc-addr", g, "--http-addr", h,
		"--log-level", "warn", "--watch=false"}
	if redisURL != "" {
		// Generous store timeouts: on a shared 2-core machine a descheduled
		// redis-server would otherwise trip the 8 ms defaults, open the circuit
		// breaker and turn the run into a measurement of fast failures.
		args = append(args, "--redis-url", redisURL, "--redis-read-timeout", "100ms", "--redis-write-timeout", "100ms")
	} else {
		args = append(args, "--engine", "memory")
	}
	p := &proc{name: name, grpc: g, ready: "http://" + h + "/readyz", redis: redisURL != ""}
	if s.opts.profileDir != "" {
		if p.pprof, err = freeAddr(); err != nil {
			return err
		}
		args = append(args, "--pprof-addr", p.pprof)
	}
	p.cmd = exec.Command(s.opts.bin, append(args, extra...)...)
	p.cmd.Env = cleanEnv()
	if err := s.start(p); err != nil {
		return err
	}
	s.servers[name] = p
	return nil
}

// startReference starts envoyproxy/ratelimit on the same Redis when its rows are
// selected and its binary given; without it, its rows are left out with a message.
func (s *suite) startReference() error {
	switch {
	case !selected(srvReference, s.opts.only, s.opts.onlyServers):
		return nil
	case s.opts.reference == "":
		fmt.Fprintf(os.Stderr, "benchsuite: no -reference binary: the %s rows are left out\n", srvReference)
		return nil
	}
	p, err := referenceProc(s.opts.reference, s.dir, s.redisAddr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchsuite: %v: the %s rows are left out\n", err, srvReference)
		return nil
	}
	if err := s.start(p); err != nil {
		return err
	}
	s.servers[srvReference] = p
	return nil
}

// waitReady waits for every service's readiness endpoint. A reference that does not get
// ready is left out with its log; any other server failing ends the run.
func (s *suite) waitReady(ctx context.Context) error {
	for name, p := range s.servers {
		if p.ready == "" {
			continue
		}
		err := waitFor(ctx, p, func() error { return httpOK(p.ready) })
		if err != nil && name == srvReference {
			log, _ := os.ReadFile(filepath.Join(s.dir, "reference.log"))
			fmt.Fprintf(os.Stderr, "benchsuite: %s did not get ready (%v): its rows are left out; its log:\n%s\n", name, err, log)
			delete(s.servers, name)
			continue
		}
		if err != nil {
			return fmt.Errorf("%s did not get ready: %w", name, err)
		}
	}
	return nil
}

// measureAll runs every selected scenario on every selected server, in order, each row
// beside its scenario's ceiling (or the single-descriptor closed-loop one).
func (s *suite) measureAll(ctx context.Context) ([]row, error) {
	o := s.opts
	fmt.Printf("# make bench: %s, %d workers closed loop, %v measured after %v warm-up per run, %d connections\n",
		time.Now().UTC().Format(time.RFC3339), o.workers, o.duration, o.warmup, o.conns)
	fmt.Printf("# load average before: %s; %d CPUs\n", loadavg(), runtime.NumCPU())
	var rows []row
	ceilings := map[string]float64{}
	for _, sc := range scenarios {
		if !scenarioSelected(sc, o.only) {
			continue
		}
		for _, name := range sc.servers {
			p := s.servers[name]
			if !serverSelected(name, o.onlyServers) || p == nil { // nil: the reference, when it is not there
				continue
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r, err := s.measure(ctx, sc, p)
			if err != nil {
				return nil, fmt.Errorf("%s on %s: %w", sc.name, name, err)
			}
			if name == srvCeiling {
				ceilings[sc.name] = r.Report.RPS
				if sc.rate == 0 && sc.perReq <= 1 {
					ceilings[""] = r.Report.RPS // the single-descriptor closed-loop ceiling
				}
			}
			if r.Ceiling = ceilings[sc.name]; r.Ceiling == 0 {
				r.Ceiling = ceilings[""]
			}
			rows = append(rows, *r)
			fmt.Fprintf(os.Stderr, "  %-48s %-22s %8.0f req/s  p99 %.2f ms\n", sc.name, name, r.Report.RPS, r.Report.Latency.P99)
		}
	}
	fmt.Printf("# load average after: %s\n\n", loadavg())
	return rows, nil
}

// scenarioSelected and serverSelected apply -only and -servers.
func scenarioSelected(sc scenario, only string) bool {
	return only == "" || strings.Contains(sc.name, only)
}

func serverSelected(name, onlyServers string) bool {
	return onlyServers == "" || slices.Contains(strings.Split(onlyServers, "+"), name)
}

// selected says whether server runs in some scenario that -only and -servers select.
func selected(server, only, onlyServers string) bool {
	if !serverSelected(server, onlyServers) {
		return false
	}
	return slices.ContainsFunc(scenarios, func(sc scenario) bool {
		return scenarioSelected(sc, only) && slices.Contains(sc.servers, server)
	})
}

// cleanEnv drops RATELIMIT_EXT_ settings of the caller: the services run on flags only.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RATELIMIT_EXT_") && !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	return env
}

// measure runs one scenario on one server, with Redis's counters and, when asked, the
// server's profiles over the measured phase.
func (s *suite) measure(ctx context.Context, sc scenario, p *proc) (*row, error) {
	o := s.opts
	cfg := loadgen.Config{
		Targets: []string{p.grpc}, Conns: o.conns, Workers: o.workers, Rate: sc.rate,
		Duration: o.duration, Warmup: o.warmup, Domain: "bench", PerRequest: sc.perReq, Keys: sc.keys,
		WatchPIDs: map[string]int{"server": p.cmd.Process.Pid},
	}
	if p.redis {
		cfg.WatchPIDs["redis"] = s.redis.cmd.Process.Pid
	}
	for _, d := range sc.desc {
		t, err := loadgen.ParseTemplate(d)
		if err != nil {
			return nil, err
		}
		cfg.Descriptors = append(cfg.Descriptors, t)
	}
	// Redis counters and profiles cover the measured phase: they start after warm-up.
	startMeasure := make(chan struct{})
	go func() {
		select {
		case <-time.After(o.warmup):
		case <-ctx.Done():
		}
		close(startMeasure)
	}()
	statsCh := make(chan redisStats, 1)
	go func() {
		<-startMeasure
		st, _ := readRedisStats(ctx, s.rdb)
		statsCh <- st
	}()
	var profDone chan error
	if p.pprof != "" {
		profDone = make(chan error, 1)
		go func() {
			<-startMeasure
			profDone <- captureProfiles(ctx, p.pprof, o.profileDir, sc.name, p.name, o.duration)
		}()
	}
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	after, err := readRedisStats(ctx, s.rdb)
	if err != nil {
		return nil, err
	}
	before := <-statsCh
	if profDone != nil {
		if err := <-profDone; err != nil {
			fmt.Fprintln(os.Stderr, "  profile:", err)
		}
	}
	r := &row{Scenario: sc.name, Server: p.name, Report: rep}
	if p.redis && rep.Requests > 0 {
		r.RedisCommands = float64(after.commands-before.commands-1) / float64(rep.Requests) // minus this INFO
		r.RedisRoundTrips = float64(after.reads-before.reads-1) / float64(rep.Requests)
	}
	return r, nil
}

type redisStats struct{ commands, reads int64 }

func readRedisStats(ctx context.Context, rdb *redis.Client) (redisStats, error) {
	info, err := rdb.Info(ctx, "stats").Result()
	if err != nil {
		return redisStats{}, err
	}
	var s redisStats
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "total_commands_processed":
			s.commands = n
		case "total_reads_processed":
			s.reads = n
		}
	}
	return s, nil
}

// captureProfiles fetches a CPU profile and an allocation profile covering the measured
// phase from a service's --pprof-addr.
func captureProfiles(ctx context.Context, addr, dir, scenario, server string, d time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	base := filepath.Join(dir, slug(scenario)+"."+slug(server))
	secs := max(1, int(d/time.Second)-1)
	errc := make(chan error, 2)
	for _, kind := range []string{"profile", "allocs"} {
		go func() {
			url := fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, secs)
			name := base + ".cpu.pprof"
			if kind == "allocs" {
				name = base + ".allocs.pprof"
			}
			errc <- fetch(ctx, url, name)
		}()
	}
	return errors.Join(<-errc, <-errc)
}

func fetch(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// waitFor polls f until it succeeds, for 15 s at most, or until p's process ends.
func waitFor(ctx context.Context, p *proc, f func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("the process exited (%v): %w", p.cmd.ProcessState, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return err
}

func stopProc(p *proc) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| scenario | server | requests/s | × ceiling | p50 ms | p99 ms | p99.9 ms | generator queueing p99 ms | OK | OVER_LIMIT | errors | service CPU µs/req | Redis CPU µs/req | Redis cmds/req | Redis round trips/req | client CPU µs/req |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	last := ""
	for _, r := range rows {
		rep := r.Report
		name := r.Scenario
		if name == last {
			name = ""
		}
		last = r.Scenario
		ratio := "–"
		if r.Server != srvCeiling && r.Ceiling > 0 {
			ratio = fmt.Sprintf("%.2f", rep.RPS/r.Ceiling)
		} else if r.Server == srvCeiling {
			ratio = "1.00"
		}
		rps, queue := fmt.Sprintf("%.0f", rep.RPS), "–"
		if rep.Mode == "open" {
			// The open loop's latency counts from the intended send time, so the
			// generator's own lag (timer wake-ups, busy senders) is in it: shown apart.
			rps, queue = fmt.Sprintf("%.0f (target %.0f)", rep.RPS, rep.TargetRate), fmt.Sprintf("%.3f", rep.Queue.P99)
			if rep.Unsent > 0 {
				rps += fmt.Sprintf(", %d unsent", rep.Unsent)
			}
		}
		var errs int64
		for _, n := range rep.Errors {
			errs += n
		}
		cpu := func(name string) string {
			c, ok := rep.Processes[name]
			if !ok || c.Unsupported {
				return "–"
			}
			return fmt.Sprintf("%.1f", c.PerRequestUs)
		}
		redisCol := func(v float64) string {
			if r.Report.Processes["redis"].PerRequestUs == 0 && v == 0 {
				return "–"
			}
			return fmt.Sprintf("%.3f", v)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.3f | %.3f | %.3f | %s | %d | %d | %d | %s | %s | %s | %s | %.1f |\n",
			name, r.Server, rps, ratio, rep.Latency.P50, rep.Latency.P99, rep.Latency.P999, queue,
			rep.OK, rep.OverLimit, errs, cpu("server"), cpu("redis"), redisCol(r.RedisCommands), redisCol(r.RedisRoundTrips),
			rep.ClientCPU.PerRequestUs)
	}
}
