package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/loadgen"
)

// listFlag is a repeatable flag; each value may also hold several items separated by sep.
type listFlag struct {
	vals []string
	sep  string
	set  bool
}

func (l *listFlag) String() string { return strings.Join(l.vals, l.sep) }

func (l *listFlag) Set(v string) error {
	if !l.set { // the first explicit value replaces the default
		l.vals, l.set = nil, true
	}
	if l.sep == "" {
		l.vals = append(l.vals, v)
		return nil
	}
	for _, s := range strings.Split(v, l.sep) {
		if s = strings.TrimSpace(s); s != "" {
			l.vals = append(l.vals, s)
		}
	}
	return nil
}

const benchUsage = `usage: ratelimit-ext bench [flags]

Load generator for any Envoy RateLimitService endpoint (ShouldRateLimit): ours, or any
other implementation. Closed loop with --workers, or open loop with --rate (latency from
each request's intended send time; queueing reported separately). Descriptor values may
use {key} (a number drawn from [0, --keys) per descriptor) and {d} (the descriptor's
position in the request).

Exit status: 0 after a clean run; 1 when the run could not start (with --json, stdout
then holds {"error": "..."}) or, after the report, when it was interrupted, measured
nothing, had failed requests or (open loop) did not sustain the rate; 2 for a mistake
in the flags.

examples:
  ratelimit-ext bench --target 127.0.0.1:8081 --domain edge --descriptor 'remote_address=10.1.{key}' --keys 100000
  ratelimit-ext bench --rate 8000 --duration 30s --json
  ratelimit-ext bench --target a:8081,b:8081 --conns 4 --descriptor 'k=a{key}' --descriptor 'k=b{key}'
  ratelimit-ext bench --target rls.example:8081 --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem

flags:
`

// checkBenchSettings refuses values the load generator would otherwise replace by a
// default without a word (0 keys as 1, a zero duration as 10 s). What it cannot use at
// all, loadgen.Config.Validate refuses (benchValidate).
func checkBenchSettings(c loadgen.Config) error {
	switch {
	case c.Keys < 1:
		return fmt.Errorf("--keys %d: want at least 1", c.Keys)
	case c.Rate > 0 && c.MaxInFlight < 1:
		return fmt.Errorf("--max-in-flight %d: want 1 to %d", c.MaxInFlight, loadgen.MaxInFlightLimit)
	case c.Conns < 0 || c.PerRequest < 0:
		return errors.New("--conns and --descriptors-per-request want 0 (the default) or more")
	case c.Requests < 0:
		return fmt.Errorf("--requests %d: want 0 (none) or more", c.Requests)
	case c.Duration < 0 || c.Warmup < 0 || c.Timeout <= 0 || c.ConnectTimeout <= 0:
		return errors.New("--duration and --warmup want 0 or more, --timeout and --connect-timeout more than 0")
	case c.Duration == 0 && c.Requests == 0:
		return errors.New("--duration 0 without --requests: the run would never end")
	}
	return nil
}

// benchFlagOf names the flag that sets each loadgen.Config field a ConfigError can
// name.
var benchFlagOf = map[string]string{
	"Targets": "--target", "Conns": "--conns", "Workers": "--workers", "Rate": "--rate",
	"MaxInFlight": "--max-in-flight", "Domain": "--domain", "Descriptors": "--descriptor",
}

// benchValidate is loadgen.Config.Validate, naming flags rather than fields: what
// loadgen.Run would refuse as a failed run (exit 1) is a mistake in the flags (exit 2).
func benchValidate(c loadgen.Config) error {
	var ce *loadgen.ConfigError
	if err := c.Validate(); !errors.As(err, &ce) {
		return err // nil: the configuration is fine
	}
	name, ok := benchFlagOf[ce.Field]
	if !ok {
		name = "loadgen.Config." + ce.Field // a field bench has no flag for: a bug here
	}
	return errors.New(ce.Describe(name))
}

