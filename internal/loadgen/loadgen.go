// Package loadgen drives load against any Envoy RateLimitService (ShouldRateLimit)
// endpoint and reports what it saw: requests per second, OK and OVER_LIMIT counts,
// errors by gRPC code (in all and per target), latency percentiles from an HDR histogram, and the CPU the
// generator itself used (so that, on a shared machine, its share can be told apart).
//
// Two ways to load a server:
//
//   - Closed loop (Workers > 0, Rate = 0): N workers each keep one request in flight and
//     send the next as soon as the answer arrives. It finds the throughput ceiling;
//     latency then includes queueing inside the server.
//   - Open loop (Rate > 0): requests are due at a fixed rate whatever the server does.
//     Latency is measured from each request's intended send time, so a stalled server
//     is charged for every request that waited behind it (no coordinated omission); the
//     wait between the intended and the actual send (generator-side queueing) is
//     reported separately, and so is the service time from the actual send.
//
// Requests are built from descriptor templates whose values may hold {key}, a number
// drawn uniformly from [0, Keys) per descriptor, and {d}, the descriptor's position.
package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// Config describes one load run.
type Config struct {
	// Targets are host:port addresses of RateLimitService servers. Connections are
	// spread over them round robin, and requests over the connections round robin.
	Targets []string
	// Conns is the number of gRPC connections in total (default: one per target); a
	// multiple of the targets, so that each target gets the same share.
	Conns int
	// Workers is the closed-loop concurrency: requests in flight at any time (at least
	// one per connection).
	Workers int
	// Rate > 0 selects the open loop: requests per second, due at fixed intervals.
	Rate float64
	// MaxInFlight bounds the open loop's concurrent requests (default 1024); a request
	// due while all are in flight waits, and that wait shows as queueing.
	MaxInFlight int
	// Warmup is run first and not measured; Duration is the measured phase
	// (default 10 s without Requests). Requests > 0 ends the measured phase once that
	// many requests have been answered (or failed), or at Duration when that is set
	// and comes first.
	Warmup   time.Duration
	Duration time.Duration
	Requests int64
	// Timeout is each request's deadline (default 1 s); ConnectTimeout how long a
	// connection may take to become ready at the start (default 5 s).
	Timeout        time.Duration
	ConnectTimeout time.Duration
	// Domain and Descriptors describe the requests. PerRequest descriptors are sent per
	// request (default: len(Descriptors)), cycling through Descriptors from one request
	// to the next: with 2 templates and 1 per request, requests alternate between them.
	Domain      string
	Descriptors []Template
	PerRequest  int
	// Keys is the number of distinct {key} values (default 1).
	Keys int
	// Cost is the request's hits_addend; 0 leaves it unset (the server counts 1).
	Cost uint32
	// Seed makes key choices reproducible (0: a fixed default).
	Seed uint64
	// WatchPIDs are processes (e.g. the server, Redis) whose CPU use over the measured
	// phase is reported beside the generator's own (Linux only).
	WatchPIDs map[string]int
	// TLS, when set, secures every connection (plaintext without it); Authority, when
	// set, is the :authority sent instead of the target's host:port (a mesh's routing
	// name, say).
	TLS       *tls.Config
	Authority string

	// clock, when set, replaces the system clock for the open loop's schedule and its
	// timestamps, the phases and the wait for requests in flight at the end: for tests,
	// which step it. Request deadlines and the closed loop stay on the system clock.
	clock clock
}

// clock is the time a run is scheduled and measured by.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
}

// timer is a *time.Timer behind an interface (its channel from C); ResetAt rearms it
// for a moment rather than a duration, so that a stepped clock cannot move between the
// reading of the time and the rearming.
type timer interface {
	C() <-chan time.Time
	ResetAt(at time.Time)
	Stop() bool
}

type systemClock struct{}

