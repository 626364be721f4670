package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
)

// Report is the outcome of one run. Times are milliseconds; CPU is in seconds and in
// microseconds per measured request.
type Report struct {
	Mode        string   `json:"mode"` // "closed" or "open"
	Targets     []string `json:"targets"`
	Conns       int      `json:"conns"`
	Workers     int      `json:"workers,omitempty"`
	TargetRate  float64  `json:"targetRate,omitempty"`
	MaxInFlight int      `json:"maxInFlight,omitempty"` // open loop
	Warmup      float64  `json:"warmupSeconds"`
	Duration    float64  `json:"durationSeconds"` // asked for; 0: none (the run ends at Limit)
	Limit       int64    `json:"requestLimit"`    // asked for; 0: none (the run ends at Duration)
	TimeoutMs   float64  `json:"timeoutMs"`
	Seed        uint64   `json:"seed"`
	Domain      string   `json:"domain"`
	Descriptors []string `json:"descriptors"`
	PerRequest  int      `json:"descriptorsPerRequest"`
	Keys        int      `json:"keys"` // 0: no template holds {key}
	Cost        uint32   `json:"cost,omitempty"`

	Seconds float64 `json:"seconds"` // length of the measured phase
	// Interrupted: the run was stopped (Ctrl-C, SIGTERM) before its end.
	Interrupted bool    `json:"interrupted"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"requestsPerSecond"` // errors included
	Answered    float64 `json:"answeredPerSecond"` // OK, OVER_LIMIT and UNKNOWN answers only
	// Open loop: requests due in the measured phase that were never sent: the target
	// rate was not sustained. Latency percentiles cover only the requests sent.
	Unsent    int64 `json:"unsent"`
	OK        int64 `json:"ok"`
	OverLimit int64 `json:"overLimit"`
	Unknown   int64 `json:"unknown"` // answers with overall_code UNKNOWN
	// NoLimit counts answers whose descriptor statuses named no limit: servers answer
	// OK without one when no rule matches (a wrong domain or descriptor).
	NoLimit int64            `json:"answersNamingNoLimit"`
	Errors  map[string]int64 `json:"errors"` // by gRPC code name
	// ByTarget has a row per Config.Targets entry, in its order: a replica that fails
	// or answers slowly shows apart from the others.
	ByTarget []TargetReport `json:"byTarget"`

	// Latency: closed loop, from send to answer; open loop, from the intended send time.
	// Errors are included; AnsweredLatency leaves them out (set when there were errors,
	// which are often much faster or slower than answers). Latencies above a minute are
	// recorded as a minute and counted in Clamped.
	Latency         Percentiles  `json:"latencyMs"`
	AnsweredLatency *Percentiles `json:"answeredLatencyMs,omitempty"`
	Clamped         int64        `json:"latenciesAboveAMinute"`
	// Open loop only: intended → actual send (generator-side queueing), and actual
	// send → answer (service time).
	Queue   *Percentiles `json:"queueMs,omitempty"`
	Service *Percentiles `json:"serviceMs,omitempty"`

	ClientCPU CPU            `json:"clientCpu"`
	Processes map[string]CPU `json:"processCpu,omitempty"` // Config.WatchPIDs
}

// TargetReport is what one target was sent and how it did.
type TargetReport struct {
	Target      string           `json:"target"`
	Requests    int64            `json:"requests"` // errors included
	Answered    int64            `json:"answered"`
	Errors      map[string]int64 `json:"errors"`        // by gRPC code name
	MeanLatency float64          `json:"meanLatencyMs"` // errors included, as Latency
}

// Percentiles of one histogram, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

// CPU is the processor time one process used during the measured phase.
type CPU struct {
	User          float64 `json:"userSeconds"`
	System        float64 `json:"systemSeconds"`
	Cores         float64 `json:"cores"`                 // (user+system) / wall time
	PerRequestUs  float64 `json:"perRequestMicros"`      // (user+system) / measured requests
	Unsupported   bool    `json:"unsupported,omitempty"` // no CPU accounting on this OS
	MissingReason string  `json:"missing,omitempty"`
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)),
		Max: ms(h.Max()), Mean: h.Mean() / 1000,
	}
}

// report is the report of the measured phase, elapsed long, from every shard's stats
// (read without their locks: the senders have returned) and the CPU used over it by
// the generator (self) and the watched processes (procs).
func (r *runner) report(elapsed time.Duration, self cpuSample, procs map[string]procSample) *Report {
	rep := describeRun(r.cfg)
	rep.Seconds = elapsed.Seconds()
	all := newStats(r.cfg.Rate > 0, len(r.cfg.Targets))
	for _, s := range r.shards {
		all.add(s)
	}
	rep.count(all)
	rep.countTargets(r.cfg.Targets, all.targets)
	rep.Requests = all.latency.TotalCount()
	if rep.Seconds > 0 {
		rep.RPS = float64(rep.Requests) / rep.Seconds
		rep.Answered = float64(rep.OK+rep.OverLimit+rep.Unknown) / rep.Seconds
	}
	rep.Latency = percentiles(all.latency)
	if len(rep.Errors) > 0 {
		a := percentiles(all.answered)
		rep.AnsweredLatency = &a
	}
	if all.queue != nil {
		q, sv := percentiles(all.queue), percentiles(all.service)
		rep.Queue, rep.Service = &q, &sv
	}
	rep.ClientCPU = self.cpu(elapsed, rep.Requests)
	if len(procs) > 0 {
		rep.Processes = map[string]CPU{}
		for name, p := range procs {
			rep.Processes[name] = p.cpu(elapsed, rep.Requests)
		}
	}
	return rep
}

