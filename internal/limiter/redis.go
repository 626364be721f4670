package limiter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// ErrStore wraps every error caused by the store (unreachable, timed out, a bad reply);
// the server maps it to gRPC UNAVAILABLE (SPEC §6).
var ErrStore = errors.New("store unavailable")

// Defaults of RedisOptions. Envoy's rate-limit filter gives the whole call 20 ms by
// default, and a healthy Redis answers a script in well under a millisecond: a read and
// a write deadline of 8 ms each, which together bound a whole script call, a dial
// included (callBudget), keep a stuck or unreachable store below Envoy's deadline, so
// this service answers UNAVAILABLE (and counts it) itself instead of Envoy timing out.
// Dials outside a script call (a readiness or breaker probe) get a second.
const (
	DefaultRedisDialTimeout  = time.Second
	DefaultRedisReadTimeout  = 8 * time.Millisecond
	DefaultRedisWriteTimeout = 8 * time.Millisecond
)

// RedisOptions configures the Redis engine. Zero fields take the value the URL's query
// sets (go-redis names such as read_timeout, pool_size), else the defaults above.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port[/db] or rediss://... for TLS; in cluster and
	// sentinel mode, the URL forms of redis_topology.go.
	URL string
	// Mode is single (the default), cluster or sentinel (redis_topology.go), and
	// SentinelMaster, in sentinel mode, the master's name (overrides the URL's master_name).
	Mode           RedisMode
	SentinelMaster string
	// PoolSize is the number of pooled connections (default 10 × GOMAXPROCS).
	PoolSize     int
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// TLS settings, for rediss:// URLs only: a PEM CA bundle to verify the server with
	// (default: the system roots), a client certificate and key for mutual TLS, and
	// skipping verification (testing only). The files are read again at a handshake
	// when they have changed (internal/tlsfiles).
	TLSCAFile             string
	TLSCertFile           string
	TLSKeyFile            string
	TLSInsecureSkipVerify bool
	// The name the server's certificate must carry is the URL's host (in cluster and
	// sentinel mode the first one's, for every connection). TLSServerName verifies it
	// against (and sends as SNI) that name instead; TLSSkipHostnameVerification skips
	// the name check alone, still verifying the chain up to the CA, the usage and the
	// validity (tlsfiles.VerifyServerChains). At most one of the two.
	TLSServerName               string
	TLSSkipHostnameVerification bool
	// Log hears what the engine cannot return as an error: a rotated TLS file that did
	// not load (the files are read again when they change). Nil: not reported.
	Log *slog.Logger
	// TLSInUse, when set, lists the TLS files the engine reads ("redis_client",
	// "redis_ca"), for metrics.
	TLSInUse *tlsfiles.Registry
	// Batch decides requests that arrive while others are in flight together, in one
	// script call (see redis_batch.go): each request stays atomic and all or nothing on
	// its own. BatchMax bounds requests per call (default 64) and BatchLanes the calls
	// in flight (default 2).
	Batch      bool
	BatchMax   int
	BatchLanes int
	// ProbeKey, when set, is a key Ping writes (SET with a 1 s expiry) after PING: a replica
	// (READONLY) or a Redis out of memory under noeviction (OOM) answers PING but
	// refuses every script call, and readiness and the circuit breaker's probe must
	// see that. Ping also has the script decide a request of one limit per algorithm
	// on keys that start with it (probeDecide). It must not be a storage key (the
	// server uses its key prefix + "probe").
	ProbeKey string
}

// RedisEngine keeps state in Redis and evaluates a whole request with one script call
// (internal/redislua/request.lua), alone or batched with concurrent requests into one
// call (redis_batch.go): atomic on a single Redis either way. With Redis
// Cluster every key of one request must hash to one slot (the script is one command).
type RedisEngine struct {
	client   redis.UniversalClient
	owned    bool
	script   *redislua.Script
	batch    *batcher      // nil: one round trip per call
	budget   time.Duration // how long a script call may take in all (callBudget)
	probeKey string        // RedisOptions.ProbeKey
	probes   probeResults  // PingPartition's recent results, by master
	// slotMapLoaded: a cluster's slot map has been loaded once (pingCluster).
	slotMapLoaded atomic.Bool
	tls           bool // a rediss:// URL: Ping explains a timeout
}

