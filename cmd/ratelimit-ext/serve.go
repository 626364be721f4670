package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/extauthz"
	"github.com/ratelimit-ext/ratelimit-ext/internal/grpcopts"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/legacyenv"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules"
)

// serveConfig holds the settings of `ratelimit-ext serve`; every one is a flag with an
// environment variable (docs/configuration.md).
type serveConfig struct {
	legacy                                    []legacyenv.Note // envoyproxy/ratelimit variables seen
	envOverridden                             []badEnv         // malformed variables whose flags the command line gives
	unused                                    []unusedSettings // set, but not read in the mode chosen (noteUnused)
	grpcAddr, httpAddr, configDir, keyPrefix  string
	engine                                    string // as given; check resolves it to memory or redis
	metricsAddr                               string
	httpAllowedHosts                          string // comma-separated; hostGuard reads it
	logLevel, logFormat                       string
	log                                       *slog.Logger // built by check from the two above
	memoryMaxKeys, maxKeyLen, maxRequestBytes int
	maxStreams                                int // per gRPC connection
	connAge, connAgeGrace                     time.Duration
	keepaliveTime                             time.Duration // --grpc-keepalive-time
	memoryMaxMiB                              int
	shadow, retryAfter, watch                 bool
	headers                                   ratelimitheaders.Options // Retry-After is retryAfter
	shutdownTimeout                           time.Duration
	bounds                                    decide.Bounds
	maxCost                                   int
	tls                                       tlsFiles
	store                                     storeConfig
	extAuthz                                  extAuthzSettings
	xds                                       xdsSettings
	redis                                     func() limiter.RedisOptions
	perf                                      perfSettings
	rules                                     descriptors.Options // how the rules load (ruleLoadFlags)
}

// The defaults of where serve listens and reads its rules. A plain build keeps to
// loopback and ./config, for a process run by hand. The container image sets its own at
// link time (the Dockerfile's `go build -ldflags "-X main.defaultGRPCAddr=..."`) rather
// than with ENV lines: an ENV line would be one of our RATELIMIT_EXT_* variables, which
// outrank envoyproxy/ratelimit's (internal/legacyenv), so PORT, GRPC_PORT and RUNTIME_ROOT would
// lose to the image. As defaults they rank below every setting the operator makes.
// Variables, not constants, so that -X can set them.
var (
	defaultGRPCAddr  = "127.0.0.1:8081"
	defaultHTTPAddr  = "127.0.0.1:8080"
	defaultConfigDir = "config"
)

func loadServeConfig(args []string) (*serveConfig, error) {
	legacy, err := legacyenv.FromOS(args) // before the flags read their defaults from the environment
	if err != nil {
		return nil, err
	}
	f := newEnvFlags("serve")
	f.legacy = legacyenv.Variables(legacy)
	f.fs.Usage = func() { // serve is the default subcommand: -h alone lands here
		fmt.Fprint(f.fs.Output(), subcommands, "\nFlags of serve:\n")
		f.fs.PrintDefaults()
	}
	c := &serveConfig{bounds: decide.DefaultBounds, legacy: legacy}
	f.StringVar(&c.grpcAddr, "grpc-addr", defaultGRPCAddr, "gRPC listen address (RateLimitService)")
	f.StringVar(&c.httpAddr, "http-addr", defaultHTTPAddr, "HTTP listen address (/healthz, /readyz, /healthcheck, /metrics, /v1/decide, /debug/config)")
	f.StringVar(&c.metricsAddr, "metrics-addr", "", "also serve /metrics alone on this address, e.g. 0.0.0.0:19001 (empty = only on --http-addr)")
	f.StringVar(&c.httpAllowedHosts, "http-allowed-hosts", "", "comma-separated host names HTTP callers may use besides localhost and IP addresses; when set, every HTTP listener refuses other names (DNS rebinding), else only loopback ones do")
	f.StringVar(&c.configDir, "config-dir", defaultConfigDir, "directory of YAML rule files, watched for changes (--config-source=file)")
	f.StringVar(&c.engine, "engine", "", "memory or redis (default: redis when --redis-url is set, else memory)")
	keyPrefixFlag(f, &c.keyPrefix)
	f.IntVar(&c.maxKeyLen, "max-key-length", storekey.DefaultMaxLen, "storage keys longer than this are hashed")
	f.IntVar(&c.memoryMaxKeys, "memory-max-keys", 1_000_000, "bound on keys held by the memory engine")
	f.IntVar(&c.memoryMaxMiB, "memory-max-mib", 0, "bound on the memory engine's state in MiB, approximate (0: half of GOMEMLIMIT when set, else 1024)")
	f.BoolVar(&c.shadow, "shadow-mode", false, "evaluate and count every limit but never deny")
	f.BoolVar(&c.retryAfter, "retry-after-header", true, "add Retry-After (whole seconds, rounded up) to OVER_LIMIT responses")
	f.BoolVar(&c.watch, "watch", true, "reload the config dir when files change (SIGHUP always reloads; --config-source=file)")
	ruleLoadFlags(f, &c.rules)
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&c.logFormat, "log-format", "text", "text or json")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long SIGTERM waits for in-flight requests")
	boundFlags(f, c)
	tlsFlags(f, &c.tls)
	headerFlags(f, &c.headers)
	storeFlags(f, &c.store)
	extAuthzFlags(f, &c.extAuthz)
	c.redis = redisFlags(f, limiter.DefaultRedisReadTimeout, "keep below Envoy's rate-limit timeout")
	perfFlags(f, &c.perf)
	xdsFlags(f, &c.xds)
	f.rejectUnknownEnv()
	if err := parseFlags(f.fs, args, f.parse, seeHelp("serve")); err != nil {
		return nil, err
	}
	c.envOverridden = f.overridden
	c.xds.tls.onSet = f.set("xds-tls") // its "false" beside a TLS file is refused
	if err = c.check(); err != nil {
		return nil, f.explain(err)
	}
	c.noteUnused(f)
	return c, nil
}

