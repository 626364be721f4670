package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent requests all get answered, share calls, and never have more calls in
// flight than lanes.
func TestSharedCallSharesAndBoundsCalls(t *testing.T) {
	var inFlight, maxInFlight, calls atomic.Int64
	s := &sharedCall{free: 2, call: func(context.Context) error {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		calls.Add(1)
		time.Sleep(200 * time.Microsecond)
		inFlight.Add(-1)
		return nil
	}}
	const requests = 2000
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range requests / 50 {
				if err := s.wait(context.Background()); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if m := maxInFlight.Load(); m > 2 {
		t.Errorf("%d calls in flight, want at most 2", m)
	}
	if c := calls.Load(); c >= requests {
		t.Errorf("%d calls for %d requests: nothing was shared", c, requests)
	}
	if s.free != 2 || len(s.queue) != 0 {
		t.Errorf("after the load: %d lanes free, %d queued; want 2 and 0", s.free, len(s.queue))
	}
}