var _ Engine = (*RedisEngine)(nil)

// NewRedisEngine connects lazily: it validates the options and builds the pool, but
// does not dial (use Ping for readiness).
//
// A script call is not idempotent (it charges), so go-redis's command retries are off
// (a URL's max_retries above 0 is refused): a failed call is reported as ErrStore and
// the server's failure policy decides. A connection that failed is replaced by the pool.
func NewRedisEngine(o RedisOptions) (*RedisEngine, error) {
	if o.BatchMax < 0 || o.BatchLanes < 0 {
		return nil, fmt.Errorf("redis: batch size %d and lanes %d must not be negative", o.BatchMax, o.BatchLanes)
	}
	if (o.Mode != "" && o.Mode != RedisSingle) || o.SentinelMaster != "" {
		return newRedisTopologyEngine(o) // batching too (ownedEngine)
	}
	if o.URL == "" {
		return nil, errors.New("redis: no URL")
	}
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, urlError(RedisSingle, o.URL, err)
	}
	// The defaults every mode shares (redis_topology.go): timeouts, pool, no retries, TLS.
	if err := o.applyConn(connFields{
		dial: &opt.DialTimeout, read: &opt.ReadTimeout, write: &opt.WriteTimeout, poolTimeout: &opt.PoolTimeout,
		poolSize: &opt.PoolSize, maxRetries: &opt.MaxRetries, dialerRetries: &opt.DialerRetries,
		contextTimeout: &opt.ContextTimeoutEnabled, disableIdentity: &opt.DisableIdentity, tls: opt.TLSConfig,
	}); err != nil {
		return nil, err
	}
	if o.Batch && opt.PipelinePoolSize >= 0 {
		// A batch's script call runs on the main pool, and the pipelines that reload the
		// script after NOSCRIPT on go-redis's pipeline pool: one connection per lane.
		opt.PipelinePoolSize = max(opt.PipelinePoolSize, batchLanes(o))
	}
	e := NewRedisEngineFromClient(redis.NewClient(opt))
	e.owned, e.probeKey, e.tls = true, o.ProbeKey, o.usesTLS()
	if o.Batch {
		e.EnableBatching(batchLanes(o), o.BatchMax)
	}
	return e, nil
}

func batchLanes(o RedisOptions) int {
	if o.BatchLanes > 0 {
		return o.BatchLanes
	}
	return DefaultRedisBatchLanes
}

// NewRedisEngineFromClient runs on a client the caller owns (and closes): Close leaves it open.
func NewRedisEngineFromClient(c redis.UniversalClient) *RedisEngine {
	return &RedisEngine{client: c, script: redislua.Request, budget: callBudget(c)}
}

// errCallBudget is the cause of a call's context that ran out of its budget, as opposed
// to its caller's deadline (the cluster guard reloads the slot map after the one, not
// after the other).
var errCallBudget = errors.New("redis: the call's read + write timeouts ran out")

// budgetSpent names the engine's bound as the cause of err when the call's budget ran
// out (ctx's cause is errCallBudget): go-redis reports it as "context deadline
// exceeded" (or a socket timeout set from that deadline), which otherwise reads as the
// caller's deadline. err stays in the chain.
func budgetSpent(ctx context.Context, budget time.Duration, err error) error {
	var ne net.Error
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	if !timedOut || !errors.Is(context.Cause(ctx), errCallBudget) {
		return err
	}
	return fmt.Errorf("no reply within the call's bound, the read + write timeouts (%v): %w", budget, err)
}