// check validates the settings together and completes the derived ones; its errors
// name the flags.
func (c *serveConfig) check() error {
	if err := checkCounts(c); err != nil {
		return err
	}
	if err := c.checkListenAddrs(); err != nil {
		return err
	}
	if err := c.tls.check(); err != nil {
		return err
	}
	if _, err := c.hostGuard(); err != nil {
		return err
	}
	if err := c.perf.check(); err != nil {
		return err
	}
	log, err := newLogger(c.logLevel, c.logFormat)
	if err != nil {
		return err
	}
	c.log = log
	if c.engine, err = chooseEngine(c.engine, c.redis().URL); err != nil {
		return err
	}
	if err := c.store.check(); err != nil {
		return err
	}
	if err := checkRedisOptions(c.redis()); err != nil {
		return err
	}
	if err := checkKeyPrefix(c.keyPrefix, c.redis()); err != nil {
		return err
	}
	c.bounds.MaxCost = uint64(c.maxCost)
	c.headers.RetryAfter = c.retryAfter
	if err := checkHeaderFlags(&c.headers); err != nil {
		return err
	}
	return c.xds.resolve()
}

// maxConcurrentStreams is the largest --grpc-max-concurrent-streams: more than any
// client multiplexes, far below HTTP/2's 2^31−1.
const maxConcurrentStreams = 1 << 20

// boundFlags registers the request bounds (hostile-input protection).
func boundFlags(f *envFlags, c *serveConfig) {
	b := &c.bounds
	// 4 MiB (gRPC's own default): Envoy copies a header's value into every descriptor
	// that reads it, so a client's header at Envoy's default 60 KiB in each of 64
	// descriptors (--max-descriptors) is 3.75 MiB; an ext_authz check carries every
	// header and the path twice. A refused message is an error Envoy answers with its
	// failure mode, by default letting the request past every limit.
	f.IntVar(&c.maxRequestBytes, "max-request-bytes", 4<<20, "largest gRPC request accepted, in bytes (keep above max_request_headers_kb × the descriptor entries of one Envoy call that copy a client's header, and twice it for ext_authz)")
	// Each RPC holds a goroutine and its request's buffer (up to --max-request-bytes)
	// until it ends, and one connection can open any number unless told otherwise: a
	// client that opens thousands of streams and never finishes their messages holds
	// all of that. Envoy opens another connection when it reaches the bound.
	f.IntVar(&c.maxStreams, "grpc-max-concurrent-streams", 1024, "RPCs one gRPC connection may have in flight (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); Envoy opens more connections when it needs more")
	// Envoy keeps its connections to the service for as long as they last, so replicas
	// added later get none of the existing ones' traffic: ageing them out spreads it
	// again. envoyproxy/ratelimit's defaults (GRPC_MAX_CONNECTION_AGE, _GRACE).
	f.DurationVar(&c.connAge, "grpc-max-connection-age", 24*time.Hour, "close a gRPC connection after this long (±10%; GOAWAY: the client opens another, RPCs in flight finish), so traffic spreads over replicas added since; 0: never")
	f.DurationVar(&c.connAgeGrace, "grpc-max-connection-age-grace", time.Hour, "after --grpc-max-connection-age, how long RPCs in flight on the connection may still run before it is closed")
	// A load balancer or NAT between Envoy and the service forgets an idle connection
	// without a word, and the next call on it fails (grpcopts.DefaultKeepaliveTime).
	f.DurationVar(&c.keepaliveTime, "grpc-keepalive-time", grpcopts.DefaultKeepaliveTime, "ping a gRPC connection idle this long (HTTP/2 PING), so a load balancer's idle timeout does not drop it, and close it when a ping goes unanswered for 20 s; at least 1s, 0: never")
	f.IntVar(&b.MaxDescriptors, "max-descriptors", b.MaxDescriptors, "descriptors per request")
	ruleBoundFlags(f, b) // --max-entries, --max-entry-key-bytes, --max-domain-bytes
	// Kept so that deployments that set it still start; values have no bound of their
	// own (decide.Bounds says why).
	f.IntVar(new(int), "max-entry-value-bytes", 4096, "deprecated, no effect: a long value is matched as it is and stored under a hashed key; --max-request-bytes bounds requests")
	f.IntVar(&c.maxCost, "max-hits-addend", int(b.MaxCost), "largest hits_addend (cost) of a request or descriptor; a larger cost counts as this")
}