// describeRun is a report of what cfg asked for, with nothing measured yet.
func describeRun(cfg *Config) *Report {
	rep := &Report{
		Mode: "closed", Targets: cfg.Targets, Conns: cfg.Conns, Workers: cfg.Workers,
		Domain: cfg.Domain, PerRequest: cfg.PerRequest, Keys: cfg.Keys, Cost: cfg.Cost,
		Warmup: cfg.Warmup.Seconds(), Duration: cfg.Duration.Seconds(), Limit: cfg.Requests,
		Errors:    map[string]int64{},
		TimeoutMs: float64(cfg.Timeout) / float64(time.Millisecond), Seed: cfg.Seed,
	}
	if !slices.ContainsFunc(cfg.Descriptors, Template.usesKey) {
		rep.Keys = 0 // --keys draws nothing: every request carries the same values
	}
	if cfg.Rate > 0 {
		rep.Mode, rep.Workers, rep.TargetRate, rep.MaxInFlight = "open", 0, cfg.Rate, cfg.MaxInFlight
	}
	for _, t := range cfg.Descriptors {
		rep.Descriptors = append(rep.Descriptors, t.String())
	}
	return rep
}

// add adds s's histograms and counts to st's (the shards' stats into the run's).
func (st *stats) add(s *stats) {
	st.latency.Merge(s.latency)
	st.answered.Merge(s.answered)
	if st.queue != nil {
		st.queue.Merge(s.queue)
		st.service.Merge(s.service)
	}
	st.ok += s.ok
	st.over += s.over
	st.unknown += s.unknown
	st.noLimit += s.noLimit
	st.clamped += s.clamped
	st.errs.add(&s.errs)
	for i := range st.targets {
		t, o := &st.targets[i], &s.targets[i]
		t.requests += o.requests
		t.answered += o.answered
		t.latency += o.latency
		t.errs.add(&o.errs)
	}
}

// add adds o's counts to e's.
func (e *errorCounts) add(o *errorCounts) {
	for c, n := range o.byCode {
		e.byCode[c] += n
	}
	e.other += o.other
}

// byName are the counts by their gRPC code's name, only the codes that occurred.
func (e *errorCounts) byName() map[string]int64 {
	m := map[string]int64{}
	for c, n := range e.byCode {
		if n > 0 {
			m[codes.Code(c).String()] = n
		}
	}
	if e.other > 0 {
		m["Other"] = e.other
	}
	return m
}

// count copies st's counts of answers and errors into the report; errors by their
// gRPC code's name, and only the codes that occurred.
func (rep *Report) count(st *stats) {
	rep.OK, rep.OverLimit, rep.Unknown = st.ok, st.over, st.unknown
	rep.NoLimit, rep.Clamped = st.noLimit, st.clamped
	rep.Errors = st.errs.byName()
}

// countTargets fills ByTarget from the targets' stats, in the order of names.
func (rep *Report) countTargets(names []string, targets []targetStats) {
	rep.ByTarget = make([]TargetReport, len(targets))
	for i, t := range targets {
		tr := TargetReport{Target: names[i], Requests: t.requests, Answered: t.answered, Errors: t.errs.byName()}
		if t.requests > 0 {
			tr.MeanLatency = float64(t.latency) / float64(time.Millisecond) / float64(t.requests)
		}
		rep.ByTarget[i] = tr
	}
}