// callBudget is how long one script call may take in all, a dial included: the
// client's write and read timeouts together (16 ms by default). The socket timeouts
// bound a call on an open connection, not the dial of a new one (DialTimeout, 1 s):
// against a host that drops connection attempts every call would last until its
// caller's deadline (Envoy's 20 ms), the breaker would take each failure for the
// caller giving up, and the circuit would never open. 0 (no bound) when either
// timeout is off. (A client given to NewRedisEngineFromClient without
// ContextTimeoutEnabled takes its socket deadlines from its timeouts alone: there the
// budget bounds the wait for a connection and a dial.)
func callBudget(c redis.UniversalClient) time.Duration {
	var read, write time.Duration
	switch c := c.(type) {
	case *redis.Client: // a single server, or the master Sentinel names
		read, write = c.Options().ReadTimeout, c.Options().WriteTimeout
	case *redis.ClusterClient:
		read, write = c.Options().ReadTimeout, c.Options().WriteTimeout
	}
	if read <= 0 || write <= 0 {
		return 0
	}
	return read + write
}

// EnableBatching turns on pipelined batching of concurrent calls (RedisOptions.Batch)
// with the given number of lanes and calls per pipeline (0: the defaults). Call it
// before the engine serves requests.
func (e *RedisEngine) EnableBatching(lanes, maxBatch int) {
	if lanes <= 0 {
		lanes = DefaultRedisBatchLanes
	}
	if maxBatch <= 0 {
		maxBatch = DefaultRedisBatchMax
	}
	e.batch = newBatcher(e.client, e.script, lanes, maxBatch, e.budget)
}

// BatchStats reports the pipelines and script calls batching sent (zero when off).
func (e *RedisEngine) BatchStats() BatchStats {
	if e.batch == nil {
		return BatchStats{}
	}
	return e.batch.stats()
}

func setDuration(dst *time.Duration, explicit, def time.Duration) {
	switch {
	case explicit != 0:
		*dst = explicit
	case *dst == 0:
		*dst = def
	}
}

func applyTLS(cfg *tls.Config, o RedisOptions) error {
	wantsTLS := o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSKeyFile != "" || o.TLSInsecureSkipVerify ||
		o.TLSServerName != "" || o.TLSSkipHostnameVerification
	if cfg == nil {
		if wantsTLS {
			return errors.New("redis: TLS options need a rediss:// URL")
		}
		return nil
	}
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("redis: a TLS client certificate needs both a cert file and a key file")
	}
	if o.TLSCertFile != "" {
		kp, err := tlsfiles.LoadKeyPair(o.TLSCertFile, o.TLSKeyFile, o.Log)
		if err != nil {
			return fmt.Errorf("redis: TLS client certificate: %w", err)
		}
		o.TLSInUse.Add("redis_client", kp)
		cfg.GetClientCertificate = kp.ForClient
	}
	if o.TLSInsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	return applyServerVerification(cfg, o)
}

// applyServerVerification sets how cfg verifies the server: against the CA bundle, read
// again at each handshake, or the system roots; for the name cfg holds (go-redis's,
// the URL's host), the one TLSServerName gives, or none (TLSSkipHostnameVerification).
func applyServerVerification(cfg *tls.Config, o RedisOptions) error {
	switch {
	case o.TLSServerName != "" && o.TLSSkipHostnameVerification:
		return errors.New("redis: a server name to verify against and skipping the name check contradict each other: set one")
	case cfg.InsecureSkipVerify && (o.TLSServerName != "" || o.TLSSkipHostnameVerification):
		// Either option promises a verified chain, which skip_verify drops.
		return errors.New("redis: skip_verify (in the URL) verifies nothing: a server name or skipping the name check alone does not go with it")
	}
	if o.TLSServerName != "" {
		cfg.ServerName = o.TLSServerName
	}
	var pool *tlsfiles.Pool // nil: the system roots
	if o.TLSCAFile != "" {
		var err error
		if pool, err = tlsfiles.LoadPool(o.TLSCAFile, o.Log); err != nil {
			return fmt.Errorf("redis: TLS CA file: %w", err)
		}
	}
	var verified bool // false: crypto/tls verifies, or skip_verify, which never reads the bundle
	switch {
	case o.TLSSkipHostnameVerification:
		verified = tlsfiles.VerifyServerChains(cfg, pool)
	case pool != nil:
		verified = tlsfiles.VerifyServers(cfg, pool, cfg.ServerName)
	}
	if verified && pool != nil {
		o.TLSInUse.Add("redis_ca", pool)
	}
	return nil
}