// checkCounts refuses bounds, sizes and intervals below 1: a request bound of 0 would
// refuse every request, and the packages below would take 0 for their default.
func checkCounts(c *serveConfig) error {
	if err := checkRuleBounds(c.bounds); err != nil {
		return err
	}
	for _, n := range []struct {
		flag  string
		value int
	}{
		{"max-request-bytes", c.maxRequestBytes},
		{"grpc-max-concurrent-streams", c.maxStreams},
		{"max-descriptors", c.bounds.MaxDescriptors},
		{"max-hits-addend", c.maxCost},
		{"max-key-length", c.maxKeyLen},
		{"memory-max-keys", c.memoryMaxKeys},
		{"store-breaker-threshold", c.store.breakerThreshold},
		{"redis-batch-size", c.perf.redisBatchMax},
		{"redis-batch-lanes", c.perf.redisBatchLanes},
		{"local-cache-size", c.perf.localCacheSize},
		{"xds-max-message-bytes", c.xds.maxMessageBytes},
	} {
		if n.value < 1 {
			return fmt.Errorf("--%s %d: want at least 1", n.flag, n.value)
		}
	}
	if c.memoryMaxMiB < 0 || int64(c.memoryMaxMiB) > math.MaxInt64>>20 {
		return fmt.Errorf("--memory-max-mib %d: want 0 (automatic) to %d", c.memoryMaxMiB, int64(math.MaxInt64>>20))
	}
	if c.connAge < 0 || c.connAgeGrace < 0 {
		return fmt.Errorf("--grpc-max-connection-age %v, --grpc-max-connection-age-grace %v: want 0 (never) or a positive duration", c.connAge, c.connAgeGrace)
	}
	if c.keepaliveTime < 0 || c.keepaliveTime > 0 && c.keepaliveTime < time.Second {
		return fmt.Errorf("--grpc-keepalive-time %v: want 0 (never) or at least 1s (grpc-go's floor)", c.keepaliveTime)
	}
	if c.maxStreams > maxConcurrentStreams {
		return fmt.Errorf("--grpc-max-concurrent-streams %d: want at most %d", c.maxStreams, maxConcurrentStreams)
	}
	// Keys past the bound are hashed, so a larger one buys nothing but memory per key
	// (and Redis memory) for values a client chooses.
	if c.maxKeyLen > storekey.MaxMaxLen {
		return fmt.Errorf("--max-key-length %d: want at most %d (longer keys are hashed)", c.maxKeyLen, storekey.MaxMaxLen)
	}
	if int64(c.maxCost) > limiter.MaxCost { // a larger bound would admit costs no limit takes
		return fmt.Errorf("--max-hits-addend %d: want at most %d (Envoy's hits_addend is a uint32)", c.maxCost, limiter.MaxCost)
	}
	for _, d := range []struct {
		flag  string
		value time.Duration
	}{
		{"store-probe-interval", c.store.probeInterval},
		{"local-cache-max-age", c.perf.localCacheMaxAge},
		{"shutdown-timeout", c.shutdownTimeout},
	} {
		if d.value <= 0 {
			return fmt.Errorf("--%s %v: want a positive duration", d.flag, d.value)
		}
	}
	return nil
}