// JSON writes the report as indented JSON.
func (rep *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// Text writes the report for people: what was sent, how much of it in how long, the
// answers, the latencies and the CPU used, each section in lines of its own.
func (rep *Report) Text(w io.Writer) error {
	var b strings.Builder
	rep.writeLoad(&b)
	rep.writeThroughput(&b)
	rep.writeAnswers(&b)
	rep.writeTargets(&b)
	rep.writeLatencies(&b)
	rep.writeCPU(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeLoad writes the load asked for: the targets and the loop, then the requests.
func (rep *Report) writeLoad(b *strings.Builder) {
	load := fmt.Sprintf("%d workers", rep.Workers)
	if rep.Mode == "open" {
		load = fmt.Sprintf("open loop at %s/s", strconv.FormatFloat(rep.TargetRate, 'f', -1, 64))
	}
	fmt.Fprintf(b, "target     %s (%d conns), %s\n", strings.Join(rep.Targets, ", "), rep.Conns, load)
	keys := fmt.Sprintf("%d keys", rep.Keys)
	if rep.Keys == 0 {
		keys = "no {key} (the same values every request)"
	}
	fmt.Fprintf(b, "requests   domain %s, %d descriptor(s) per request from %s, %s",
		rep.Domain, rep.PerRequest, strings.Join(rep.Descriptors, " | "), keys)
	if rep.Cost > 0 {
		fmt.Fprintf(b, ", cost %d", rep.Cost)
	}
	b.WriteByte('\n')
}

// writeThroughput writes the requests measured and their rate, and what makes the
// measured phase other than asked for: interrupted, ended by the duration before the
// request count, or short of the open loop's rate.
func (rep *Report) writeThroughput(b *strings.Builder) {
	fmt.Fprintf(b, "measured   %d requests in %.2f s: %.0f requests/s", rep.Requests, rep.Seconds, rep.RPS)
	if len(rep.Errors) > 0 {
		fmt.Fprintf(b, ", of which %.0f/s answered (the rest errors)", rep.Answered)
	}
	b.WriteByte('\n')
	if rep.Interrupted {
		fmt.Fprintf(b, "INTERRUPTED: the run was stopped after %.2f s of its measured phase\n", rep.Seconds)
	} else if rep.Limit > 0 && rep.Requests < rep.Limit {
		fmt.Fprintf(b, "the duration ended the run after %d of the %d requests asked for\n", rep.Requests, rep.Limit)
	}
	if rep.Unsent > 0 {
		fmt.Fprintf(b, "NOT SUSTAINED: %d requests due in the measured phase were never sent; the latencies cover only the others\n", rep.Unsent)
	}
}

// writeAnswers writes the answers by overall code and the errors by gRPC code (in
// name order), and a warning when no answer named a limit: the requests then most
// likely match none of the server's rules.
func (rep *Report) writeAnswers(b *strings.Builder) {
	fmt.Fprintf(b, "answers    OK %d, OVER_LIMIT %d", rep.OK, rep.OverLimit)
	if rep.Unknown > 0 {
		fmt.Fprintf(b, ", UNKNOWN %d", rep.Unknown)
	}
	if rep.NoLimit > 0 {
		fmt.Fprintf(b, " (%d naming no limit)", rep.NoLimit)
	}
	b.WriteString(", ")
	writeErrors(b, rep.Errors)
	b.WriteByte('\n')
	if answers := rep.OK + rep.OverLimit + rep.Unknown; answers > 0 && rep.NoLimit == answers {
		b.WriteString("NO LIMIT MATCHED: no answer named a limit; check --domain and --descriptor against the server's rules (servers allow what no rule matches)\n")
	}
}

// writeTargets writes a row per target when there are several: its requests, errors
// by code and mean latency.
func (rep *Report) writeTargets(b *strings.Builder) {
	if len(rep.ByTarget) < 2 {
		return
	}
	for i, t := range rep.ByTarget {
		head := "by target"
		if i > 0 {
			head = ""
		}
		fmt.Fprintf(b, "%-10s %s: %d requests, ", head, t.Target, t.Requests)
		writeErrors(b, t.Errors)
		fmt.Fprintf(b, ", mean %.3f ms\n", t.MeanLatency)
	}
}

// writeErrors writes errors by gRPC code, in name order, or that there were none.
func writeErrors(b *strings.Builder, errs map[string]int64) {
	if len(errs) == 0 {
		b.WriteString("errors 0")
		return
	}
	b.WriteString("errors:")
	for _, n := range slices.Sorted(maps.Keys(errs)) {
		fmt.Fprintf(b, " %s %d", n, errs[n])
	}
}

// writeLatencies writes a row of percentiles per histogram, after a warning when some
// latencies were clamped to the histograms' minute (the maximum then understates).
func (rep *Report) writeLatencies(b *strings.Builder) {
	if rep.Clamped > 0 {
		fmt.Fprintf(b, "CLAMPED: %d latencies above a minute were recorded as a minute\n", rep.Clamped)
	}
	latencyRow(b, "latency", rep.Latency)
	if rep.AnsweredLatency != nil {
		latencyRow(b, "answered", *rep.AnsweredLatency)
	}
	if rep.Queue != nil && rep.Service != nil { // the open loop's (Run sets both)
		latencyRow(b, "queueing", *rep.Queue)
		latencyRow(b, "service", *rep.Service)
	}
}

// latencyRow writes one histogram's percentiles, in milliseconds.
func latencyRow(b *strings.Builder, name string, p Percentiles) {
	fmt.Fprintf(b, "%-10s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n",
		name, p.P50, p.P90, p.P99, p.P999, p.Max)
}

// writeCPU writes the generator's CPU, then each watched process's in name order.
func (rep *Report) writeCPU(b *strings.Builder) {
	cpuRow(b, "client", rep.ClientCPU)
	for _, n := range slices.Sorted(maps.Keys(rep.Processes)) {
		cpuRow(b, n, rep.Processes[n])
	}
}

// cpuRow writes one process's CPU, or why it was not measured.
func cpuRow(b *strings.Builder, name string, c CPU) {
	if c.Unsupported {
		fmt.Fprintf(b, "%-10s CPU not measured (%s)\n", name, c.MissingReason)
		return
	}
	fmt.Fprintf(b, "%-10s CPU %.2f cores, %.1f µs per request\n", name, c.Cores, c.PerRequestUs)
}
