package gcfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{live: 8 * mib, floor: 32 * mib, want: 400},    // goal 40 MiB = live + floor
		{live: 12 * mib, floor: 32 * mib, want: 266},   // rounded down: goal just under live + floor
		{live: 16 * mib, floor: 32 * mib, want: 200},   // goal 48 MiB
		{live: 32 * mib, floor: 32 * mib, want: 100},   // the floor equals Go's default here
		{live: 1024 * mib, floor: 32 * mib, want: 100}, // a large heap: Go's default
		// Under 4 MiB live, the runtime's minimum goal (4 MiB × GOGC/100) sets the goal:
		// it is the floor, not hundreds of MiB.
		{live: 2 * mib, floor: 32 * mib, want: 800},
		{live: 0, floor: 32 * mib, want: 800}, // before the first collection
		{live: 2 * mib, floor: 0, want: 100},  // off
		{live: 2 * mib, floor: 3 * mib, want: 100},
	} {
		if got := Percent(c.live, c.floor); got != c.want {
			t.Errorf("Percent(live %d, floor %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
}

func readUint(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// After a collection the runtime's own heap goal is at least the live heap plus the
// floor (the floor alone under 4 MiB live), and stop puts GOGC back.
func TestStartRaisesTheHeapGoalAfterEachCollection(t *testing.T) {
	t.Setenv("GOGC", "") // an operator's GOGC would switch the floor off
	const floor = 64 << 20
	before := debug.SetGCPercent(100)
	stop, started := Start(floor)
	if !started {
		t.Fatal("not started")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC() // the finalizer adjusts after the collection
		time.Sleep(10 * time.Millisecond)
		live, goal := readUint("/gc/heap/live:bytes"), readUint("/gc/heap/goal:bytes")
		want := uint64(floor) // under 4 MiB live
		if live >= minHeap {
			want += live
		}
		if goal+goal/50 >= want { // 2%: GOGC is a whole percent
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("heap goal %d with %d live, want at least %d", goal, live, want)
		}
	}
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
