package breaker

import (
	"context"
	"testing"
	"time"
)

// Zero Options take the documented defaults: DefaultThreshold failures open the
// circuit, the first probe comes firstProbe after it opened, the next ones every
// DefaultProbeInterval.
func TestZeroOptionsTakeTheDefaults(t *testing.T) {
	s := &scriptedStore{}
	s.failing.Store(true)
	e := New(s, s, Options{})
	waits := steppedProbes(e)
	defer e.Close()
	for i := range DefaultThreshold - 1 {
		evaluate(context.Background(), e)
		if e.Open() {
			t.Fatalf("open after %d failures, want DefaultThreshold (%d)", i+1, DefaultThreshold)
		}
	}
	evaluate(context.Background(), e)
	if !e.Open() {
		t.Fatalf("%d failures did not open the circuit", DefaultThreshold)
	}
	first := nextWait(t, waits)
	if first.d != firstProbe {
		t.Fatalf("first probe after %v, want firstProbe (%v)", first.d, firstProbe)
	}
	first.fire <- time.Now()
	if next := nextWait(t, waits); next.d != DefaultProbeInterval {
		t.Errorf("next probe after %v, want DefaultProbeInterval (%v)", next.d, DefaultProbeInterval)
	}
}

// The first probe comes no later than ProbeInterval when that is below firstProbe.
func TestFirstProbeWithinAShortProbeInterval(t *testing.T) {
	s := &scriptedStore{}
	s.failing.Store(true)
	const interval = 10 * time.Millisecond // below firstProbe
	e := New(s, s, Options{Threshold: 1, ProbeInterval: interval})
	waits := steppedProbes(e)
	defer e.Close()
	evaluate(context.Background(), e)
	if !e.Open() {
		t.Fatal("a failure did not open the circuit (threshold 1)")
	}
	if first := nextWait(t, waits); first.d != interval {
		t.Errorf("first probe after %v, want ProbeInterval (%v), below firstProbe (%v)", first.d, interval, firstProbe)
	}
}
