// Package gcfloor keeps the Go garbage collector from running too often when the live
// heap is small.
//
// Go starts a collection when the heap has grown by GOGC percent (100) of what the last
// collection found live plus the goroutine stacks and globals it scanned, or reached
// 4 MB. This service allocates a few kilobytes per request (mostly gRPC's) but keeps
// almost nothing: on the Redis engine about 2 MB is live, so at 20,000 requests a
// second the collector ran 40 to 60 times a second, and every cycle wakes threads,
// turns on write barriers and makes allocating goroutines assist
// (docs/performance.md#garbage-collection).
//
// A floor gives every cycle at least Floor bytes of room: the heap goal is live +
// max(roots, Floor), where roots is what Go's default counts (live heap, stacks and
// globals); while roots are under 4 MiB, the goal is about Floor. On a small heap that
// is a collection every Floor bytes allocated; on a large one (the memory engine
// holding many keys) the floor fades and Go's default applies. GOGC is set again after
// every collection, from what that collection found, by a finalizer that runs soon
// after it; debug.SetGCPercent recomputes the current goal at once, so the previous
// GOGC applies only between the end of a collection and the finalizer running. A
// memory limit (GOMEMLIMIT) applies on top: near it the collector runs as often as it
// must.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// DefaultBytes is the default floor: 32 MiB of room, a collection about twice a second
// at the allocation rate of a busy service, at a cost of that much more memory.
const DefaultBytes = 32 << 20

// minRoots is the runtime's smallest heap goal at GOGC=100 (4 MiB), which it scales
// with GOGC like the rest of the goal: counting roots as at least this much keeps a
// tiny heap (at startup, before any collection) from getting a GOGC in the thousands
// and a first goal of hundreds of MiB.
const minRoots = 4 << 20

// percent is the GOGC that gives a collection floor bytes of room over the live heap
// when roots (live heap, goroutine stacks and globals, as the runtime's pacer counts
// them) are smaller than floor, and Go's default (100) otherwise.
func percent(roots, floor uint64) int {
	roots = max(roots, minRoots)
	if roots >= floor {
		return 100
	}
	return int(min(floor*100/roots, 1<<30))
}

// Start keeps the floor from now on, until stop is called; stop restores GOGC as it
// was. It does nothing (and reports false) when floor is 0 or the environment sets
// GOGC: an operator's own setting wins.
func Start(floor uint64) (stop func(), started bool) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return func() {}, false
	}
	f := &tuner{floor: floor, previous: debug.SetGCPercent(100)}
	f.sample[0].Name = "/gc/heap/live:bytes"
	f.sample[1].Name = "/gc/scan/stack:bytes"
	f.sample[2].Name = "/gc/scan/globals:bytes"
	f.adjust()
	f.arm()
	return f.stop, true
}

type tuner struct {
	floor    uint64
	previous int

	mu      sync.Mutex // orders adjust after stop: stop's GOGC is the last word
	stopped bool
	sample  [3]metrics.Sample
}

// sentinel is an object no one references: its finalizer runs once after a collection
// and arms a new one. (64 bytes, so it gets its own allocation: tiny objects share
// blocks and are not finalized reliably.)
type sentinel struct{ _ [64]byte }

func (f *tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if f.adjust() {
			f.arm()
		}
	})
}

// adjust sets GOGC from what the last collection found; false once stopped.
func (f *tuner) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.sample[:])
	var roots uint64
	for _, s := range f.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			roots += s.Value.Uint64()
		}
	}
	debug.SetGCPercent(percent(roots, f.floor))
	return true
}

func (f *tuner) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.stopped {
		f.stopped = true
		debug.SetGCPercent(f.previous)
	}
}
