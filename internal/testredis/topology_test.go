package testredis

import (
	"context"
	"testing"
	"time"
)

// A 3-master cluster with one replica each: keys are served, and killing the master of
// a slot gets its replica promoted and the cluster healthy again.
func TestStartClusterFailover(t *testing.T) {
	c := StartCluster(t, 3, 1)
	if n := len(c.Nodes()); n != 6 {
		t.Fatalf("%d nodes, want 6", n)
	}
	ctx := context.Background()
	cl := c.Client()
	if err := cl.Set(ctx, "{t}k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slot := c.Slot("{t}k")
	if other := c.Slot("{t}other"); other != slot {
		t.Fatalf("hash tags: slot %d and %d", slot, other)
	}
	old := c.KillMasterOf(slot)
	start := time.Now()
	if err := c.WaitHealthy(15 * time.Second); err != nil {
		t.Fatalf("no recovery after killing %s: %v", old.Addr(), err)
	}
	m, err := c.MasterOf(slot)
	if err != nil {
		t.Fatal(err)
	}
	if m == old || !m.Running() {
		t.Fatalf("slot %d still served by %s", slot, m.Addr())
	}
	t.Logf("slot %d moved from %s to %s in %v", slot, old.Addr(), m.Addr(), time.Since(start).Round(time.Millisecond))
}

// A sentinel setup: the sentinel names the master, and after the master dies it names
// the promoted replica.
func TestStartSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	m, err := s.Master()
	if err != nil {
		t.Fatal(err)
	}
	if m != s.Nodes()[0] {
		t.Fatalf("master %s, want the first node", m.Addr())
	}
	start := time.Now()
	old := s.KillMaster()
	m, err = s.WaitFailover(old, 15*time.Second)
	if err != nil {
		t.Fatalf("no failover: %v", err)
	}
	if m != s.Nodes()[1] {
		t.Fatalf("new master %s, want the replica", m.Addr())
	}
	t.Logf("failover from %s to %s in %v", old.Addr(), m.Addr(), time.Since(start).Round(time.Millisecond))
}