func (systemClock) Now() time.Time                 { return time.Now() }
func (systemClock) NewTimer(d time.Duration) timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time  { return t.t.C }
func (t systemTimer) ResetAt(at time.Time) { t.t.Reset(time.Until(at)) }
func (t systemTimer) Stop() bool           { return t.t.Stop() }

// dialOptions are the connections' credentials and authority.
func dialOptions(cfg *Config) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
		if cfg.Authority != "" && cfg.TLS.ServerName != "" {
			creds = nameApart{creds, cfg.TLS.ServerName}
		}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if cfg.Authority != "" {
		opts = append(opts, grpc.WithAuthority(cfg.Authority))
	}
	return opts
}

// nameApart are TLS credentials that verify the server's certificate against name
// (and send it as SNI) whatever the :authority: gRPC would otherwise take the TLS
// server name as the authority, refuse a connection whose WithAuthority differs, and
// verify the authority's host instead. Config.Authority and the name verified are set
// apart on purpose (a mesh's routing name, and the name in the certificate).
type nameApart struct {
	credentials.TransportCredentials
	name string
}

func (c nameApart) ClientHandshake(ctx context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.TransportCredentials.ClientHandshake(ctx, c.name, conn)
}

func (c nameApart) Info() credentials.ProtocolInfo {
	info := c.TransportCredentials.Info()
	info.ServerName = "" //nolint:staticcheck // deprecated, but it is the field gRPC reads for the authority
	return info
}

func (c nameApart) Clone() credentials.TransportCredentials {
	return nameApart{c.TransportCredentials.Clone(), c.name}
}

// Latency histograms record microseconds from 1 µs to 1 minute with 3 significant
// digits (about 140 KB each); longer values are recorded as 1 minute.
const (
	histMin = 1
	histMax = int64(time.Minute / time.Microsecond)
)

// statShards bounds the number of histogram sets: senders share them under a lock.
const statShards = 16

// MaxInFlightLimit bounds Config.MaxInFlight.
const MaxInFlightLimit = 100_000

// errorPause is how long a closed-loop worker waits after a request fails other than by
// its deadline: a target that refuses connections fails requests in microseconds, and
// workers that retried at once would spin the generator's CPU (starving the servers
// that still answer, on a shared machine) and fill the report with failures.
const errorPause = 10 * time.Millisecond

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, 3) }

// record adds d to h; a duration above the histogram's minute is recorded as a minute,
// and record reports that it was.
func record(h *hdrhistogram.Histogram, d time.Duration) (clamped bool) {
	us := int64(d / time.Microsecond)
	_ = h.RecordValue(min(max(us, histMin), histMax))
	return us > histMax
}

// ConfigError is a mistake in a Config, which Run refuses before it connects: a
// caller that fills a Config from its own settings (a command's flags) can tell it
// from a failed run, and name the setting at fault (Describe).
type ConfigError struct {
	Field string // the Config field at fault, e.g. "Workers"
	Value string // its value, or "" when the mistake is that it is unset
	Want  string // what would do, in words that name no other field
}

func (e *ConfigError) Error() string { return "loadgen: " + e.Describe(e.Field) }

// Describe says what is wrong, calling the field name (a flag's, say): "name value:
// want ...".
func (e *ConfigError) Describe(name string) string {
	if e.Value != "" {
		name += " " + e.Value
	}
	return name + ": want " + e.Want
}

// Validate returns the first mistake in c, as a *ConfigError, or nil when Run can use
// it; fields left zero are fine where Run gives them a default.
func (c Config) Validate() error {
	switch {
	case len(c.Targets) == 0:
		return &ConfigError{Field: "Targets", Want: "host:port"}
	case math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) || c.Rate < 0:
		return &ConfigError{"Rate", fmt.Sprint(c.Rate), "requests per second (0: closed loop)"}
	case c.MaxInFlight > MaxInFlightLimit:
		return &ConfigError{"MaxInFlight", fmt.Sprint(c.MaxInFlight),
			fmt.Sprintf("at most %d (each is a goroutine with its own buffers)", MaxInFlightLimit)}
	case c.Domain == "":
		return &ConfigError{Field: "Domain", Want: "the rate-limit domain of the server's rules"}
	case len(c.Descriptors) == 0:
		return &ConfigError{Field: "Descriptors", Want: "at least one descriptor template"}
	}
	return c.checkShares()
}