func bench(args []string) int {
	b, code := parseBench(args)
	if b == nil {
		return code
	}
	return b.run()
}

// benchCommand is a parsed `ratelimit-ext bench` command line.
type benchCommand struct {
	cfg        loadgen.Config
	json       bool   // print the report as JSON
	cpuProfile string // the load generator's own CPU profile, when set
}

// benchFail reports a command-line mistake and returns bench's exit code for it.
func benchFail(format string, a ...any) (*benchCommand, int) {
	fmt.Fprintf(os.Stderr, "ratelimit-ext bench: "+format+"\n", a...)
	return nil, 2
}

// parseBench reads the flags into a load generator configuration: nil and the exit
// code when they are wrong (2) or only asked for help (0).
func parseBench(args []string) (*benchCommand, int) {
	b := &benchCommand{}
	fs, extra := benchFlags(b)
	if err := parseFlags(fs, args, fs.Parse, seeHelp("bench")); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0
		}
		return benchFail("%v", err)
	}
	if fs.NArg() > 0 {
		return benchFail("unexpected argument %q: bench takes only flags (%s)%s", fs.Arg(0), seeHelp("bench"), boolValueHint(fs, args))
	}
	if b.cfg.Requests > 0 && !flagGiven(fs, "duration") {
		b.cfg.Duration = 0 // a request count alone ends the run
	}
	extra.tls.onSet = flagGiven(fs, "tls") // its "false" beside a TLS file is refused
	if err := extra.apply(&b.cfg); err != nil {
		return benchFail("%v", err)
	}
	return b, 0
}

// benchExtra are bench's flags that do not map one to one onto a loadgen.Config field.
type benchExtra struct {
	targets, descs, pids *listFlag
	cost                 *uint
	tls                  clientTLS
}

// benchFlags registers bench's flags: most straight into b.cfg, the rest in the
// benchExtra returned, for apply.
func benchFlags(b *benchCommand) (*flag.FlagSet, *benchExtra) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		fs.PrintDefaults()
	}
	x := &benchExtra{targets: &listFlag{vals: []string{"127.0.0.1:8081"}, sep: ","},
		descs: &listFlag{vals: []string{"remote_address=10.1.{key}"}}, pids: &listFlag{sep: ","}, tls: clientTLS{prefix: "--"}}
	c := &b.cfg
	fs.Var(x.targets, "target", "server address host:port; repeat or separate by commas for several (round robin)")
	fs.Var(x.descs, "descriptor", "descriptor template key=value[,key=value...]; repeat for several descriptors")
	fs.Var(x.pids, "watch-pid", "name=pid of a local process (the server, Redis) whose CPU to report; repeatable (Linux)")
	fs.IntVar(&c.Conns, "conns", 0, "gRPC connections in total, a multiple of the targets (default one per target)")
	fs.IntVar(&c.Workers, "workers", 32, "closed loop: requests in flight")
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second (overrides --workers)")
	fs.IntVar(&c.MaxInFlight, "max-in-flight", 1024, "open loop: bound on concurrent requests")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "measured phase (not applied with --requests unless given)")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured phase before it")
	fs.Int64Var(&c.Requests, "requests", 0, "end the measured phase when this many requests are answered (0: --duration only)")
	fs.DurationVar(&c.Timeout, "timeout", time.Second, "deadline of each request")
	fs.DurationVar(&c.ConnectTimeout, "connect-timeout", 5*time.Second, "how long each connection may take to become ready at the start")
	fs.StringVar(&c.Domain, "domain", "edge", "rate-limit domain")
	fs.IntVar(&c.PerRequest, "descriptors-per-request", 0, "descriptors per request, taking the templates in turn from one request to the next (default: one per template)")
	fs.IntVar(&c.Keys, "keys", 1000, "distinct {key} values (key cardinality)")
	x.cost = fs.Uint("cost", 0, "request hits_addend (0: unset, which servers count as 1)")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the key choices (0: fixed default)")
	fs.BoolVar(&b.json, "json", false, "print the report as JSON instead of text")
	fs.StringVar(&b.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file")
	fs.BoolVar(&x.tls.on, "tls", false, "connect over TLS, verifying the server against the system roots (any other --tls-* implies it: false beside one is refused)")
	fs.StringVar(&x.tls.ca, "tls-ca", "", "PEM CA bundle to verify the server with instead of the system roots")
	fs.StringVar(&x.tls.cert, "tls-cert", "", "PEM client certificate, for servers that require one (mTLS)")
	fs.StringVar(&x.tls.key, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&x.tls.serverName, "tls-server-name", "", "name to verify in the server's certificate (default: --authority when set, else the target's host)")
	fs.StringVar(&c.Authority, "authority", "", "the :authority to send (default: --tls-server-name when set, else the target's host:port), e.g. a mesh's routing name; the certificate is still verified against --tls-server-name")
	return fs, x
}

