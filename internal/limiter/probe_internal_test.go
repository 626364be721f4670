package limiter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The circuits of one master share its probe: a probe in flight is joined (its result
// goes to every caller that came meanwhile), a finished one answers for ProbeShare, and
// then the next caller probes again.
func TestProbesOfOneMasterAreShared(t *testing.T) {
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
	failure := errors.New("down")
	time.Sleep(20 * time.Millisecond) // the second caller waits on the first's probe
	done(failure)
	if err := <-joined; err != failure {
		t.Fatalf("the caller that joined got %v, want the probe's %v", err, failure)
	}
	if _, shared, err := p.join(ctx, "a:1"); !shared || err != failure {
		t.Fatalf("within ProbeShare: shared %v, %v; want the finished probe's result", shared, err)
	}
	time.Sleep(ProbeShare + 10*time.Millisecond)
	if _, shared, _ := p.join(ctx, "a:1"); shared {
		t.Fatal("past ProbeShare the result was still shared")
	}
}