// checkShares refuses connections that the targets, or the closed loop's workers,
// cannot share evenly.
func (c Config) checkShares() error {
	conns := c.Conns
	if conns <= 0 {
		conns = len(c.Targets) // the default: one per target
	}
	switch {
	case conns%len(c.Targets) != 0:
		return &ConfigError{"Conns", fmt.Sprint(conns),
			fmt.Sprintf("a multiple of the %d targets, so that each gets the same share", len(c.Targets))}
	case c.Rate == 0 && c.Workers < 1:
		return &ConfigError{"Workers", fmt.Sprint(c.Workers), "at least 1 (closed loop), or a rate (open loop)"}
	case c.Rate == 0 && c.Workers < conns:
		return &ConfigError{"Workers", fmt.Sprint(c.Workers), fmt.Sprintf("at least one per connection (%d), or connections sit idle", conns)}
	}
	return nil
}

// setDefaults fills in the fields left zero; c has been validated.
func (c *Config) setDefaults() {
	if c.Conns <= 0 {
		c.Conns = len(c.Targets)
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1024
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.PerRequest <= 0 {
		c.PerRequest = len(c.Descriptors)
	}
	if c.Keys <= 0 {
		c.Keys = 1
	}
	if c.Seed == 0 {
		c.Seed = 0x6c6f6164
	}
}

// Run connects, warms up, measures and reports. It returns early when ctx ends. A
// Config that cannot run is refused before connecting, with Validate's *ConfigError.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	conns, err := dialAll(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	r := &runner{cfg: &cfg, conns: conns, clock: cfg.clock}
	if r.clock == nil {
		r.clock = systemClock{}
	}
	n := statShards
	if cfg.Rate == 0 {
		n = min(n, cfg.Workers)
	}
	for range n {
		r.shards = append(r.shards, newStats(cfg.Rate > 0, len(cfg.Targets)))
	}
	return r.run(ctx)
}

func dialAll(ctx context.Context, cfg *Config) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, cfg.Conns)
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	for i := 0; i < cfg.Conns; i++ {
		target := cfg.Targets[i%len(cfg.Targets)]
		c, err := grpc.NewClient(target, dialOptions(cfg)...)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("loadgen: %s: %w", target, err)
		}
		conns = append(conns, c)
		if err := waitReady(ctx, c, cfg.ConnectTimeout); err != nil {
			err = fmt.Errorf("loadgen: %s: %w%s", target, err, lastError(ctx, c))
			closeAll()
			return nil, err
		}
	}
	return conns, nil
}

// waitReady waits for c to be ready, for at most timeout; a run stopped meanwhile
// (parent ends: Ctrl-C) is reported as such, not as a target slow to connect.
func waitReady(parent context.Context, c *grpc.ClientConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	c.Connect()
	for {
		s := c.GetState()
		if s == connectivity.Ready {
			return nil
		}
		if !c.WaitForStateChange(ctx, s) {
			if err := parent.Err(); err != nil {
				return fmt.Errorf("stopped while connecting (state %v): %w", s, err)
			}
			return fmt.Errorf("not ready within %v (state %v)", timeout, s)
		}
	}
}

// probeMethod is a method no server has: a call to it learns why a connection fails
// without charging any limit should the connection come up meanwhile (the server then
// answers Unimplemented).
const probeMethod = "/ratelimit_ext.loadgen.v1.Probe/WhyNotReady"

