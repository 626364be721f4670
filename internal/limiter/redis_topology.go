package limiter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
	"github.com/redis/go-redis/v9"
)

// Redis deployments other than a single server: Redis Cluster (go-redis's cluster client)
// and a master found through Redis Sentinel (go-redis's failover client). Both run the
// same engine (request.lua by EVALSHA, batched or one call per request), with the
// connection defaults of the single-server engine (applyConn).
//
// Cluster. A script call is one command, so every key of a request must hash to one slot
// (else Redis answers CROSSSLOT and nothing runs). The server builds keys with
// storekey.Builder.ClusterTag, which puts the domain in a {hash tag}: every key of a
// domain, hence of a request, lands on one slot, and each request stays one atomic,
// exact, all-or-nothing step. Redirects are followed (MOVED and ASK name another node;
// the command did not run there); a call that may have run is never sent again.
//
// Sentinel. The failover client asks the sentinels for the master on every new
// connection and drops connections to a master the sentinels replaced, so requests
// succeed again as soon as a replica is promoted, without rebuilding the engine.

// RedisMode is how the service reaches Redis.
type RedisMode string

// The modes of RedisOptions.Mode; the empty mode is RedisSingle.
const (
	RedisSingle   RedisMode = "single"   // one server (or a proxy that looks like one)
	RedisCluster  RedisMode = "cluster"  // Redis Cluster
	RedisSentinel RedisMode = "sentinel" // the master a set of sentinels names
)

// ParseRedisMode reads single, cluster or sentinel.
func ParseRedisMode(s string) (RedisMode, error) {
	switch m := RedisMode(s); m {
	case RedisSingle, RedisCluster, RedisSentinel:
		return m, nil
	case "":
		return RedisSingle, nil
	}
	return "", fmt.Errorf("redis mode %q: want single, cluster or sentinel", s)
}

// newRedisTopologyEngine builds the engine for any mode but single (NewRedisEngine).
func newRedisTopologyEngine(o RedisOptions) (*RedisEngine, error) {
	mode, err := ParseRedisMode(string(o.Mode))
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	if o.SentinelMaster != "" && mode != RedisSentinel {
		return nil, fmt.Errorf("redis: a sentinel master name is for sentinel mode, not %s", mode)
	}
	if o.URL == "" {
		return nil, errors.New("redis: no URL")
	}
	switch mode {
	case RedisCluster:
		return newRedisClusterEngine(o)
	case RedisSentinel:
		return newRedisSentinelEngine(o)
	}
	return nil, fmt.Errorf("redis: mode %s has no topology engine", mode)
}

// newRedisClusterEngine connects to Redis Cluster: o.URL is
// redis://host1:port1?addr=host2:port2&addr=host3:port3 (go-redis's ParseClusterURL;
// rediss:// for TLS). The nodes listed are seeds: the client learns the rest, and every
// slot's master, from CLUSTER SLOTS.
func newRedisClusterEngine(o RedisOptions) (*RedisEngine, error) {
	opt, err := redis.ParseClusterURL(o.URL)
	if err != nil {
		return nil, urlError(RedisCluster, o.URL, err)
	}
	if err := o.applyConn(connFields{
		dial: &opt.DialTimeout, read: &opt.ReadTimeout, write: &opt.WriteTimeout, poolTimeout: &opt.PoolTimeout,
		poolSize: &opt.PoolSize, maxRetries: &opt.MaxRetries, dialerRetries: &opt.DialerRetries,
		contextTimeout: &opt.ContextTimeoutEnabled, disableIdentity: &opt.DisableIdentity, tls: opt.TLSConfig,
	}); err != nil {
		return nil, err
	}
	c := redis.NewClusterClient(opt)
	c.AddHook(clusterGuard{client: c})
	return ownedEngine(c, o), nil
}

// newRedisSentinelEngine connects to the master the sentinels name: o.URL is
// redis://sentinel1:26379?addr=sentinel2:26379&master_name=mymaster (go-redis's
// ParseFailoverURL: the URL's user and password authenticate to the sentinels, the
// username and password query parameters to the master); o.SentinelMaster, when set,
// overrides master_name.
func newRedisSentinelEngine(o RedisOptions) (*RedisEngine, error) {
	opt, err := redis.ParseFailoverURL(o.URL)
	if err != nil {
		return nil, urlError(RedisSentinel, o.URL, err)
	}
	if o.SentinelMaster != "" {
		opt.MasterName = o.SentinelMaster
	}
	if opt.MasterName == "" {
		return nil, errors.New("redis: sentinel mode needs the master's name (master_name in the URL, or the sentinel master option)")
	}
	if err := o.applyConn(connFields{
		dial: &opt.DialTimeout, read: &opt.ReadTimeout, write: &opt.WriteTimeout, poolTimeout: &opt.PoolTimeout,
		poolSize: &opt.PoolSize, maxRetries: &opt.MaxRetries, dialerRetries: &opt.DialerRetries,
		contextTimeout: &opt.ContextTimeoutEnabled, disableIdentity: &opt.DisableIdentity, tls: opt.TLSConfig,
	}); err != nil {
		return nil, err
	}
	return ownedEngine(redis.NewFailoverClient(opt), o), nil
}

