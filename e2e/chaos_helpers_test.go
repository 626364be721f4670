package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	grpccodes "google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Helpers for the chaos tests (chaos_test.go): a redis-server that can be stopped and
// started again on the same port, a paced concurrent gRPC load that records every call,
// and probes of the replicas' logs and metrics.

// restartableRedis is a private redis-server on a fixed loopback port, without
// persistence: every start is a new, empty Redis (no keys, no script cache).
type restartableRedis struct {
	proc   *Process
	port   int
	starts int // how many times it was started: the Redis lifetimes so far
}

// startRestartableRedis starts redis-server (REDIS_SERVER, else redis-server on PATH) on
// a free loopback port, stopped at the end of the test. Like startRedis, it skips loudly
// without redis-server, or fails when CI=true.
func startRestartableRedis(t *testing.T) *restartableRedis {
	t.Helper()
	bin, err := FindRedis()
	var missing *ToolMissingError
	switch {
	case errors.As(err, &missing) && os.Getenv("CI") != "true":
		msg := loud("SKIPPED " + t.Name() + ": " + err.Error() + "\nNothing was tested. (With CI=true this is a failure.)")
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	case err != nil:
		t.Fatalf("%v (CI=true: a missing redis-server is a failure)", err)
	}
	dir := t.TempDir()
	var last error
	for attempt := range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		r := &restartableRedis{port: port, proc: &Process{
			Name: "redis-" + strconv.Itoa(attempt), Path: bin,
			Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
				"--appendonly", "no", "--dir", dir, "--daemonize", "no", "--logfile", ""},
			Env: cleanEnv(), LogPath: filepath.Join(dir, "redis.log")}}
		if last = r.start(); last == nil {
			t.Cleanup(func() { stopLogged(t, r.proc) })
			return r
		}
		_ = r.proc.Stop(5 * time.Second) // most likely the port was taken meanwhile: try another
	}
	t.Fatalf("redis-server did not start: %v", last)
	return nil
}

func (r *restartableRedis) url() string  { return "redis://" + r.addr() + "/0" }
func (r *restartableRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// start starts the server on its port and waits until it answers PING. After a stop the
// port may briefly be unavailable, so a failed start is retried for a few seconds.
func (r *restartableRedis) start() error {
	var last error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := r.proc.Start(); err != nil {
			return err
		}
		if last = waitUntil(r.proc, 10*time.Second, func() error { return redisPing(r.port) }); last == nil {
			r.starts++
			return nil
		}
		_ = r.proc.Stop(5 * time.Second)
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis-server on port %d: %w", r.port, last)
}

// stop ends the server with SIGTERM (it persists nothing, so its data is gone).
func (r *restartableRedis) stop() error { return r.proc.Stop(5 * time.Second) }

// info returns the fields of one INFO section (e.g. "errorstats", "commandstats").
func (r *restartableRedis) info(section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: r.addr(), DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for line := range strings.SplitSeq(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out, nil
}

// statField reads one integer field of an INFO stat value such as
// "calls=12,usec=3,failed_calls=0" (0 when absent).
func statField(v, field string) int64 {
	for kv := range strings.SplitSeq(v, ",") {
		if k, val, ok := strings.Cut(kv, "="); ok && k == field {
			n, _ := strconv.ParseInt(val, 10, 64)
			return n
		}
	}
	return 0
}

// dialReplicas opens one gRPC connection per replica (closed at cleanup) and sends each
// a request no rule matches (it touches no state), so the connections are up before the
// load starts.
func dialReplicas(t *testing.T, reps []*replica, domain string) []rlsv3.RateLimitServiceClient {
	t.Helper()
	out := make([]rlsv3.RateLimitServiceClient, len(reps))
	for i, r := range reps {
		cc, err := grpc.NewClient(r.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		out[i] = rlsv3.NewRateLimitServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := out[i].ShouldRateLimit(ctx, request(domain, "warm-up", "warm-up"))
		cancel()
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("replica %d warm-up: %v %v", i+1, resp, err)
		}
	}
	return out
}

// call is one recorded ShouldRateLimit call of the load.
type call struct {
	sent, recv time.Time
	replica    int    // index into the replicas
	value      string // the descriptor's value (entry key "algo")
	code       grpccodes.Code
	err        error // the RPC's error; nil when it answered
	overall    rlsv3.RateLimitResponse_Code
	limitName  string
	perUnit    uint32 // current_limit.requests_per_unit
	remaining  uint32
	malformed  string // why an answer did not have the expected shape
}

func (c *call) ok() bool {
	return c.err == nil && c.malformed == "" && c.overall == rlsv3.RateLimitResponse_OK
}
func (c *call) denied() bool {
	return c.err == nil && c.malformed == "" && c.overall == rlsv3.RateLimitResponse_OVER_LIMIT
}

// load is a steady concurrent gRPC load: each client sends one request, waits pace, and
// again. Request n goes to descriptor values[n mod len(values)] and, round robin, to the
// live replicas, so every descriptor is spread over every replica.
type load struct {
	conns  []rlsv3.RateLimitServiceClient
	domain string
	values []string
	pace   time.Duration
	live   atomic.Pointer[[]int]
	next   atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
	calls  [][]call
}

func startLoad(conns []rlsv3.RateLimitServiceClient, clients int, pace time.Duration, domain string, values ...string) *load {
	l := &load{conns: conns, domain: domain, values: values, pace: pace, stop: make(chan struct{}),
		calls: make([][]call, clients)}
	all := make([]int, len(conns))
	for i := range all {
		all[i] = i
	}
	l.live.Store(&all)
	for c := range clients {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				n := l.next.Add(1) - 1
				live := *l.live.Load()
				v := l.values[n%int64(len(l.values))]
				rep := live[(n/int64(len(l.values)))%int64(len(live))]
				l.calls[c] = append(l.calls[c], l.do(rep, v))
				select {
				case <-l.stop:
					return
				case <-time.After(l.pace):
				}
			}
		})
	}
	return l
}