// lastError is why a connection is not ready, as a call on it fails: gRPC gives the
// last connection error (refused, a certificate not trusted, a name not matched) to
// calls, not to the connection's state. "" when the call does not say.
func lastError(ctx context.Context, c *grpc.ClientConn) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var resp rawResponse
	err := c.Invoke(ctx, probeMethod, &rawRequest{}, &resp, grpc.ForceCodec(rawCodec{}))
	if status.Code(err) != codes.Unavailable {
		return ""
	}
	return ": " + status.Convert(err).Message()
}

// phases of a run.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

type runner struct {
	cfg   *Config
	conns []*grpc.ClientConn
	clock clock
	phase atomic.Int32
	// measured counts requests started in the measured phase (for Config.Requests, and
	// in the open loop the ones sent, answered or not, for unsent); completed the ones
	// of them answered or failed (Config.Requests ends the phase on the last).
	measured, completed atomic.Int64
	templateRR          atomic.Uint64
	doneOnce            sync.Once
	done                chan struct{} // closed when the measured phase ends
	endAt               atomic.Int64  // unix ns when the measured phase ended
	connRR              atomic.Uint64
	shards              []*stats
	// measureAt is the unix ns at which the measured phase began (0 before).
	measureAt atomic.Int64
	// The open loop's schedule: request k is due at openStart + k × interval; next
	// is the first request no sender has taken yet, dropped the requests taken and
	// never sent because the run was over (for unsent).
	openStart time.Time
	interval  float64 // ns
	next      atomic.Int64
	droppedMu sync.Mutex
	dropped   []int64
}

// stats is what a group of senders records, under mu; added up at the end (add).
type stats struct {
	mu                      sync.Mutex
	latency, queue, service *hdrhistogram.Histogram
	answered                *hdrhistogram.Histogram // latency of the requests answered
	ok, over, unknown       int64
	noLimit                 int64 // answers whose statuses named no limit
	clamped                 int64 // latencies above the histograms' minute
	errs                    errorCounts
	targets                 []targetStats // by Config.Targets index
}

// targetStats is what a group of senders saw of one target: counts and the sum of
// the latencies (for their mean), without a histogram per target (about 140 KB each,
// per shard).
type targetStats struct {
	requests, answered int64
	latency            time.Duration
	errs               errorCounts
}

// errorCounts counts failed requests by gRPC code.
type errorCounts struct {
	byCode [codes.Unauthenticated + 1]int64
	other  int64 // codes beyond the known ones
}

func (e *errorCounts) count(err error) {
	if c := status.Code(err); int(c) < len(e.byCode) {
		e.byCode[c]++
	} else {
		e.other++
	}
}

func newStats(open bool, targets int) *stats {
	s := &stats{latency: newHist(), answered: newHist(), targets: make([]targetStats, targets)}
	if open {
		s.queue, s.service = newHist(), newHist()
	}
	return s
}

// sender owns the buffers of one goroutine that sends requests.
type sender struct {
	r    *runner
	enc  encoder
	rng  *rand.Rand
	keys []int
	buf  []byte
	req  rawRequest
	resp rawResponse
	st   *stats
	// target is the Config.Targets index of the last request's connection.
	target int
}

func (r *runner) newSender(id int) *sender {
	c := r.cfg
	return &sender{
		st: r.shards[id%len(r.shards)],
		r:  r,
		enc: encoder{
			domain: c.Domain, templates: c.Descriptors, perReq: c.PerRequest, cost: c.Cost,
		},
		rng:  rand.New(rand.NewPCG(c.Seed, uint64(id)+1)),
		keys: make([]int, c.PerRequest),
	}
}