// Evaluate implements Engine with request.lua (SPEC §5): one EVALSHA for this request
// alone, or with batching its share of one.
func (e *RedisEngine) Evaluate(ctx context.Context, now int64, checks []LimitCheck, decisions []Decision) (Outcome, error) {
	if err := validateChecks(now, checks, decisions); err != nil {
		return Outcome{}, err
	}
	n := len(checks)
	if n == 0 && now != 0 {
		return Outcome{Now: now, Allowed: true}, nil
	}
	for i := range checks {
		if checks[i].Params == nil {
			return Outcome{}, fmt.Errorf("%w: limit %d has no params", ErrBadRequest, i)
		}
	}
	var reply []int64
	var err error
	if e.batch != nil {
		reply, err = e.batch.do(ctx, now, checks)
	} else {
		reply, err = e.call(ctx, now, checks)
	}
	if err != nil { // a reply of the wrong length too: call and the batcher check it
		return Outcome{}, storeError(err, "")
	}
	out := Outcome{Now: reply[0], Allowed: reply[1] == 1}
	for i := range decisions {
		d := reply[redislua.ReplyPerRequest+redislua.ReplyPerLimit*i:]
		decisions[i] = Decision{Allowed: d[0] == 1, Limit: d[1], Remaining: d[2], ResetAt: d[3], RetryAfterMs: d[4]}
	}
	return out, nil
}

// call decides one request alone with one script call; a reply whose length does not
// fit the request is an error.
func (e *RedisEngine) call(ctx context.Context, now int64, checks []LimitCheck) ([]int64, error) {
	return e.callOn(ctx, e.client, now, checks)
}

// callOn is call on client c (a cluster's master, for Ping).
func (e *RedisEngine) callOn(ctx context.Context, c redisProcessor, now int64, checks []LimitCheck) ([]int64, error) {
	if e.budget > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.budget, errCallBudget)
		defer cancel()
	}
	args := scriptArgs(1, func(int) (int64, []LimitCheck) { return now, checks })
	reply, err := e.script.Run(ctx, c, args)
	if err != nil {
		return nil, budgetSpent(ctx, e.budget, err)
	}
	if want := redislua.ReplyPerRequest + redislua.ReplyPerLimit*len(checks); len(reply) != want {
		return nil, fmt.Errorf("script reply has %d values for %d limits, want %d", len(reply), len(checks), want)
	}
	return reply, nil
}

// Ping checks that Redis answers and runs the script (readiness, and the circuit
// breaker's probe); on a cluster, pingCluster. With a ProbeKey it also checks
// that Redis takes writes and that the script decides a request of every algorithm:
// a user whose ACL lets it run the script but not a command inside it (TIME, GET, ...)
// fails every decision, and would pass a script call that carries no request.
func (e *RedisEngine) Ping(ctx context.Context) error {
	if cc, ok := e.client.(*redis.ClusterClient); ok {
		return e.pingCluster(ctx, cc)
	}
	if err := pingStore(ctx, e.client); err != nil {
		return storeError(err, e.timeoutHint(err))
	}
	if e.probeKey == "" {
		if err := runsScript(ctx, e.client, e.script); err != nil {
			return storeError(err, "")
		}
		return nil
	}
	if err := e.probeWrites(ctx, e.client, ""); err != nil {
		return storeError(err, "")
	}
	return nil
}

