package breaker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// partStore is a store of parts named by the first byte of a request's first key (part
// 'a' is 0, 'b' 1, ...; the byte is the probe too); the parts in down fail every call
// and every probe.
type partStore struct {
	mu    sync.Mutex
	down  map[string]bool
	calls map[string]int
}

func (s *partStore) Partition(checks []limiter.LimitCheck) (int, string) {
	return int(checks[0].Key[0] - 'a'), checks[0].Key[:1]
}

func (s *partStore) PingPartition(_ context.Context, part string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down[part] {
		return fmt.Errorf("%w: part %s down", limiter.ErrStore, part)
	}
	return nil
}

func (s *partStore) Ping(context.Context) error { return nil }

func (s *partStore) Evaluate(_ context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	_, part := s.Partition(checks)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[part]++
	if s.down[part] {
		return limiter.Outcome{}, fmt.Errorf("%w: part %s down", limiter.ErrStore, part)
	}
	return limiter.Outcome{Now: now, Allowed: true}, nil
}

func (s *partStore) Close() error { return nil }

func (s *partStore) set(part string, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down[part] = down
}

func (s *partStore) callsOf(part string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[part]
}

// With a Partitioner, each part has its own circuit: a part that fails opens only its
// own, requests to the other parts still reach the store and succeed, the failed part's
// requests are answered at once without a store call, and its own probe closes it once
// it answers again. Open says whether any circuit is open.
func TestPartsHaveCircuitsOfTheirOwn(t *testing.T) {
	s := &partStore{down: map[string]bool{}, calls: map[string]int{}}
	var mu sync.Mutex
	var changes []string
	e := New(s, s, Options{Threshold: 3, ProbeInterval: 20 * time.Millisecond, Partitioner: s,
		OnChange: func(open bool, part string, _ error) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, fmt.Sprintf("%s:%v", part, open))
		}})
	defer e.Close()
	call := func(key string) error {
		_, err := e.Evaluate(context.Background(), 1, []limiter.LimitCheck{{Key: key}}, make([]limiter.Decision, 1))
		return err
	}
	s.set("a", true)
	for range 3 {
		if err := call("a1"); !errors.Is(err, limiter.ErrStore) || errors.Is(err, ErrOpen) {
			t.Fatalf("part a down: %v, want the store's error", err)
		}
	}
	if !e.Open() {
		t.Fatal("3 failures of part a opened no circuit")
	}
	before := s.callsOf("a")
	if err := call("a2"); !errors.Is(err, ErrOpen) || s.callsOf("a") != before {
		t.Fatalf("part a's circuit open: %v after %d store calls, want ErrOpen without a call", err, s.callsOf("a")-before)
	}
	for range 10 {
		if err := call("b1"); err != nil {
			t.Fatalf("part b, while a's circuit is open: %v", err)
		}
	}
	s.set("a", false)
	deadline := time.Now().Add(5 * time.Second)
	for call("a3") != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := call("a4"); err != nil || e.Open() {
		t.Fatalf("part a back: %v, open %v; want its circuit closed by its probe", err, e.Open())
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(changes, " "); got != "slot 0 (hash tag a):true slot 0 (hash tag a):false" {
		t.Errorf("circuit changes %q, want part a opening and closing only", got)
	}
}

// A part outside 0..MaxParts-1 gets the whole store's circuit, probed by pinging the
// whole store.
func TestPartsOutOfRangeShareTheWholeCircuit(t *testing.T) {
	e := New(&partStore{}, &partStore{}, Options{Partitioner: keyParts{}})
	defer e.Close()
	for _, part := range []int{-1, MaxParts, MaxParts + 1} {
		if c := e.circuitFor([]limiter.LimitCheck{{Key: fmt.Sprint(part)}}); c != &e.whole {
			t.Errorf("part %d did not get the whole store's circuit", part)
		}
	}
	if c := e.circuitFor([]limiter.LimitCheck{{Key: fmt.Sprint(MaxParts - 1)}}); c == &e.whole || c.probe != fmt.Sprint(MaxParts-1) {
		t.Errorf("the last part got %+v", c)
	}
}

// keyParts makes a request's first key, a number, its part and its probe.
type keyParts struct{}

func (keyParts) Partition(checks []limiter.LimitCheck) (int, string) {
	n, _ := strconv.Atoi(checks[0].Key)
	return n, checks[0].Key
}
func (keyParts) PingPartition(context.Context, string) error { return nil }

// On a real Redis Cluster: one master stops answering (paused); the domains on it get
// their circuits opened and are answered at once, while a domain on another master is
// decided by the store all along; once the master answers again its domains' probes
// close their circuits.
func TestClusterMasterDownOpensOnlyItsDomains(t *testing.T) {
	c := testredis.StartCluster(t, 3, 0)
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: c.URL(), Mode: limiter.RedisCluster, ProbeKey: "rlx:probe",
		Batch: true, ReadTimeout: 100 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e := New(re, re, Options{Threshold: 3, ProbeInterval: 50 * time.Millisecond, Partitioner: re})
	defer e.Close()
	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 1 << 30, PeriodMs: 3_600_000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	nodes := c.Nodes()
	down, up := nodes[0], nodes[1]
	keyOn := func(m *testredis.Server) string { // a key whose hash tag m serves
		for i := 0; ; i++ {
			k := fmt.Sprintf("rlx:{%d:domain}k", i)
			if owner, err := c.MasterForKey(k); err == nil && owner.Addr() == m.Addr() {
				return k
			}
		}
	}
	downKey, upKey := keyOn(down), keyOn(up)
	call := func(key string) error {
		_, err := e.Evaluate(context.Background(), 0, []limiter.LimitCheck{{Key: key, Params: p, Cost: 1}}, make([]limiter.Decision, 1))
		return err
	}
	for _, k := range []string{downKey, upKey} { // connections and the script in place
		var err error
		for try := 0; try < 20; try++ {
			if err = call(k); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("warm-up %s: %v", k, err)
		}
	}
	down.Pause()
	resumed := false
	defer func() {
		if !resumed {
			down.Resume()
		}
	}()
	for range 3 {
		_ = call(downKey)
	}
	if err := call(downKey); !errors.Is(err, ErrOpen) {
		t.Fatalf("the paused master's domain after 3 failures: %v, want ErrOpen", err)
	}
	for i := range 20 {
		if err := call(upKey); err != nil {
			t.Fatalf("a domain on a healthy master, call %d while another master is paused: %v", i, err)
		}
	}
	down.Resume()
	resumed = true
	deadline := time.Now().Add(10 * time.Second)
	for e.Open() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := call(downKey); err != nil || e.Open() {
		t.Fatalf("the master resumed: %v, open %v; want its domain's circuit closed", err, e.Open())
	}
}