// redisFlags registers the Redis connection flags and returns a getter for the options.
// ioTimeout is the default of the read and write timeouts: serving keeps a call inside
// Envoy's 20 ms, a conformance replay waits for a slow store rather than report it.
// readNote ends the usage of --redis-read-timeout: what to mind in choosing it.
func redisFlags(f *envFlags, ioTimeout time.Duration, readNote string) func() limiter.RedisOptions {
	url := f.String("redis-url", "", "redis://[user:pass@]host:port[/db] or rediss:// for TLS; selects the Redis engine (cluster, sentinel: docs/redis.md)")
	mode := f.String("redis-mode", string(limiter.RedisSingle), "single, cluster (Redis Cluster: redis://host1:port1?addr=host2:port2&addr=...) or sentinel (redis://sentinel1:26379?addr=sentinel2:26379&master_name=NAME)")
	master := f.String("redis-sentinel-master", "", "sentinel mode: the master's name (overrides master_name in --redis-url)")
	pool := f.Int("redis-pool-size", 0, "connections per Redis node (0 = 10 per CPU)")
	dial := f.Duration("redis-dial-timeout", limiter.DefaultRedisDialTimeout, "timeout to open a Redis connection")
	read := f.Duration("redis-read-timeout", ioTimeout, "timeout to read a Redis reply ("+readNote+")")
	write := f.Duration("redis-write-timeout", ioTimeout, "timeout to write a Redis command")
	ca := f.String("redis-tls-ca", "", "PEM CA bundle to verify a rediss:// server (reloaded when the file changes)")
	cert := f.String("redis-tls-cert", "", "PEM client certificate for rediss:// (mTLS; reloaded when the file changes)")
	key := f.String("redis-tls-key", "", "PEM client key for rediss:// (mTLS)")
	serverName := f.String("redis-tls-server-name", "", "name a rediss:// server's certificate must carry (and the SNI sent), instead of the URL's host")
	var skipName bool
	f.BoolVar(&skipName, "redis-tls-skip-hostname-verification", false,
		"rediss://: verify the server's certificate chain (--redis-tls-ca, else the system roots) but not its name, for a Redis its certificate does not name")
	return func() limiter.RedisOptions {
		return limiter.RedisOptions{
			URL: *url, Mode: limiter.RedisMode(*mode), SentinelMaster: *master,
			PoolSize: *pool, DialTimeout: *dial, ReadTimeout: *read, WriteTimeout: *write,
			TLSCAFile: *ca, TLSCertFile: *cert, TLSKeyFile: *key,
			TLSServerName: *serverName, TLSSkipHostnameVerification: skipName,
		}
	}
}

func newRedisEngine(o limiter.RedisOptions) (limiter.Engine, error) {
	if o.URL == "" {
		return nil, errors.New("the redis engine needs --redis-url (env RATELIMIT_EXT_REDIS_URL)")
	}
	if err := checkRedisMode(o); err != nil {
		return nil, err
	}
	return limiter.NewRedisEngine(o)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		opts.ReplaceAttr = durationText
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// durationText writes durations in JSON logs as the text logs do ("10s"), not as
// nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func serve(args []string) int {
	// SIGHUP is asked for first: until then Go's default for it is to end the process,
	// and an operator or a config-management tool may send one while the server starts.
	// One sent before the rules are followed waits in hup for the follower.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	c, err := loadServeConfig(args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "ratelimit-ext:", err)
		return 2
	}
	log := c.log
	routeRedisLogs(log)
	legacyenv.Log(log, c.legacy)
	c.warnIgnored(log)
	rules, err := initialRules(c)
	if err == nil {
		err = legacyenv.MonthLimitsRefused(legacyenv.CalendarMonthsAsked(), rules)
	}
	if err != nil {
		// Printed as is, one problem per line, like validate's output: nothing has
		// started yet.
		fmt.Fprintln(os.Stderr, "ratelimit-ext:", err)
		return 1
	}
	if err := runServer(c, rules, hup, log); err != nil {
		log.Error("exiting", "error", err)
		return 1
	}
	return 0
}

