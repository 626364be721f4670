package limiter

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The circuits of one master share its probe: a probe in flight is joined (its result
// goes to every caller that came meanwhile), a finished one answers for ProbeShare, and
// then the next caller probes again. On synctest's fake clock the probe ends only once
// the second caller is blocked on it (synctest.Wait) and ProbeShare is stepped exactly:
// each path is taken by construction, whatever the scheduler does.
func TestProbesOfOneMasterAreShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p probeResults
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
		synctest.Wait() // the second caller has joined the probe in flight, or ended
		select {
		case err := <-joined:
			t.Fatalf("a caller ended (%v) without waiting on the probe in flight", err)
		default:
		}
		failure := errors.New("down")
		done(failure)
		if err := <-joined; err != failure {
			t.Fatalf("the caller that joined got %v, want the probe's %v", err, failure)
		}
		time.Sleep(ProbeShare - time.Nanosecond)
		if _, shared, err := p.join(ctx, "a:1"); !shared || err != failure {
			t.Fatalf("within ProbeShare: shared %v, %v; want the finished probe's result", shared, err)
		}
		time.Sleep(time.Nanosecond)
		if _, shared, _ := p.join(ctx, "a:1"); shared {
			t.Fatal("ProbeShare after the probe ended its result was still shared")
		}
	})
}
