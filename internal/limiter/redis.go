package limiter

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
)

// ErrStore wraps every error caused by the store (unreachable, timed out, a bad reply);
// the server maps it to gRPC UNAVAILABLE (SPEC §6).
var ErrStore = errors.New("store unavailable")

// Defaults of RedisOptions. Envoy's rate-limit filter gives the whole call 20 ms by
// default, and a healthy Redis answers a script in well under a millisecond: a read and
// a write deadline of 8 ms each keep a stuck store below Envoy's deadline, so this
// service answers UNAVAILABLE (and counts it) itself instead of Envoy timing out. Dialing
// happens off the hot path of warm pools, so it gets a second.
const (
	DefaultRedisDialTimeout  = time.Second
	DefaultRedisReadTimeout  = 8 * time.Millisecond
	DefaultRedisWriteTimeout = 8 * time.Millisecond
)

// RedisOptions configures the Redis engine. Zero fields take the value the URL's query
// sets (go-redis names such as read_timeout, pool_size), else the defaults above.
type RedisOptions struct {
	// URL is redis://[user:pass@]host:port[/db] or rediss://... for TLS.
	URL string
	// PoolSize is the number of pooled connections (default 10 × GOMAXPROCS).
	PoolSize     int
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// TLS settings, for rediss:// URLs only: a PEM CA bundle to verify the server with
	// (default: the system roots), a client certificate and key for mutual TLS, and
	// skipping verification (testing only).
	TLSCAFile             string
	TLSCertFile           string
	TLSKeyFile            string
	TLSInsecureSkipVerify bool
}

// RedisEngine keeps state in Redis and evaluates a whole request with one script call
// (internal/redislua/request.lua): one round trip, atomic on a single Redis. With Redis
// Cluster every key of one request must hash to one slot (the script is one command).
type RedisEngine struct {
	client redis.UniversalClient
	owned  bool
	script *redislua.Script
}

var _ Engine = (*RedisEngine)(nil)

// NewRedisEngine connects lazily: it validates the options and builds the pool, but
// does not dial (use Ping for readiness).
//
// A script call is not idempotent (it charges), so go-redis's command retries are off
// unless the URL sets max_retries: a failed call is reported as ErrStore and the
// server's failure policy decides. A connection that failed is replaced by the pool.
func NewRedisEngine(o RedisOptions) (*RedisEngine, error) {
	if o.URL == "" {
		return nil, errors.New("redis: no URL")
	}
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: URL: %w", err)
	}
	setDuration(&opt.DialTimeout, o.DialTimeout, DefaultRedisDialTimeout)
	setDuration(&opt.ReadTimeout, o.ReadTimeout, DefaultRedisReadTimeout)
	setDuration(&opt.WriteTimeout, o.WriteTimeout, DefaultRedisWriteTimeout)
	switch {
	case o.PoolSize > 0:
		opt.PoolSize = o.PoolSize
	case o.PoolSize < 0:
		return nil, fmt.Errorf("redis: pool size %d is negative", o.PoolSize)
	case opt.PoolSize == 0:
		opt.PoolSize = 10 * runtime.GOMAXPROCS(0)
	}
	if opt.PoolTimeout == 0 {
		// Waiting for a free connection longer than a call may take is pointless.
		opt.PoolTimeout = max(opt.ReadTimeout+opt.WriteTimeout, 10*time.Millisecond)
	}
	if opt.MaxRetries == 0 {
		opt.MaxRetries = -1
	}
	if opt.DialerRetries == 0 {
		opt.DialerRetries = 1 // fail fast while Redis is down; the pool redials later
	}
	opt.ContextTimeoutEnabled = true // a caller's deadline shortens the socket deadlines
	opt.DisableIdentity = true       // no CLIENT SETINFO round trips on connect
	if err := applyTLS(opt, o); err != nil {
		return nil, err
	}
	return &RedisEngine{client: redis.NewClient(opt), owned: true, script: redislua.Request}, nil
}

// NewRedisEngineFromClient runs on a client the caller owns (and closes): Close leaves it open.
func NewRedisEngineFromClient(c redis.UniversalClient) *RedisEngine {
	return &RedisEngine{client: c, script: redislua.Request}
}

func setDuration(dst *time.Duration, explicit, def time.Duration) {
	switch {
	case explicit != 0:
		*dst = explicit
	case *dst == 0:
		*dst = def
	}
}

func applyTLS(opt *redis.Options, o RedisOptions) error {
	wantsTLS := o.TLSCAFile != "" || o.TLSCertFile != "" || o.TLSKeyFile != "" || o.TLSInsecureSkipVerify
	if opt.TLSConfig == nil {
		if wantsTLS {
			return errors.New("redis: TLS options need a rediss:// URL")
		}
		return nil
	}
	cfg := opt.TLSConfig
	if cfg.MinVersion < tls.VersionTLS12 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return fmt.Errorf("redis: TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("redis: TLS CA file %s holds no PEM certificate", o.TLSCAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		return errors.New("redis: a TLS client certificate needs both a cert file and a key file")
	}
	if o.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCertFile, o.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("redis: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.TLSInsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	return nil
}

// Evaluate implements Engine with one EVALSHA of request.lua (SPEC §5).
func (e *RedisEngine) Evaluate(ctx context.Context, now int64, checks []LimitCheck, decisions []Decision) (Outcome, error) {
	if err := validateChecks(now, checks, decisions); err != nil {
		return Outcome{}, err
	}
	n := len(checks)
	if n == 0 && now != 0 {
		return Outcome{Now: now, Allowed: true}, nil
	}
	keys := make([]string, n)
	args := make([]any, 0, redislua.ArgsHeader+redislua.ArgsPerLimit*n)
	args = append(args, now, n)
	for i := range checks {
		c := &checks[i]
		p := c.Params
		if p == nil {
			return Outcome{}, fmt.Errorf("%w: limit %d has no params", ErrBadRequest, i)
		}
		keys[i] = c.Key
		var shadow int64
		if c.Shadow {
			shadow = 1
		}
		args = append(args, int64(p.Algorithm), c.Cost, shadow, p.Limit, p.PeriodMs, p.Burst,
			p.num, p.den, p.width, p.Buckets)
	}
	reply, err := e.script.Run(ctx, e.client, keys, args...).Slice()
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: redis: %w", ErrStore, err)
	}
	if want := redislua.ReplyHeader + redislua.ReplyPerLimit*n; len(reply) != want {
		return Outcome{}, fmt.Errorf("%w: redis: script reply has %d values, want %d", ErrStore, len(reply), want)
	}
	var bad bool
	num := func(i int) int64 {
		v, ok := reply[i].(int64)
		bad = bad || !ok
		return v
	}
	out := Outcome{Now: num(0), Allowed: num(1) == 1}
	for i := range decisions {
		b := redislua.ReplyHeader + redislua.ReplyPerLimit*i
		decisions[i] = Decision{
			Allowed:      num(b) == 1,
			Limit:        num(b + 1),
			Remaining:    num(b + 2),
			ResetAt:      num(b + 3),
			RetryAfterMs: num(b + 4),
		}
	}
	if bad {
		return Outcome{}, fmt.Errorf("%w: redis: script reply holds a non-integer", ErrStore)
	}
	return out, nil
}

// Ping checks that Redis answers (readiness).
func (e *RedisEngine) Ping(ctx context.Context) error {
	if err := e.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: redis: %w", ErrStore, err)
	}
	return nil
}

// Close closes the connection pool if the engine created it.
func (e *RedisEngine) Close() error {
	if e.owned {
		return e.client.Close()
	}
	return nil
}