// runServer wires the engine, the rules, the gRPC and HTTP servers, and runs until
// SIGINT/SIGTERM. It reads as its steps: the store and the decider, the servers, the
// rules' follower, then serving until a signal. What it opens is closed on the way out,
// after the servers have drained (or one failed), in reverse: the /metrics listener
// (serveUntilSignal's own), the follower, the signal watch, the local policy's engine,
// and last the engine (closeEngine waits at most a second for it).
func runServer(c *serveConfig, rules *descriptors.RuleSet, hup <-chan os.Signal, log *slog.Logger) error {
	m := metrics.New()
	tlsInUse := new(tlsfiles.Registry) // every TLS file the process reads, for metrics
	m.TLSFiles(tlsInUse)
	if c.xds.source == sourceFile {
		m.ConfigLoaded(rules, nil)
	}
	st, err := openStore(c, m, tlsInUse, log)
	if err != nil {
		return err
	}
	defer closeEngine(st.engine, time.Second, log) // the breaker closes what it wraps
	if st.policy.Local != nil {
		defer st.policy.Local.Close()
	}
	keys := newKeyBuilder(c) // hash-tagged by domain on Redis Cluster
	decider := decide.New(rules, st.engine, decide.Options{Keys: keys, Shadow: c.shadow,
		Bounds: c.bounds, Failure: st.policy, OverLimit: newOverLimitCache(c, m)})
	if err := startPerf(c, log); err != nil {
		return err
	}
	srv, err := newServers(c, decider, m, tlsInUse, log)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	warner := newRuleWarner(c, st.policyDomains, log)
	warner.warn(rules) // before any reload can report a newer rule set
	follower, err := followRules(ctx, c, rules, hup, decider, warner, m, tlsInUse, log)
	if err != nil {
		return err
	}
	defer follower.Close()
	srv.api.UseReadiness(startReadiness(ctx, decider, srv.health.Server, m, log, extauthz.ServiceName))
	return srv.serveUntilSignal(ctx, stop, c, st.engineName, rules, log)
}

// servingStore is what the decider counts in: the engine, behind its metrics and (for
// Redis) the circuit breaker, and the failure policy that answers when it fails.
type servingStore struct {
	engine        limiter.Engine // the outermost wrapper: closing it closes what it wraps
	engineName    string         // memory or redis
	policy        decide.FailurePolicy
	policyDomains []string // the domains with a policy of their own, checked against every rule set
}

// openStore opens the engine check chose and puts the failure policy and the breaker
// around it. Only opening the engine can fail; the caller closes the rest.
func openStore(c *serveConfig, m *metrics.Metrics, tlsInUse *tlsfiles.Registry, log *slog.Logger) (*servingStore, error) {
	engine, engineName, err := openEngine(c, log, tlsInUse)
	if err != nil {
		return nil, err
	}
	onCircuit, onFallback := m.StoreHealth()
	policy := c.store.failurePolicy(c.memoryOptions())
	// The memory_* series: the memory engine's, or else the local policy's engine's
	// (bounded by the same flags).
	if mem, ok := engine.(*limiter.MemoryEngine); ok {
		m.MemoryEngine(mem)
	} else if mem, ok := policy.Local.(*limiter.MemoryEngine); ok {
		m.MemoryEngine(mem)
	}
	policyDomains := slices.Sorted(maps.Keys(policy.PerDomain))
	policy.OnFallback = onFallback
	return &servingStore{
		engine:        guardStore(engine, engineName, m, &c.store, onCircuit, log),
		engineName:    engineName,
		policy:        policy,
		policyDomains: policyDomains,
	}, nil
}

// servers are the gRPC and HTTP servers with their listeners open, built but not yet
// serving: serveUntilSignal starts them.
type servers struct {
	grpc                         *grpc.Server
	http                         *http.Server
	grpcLis, httpLis, metricsLis net.Listener // metricsLis: nil without --metrics-addr
	api                          *httpapi.API
	health                       *healthServer
	metricsHandler               http.Handler // served on the HTTP listener and on metricsLis
	guard                        httpapi.HostGuard
}

// newServers opens the listeners and registers every service on them: on gRPC the
// RateLimitService, ext_authz (same decider), grpc.health.v1 and reflection; on HTTP
// the API and /metrics.
func newServers(c *serveConfig, decider *decide.Decider, m *metrics.Metrics, tlsInUse *tlsfiles.Registry, log *slog.Logger) (*servers, error) {
	grpcOpts, err := grpcServerOptions(c, log, tlsInUse)
	if err != nil {
		return nil, err
	}
	s := &servers{}
	if s.grpcLis, s.httpLis, s.metricsLis, err = listen(c); err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	rlsv3.RegisterRateLimitServiceServer(s.grpc, rls.New(decider, c.headers, &refundWarner{next: m, log: log}))
	registerExtAuthz(s.grpc, decider, c, m, log) // envoy.service.auth.v3.Authorization, same decider
	s.api = httpapi.New(decider, log, m)
	s.metricsHandler = promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
	s.api.Handle("GET /metrics", s.metricsHandler)
	s.health = newHealthServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.guard, _ = c.hostGuard() // checked at start
	s.http = newHTTPServer(s.guard.Wrap(s.httpLis, s.api.Handler()), httpReadTimeout, httpWriteTimeout)
	return s, nil
}