// call sends one request on connection conn (an index into the run's) and returns
// its service time and outcome.
func (s *sender) call(ctx context.Context, conn int) (time.Duration, error) {
	s.target = conn % len(s.r.cfg.Targets) // connection i is to target i mod the targets (dialAll)
	for i := range s.keys {
		s.keys[i] = s.rng.IntN(s.r.cfg.Keys)
	}
	// Requests take the templates in turn across senders: one counter for the run.
	n := uint64(len(s.keys))
	first := int((s.r.templateRR.Add(n) - n) % uint64(len(s.enc.templates)))
	s.buf = s.enc.encode(s.buf[:0], s.keys, first)
	s.req.b = s.buf
	ctx, cancel := context.WithTimeout(ctx, s.r.cfg.Timeout)
	start := time.Now()
	err := s.r.conns[conn].Invoke(ctx, Method, &s.req, &s.resp, grpc.ForceCodec(rawCodec{}))
	d := time.Since(start)
	cancel()
	if err != nil {
		// gRPC may still hold the request's bytes (a deadline with the write queued):
		// the next request encodes into a buffer of its own.
		s.buf = nil
	}
	return d, err
}

// record counts one measured answer. latency is the closed loop's service time or the
// open loop's time from the intended send; queue and service only exist in the open
// loop. A request cut short because the run ended or was canceled is not counted.
func (s *sender) record(ctx context.Context, err error, latency, queue, service time.Duration) {
	if err != nil && status.Code(err) == codes.Canceled && (s.r.phase.Load() == phaseDone || ctx.Err() != nil) {
		return
	}
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if record(st.latency, latency) {
		st.clamped++
	}
	if st.queue != nil {
		record(st.queue, queue)
		record(st.service, service)
	}
	t := &st.targets[s.target]
	t.requests++
	t.latency += latency
	if err != nil {
		st.errs.count(err)
		t.errs.count(err)
		return
	}
	t.answered++
	record(st.answered, latency)
	if !s.resp.limited {
		st.noLimit++
	}
	switch s.resp.code {
	case codeOK:
		st.ok++
	case codeOverLimit:
		st.over++
	default:
		st.unknown++
	}
}

// conn is the index of the next connection, round robin.
func (r *runner) conn() int {
	return int(r.connRR.Add(1) % uint64(len(r.conns)))
}

// startMeasuring counts one measured request start; false once Config.Requests have
// been started.
func (r *runner) startMeasuring() bool {
	n := r.measured.Add(1)
	return r.cfg.Requests <= 0 || n <= r.cfg.Requests
}

// complete counts one measured request answered or failed; the last of
// Config.Requests ends the measured phase, so that its time covers every answer.
func (r *runner) complete() {
	r.completed.Add(1)
	if r.countReached() {
		r.finish()
	}
}

// allStarted reports whether Config.Requests were all sent (in the measured phase).
func (r *runner) allStarted() bool {
	return r.cfg.Requests > 0 && r.measured.Load() >= r.cfg.Requests
}

// countReached reports whether Config.Requests were all answered or failed.
func (r *runner) countReached() bool {
	return r.cfg.Requests > 0 && r.completed.Load() >= r.cfg.Requests
}

func (r *runner) finish() {
	r.doneOnce.Do(func() {
		r.endAt.Store(r.clock.Now().UnixNano())
		r.phase.Store(phaseDone)
		close(r.done)
	})
}

// run sends the load through the run's phases (warm-up, measured, drain) and reports
// the measured phase.
func (r *runner) run(parent context.Context) (*Report, error) {
	r.done = make(chan struct{})
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	// start is written by beginMeasure, here or in timePhases, and read once r.done is
	// closed: by then the measured phase has begun, or never will (start.at is zero:
	// the run was canceled in its warm-up).
	var start phaseEdge
	// Without a warm-up the measured phase begins before any request is sent, so that
	// Requests counts every request the run sends.
	if r.cfg.Warmup <= 0 {
		r.beginMeasure(&start)
	}
	go r.timePhases(ctx, &start)

	var wg sync.WaitGroup
	r.startLoad(ctx, &wg)
	<-r.done
	// Interrupted: the caller ended the run (checked now, not after the drain below,
	// when a late Ctrl-C would mark a finished run).
	interrupted := parent.Err() != nil
	end := r.endMeasure()
	r.drain(&wg, cancel)
	if start.at.IsZero() {
		return nil, errors.New("loadgen: canceled before the measured phase")
	}
	rep := r.report(end.at.Sub(start.at), end.self.sub(start.self), procDelta(start.procs, end.procs))
	rep.Unsent = r.unsent(start.at, end.at)
	if rep.Interrupted = interrupted; interrupted {
		return rep, parent.Err()
	}
	return rep, nil
}

