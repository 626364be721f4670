// Package gcfloor keeps the Go garbage collector from running too often when the live
// heap is small.
//
// Go starts a collection when the heap has grown by GOGC percent (100) over what the
// last collection found live, or reached 4 MB. This service allocates a few kilobytes
// per request (mostly gRPC's) but keeps almost nothing: on the Redis engine about 2 MB
// is live, so at 20,000 requests a second the collector ran 40 to 60 times a second,
// and every cycle wakes threads, turns on write barriers and assists allocations on
// two busy cores (docs/performance.md#garbage-collection).
//
// A floor gives every cycle at least Floor bytes of room above the live heap: the
// heap goal is max(2 × live, live + Floor) (for a live heap of at least 4 MiB; below,
// Floor). On a small heap that is a collection every
// Floor bytes allocated; on a large one (the memory engine holding many keys) the
// floor fades and Go's default applies. The goal is set after every collection from
// that collection's live heap, so it never lags behind a growing heap. A memory limit
// (GOMEMLIMIT) still applies on top: near it the collector runs as often as it must.
package gcfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// DefaultBytes is the default floor: 32 MiB of room, a collection about twice a second
// at the allocation rate of a busy service, at a cost of that much more memory.
const DefaultBytes = 32 << 20

// minHeap is the runtime's smallest heap goal at GOGC=100 (4 MiB). The runtime scales it
// with GOGC like the rest of the goal, so the floor counts the live heap as at least
// this much: otherwise a tiny heap (at startup, before any collection) would get a
// GOGC in the thousands and a first goal of hundreds of MiB.
const minHeap = 4 << 20

// Percent is the GOGC that puts the heap goal at max(2 × live, live + floor), counting
// a live heap under minHeap as minHeap.
func Percent(live, floor uint64) int {
	live = max(live, minHeap)
	if live >= floor {
		return 100
	}
	return int(min(max(floor*100/live, 100), 1<<30))
}

// Start keeps the floor from now on, until stop is called; stop restores GOGC as it
// was. It does nothing (and reports false) when floor is 0 or the environment sets
// GOGC: an operator's own setting wins.
func Start(floor uint64) (stop func(), started bool) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return func() {}, false
	}
	f := &tuner{floor: floor, previous: debug.SetGCPercent(100)}
	f.adjust()
	f.arm()
	return f.stop, true
}

type tuner struct {
	floor    uint64
	previous int
	stopped  atomic.Bool
	sample   [1]metrics.Sample
}

// sentinel is an object no one references: its finalizer runs once after each
// collection, which re-arms a new one. (Large enough to get its own allocation; tiny
// objects share blocks and are not finalized reliably.)
type sentinel struct{ _ [64]byte }

func (f *tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if f.stopped.Load() {
			return
		}
		f.adjust()
		f.arm()
	})
}

// adjust sets GOGC from the live heap the last collection found.
func (f *tuner) adjust() {
	f.sample[0].Name = "/gc/heap/live:bytes"
	metrics.Read(f.sample[:])
	if f.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	debug.SetGCPercent(Percent(f.sample[0].Value.Uint64(), f.floor))
}

func (f *tuner) stop() {
	if f.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(f.previous)
}