// newRuleWarner is the warner of every rule set served: at start and at each reload.
func newRuleWarner(c *serveConfig, policyDomains []string, log *slog.Logger) *ruleWarner {
	w := &ruleWarner{log: log, policyDomains: policyDomains, authzDomain: c.extAuthz.DefaultDomain,
		bounds: c.bounds, calendarMonths: legacyenv.CalendarMonthsAsked()}
	if c.xds.source == sourceFile {
		w.dir = c.configDir
	}
	return w
}

// serveUntilSignal serves until ctx ends (SIGINT or SIGTERM) or a server fails. Then it
// drains: the health checks say NOT_SERVING first, so that balancers move away while
// the RPCs in flight get --shutdown-timeout to finish.
func (s *servers) serveUntilSignal(ctx context.Context, stop context.CancelFunc, c *serveConfig, engineName string, rules *descriptors.RuleSet, log *slog.Logger) error {
	errc := make(chan error, 3) // one per server: gRPC, HTTP, /metrics
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	go func() { errc <- s.http.Serve(s.httpLis) }()
	from := []any{"config_dir", c.configDir}
	if c.xds.source == sourceXDS {
		from = []any{"xds_server", c.xds.server, "xds_node", c.xds.nodeID}
	}
	if s.metricsLis != nil {
		defer serveMetrics(s.metricsLis, s.guard, s.metricsHandler, errc).Close()
		from = append(from, "metrics", s.metricsLis.Addr().String())
	}
	log.Info("serving", append([]any{"grpc", s.grpcLis.Addr().String(), "http", s.httpLis.Addr().String(),
		"engine", engineName, "rules", rules.Summary()}, from...)...)
	if c.xds.source == sourceFile && rules.LimitCount() == 0 {
		log.Warn("the rules have no limits: every request is allowed", "config_dir", c.configDir)
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	stop()              // a second SIGTERM or Ctrl-C ends the process at once
	s.health.Shutdown() // grpc.health.v1 says NOT_SERVING while in-flight RPCs drain
	s.api.Shutdown()    // and so do /readyz and /healthcheck, to whoever still asks
	log.Info("shutting down", "timeout", c.shutdownTimeout)
	return shutdown(s.grpc, s.http, c.shutdownTimeout)
}

// checkListenAddrs refuses a listen address whose form net.Listen would refuse (no
// port, a port out of range or unknown), and an empty --grpc-addr or --http-addr, which
// would listen on a random port of every interface: a mistake in the settings, said in
// the flag's words before anything starts, not a failure to listen later. The host is
// not looked up here. An empty --metrics-addr or --pprof-addr is off.
func (c *serveConfig) checkListenAddrs() error {
	for _, a := range []struct {
		flag, value, example string
		optional             bool
	}{
		{"grpc-addr", c.grpcAddr, "127.0.0.1:8081", false},
		{"http-addr", c.httpAddr, "127.0.0.1:8080", false},
		{"metrics-addr", c.metricsAddr, "0.0.0.0:19001", true},
		{"pprof-addr", c.perf.pprofAddr, "127.0.0.1:6060", true},
	} {
		if a.value == "" && a.optional {
			continue
		}
		if why := listenAddrProblem(a.value); why != "" {
			return fmt.Errorf("--%s %q: want host:port, e.g. %s (%s)", a.flag, a.value, a.example, why)
		}
	}
	return nil
}

// listenAddrProblem says what is wrong with the form of a TCP listen address, or "".
func listenAddrProblem(addr string) string {
	if addr == "" {
		return "0.0.0.0:PORT for every interface"
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return ae.Err
		}
		return err.Error()
	}
	if port != "" && strings.Trim(port, "0123456789") == "" {
		if n, err := strconv.Atoi(port); err != nil || n > 65535 {
			return "port " + port + ": want 0 to 65535"
		}
		return ""
	}
	if _, err := net.LookupPort("tcp", port); err != nil { // a service name, as net.Listen takes
		return fmt.Sprintf("unknown port %q", port)
	}
	return ""
}

