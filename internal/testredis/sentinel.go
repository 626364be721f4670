package testredis

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMasterName is the name the sentinel of StartSentinel monitors.
const SentinelMasterName = "mymaster"

// Sentinel is a master, one replica and one sentinel (quorum 1) on loopback. The
// sentinel marks a silent master down after 500 ms and fails over to the replica;
// failover-timeout is 2 s.
type Sentinel struct {
	t       testing.TB
	nodes   []*Server // the first master, then its replica
	monitor *Server   // the sentinel process
}

// StartSentinel starts the master, its replica (synced before the sentinel starts) and
// the sentinel, and waits until the sentinel knows the replica. Without redis-server the
// test is skipped, or failed under CI=true.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	master := launch(t, &Server{extra: noDelay})
	replica := launch(t, &Server{extra: append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.port)}, noDelay...)})
	s := &Sentinel{t: t, nodes: []*Server{master, replica}}
	if err := waitFor(15*time.Second, func() error { return replicaSynced(replica.Addr()) }); err != nil {
		t.Fatalf("testredis: replica %s: %v", replica.Addr(), err)
	}

	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // the sentinel rewrites it: a file of its own
	body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 1\n"+
		"sentinel down-after-milliseconds %[1]s 500\n"+
		"sentinel failover-timeout %[1]s 2000\n"+
		"sentinel parallel-syncs %[1]s 1\n", SentinelMasterName, master.port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	s.monitor = launch(t, &Server{conf: conf, extra: []string{"--sentinel"}})
	if err := waitFor(15*time.Second, s.knowsReplica); err != nil {
		t.Fatalf("testredis: sentinel %s: %v", s.monitor.Addr(), err)
	}
	return s
}

// MasterName is the monitored master's name.
func (s *Sentinel) MasterName() string { return SentinelMasterName }

// SentinelAddr is the sentinel's host:port.
func (s *Sentinel) SentinelAddr() string { return s.monitor.Addr() }

// Nodes returns the data nodes: the first master, then the replica.
func (s *Sentinel) Nodes() []*Server { return s.nodes }

// Master returns the data node the sentinel currently names as master.
func (s *Sentinel) Master() (*Server, error) {
	addr, err := s.masterAddr()
	if err != nil {
		return nil, err
	}
	for _, n := range s.nodes {
		if n.Addr() == addr {
			return n, nil
		}
	}
	return nil, fmt.Errorf("the sentinel names %s, not one of the nodes", addr)
}

// KillMaster SIGKILLs the current master and returns it.
func (s *Sentinel) KillMaster() *Server {
	s.t.Helper()
	m, err := s.Master()
	if err != nil {
		s.t.Fatalf("testredis: %v", err)
	}
	m.Kill()
	return m
}

// WaitFailover waits until the sentinel names a running master other than old and that
// node reports role:master, and returns it.
func (s *Sentinel) WaitFailover(old *Server, timeout time.Duration) (*Server, error) {
	var m *Server
	err := waitFor(timeout, func() error {
		var err error
		if m, err = s.Master(); err != nil {
			return err
		}
		if m == old || !m.Running() {
			return fmt.Errorf("the sentinel still names %s", m.Addr())
		}
		return hasRole(m.Addr(), "master")
	})
	return m, err
}

func (s *Sentinel) sentinelClient() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: s.monitor.Addr(), DisableIdentity: true, MaxRetries: -1,
		DialerRetries: 1, DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second})
}

func (s *Sentinel) masterAddr() (string, error) {
	sc := s.sentinelClient()
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(ctx, SentinelMasterName).Result()
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %v", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// knowsReplica: the sentinel lists the replica as a healthy replica.
func (s *Sentinel) knowsReplica() error {
	sc := s.sentinelClient()
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	replicas, err := sc.Replicas(ctx, SentinelMasterName).Result()
	if err != nil {
		return err
	}
	want := s.nodes[1].Addr()
	for _, r := range replicas {
		addr := net.JoinHostPort(r["ip"], r["port"])
		if addr == want && r["flags"] == "slave" && r["master-link-status"] == "ok" {
			return nil
		}
	}
	return fmt.Errorf("the sentinel does not list %s as a healthy replica yet: %v", want, replicas)
}

func replicaSynced(addr string) error {
	if err := hasRole(addr, "slave"); err != nil {
		return err
	}
	nc, ctx, done := checkClient(addr)
	defer done()
	info, err := nc.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "master_link_status:up") {
		return errors.New("link to the master is not up")
	}
	return nil
}

func hasRole(addr, role string) error {
	nc, ctx, done := checkClient(addr)
	defer done()
	info, err := nc.Info(ctx, "replication").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "role:"+role+"\r\n") {
		return fmt.Errorf("%s is not role:%s", addr, role)
	}
	return nil
}

// waitFor polls fn every 50 ms until it returns nil or timeout passes (its last error).
func waitFor(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