// ownedEngine runs on a client the engine created (and closes), with the batching the
// options ask for.
func ownedEngine(c redis.UniversalClient, o RedisOptions) *RedisEngine {
	e := NewRedisEngineFromClient(c)
	e.owned, e.probeKey, e.tls = true, o.ProbeKey, o.usesTLS()
	if o.Batch {
		e.EnableBatching(o.BatchLanes, o.BatchMax)
	}
	return e
}

// pingStore checks that the store answers. On a cluster a random node answering PING
// says little: every master must answer (with the slot map reloaded first, so a promoted
// replica counts and a dead master does not), since a request may need any slot.
func pingStore(ctx context.Context, c redis.UniversalClient) error {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return c.Ping(ctx).Err()
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := m.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("master %s: %w", m.Options().Addr, err)
		}
		return nil
	})
}

// runsScript checks that Redis runs the engine's script: a call carrying no request,
// which the script refuses as a bad layout before it reads or writes anything. A user
// whose ACL lacks EVALSHA, or a Redis with the command renamed, fails here as every
// real call would: PING and SET alone would call such a store healthy. On a cluster,
// every master is checked (a NOSCRIPT on one also loads the script there).
func runsScript(ctx context.Context, c redis.UniversalClient, s *redislua.Script) error {
	check := func(ctx context.Context, c interface {
		Process(context.Context, redis.Cmder) error
	}) error {
		_, err := s.Run(ctx, c, []any{nil, nil, 0})
		if err == nil || strings.Contains(err.Error(), "bad KEYS/ARGV layout") {
			return nil
		}
		return fmt.Errorf("the rate-limit script does not run: %w", err)
	}
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return check(ctx, c)
	}
	return cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if err := check(ctx, m); err != nil {
			return fmt.Errorf("master %s: %w", m.Options().Addr, err)
		}
		return nil
	})
}

// keySlot is Redis Cluster's slot of a hash tag: CRC16 (XMODEM) mod 16384.
func keySlot(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}

// connFields points at the connection settings go-redis's Options, ClusterOptions and
// FailoverOptions share, so that applyConn configures all three modes alike.
type connFields struct {
	dial, read, write, poolTimeout      *time.Duration
	poolSize, maxRetries, dialerRetries *int
	contextTimeout, disableIdentity     *bool
	tls                                 *tls.Config // nil unless the URL is rediss://
}

// applyConn sets the fields from o, else keeps what the URL's query set, else applies
// the defaults: short read and write deadlines, 10 connections per CPU and node, no
// command retries (a script call that may have run must not be sent again: it could
// charge twice), one dial attempt (fail fast while Redis is down; the pool redials
// later), the caller's deadline shortening the socket deadlines of a call made for it
// alone (a batched call serves several callers and keeps the read and write timeouts),
// no CLIENT SETINFO round trips on connect, and the TLS files.
func (o RedisOptions) applyConn(f connFields) error {
	setDuration(f.dial, o.DialTimeout, DefaultRedisDialTimeout)
	setDuration(f.read, o.ReadTimeout, DefaultRedisReadTimeout)
	setDuration(f.write, o.WriteTimeout, DefaultRedisWriteTimeout)
	switch {
	case o.PoolSize > 0:
		*f.poolSize = o.PoolSize
	case o.PoolSize < 0:
		return fmt.Errorf("redis: pool size %d is negative", o.PoolSize)
	case *f.poolSize == 0:
		*f.poolSize = 10 * runtime.GOMAXPROCS(0)
	}
	if *f.poolTimeout == 0 {
		// Waiting for a free connection longer than a call may take is pointless.
		*f.poolTimeout = max(*f.read+*f.write, 10*time.Millisecond)
	}
	switch {
	case *f.maxRetries > 0:
		// A script call that may have run must not be sent again: it could charge twice.
		return errors.New("redis: max_retries in the URL: retries are not allowed (a script call that may have run must not be sent twice)")
	case *f.maxRetries == 0:
		*f.maxRetries = -1
	}
	if *f.dialerRetries == 0 {
		*f.dialerRetries = 1
	}
	*f.contextTimeout = true
	*f.disableIdentity = true
	return applyTLS(f.tls, o)
}

