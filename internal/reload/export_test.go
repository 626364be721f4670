package reload

import (
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// The tests poll linked rule files every 20 ms rather than every second: none of them
// times the poll, and waiting for polls (two, to see a change made before the wait)
// would otherwise take most of their time. Set before any test starts a Watcher.
func init() { linkPollEvery = 20 * time.Millisecond }

// Hooks are a Watcher's test hooks (see hooks): After stands in for time.After in the
// Debounce and MaxDelay waits; Handled, Polled and Loaded are told of each event
// handled, poll of the links done and load done. NewWatcher and Add are asked before
// fsnotify's NewWatcher and each Add: an error they return is returned instead (an
// inotify limit reached, say). A nil one is as in production.
type Hooks struct {
	After      func(time.Duration) <-chan time.Time
	Handled    func(path string, reload bool)
	Polled     func(reload bool)
	Loaded     func()
	NewWatcher func() error
	Add        func(name string) error
}

// WithHooks returns o with its Watcher's test hooks set to h.
func WithHooks(o Options, h Hooks) Options {
	o.hooks = hooks{after: h.After, handled: h.Handled, polled: h.Polled, loaded: h.Loaded}
	if h.NewWatcher != nil {
		o.hooks.newWatcher = func() (*fsnotify.Watcher, error) {
			if err := h.NewWatcher(); err != nil {
				return nil, err
			}
			return fsnotify.NewWatcher()
		}
	}
	if h.Add != nil {
		o.hooks.add = func(fsw *fsnotify.Watcher, name string) error {
			if err := h.Add(name); err != nil {
				return err
			}
			return fsw.Add(name)
		}
	}
	return o
}

// RetryWatchesEvery makes the Watchers started from now until t ends try to watch the
// tree again every d, rather than every minute, while an inotify limit keeps it polled.
func RetryWatchesEvery(t testing.TB, d time.Duration) {
	old := limitRetryEvery
	limitRetryEvery = d
	t.Cleanup(func() { limitRetryEvery = old })
}
