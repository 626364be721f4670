package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		roots, floor uint64
		want         int
	}{
		{roots: 8 * mib, floor: 32 * mib, want: 400},    // goal live + 32 MiB
		{roots: 12 * mib, floor: 32 * mib, want: 266},   // rounded down: just under
		{roots: 16 * mib, floor: 32 * mib, want: 200},   // goal live + 32 MiB
		{roots: 32 * mib, floor: 32 * mib, want: 100},   // the floor equals Go's default here
		{roots: 1024 * mib, floor: 32 * mib, want: 100}, // large roots: Go's default
		// Under 4 MiB of roots the runtime's minimum goal (4 MiB × GOGC/100) sets the
		// goal: it is the floor, not hundreds of MiB.
		{roots: 2 * mib, floor: 32 * mib, want: 800},
		{roots: 0, floor: 32 * mib, want: 800}, // before the first collection
		{roots: 2 * mib, floor: 0, want: 100},  // off
		{roots: 2 * mib, floor: 3 * mib, want: 100},
	} {
		if got := percent(c.roots, c.floor); got != c.want {
			t.Errorf("percent(roots %d, floor %d) = %d, want %d", c.roots, c.floor, got, c.want)
		}
	}
}

func readUint(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// untilGoal collects until the heap goal, after the tuner's finalizer has run, passes
// ok (or fails after a few seconds).
func untilGoal(t *testing.T, what string, ok func(live, goal uint64) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC() // the finalizer sets GOGC after the collection
		time.Sleep(10 * time.Millisecond)
		live, goal := readUint("/gc/heap/live:bytes"), readUint("/gc/heap/goal:bytes")
		if ok(live, goal) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: heap goal %d MiB with %d MiB live", what, goal>>20, live>>20)
		}
	}
}

// The heap goal follows the live heap collection after collection: the floor on a
// small heap, live + floor on one that grew (not the GOGC of the small heap applied to
// it), and stop puts GOGC back.
func TestStartFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "") // an operator's GOGC would switch the floor off
	const floor = 64 << 20
	before := debug.SetGCPercent(100)
	stop, started := Start(floor)
	if !started {
		t.Fatal("not started")
	}
	t.Cleanup(func() { stop(); debug.SetGCPercent(before) })                                  // also when a check fails
	near := func(got, want uint64) bool { return got >= want-want/25 && got <= want+want/25 } // 4%
	untilGoal(t, "small heap", func(live, goal uint64) bool { return live < minRoots && near(goal, floor) })
	keep := make([]byte, 48<<20) // 48 MiB live, no pointers
	untilGoal(t, "48 MiB live", func(live, goal uint64) bool { return live > 48<<20 && near(goal, live+floor) })
	runtime.KeepAlive(keep)
	stop()
	if p := debug.SetGCPercent(before); p != 100 {
		t.Errorf("GOGC after stop = %d, want the 100 it was", p)
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := debug.SetGCPercent(before); p != before {
		t.Errorf("GOGC changed after stop: %d", p)
	}
}

func TestAnOperatorsGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "150")
	before := debug.SetGCPercent(150)
	defer debug.SetGCPercent(before)
	stop, started := Start(64 << 20)
	defer stop()
	if started {
		t.Fatal("started although GOGC is set")
	}
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := debug.SetGCPercent(150); p != 150 {
		t.Errorf("GOGC = %d, want the operator's 150", p)
	}
}

// Goroutine stacks count as roots, as the runtime's pacer counts them: 1,000 goroutines
// holding ~32 KiB of stack each next to a small heap get a goal of live + floor, not the
// floor's GOGC for a tiny heap applied to 32 MiB of stacks (half a GiB).
func TestStacksCountAsRoots(t *testing.T) {
	t.Setenv("GOGC", "")
	const floor = 64 << 20
	before := debug.SetGCPercent(100)
	stop, started := Start(floor)
	if !started {
		t.Fatal("not started")
	}
	t.Cleanup(func() { stop(); debug.SetGCPercent(before) })
	release := make(chan struct{})
	var ready sync.WaitGroup
	for range 1000 {
		ready.Add(1)
		go deep(32, &ready, release)
	}
	ready.Wait()
	defer close(release)
	untilGoal(t, "1,000 deep stacks", func(live, goal uint64) bool {
		stacks := readUint("/gc/scan/stack:bytes")
		return stacks > 24<<20 && goal <= live+floor+floor/10 && goal+goal/25 >= live+floor
	})
}

// deep recurses depth frames of 1 KiB, says it is there, and waits for release.
func deep(depth int, ready *sync.WaitGroup, release <-chan struct{}) byte {
	var frame [1024]byte
	frame[depth%len(frame)] = byte(depth)
	if depth == 0 {
		ready.Done()
		<-release
		return frame[0]
	}
	return deep(depth-1, ready, release) + frame[depth%len(frame)]
}