// hostGuard is the check of HTTP callers' Host names (httpapi.HostGuard) that
// --http-allowed-hosts asks for; an entry that is not a bare host name is an error.
func (c *serveConfig) hostGuard() (httpapi.HostGuard, error) {
	var g httpapi.HostGuard
	for _, h := range strings.Split(c.httpAllowedHosts, ",") {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
		case strings.IndexFunc(h, func(r rune) bool { return !isHostNameRune(r) }) >= 0:
			return g, fmt.Errorf("--http-allowed-hosts: %q: want a host name (letters, digits, '-', '.', '_'), without scheme, port or wildcard", h)
		default:
			g.Allowed = append(g.Allowed, h)
		}
	}
	return g, nil
}

func isHostNameRune(r rune) bool {
	return r == '-' || r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
}

// grpcServerOptions are the gRPC server's settings: panics answered as errors, the
// request and stream bounds, stream workers and keepalive enforcement (grpcopts, shared
// with the benchmark ceiling), the server's pings and connection ageing, and TLS when
// configured.
func grpcServerOptions(c *serveConfig, log *slog.Logger, tlsInUse *tlsfiles.Registry) ([]grpc.ServerOption, error) {
	opts := []grpc.ServerOption{grpc.ChainUnaryInterceptor(recoverInterceptor(log)),
		grpc.MaxRecvMsgSize(c.maxRequestBytes), grpc.MaxConcurrentStreams(uint32(c.maxStreams))}
	opts = append(opts, grpcopts.Server()...)
	opts = append(opts, grpcopts.KeepaliveParams(c.keepaliveTime, c.connAge, c.connAgeGrace))
	creds, err := c.tls.serverOption(log, tlsInUse)
	if err != nil {
		return nil, err
	}
	if creds != nil {
		opts = append(opts, creds)
	}
	return opts, nil
}

// listen opens the gRPC and HTTP listeners, and the metrics one when --metrics-addr
// is set (else nil); on an error none is left open.
func listen(c *serveConfig) (grpcLis, httpLis, metricsLis net.Listener, err error) {
	if grpcLis, err = net.Listen("tcp", c.grpcAddr); err != nil {
		return nil, nil, nil, fmt.Errorf("gRPC listener: %w", err)
	}
	if httpLis, err = net.Listen("tcp", c.httpAddr); err != nil {
		grpcLis.Close()
		return nil, nil, nil, fmt.Errorf("HTTP listener: %w", err)
	}
	if c.metricsAddr != "" {
		if metricsLis, err = net.Listen("tcp", c.metricsAddr); err != nil {
			grpcLis.Close()
			httpLis.Close()
			return nil, nil, nil, fmt.Errorf("metrics listener (--metrics-addr): %w", err)
		}
	}
	return grpcLis, httpLis, metricsLis, nil
}

// serveMetrics serves /metrics alone on lis, for scrapers pointed at a port of its own:
// Envoy Gateway's rate-limit Deployment, Service and scrape annotations name 19001,
// where envoyproxy/ratelimit serves Prometheus (PROMETHEUS_ADDR). A failure to serve
// goes to errc, as for the other listeners.
func serveMetrics(lis net.Listener, guard httpapi.HostGuard, h http.Handler, errc chan<- error) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := newHTTPServer(guard.Wrap(lis, mux), httpReadTimeout, httpWriteTimeout)
	go func() { errc <- srv.Serve(lis) }()
	return srv
}

// initialRules are the rules to serve from the start: the config directory, loaded
// before anything listens. Rules from xDS come later; until then there are none (every
// request UNAVAILABLE, not ready) or, with --xds-start-without-rules, an empty set.
func initialRules(c *serveConfig) (*descriptors.RuleSet, error) {
	if c.xds.source == sourceXDS {
		if c.xds.startWithoutRules {
			return descriptors.Compile()
		}
		return nil, nil
	}
	rules, err := c.rules.LoadDir(c.configDir)
	if err != nil {
		return nil, fmt.Errorf("loading the rules of --config-dir %s%s:\n%w", c.configDir, lookedUpIn(c.configDir), err)
	}
	return rules, nil
}