// clusterGuard is a hook on the cluster client.
//
// No second send: go-redis's cluster client re-sends a command after a network error or
// a timeout (within MaxRedirects), when a script call may already have run and charged.
// The guard marks script calls as not retryable, which go-redis honours for single
// commands and pipelines alike, while MOVED and ASK redirects (and READONLY, a replica's
// refusal) are still followed: the node that answered them did not run the command.
//
// Prompt failover: the client reloads the slot map on a redirect or every 60 s. When a
// master dies, calls to it fail with network errors and no redirect ever comes, so after
// such a failure the guard asks for a reload (go-redis runs at most one at a time): once
// the cluster has promoted a replica, the next call goes to it.
type clusterGuard struct {
	client *redis.ClusterClient
}

// noRetryCmd is a script call go-redis must not send twice. It embeds the caller's
// command (of any reply type), so the reply lands there.
type noRetryCmd struct{ redis.Cmder }

func (noRetryCmd) NoRetry() bool { return true }

func (g clusterGuard) wrap(cmd redis.Cmder) redis.Cmder {
	switch cmd.Name() {
	case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
		return noRetryCmd{cmd}
	}
	return cmd
}

// reloadAfter asks for a slot map reload after a failure that may mean a node is gone:
// a network error, a timeout (the call's budget running out included) or CLUSTERDOWN
// (not a Redis error such as NOSCRIPT, and not a caller that gave up).
func (g clusterGuard) reloadAfter(ctx context.Context, err error) bool {
	gaveUp := ctx.Err() != nil && !errors.Is(context.Cause(ctx), errCallBudget)
	if err == nil || gaveUp || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") {
		return false
	}
	g.client.ReloadState(ctx)
	return true
}

func (g clusterGuard) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g clusterGuard) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, g.wrap(cmd))
		g.reloadAfter(ctx, err)
		return err
	}
}

func (g clusterGuard) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		wrapped := cmds
		for i, cmd := range cmds {
			if w := g.wrap(cmd); w != cmd {
				if &wrapped[0] == &cmds[0] {
					wrapped = append([]redis.Cmder(nil), cmds...)
				}
				wrapped[i] = w
			}
		}
		err := next(ctx, wrapped)
		for _, cmd := range cmds {
			if g.reloadAfter(ctx, cmd.Err()) {
				break
			}
		}
		return err
	}
}

// slotMapBudget bounds the reload of the slot map that Ping starts with.
const slotMapBudget = 100 * time.Millisecond

// ProbeShare is how long a master's probe result answers the probes of the other
// circuits on that master (PingPartition).
const ProbeShare = 200 * time.Millisecond

// probeResults shares probes of one master among the circuits of its slots: a probe
// in flight is joined, and a finished one answers for ProbeShare. Bounded by the
// addresses the slot map names (reset past 1,024, as nodes come and go).
type probeResults struct {
	mu   sync.Mutex
	last map[string]*probeFlight
}

type probeFlight struct {
	done chan struct{} // closed when err is set
	at   time.Time
	err  error
}

// join returns the result of addr's probe in flight or younger than ProbeShare
// (shared true), waiting for one in flight; else it registers the caller's probe,
// whose result the caller passes to done.
func (p *probeResults) join(ctx context.Context, addr string) (done func(error), shared bool, err error) {
	p.mu.Lock()
	if f, ok := p.last[addr]; ok {
		select {
		case <-f.done:
			if time.Since(f.at) < ProbeShare {
				p.mu.Unlock()
				return nil, true, f.err
			}
		default:
			p.mu.Unlock()
			select {
			case <-f.done:
				return nil, true, f.err
			case <-ctx.Done():
				return nil, true, fmt.Errorf("%w: redis: %w", ErrStore, ctx.Err())
			}
		}
	}
	if p.last == nil || len(p.last) >= 1024 {
		p.last = map[string]*probeFlight{}
	}
	f := &probeFlight{done: make(chan struct{})}
	p.last[addr] = f
	p.mu.Unlock()
	return func(err error) {
		p.mu.Lock()
		f.at, f.err = time.Now(), err
		p.mu.Unlock()
		close(f.done)
	}, false, nil
}
