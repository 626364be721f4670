package limiter

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// The circuits of one master share its probe: a probe in flight is joined (its result
// goes to every caller that came meanwhile), a finished one answers for ProbeShare, and
// then the next caller probes again. The probe ends only once the second caller is
// known to wait on it, and the clock is stepped, not slept: each path is taken by
// construction, whatever the scheduler does.
func TestProbesOfOneMasterAreShared(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	p := probeResults{now: func() time.Time { return time.Unix(0, clock.Load()) }}
	ctx := context.Background()
	done, shared, _ := p.join(ctx, "a:1")
	if shared {
		t.Fatal("the first caller did not get to probe")
	}
	joined := make(chan error, 1)
	go func() {
		_, shared, err := p.join(ctx, "a:1")
		if !shared {
			err = errors.New("a second probe was sent while one was in flight")
		}
		joined <- err
	}()
	if _, shared, _ := p.join(ctx, "b:1"); shared {
		t.Error("another master's probe was shared")
	}
	waitJoined(t, &p, "a:1", 1, joined)
	failure := errors.New("down")
	done(failure)
	if err := <-joined; err != failure {
		t.Fatalf("the caller that joined got %v, want the probe's %v", err, failure)
	}
	clock.Add(int64(ProbeShare - time.Nanosecond))
	if _, shared, err := p.join(ctx, "a:1"); !shared || err != failure {
		t.Fatalf("within ProbeShare: shared %v, %v; want the finished probe's result", shared, err)
	}
	clock.Add(int64(time.Nanosecond))
	if _, shared, _ := p.join(ctx, "a:1"); shared {
		t.Fatal("ProbeShare after the probe ended its result was still shared")
	}
}

// waitJoined waits until n callers wait on addr's probe in flight; a caller that ended
// first (ended receives its result) never joined it.
func waitJoined(t *testing.T, p *probeResults, addr string, n int, ended chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		got := p.last[addr].joined
		p.mu.Unlock()
		if got == n {
			return
		}
		select {
		case err := <-ended:
			t.Fatalf("a caller ended (%v) without waiting on the probe in flight", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d callers wait on %s's probe in flight after 10 s, want %d", got, addr, n)
		}
		time.Sleep(time.Millisecond)
	}
}