// lookedUpIn says where a relative directory that does not exist was looked for: the
// default, config, is relative to the working directory, and a binary started
// elsewhere than in the repository does not find it.
func lookedUpIn(dir string) string {
	if filepath.IsAbs(dir) {
		return ""
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	return " (relative to the working directory: " + abs + ")"
}

// followRules keeps the decider's rules in step with their source, the config directory
// or the xDS server, through the same path: each good rule set is handed to the
// decider (an atomic swap) and every outcome counted in the config_loads metrics; a bad
// one leaves the rules in place. hup delivers SIGHUP, registered since the start.
func followRules(ctx context.Context, c *serveConfig, loaded *descriptors.RuleSet, hup <-chan os.Signal, d *decide.Decider, warner *ruleWarner, m *metrics.Metrics, tlsInUse *tlsfiles.Registry, log *slog.Logger) (io.Closer, error) {
	apply := func(rs *descriptors.RuleSet) {
		warnVanishedDomains(log, d.Rules(), rs)
		warnVanishedFiles(log, d.Rules(), rs)
		d.SetRules(rs)
		warner.warn(rs)
	}
	if c.xds.source == sourceFile {
		return reload.Start(ctx, reload.Options{Dir: c.configDir, Rules: c.rules, Watch: c.watch, Log: log, Serving: loaded, OnLoad: m.ConfigLoaded, Hangups: hup}, apply)
	}
	o, err := c.xds.options(log, tlsInUse, m.ConfigLoaded)
	if err != nil {
		return nil, err
	}
	o.OnStream = m.XDS()
	o.Rules = c.rules
	sub, err := xdsrules.Start(ctx, o, apply)
	if err != nil {
		return nil, err
	}
	logSIGHUP(ctx, hup, log)
	return sub, nil
}

// openEngine opens the engine that check chose; log hears what the engine reports
// later (a rotated TLS file that did not load), and tlsInUse lists its TLS files.
func openEngine(c *serveConfig, log *slog.Logger, tlsInUse *tlsfiles.Registry) (limiter.Engine, string, error) {
	ro := c.redis()
	c.perf.applyRedis(&ro)
	ro.ProbeKey, ro.Log, ro.TLSInUse = probeKey(c.keyPrefix), log, tlsInUse
	if c.engine == "redis" { // chosen by check
		e, err := newRedisEngine(ro)
		return e, c.engine, err
	}
	return limiter.NewMemoryEngine(c.memoryOptions()), c.engine, nil
}

// memoryOptions are the memory engine's bounds (the engine, or the local fallback's).
func (c *serveConfig) memoryOptions() limiter.MemoryOptions {
	return limiter.MemoryOptions{MaxKeys: c.memoryMaxKeys, MaxBytes: int64(c.memoryMaxMiB) << 20}
}

// chooseEngine picks the engine, for serve and conformance alike: the one --engine
// names, else redis when a Redis URL is set. A Redis URL beside --engine memory is
// refused: one of them is a mistake, and a conformance run meant to check a store must
// never pass on the memory engine. --engine redis without a URL is refused here, with
// the other settings, rather than when the engine is built.
func chooseEngine(name, redisURL string) (string, error) {
	switch name {
	case "":
		if redisURL != "" {
			return "redis", nil
		}
		return "memory", nil
	case "memory":
		if redisURL != "" {
			return "", errors.New("--redis-url is set but --engine is memory: drop one of them")
		}
		return name, nil
	case "redis":
		if redisURL == "" {
			return "", errors.New("--engine redis needs --redis-url (env RATELIMIT_EXT_REDIS_URL)")
		}
		return name, nil
	}
	return "", fmt.Errorf("--engine %q: want memory or redis", name)
}

// shutdown stops accepting, lets in-flight RPCs finish within the timeout, then forces.
func shutdown(gs *grpc.Server, hs *http.Server, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	herr := hs.Shutdown(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		gs.Stop()
		return errors.New("shutdown deadline passed with RPCs in flight")
	}
	if herr != nil && !errors.Is(herr, http.ErrServerClosed) {
		return herr
	}
	return nil
}

// recoverInterceptor turns a panic in a handler into an Internal error and a log line:
// no panic reaches a caller or takes the process down.
func recoverInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.Error("panic in handler", "method", info.FullMethod, "panic", r)
				err = status.Error(codes.Internal, "internal error in "+info.FullMethod)
			}
		}()
		return h(ctx, req)
	}
}

// probeKey is the key readiness writes to check that Redis takes writes: the key
// prefix + "probe", never a storage key (a digit or, on a cluster, "{" follows the
// prefix there); without a prefix a name of its own, not a bare "probe" that another
// application sharing the database might use.
func probeKey(prefix string) string {
	if prefix == "" {
		return "ratelimit-ext:probe"
	}
	return prefix + "probe"
}
