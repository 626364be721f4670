package testredis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of private redis-server processes on loopback, built with
// `redis-cli --cluster create`: node timeout 1 s (a dead master is replaced by its
// replica within a few seconds), no persistence, every process stopped when the test
// ends.
type Cluster struct {
	t     testing.TB
	nodes []*Server

	mu     sync.Mutex
	client *redis.ClusterClient
}

// StartCluster starts masters × (1 + replicasPerMaster) nodes, joins them into one
// cluster with every slot assigned, and waits until every node reports cluster_state:ok
// with all 16384 slots served and every replica has synced with its master. masters
// must be at least 3 (redis-cli's minimum). Without redis-server or redis-cli the test
// is skipped, or failed under CI=true.
func StartCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	if masters < 3 || replicasPerMaster < 0 {
		t.Fatalf("testredis: a cluster needs at least 3 masters and no negative replica count (got %d, %d)", masters, replicasPerMaster)
	}
	cli := lookPath(t, "redis-cli")
	c := &Cluster{t: t}
	total := masters * (1 + replicasPerMaster)
	for range total {
		// An empty diskless-sync delay: a replica's first sync starts at once, not after 5 s.
		c.nodes = append(c.nodes, launch(t, &Server{cluster: true, extra: []string{"--repl-diskless-sync-delay", "0"}}))
	}
	t.Cleanup(c.closeClient) // runs before the servers' cleanups

	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("testredis: redis-cli --cluster create: %v\n%s", err, lastLines(out.String(), 30))
	}
	if err := c.WaitHealthy(20 * time.Second); err != nil {
		t.Fatalf("testredis: cluster not ready: %v\nredis-cli output:\n%s", err, lastLines(out.String(), 30))
	}
	return c
}

// Nodes returns every node, masters and replicas, in start order.
func (c *Cluster) Nodes() []*Server { return c.nodes }

// Addrs returns every node's host:port.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL is the cluster URL go-redis's ParseClusterURL reads: the first node as the host,
// every other one as an addr parameter.
func (c *Cluster) URL() string {
	addrs := c.Addrs()
	var b strings.Builder
	b.WriteString("redis://" + addrs[0])
	for i, a := range addrs[1:] {
		if i == 0 {
			b.WriteString("?addr=")
		} else {
			b.WriteString("&addr=")
		}
		b.WriteString(a)
	}
	return b.String()
}

// Client returns a cluster client for inspecting the cluster (closed at cleanup).
func (c *Cluster) Client() *redis.ClusterClient {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true,
			DialTimeout: time.Second, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	}
	return c.client
}

func (c *Cluster) closeClient() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client != nil {
		_ = c.client.Close()
		c.client = nil
	}
}

// nodeClient is a short-lived direct connection to one node.
func nodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
}

// checkClient is nodeClient (it dials lazily) with a context that bounds one check to
// 3 s; done releases both.
func checkClient(addr string) (*redis.Client, context.Context, func()) {
	nc := nodeClient(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	return nc, ctx, func() { cancel(); nc.Close() }
}

// onLiveNode runs fn against the running nodes in turn until one succeeds.
func (c *Cluster) onLiveNode(fn func(ctx context.Context, n *redis.Client) error) error {
	err := errors.New("no node is running")
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		nc, ctx, done := checkClient(s.Addr())
		err = fn(ctx, nc)
		done()
		if err == nil {
			return nil
		}
	}
	return err
}

// Slot returns the hash slot of key (CLUSTER KEYSLOT on a running node).
func (c *Cluster) Slot(key string) int {
	c.t.Helper()
	var slot int64
	if err := c.onLiveNode(func(ctx context.Context, n *redis.Client) (err error) {
		slot, err = n.ClusterKeySlot(ctx, key).Result()
		return err
	}); err != nil {
		c.t.Fatalf("testredis: CLUSTER KEYSLOT %q: %v", key, err)
	}
	return int(slot)
}

// MasterOf returns the node that serves slot as master, as the running nodes see it:
// every running node must name the same one (else an error, e.g. during a failover).
func (c *Cluster) MasterOf(slot int) (*Server, error) {
	var addr string
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		a, err := slotMaster(s.Addr(), slot)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", s.Addr(), err)
		}
		if addr != "" && a != addr {
			return nil, fmt.Errorf("nodes disagree on the master of slot %d: %s and %s", slot, addr, a)
		}
		addr = a
	}
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s, nil
		}
	}
	return nil, fmt.Errorf("slot %d: master %q is not a node of this cluster", slot, addr)
}

func slotMaster(nodeAddr string, slot int) (string, error) {
	nc, ctx, done := checkClient(nodeAddr)
	defer done()
	slots, err := nc.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	for _, r := range slots {
		if r.Start <= slot && slot <= r.End && len(r.Nodes) > 0 {
			return r.Nodes[0].Addr, nil
		}
	}
	return "", fmt.Errorf("slot %d is not served", slot)
}

// MasterForKey returns the master serving key's slot (see MasterOf).
func (c *Cluster) MasterForKey(key string) (*Server, error) { return c.MasterOf(c.Slot(key)) }

// KillMasterOf SIGKILLs the master serving slot and returns it. With a replica, the
// cluster promotes it after the node timeout (1 s) and an election (about a second).
func (c *Cluster) KillMasterOf(slot int) *Server {
	c.t.Helper()
	m, err := c.MasterOf(slot)
	if err != nil {
		c.t.Fatalf("testredis: %v", err)
	}
	m.Kill()
	return m
}

// WaitHealthy waits until every running node reports cluster_state:ok with all 16384
// slots assigned and ok, the running nodes agree on every slot's master, and every
// running replica's link to its master is up.
func (c *Cluster) WaitHealthy(timeout time.Duration) error { return waitFor(timeout, c.healthy) }

func (c *Cluster) healthy() error {
	var view string
	for _, s := range c.nodes {
		if !s.Running() {
			continue
		}
		if err := nodeHealthy(s.Addr()); err != nil {
			return fmt.Errorf("node %s: %w", s.Addr(), err)
		}
		v, err := slotView(s.Addr())
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr(), err)
		}
		if view != "" && v != view {
			return errors.New("nodes disagree on slot ownership")
		}
		view = v
	}
	return nil
}

func nodeHealthy(addr string) error {
	nc, ctx, done := checkClient(addr)
	defer done()
	info, err := nc.ClusterInfo(ctx).Result()
	if err != nil {
		return err
	}
	for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_slots_ok:16384"} {
		if !strings.Contains(info, want+"\r\n") {
			return fmt.Errorf("CLUSTER INFO lacks %s", want)
		}
	}
	repl, err := nc.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
		return errors.New("replica not synced with its master")
	}
	return nil
}

// slotView renders CLUSTER SLOTS as "start-end:master" ranges in order.
func slotView(addr string) (string, error) {
	nc, ctx, done := checkClient(addr)
	defer done()
	slots, err := nc.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	owner := make([]string, 16384)
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			continue
		}
		for i := r.Start; i <= r.End && i < len(owner); i++ {
			owner[i] = r.Nodes[0].Addr
		}
	}
	var b strings.Builder
	for i := 0; i < len(owner); {
		j := i
		for j+1 < len(owner) && owner[j+1] == owner[i] {
			j++
		}
		fmt.Fprintf(&b, "%d-%d:%s ", i, j, owner[i])
		i = j + 1
	}
	return b.String(), nil
}