// phaseEdge is one end of the measured phase: when it was, and the CPU time used by
// then by the generator (self) and by the watched processes (procs). The report's CPU
// is the difference between the two ends.
type phaseEdge struct {
	at    time.Time
	self  cpuSample
	procs map[string]procSample
}

// beginMeasure samples the start of the measured phase into start, then begins it.
// The watched processes are sampled first (and last in endMeasure), so that reading
// /proc falls outside both the phase's time and the generator's CPU.
func (r *runner) beginMeasure(start *phaseEdge) {
	start.procs = sampleProcs(r.cfg.WatchPIDs)
	start.self = selfCPU()
	start.at = r.clock.Now()
	r.measureAt.Store(start.at.UnixNano())
	r.phase.Store(phaseMeasure)
}

// endMeasure samples the end of the measured phase, once finish has ended it: the
// time finish read, then the CPU counters in the reverse order of beginMeasure's.
func (r *runner) endMeasure() phaseEdge {
	end := phaseEdge{at: time.Unix(0, r.endAt.Load())}
	end.self = selfCPU()
	end.procs = sampleProcs(r.cfg.WatchPIDs)
	return end
}

// timePhases keeps the run's time: the warm-up (after which it begins the measured
// phase into start), then the measured phase, ended by Duration, by ctx, or by
// Requests (r.done already closed by complete).
func (r *runner) timePhases(ctx context.Context, start *phaseEdge) {
	if r.cfg.Warmup > 0 {
		w := r.clock.NewTimer(r.cfg.Warmup)
		select {
		case <-w.C():
		case <-ctx.Done():
			w.Stop()
			r.finish()
			return
		}
		r.beginMeasure(start)
	}
	var timeout <-chan time.Time // nil without Duration: never ready
	if r.cfg.Duration > 0 {
		t := r.clock.NewTimer(r.cfg.Duration)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case <-timeout:
	case <-ctx.Done():
	case <-r.done:
	}
	r.finish()
}

// startLoad starts the goroutines that send requests, each added to wg: the open
// loop's senders at Rate, or Workers closed-loop workers.
func (r *runner) startLoad(ctx context.Context, wg *sync.WaitGroup) {
	if r.cfg.Rate > 0 {
		r.openLoop(ctx, wg)
		return
	}
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.closedWorker(ctx, i)
		}()
	}
}

// drain waits for the requests still in flight when the measured phase ended: they
// get their Timeout and a second more to finish (so that late answers are counted),
// then cancel cancels them. It returns once every sender in wg has returned.
func (r *runner) drain(wg *sync.WaitGroup, cancel context.CancelFunc) {
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	t := r.clock.NewTimer(r.cfg.Timeout + time.Second)
	select {
	case <-waited:
		t.Stop()
	case <-t.C():
		cancel()
		<-waited
	}
}

// closedWorker keeps one request in flight until the run ends, pausing after a
// failure (errorPause).
func (r *runner) closedWorker(ctx context.Context, id int) {
	s := r.newSender(id)
	conn := id % len(r.conns)
	for {
		var err error
		switch r.phase.Load() {
		case phaseDone:
			return
		case phaseWarmup:
			_, err = s.call(ctx, conn)
		default:
			if !r.startMeasuring() {
				return
			}
			var d time.Duration
			d, err = s.call(ctx, conn)
			s.record(ctx, err, d, 0, 0)
			r.complete()
		}
		if err != nil && status.Code(err) != codes.DeadlineExceeded {
			select {
			case <-time.After(errorPause):
			case <-r.done:
			}
		}
	}
}