// setLive makes the clients use only these replicas from now on.
func (l *load) setLive(reps ...int) { l.live.Store(&reps) }

func (l *load) liveReplicas() []int { return *l.live.Load() }

func (l *load) do(rep int, value string) call {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := call{replica: rep, value: value, sent: time.Now()}
	resp, err := l.conns[rep].ShouldRateLimit(ctx, request(l.domain, "algo", value))
	c.recv = time.Now()
	if err != nil {
		c.err, c.code = err, status.Code(err)
		return c
	}
	c.overall = resp.GetOverallCode()
	switch st := resp.GetStatuses(); {
	case len(st) != 1:
		c.malformed = fmt.Sprintf("%d statuses, want 1: %v", len(st), resp)
	case st[0].GetCode() != c.overall:
		c.malformed = fmt.Sprintf("overall code %v but descriptor code %v", c.overall, st[0].GetCode())
	case c.overall != rlsv3.RateLimitResponse_OK && c.overall != rlsv3.RateLimitResponse_OVER_LIMIT:
		c.malformed = fmt.Sprintf("overall code %v", c.overall)
	default:
		c.limitName = st[0].GetCurrentLimit().GetName()
		c.perUnit = st[0].GetCurrentLimit().GetRequestsPerUnit()
		c.remaining = st[0].GetLimitRemaining()
	}
	return c
}

// finish stops the clients and returns every call, in the order they were sent.
func (l *load) finish() []call {
	close(l.stop)
	l.wg.Wait()
	var all []call
	for _, cs := range l.calls {
		all = append(all, cs...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].sent.Before(all[j].sent) })
	return all
}

// oneCall sends one request of cost 1 to a replica.
func oneCall(conn rlsv3.RateLimitServiceClient, domain, key, value string) (*rlsv3.RateLimitResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return conn.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, HitsAddend: 1,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}}}})
}

// recovery describes, for one replica, how a store outage looked to its clients.
type recovery struct {
	firstOK    time.Time // reception of the first success sent after the old Redis exited
	failed     int       // failed calls
	outside    []call    // failed calls outside [stop signalled, firstOK]: must not exist
	notUnavail []call    // failed calls with another code than UNAVAILABLE
}

// outageFailures checks, for one replica's calls, that calls failed only while Redis was
// down: every failure was received after the stop was signalled (stopAt) and sent before
// the replica's first success after the restart (a success sent after the old Redis had
// exited, goneAt, was served by the new one). So no call fails after the first
// reconnect. Calls in skip (e.g. to a replica after it was killed) are not considered.
func outageFailures(calls []call, replica int, stopAt, goneAt time.Time, skip func(*call) bool) recovery {
	var r recovery
	for i := range calls {
		c := &calls[i]
		if c.replica == replica && c.ok() && c.sent.After(goneAt) && (r.firstOK.IsZero() || c.recv.Before(r.firstOK)) {
			r.firstOK = c.recv
		}
	}
	for i := range calls {
		c := &calls[i]
		if c.replica != replica || c.err == nil || (skip != nil && skip(c)) {
			continue
		}
		r.failed++
		if c.code != grpccodes.Unavailable {
			r.notUnavail = append(r.notUnavail, *c)
		}
		if c.recv.Before(stopAt) || r.firstOK.IsZero() || c.sent.After(r.firstOK) {
			r.outside = append(r.outside, *c)
		}
	}
	return r
}

// metricsOn scrapes the /metrics a service serves on an HTTP port of this host into
// "name{labels}" → value.
func metricsOn(port int) (map[string]float64, error) {
	resp, err := readyClient.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

var configInfoRe = regexp.MustCompile(`^ratelimit_ext_config_info\{hash="([^"]*)"\}$`)

// configState is what a replica's metrics say about rule loading.
type configState struct {
	loadsOK, loadsFailed float64
	lastOK               float64 // ratelimit_ext_config_last_load_success
	hash                 string  // the served rule set's hash (config_info)
}

func readConfigState(r *replica) (configState, error) {
	return configStateOn(r.httpPort)
}

func configStateOn(port int) (configState, error) {
	m, err := metricsOn(port)
	if err != nil {
		return configState{}, err
	}
	s := configState{
		loadsOK:     m[`ratelimit_ext_config_loads_total{result="success"}`],
		loadsFailed: m[`ratelimit_ext_config_loads_total{result="failure"}`],
		lastOK:      m["ratelimit_ext_config_last_load_success"],
	}
	for k, v := range m {
		if sm := configInfoRe.FindStringSubmatch(k); sm != nil && v == 1 {
			s.hash = sm[1]
		}
	}
	return s, nil
}

// crashLines returns the lines of a process's log that show a panic or a fatal Go
// runtime error (recovered handler panics are logged with "panic" too).
func crashLines(p *Process) ([]string, error) {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "panic") || strings.Contains(l, "fatal error") || strings.HasPrefix(l, "goroutine ") {
			out = append(out, line)
		}
	}
	return out, nil
}

// countLines counts the log lines of a process that contain s.
func countLines(p *Process, s string) int {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return -1
	}
	return strings.Count(string(data), s)
}

// ms is a duration since base in whole milliseconds, for logs.
func msSince(base, t time.Time) int64 { return t.Sub(base).Milliseconds() }