// pingCluster is Ping on a cluster: the slot map reloaded, and every master pinged,
// written to and made to decide the probe request, each on keys with a hash tag in its
// slots. Without a ProbeKey every master must answer and run the script. With one the
// store is usable while some master is: a failed master's domains are answered by
// their own circuits (breaker, Partition), and taking every replica of the service out
// of its load balancer for one master would stop the domains of the others too.
func (e *RedisEngine) pingCluster(ctx context.Context, cc *redis.ClusterClient) error {
	if e.probeKey == "" {
		if err := pingStore(ctx, cc); err != nil {
			return storeError(err, e.timeoutHint(err))
		}
		if err := runsScript(ctx, cc, e.script); err != nil {
			return storeError(err, "")
		}
		return nil
	}
	// Every master at once, each on its own: one that does not answer (a host gone,
	// whose connection attempts hang) must not use up the time of the others.
	var mu sync.Mutex
	var failed error
	usable := false
	// ForEachMaster reloads the slot map first, from one node after another: a node that
	// does not answer may hold that for its timeouts, so once a map has loaded the
	// reload gets slotMapBudget and the map known before serves past it; the first load
	// may take Ping's whole time.
	reload, cancel := ctx, context.CancelFunc(func() {})
	if e.slotMapLoaded.Load() {
		reload, cancel = context.WithTimeout(ctx, slotMapBudget)
	}
	defer cancel()
	err := cc.ForEachMaster(reload, func(_ context.Context, m *redis.Client) error {
		err := e.probeMaster(ctx, cc, m)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("master %s: %w", m.Options().Addr, err))
		} else {
			usable = true
		}
		return nil
	})
	if err == nil {
		e.slotMapLoaded.Store(true)
	}
	switch {
	case usable:
		return nil
	case err != nil:
		failed = err
	case failed == nil:
		failed = errors.New("the cluster has no master")
	}
	return fmt.Errorf("%w: redis: no master takes the probe: %w%s", ErrStore, failed, e.timeoutHint(failed))
}

// probeMaster takes a write and decides the probe request on the master m itself, on
// keys with a hash tag of a slot m serves (tagOfMaster).
func (e *RedisEngine) probeMaster(ctx context.Context, cc *redis.ClusterClient, m *redis.Client) error {
	tag, err := tagOfMaster(ctx, cc, m)
	if err != nil {
		return err
	}
	return e.probeWrites(ctx, m, tag)
}

// tagOfMaster returns a hash tag of a slot that m serves in the cluster client's own
// slot map, whose addresses are the ones the client dials (go-redis rewrites what
// CLUSTER SLOTS says, e.g. a loopback address to the host the client was given), so
// they compare equal to m's.
func tagOfMaster(ctx context.Context, cc *redis.ClusterClient, m *redis.Client) (string, error) {
	for i := 0; i < 1<<17; i++ { // a master of thousands of slots is found in a few tries
		tag := "{" + strconv.Itoa(i) + "}"
		owner, err := cc.MasterForKey(ctx, tag)
		if err != nil {
			return "", err
		}
		if owner.Options().Addr == m.Options().Addr {
			return tag, nil
		}
	}
	return "", errors.New("serves no slot in the slot map")
}

// Partition names the part of the store a request's checks go to (breaker.Partitioner):
// on a cluster the hash slot of their keys (all of a request's share one: its domain's
// hash tag's), and that tag, for PingPartition; else -1, the whole store.
func (e *RedisEngine) Partition(checks []LimitCheck) (slot int, tag string) {
	if _, ok := e.client.(*redis.ClusterClient); !ok || len(checks) == 0 {
		return -1, ""
	}
	tag = hashTag(checks[0].Key)
	return int(keySlot(tag)), tag
}

// Cluster reports whether the engine runs on a Redis Cluster (whose parts fail on their
// own: Partition).
func (e *RedisEngine) Cluster() bool {
	_, ok := e.client.(*redis.ClusterClient)
	return ok
}

// PingPartition checks the master of one hash tag (Partition), through the cluster
// client, so a failover's new master is found: with a ProbeKey it is written to and
// decides the probe request there, else a key of the tag is read. Circuits of slots on
// one master share a result for ProbeShare, so that many open circuits probe a
// struggling master about once per interval, not once each.
func (e *RedisEngine) PingPartition(ctx context.Context, tag string) error {
	cc, ok := e.client.(*redis.ClusterClient)
	if !ok {
		return e.Ping(ctx)
	}
	key := "{" + tag + "}"
	m, err := cc.MasterForKey(ctx, key)
	if err != nil {
		return e.probeSlot(ctx, cc, key)
	}
	done, shared, err := e.probes.join(ctx, m.Options().Addr)
	if shared {
		return err
	}
	err = e.probeSlot(ctx, cc, key)
	done(err)
	return err
}