// openLoop schedules requests at the configured rate: request k is due at
// start + k/rate. MaxInFlight senders take the schedule's requests in order from one
// counter, each sleeping until the request it took is due: an idle sender always takes
// the next one, so a request waits (queueing, and latency from its due time) only
// while every sender is busy. A request is measured when it is due in the measured
// phase, whenever it is sent; one due there and never sent (the target rate was not
// sustained) is counted in the report as unsent.
func (r *runner) openLoop(ctx context.Context, wg *sync.WaitGroup) {
	r.openStart, r.interval = r.clock.Now(), float64(time.Second)/r.cfg.Rate
	for j := 0; j < r.cfg.MaxInFlight; j++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.newSender(j)
			timer := r.clock.NewTimer(time.Hour)
			defer timer.Stop()
			for {
				k := r.next.Add(1) - 1
				due := r.due(k)
				if r.clock.Now().Before(due) {
					timer.ResetAt(due)
					select {
					case <-timer.C():
					case <-r.done:
						r.drop(k)
						return
					}
				}
				if r.phase.Load() == phaseDone {
					r.drop(k)
					return
				}
				// Measured iff due once the measured phase had begun: a sender wakes
				// at or after due, so a phase beginning later found due before it.
				at := r.measureAt.Load()
				measured := at != 0 && due.UnixNano() >= at
				if measured && !r.startMeasuring() {
					return
				}
				sent := r.clock.Now()
				_, err := s.call(ctx, r.conn())
				answered := r.clock.Now()
				if measured {
					s.record(ctx, err, answered.Sub(due), sent.Sub(due), answered.Sub(sent))
					r.complete()
				}
			}
		}()
	}
}

// due is when the open loop's request k is due. An offset beyond maxOffset (a rate
// far below one request a century) is held there: converted to a Duration it would
// wrap to the far past, and every request would be due at once.
func (r *runner) due(k int64) time.Time {
	if k == 0 {
		return r.openStart // and not 0 × an infinite interval (NaN)
	}
	return r.openStart.Add(time.Duration(min(float64(k)*r.interval, maxOffset)))
}

// maxOffset is the latest an open-loop request is due, from the start: about 146
// years, within a time.Duration.
const maxOffset = float64(1 << 62)

// unsent is how many of the open loop's requests due in the measured phase were never
// sent, leaving out those due in its first and last unsentGrace (a request sent and cut
// short by the end of an interrupted run was sent). Senders take the schedule's
// requests in order, so a request was never sent if no sender took it before the run
// ended, or if the one that took it found the run over (dropped).
func (r *runner) unsent(measureStart, end time.Time) int64 {
	if r.cfg.Rate == 0 || r.allStarted() {
		return 0 // the count asked for was sent: senders stop taking requests then
	}
	dueBy := func(t time.Time) int64 { // requests due before t
		return int64(math.Ceil(float64(t.Sub(r.openStart)) / r.interval))
	}
	lo, hi := dueBy(measureStart.Add(unsentGrace)), dueBy(end.Add(-unsentGrace))
	if hi <= lo {
		return 0
	}
	never := max(0, hi-max(lo, r.next.Load()))
	for _, k := range r.dropped {
		if lo <= k && k < hi {
			never++
		}
	}
	return never
}

// drop records that the sender holding request k found the run over and never
// sent it (each sender drops at most one, when it returns).
func (r *runner) drop(k int64) {
	r.droppedMu.Lock()
	r.dropped = append(r.dropped, k)
	r.droppedMu.Unlock()
}

// unsentGrace leaves the requests due in the measured phase's first and last moments
// out of the unsent count: a sender whose timer wakes a millisecond late finds the
// phase over (or, at the start, not yet begun), which says nothing of whether the
// rate was sustained.
const unsentGrace = 10 * time.Millisecond