// apply completes c from the flags that need reading: the targets, TLS, the cost, the
// descriptor templates and the processes to watch; and checks the whole.
func (x *benchExtra) apply(c *loadgen.Config) error {
	c.Targets = x.targets.vals
	tc, err := x.tls.config(nil, nil)
	if err != nil {
		return err
	}
	c.TLS = tc
	if *x.cost > 1<<32-1 {
		return errors.New("--cost exceeds 2^32-1")
	}
	if err := checkBenchSettings(*c); err != nil {
		return err
	}
	c.Cost = uint32(*x.cost)
	for _, d := range x.descs.vals {
		t, err := loadgen.ParseTemplate(d)
		if err != nil {
			return fmt.Errorf("--descriptor %q: %v", d, err)
		}
		c.Descriptors = append(c.Descriptors, t)
	}
	for _, p := range x.pids.vals {
		name, v, ok := strings.Cut(p, "=")
		pid, err := strconv.Atoi(v)
		if !ok || err != nil || name == "" {
			return fmt.Errorf("--watch-pid %q: want name=pid", p)
		}
		if c.WatchPIDs == nil {
			c.WatchPIDs = map[string]int{}
		}
		c.WatchPIDs[name] = pid
	}
	return benchValidate(*c)
}

// flagGiven reports whether the command line set the flag.
func flagGiven(fs *flag.FlagSet, name string) (given bool) {
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// run generates the load and prints the report. It returns 1 when it could not, and
// after the report when the run is not a clean measurement (see incomplete).
func (b *benchCommand) run() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "ratelimit-ext bench:", err)
		if b.json { // a script that reads the report from stdout gets JSON all the same
			_ = json.NewEncoder(os.Stdout).Encode(struct {
				Error string `json:"error"`
			}{err.Error()})
		}
		return 1
	}
	if b.cpuProfile != "" {
		f, err := os.Create(b.cpuProfile)
		if err != nil {
			return fail(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fail(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, b.cfg)
	if rep == nil {
		return fail(err)
	}
	// An interrupted run still reports what it measured; rep says it was interrupted.
	if b.json {
		err = rep.JSON(os.Stdout)
	} else {
		err = rep.Text(os.Stdout)
	}
	if err != nil {
		return fail(err)
	}
	if why := incomplete(rep); why != "" {
		fmt.Fprintln(os.Stderr, "ratelimit-ext bench: exit 1:", why)
		return 1
	}
	return 0
}

// incomplete says why a finished run's numbers are not a clean measurement, for the
// exit status: scripts that gate on a load test must not pass a run that failed.
func incomplete(rep *loadgen.Report) string {
	switch {
	case rep.Interrupted:
		return "the run was interrupted"
	case rep.Requests == 0:
		return "no request was measured"
	case len(rep.Errors) > 0:
		var n int64
		for _, c := range rep.Errors {
			n += c
		}
		return fmt.Sprintf("%d of %d requests failed", n, rep.Requests)
	case rep.Unsent > 0:
		return fmt.Sprintf("the target rate was not sustained (%d requests unsent)", rep.Unsent)
	}
	return ""
}
