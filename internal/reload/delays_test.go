package reload_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// wait is one wait the watcher's loop asked for; it ends when the test sends on fire.
type wait struct {
	d    time.Duration
	fire chan time.Time
}

func nextWait(t *testing.T, waits <-chan wait) wait {
	t.Helper()
	select {
	case w := <-waits:
		return w
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher asked for no wait within 10 s")
		return wait{}
	}
}

// A burst of triggers loads once they have been quiet for Debounce, or MaxDelay after
// the first one, whichever comes first. MaxDelay left unset, or set below Debounce, is
// 1 s, or Debounce if that is longer. The waits are the test's: it sees each one the
// loop asks for, and ends it.
func TestMaxDelayDefault(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		debounce, maxDelay time.Duration
		wantDebounce, want time.Duration
	}{
		{0, 0, 100 * ms, time.Second},
		{100 * ms, 0, 100 * ms, time.Second},
		{200 * ms, 50 * ms, 200 * ms, time.Second},
		{3 * time.Second, 0, 3 * time.Second, 3 * time.Second},
		{3 * time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second},
		{100 * ms, 300 * ms, 100 * ms, 300 * ms},
	} {
		t.Run(c.debounce.String()+","+c.maxDelay.String(), func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
			waits, loads := make(chan wait, 16), make(chan error, 16)
			o := reload.WithHooks(reload.Options{Dir: dir, Debounce: c.debounce, MaxDelay: c.maxDelay,
				Log:    slog.New(slog.DiscardHandler),
				OnLoad: func(_ *descriptors.RuleSet, err error) { loads <- err },
			}, reload.Hooks{After: func(d time.Duration) <-chan time.Time {
				w := wait{d: d, fire: make(chan time.Time, 1)}
				waits <- w
				return w.fire
			}})
			w, err := reload.Start(context.Background(), o, func(*descriptors.RuleSet) {})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := w.Close(); err != nil {
					t.Error(err)
				}
			}()

			w.Trigger()
			first := []wait{nextWait(t, waits), nextWait(t, waits)}
			if got := []time.Duration{first[0].d, first[1].d}; !(got[0] == c.wantDebounce && got[1] == c.want || got[0] == c.want && got[1] == c.wantDebounce) {
				t.Fatalf("the first trigger of a burst waits %v, want Debounce %v and MaxDelay %v", got, c.wantDebounce, c.want)
			}
			w.Trigger()
			if again := nextWait(t, waits); again.d != c.wantDebounce {
				t.Fatalf("a trigger within a burst waits %v, want Debounce %v", again.d, c.wantDebounce)
			}
			// Only the burst's MaxDelay wait ends (or both of its first waits, when they
			// are as long): the burst loads though its Debounce wait has not ended.
			for _, w := range first {
				if w.d == c.want {
					w.fire <- time.Now()
				}
			}
			select {
			case err := <-loads:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no load within 10 s of the burst's MaxDelay wait ending")
			}
		})
	}
}