// probeSlot checks the master of key's slot through the cluster client: with a ProbeKey
// it takes a write and decides the probe request, else key is read.
func (e *RedisEngine) probeSlot(ctx context.Context, cc *redis.ClusterClient, key string) error {
	var err error
	if e.probeKey != "" {
		err = e.probeWrites(ctx, cc, key)
	} else if err = cc.Get(ctx, "ratelimit-ext:probe"+key).Err(); errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil {
		return storeError(err, "")
	}
	return nil
}

// probeWrites checks that the store (c) takes a write, and decides a request
// (probeDecide), on keys ending in tag.
func (e *RedisEngine) probeWrites(ctx context.Context, c redisClient, tag string) error {
	if err := c.Set(ctx, e.probeKey+tag, "1", time.Second).Err(); err != nil {
		return fmt.Errorf("a write (SET %s) failed: %w", e.probeKey+tag, err)
	}
	return e.probeDecide(ctx, c, tag)
}

// redisProcessor runs commands (a client of any kind); redisClient also builds them.
type (
	redisProcessor interface {
		Process(context.Context, redis.Cmder) error
	}
	redisClient interface {
		redisProcessor
		Set(ctx context.Context, key string, value any, expiration time.Duration) *redis.StatusCmd
	}
)

// probeDecide has the script decide, at the store's clock, a request of one limit per
// algorithm on keys ProbeKey:<algorithm>, each followed by tag (a hash tag on a
// cluster), so that every command the script may call for a request runs.
func (e *RedisEngine) probeDecide(ctx context.Context, c redisProcessor, tag string) error {
	var checks [len(probeParams)]LimitCheck
	for i := range probeParams {
		checks[i] = LimitCheck{Key: e.probeKey + ":" + probeParams[i].Algorithm.String() + tag, Params: &probeParams[i], Cost: 1}
	}
	reply, err := e.callOn(ctx, c, 0, checks[:])
	switch {
	case err != nil:
		return fmt.Errorf("the rate-limit script does not run: %w", err)
	case reply[1] != 1:
		// Denied: nothing was written, so the write commands went unchecked. Only
		// probes far more frequent than readiness makes can get here.
		return errors.New("the probe request was denied: its limits are too low for the probes")
	}
	return nil
}

// probeParams are limits that probes never reach (at most 1,000 a second on the
// log, whose 10 ms window keeps it small).
var probeParams = func() [6]Params {
	ps := [6]Params{
		{Algorithm: FixedWindow, Limit: MaxLimit, PeriodMs: 1000},
		{Algorithm: GCRA, Limit: 1_000_000, PeriodMs: 1000},
		{Algorithm: TokenBucket, Limit: 1_000_000, PeriodMs: 1000},
		{Algorithm: SlidingWindow, Limit: 1_000_000, PeriodMs: 1000},
		{Algorithm: SlidingWindowLog, Limit: MaxLogLimit, PeriodMs: 10},
		{Algorithm: TokenBudget, Limit: MaxLimit, PeriodMs: 1000},
	}
	for i := range ps {
		if err := ps[i].Validate(); err != nil {
			panic(err) // constants: a mistake here fails every test
		}
	}
	return ps
}()

// timeoutHint adds a possible cause to a timed-out PING over TLS: a port that does not
// speak TLS never answers the handshake, so a rediss:// URL pointed at a plain Redis
// would otherwise read as a slow network. It says "if": a slow TLS Redis times out too.
func (e *RedisEngine) timeoutHint(err error) string {
	var ne net.Error
	if !e.tls || !(errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()) {
		return ""
	}
	return " (the URL is rediss://: if that port does not speak TLS, the handshake waits unanswered until the timeout)"
}

// usesTLS says whether the URL asks for TLS.
func (o RedisOptions) usesTLS() bool { return strings.HasPrefix(strings.ToLower(o.URL), "rediss://") }

// Close stops batching and closes the connection pool if the engine created it.
func (e *RedisEngine) Close() error {
	if e.batch != nil {
		e.batch.close()
	}
	if e.owned {
		return e.client.Close()
	}
	return nil
}
