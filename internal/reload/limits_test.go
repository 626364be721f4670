package reload_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// failAdd is an Add hook that refuses a watch of each of names with err, as the kernel
// does once fs.inotify.max_user_watches is used up.
func failAdd(err error, names ...string) func(string) error {
	return func(name string) error {
		for _, n := range names {
			if filepath.Clean(name) == n {
				return err
			}
		}
		return nil
	}
}

// An inotify limit reached stops neither the start nor the reloads: the watcher polls
// every rule file instead (about every second; here, the tests' poll interval), with a
// warning naming the sysctl to raise. The limit may be that of instances (no watcher at
// all: EMFILE, as fsnotify wraps it) or of watches (ENOSPC), for the config directory
// or only for a subdirectory, whose edits would otherwise go unseen.
func TestInotifyLimitFallsBackToPolling(t *testing.T) {
	tests := []struct {
		name   string
		hooks  func(dir string) reload.Hooks
		sysctl string
	}{
		{"no inotify instance left", func(string) reload.Hooks {
			return reload.Hooks{NewWatcher: func() error {
				return fmt.Errorf("couldn't initialize inotify: %w", syscall.EMFILE)
			}}
		}, "fs.inotify.max_user_instances"},
		{"no watch left for the directory", func(dir string) reload.Hooks {
			return reload.Hooks{Add: failAdd(syscall.ENOSPC, dir)}
		}, "fs.inotify.max_user_watches"},
		{"no watch left for a subdirectory", func(dir string) reload.Hooks {
			return reload.Hooks{Add: failAdd(syscall.ENOSPC, filepath.Join(dir, "team"))}
		}, "fs.inotify.max_user_watches"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "team", "edge.yaml")
			mkdir(t, filepath.Dir(path))
			write(t, path, rules("v1"))
			h := watchHooked(t, dir, reload.Options{Watch: true}, tt.hooks(dir))
			h.waitLog(t, "the warning", "level=WARN", "inotify", tt.sysctl)
			h.waitCatchUp(t)

			write(t, path, rules("v2"))
			h.waitFor(t, "v2", 5*time.Second)
			write(t, path, rules("v3-is-longer")) // another size, another time
			h.waitFor(t, "v3-is-longer", 5*time.Second)
		})
	}
}

// A subdirectory made after the start while no watch is left: its rule files are
// polled from then on.
func TestInotifyLimitReachedLaterFallsBackToPolling(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	later := filepath.Join(dir, "later")
	h := watchHooked(t, dir, reload.Options{Watch: true}, reload.Hooks{Add: failAdd(syscall.ENOSPC, later)})
	h.waitCatchUp(t)

	mkdir(t, later)
	h.waitLog(t, "the warning", "level=WARN", "inotify", "fs.inotify.max_user_watches")
	mark := h.mark()
	if err := os.Rename(filepath.Join(dir, "edge.yaml"), filepath.Join(later, "edge.yaml")); err != nil {
		t.Fatal(err)
	}
	// The rename is seen (in the directory's watch) and loaded; wait for that load, so
	// that only the poll can see the edit that follows.
	h.waitSteps(t, mark, "the load of the renamed file", func(s step) bool { return s.load })
	write(t, filepath.Join(later, "edge.yaml"), rules("v2"))
	h.waitFor(t, "v2", 5*time.Second)
}

// raisableLimit is an inotify limit that a test raises: until then, its hooks refuse
// what failAdd or a failing NewWatcher would; once raised, their first call runs
// duringSwitch (an edit made while the watches are being added again, before they are
// in place) and every call succeeds.
type raisableLimit struct {
	raised, switched atomic.Bool
	refused          atomic.Int64 // calls refused so far
	duringSwitch     func()
}

func (l *raisableLimit) hook(refuse func() error) func() error {
	return func() error {
		if !l.raised.Load() {
			l.refused.Add(1)
			return refuse()
		}
		if !l.switched.Swap(true) {
			l.duringSwitch()
		}
		return nil
	}
}

// An inotify limit raised while the service runs: watching is tried again every minute
// (here, every few polls), and once it succeeds the tree is watched again, with an info
// line saying so. Until then the tries fail quietly (the warning is not repeated) and
// every rule file is still polled. An edit made while the watches are added again,
// which makes no event, is loaded too.
func TestInotifyLimitRaisedWatchesAgain(t *testing.T) {
	emfile := func() error { return fmt.Errorf("couldn't initialize inotify: %w", syscall.EMFILE) }
	enospc := func() error { return syscall.ENOSPC }
	tests := []struct {
		name  string
		hooks func(dir string, l *raisableLimit) reload.Hooks
	}{
		{"no inotify instance left", func(_ string, l *raisableLimit) reload.Hooks {
			return reload.Hooks{NewWatcher: l.hook(emfile)}
		}},
		{"no watch left for the directory", func(dir string, l *raisableLimit) reload.Hooks {
			return reload.Hooks{Add: addHook(dir, l.hook(enospc))}
		}},
		{"no watch left for a subdirectory", func(dir string, l *raisableLimit) reload.Hooks {
			return reload.Hooks{Add: addHook(filepath.Join(dir, "team"), l.hook(enospc))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "team", "edge.yaml")
			mkdir(t, filepath.Dir(path))
			write(t, path, rules("v1"))
			l := &raisableLimit{duringSwitch: func() {
				if err := os.WriteFile(path, []byte(rules("v3")), 0o644); err != nil {
					t.Error(err)
				}
			}}
			reload.RetryWatchesEvery(t, 50*time.Millisecond)
			h := watchHooked(t, dir, reload.Options{Watch: true}, tt.hooks(dir, l))
			h.waitLog(t, "the warning", "level=WARN", "inotify")
			h.waitCatchUp(t)

			// Tries that fail again keep every rule file polled, without a new warning.
			tries := l.refused.Load()
			if !h.until(5*time.Second, func() bool { return l.refused.Load() >= tries+2 }) {
				t.Fatalf("watching was not tried again; log:\n%s", h.logs)
			}
			write(t, path, rules("v2"))
			h.waitFor(t, "v2", 5*time.Second)
			if n := strings.Count(h.logs.String(), "level=WARN"); n != 1 {
				t.Errorf("%d warnings, want the one; log:\n%s", n, h.logs)
			}
			if strings.Contains(h.logs.String(), "watching the whole directory again") {
				t.Fatalf("watching again while the limit is reached; log:\n%s", h.logs)
			}

			l.raised.Store(true)
			h.waitLog(t, "the switch back to watching", "level=INFO", "watching the whole directory again")
			h.waitFor(t, "v3", 5*time.Second) // made during the switch: no event, no poll

			mark := h.mark()
			write(t, path, rules("v4"))
			h.waitSteps(t, mark, "the edit's event", handledEvent(path))
			h.waitFor(t, "v4", 5*time.Second)
		})
	}
}

// addHook is an Add hook that asks refuse about a watch of name, and allows the others.
func addHook(name string, refuse func() error) func(string) error {
	return func(n string) error {
		if filepath.Clean(n) == name {
			return refuse()
		}
		return nil
	}
}

// A try to watch again that loses the directory's own watch (the tree's watches are
// dropped before they are added again, and another process can take the room they
// left) keeps polling every rule file, and is not taken for the directory replaced,
// which would be logged and reloaded at every try.
func TestInotifyLimitRetryLosingTheDirectoryWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "team", "edge.yaml")
	mkdir(t, filepath.Dir(path))
	write(t, path, rules("v1"))
	var dirAdds atomic.Int64
	add := func(name string) error {
		switch filepath.Clean(name) {
		case filepath.Join(dir, "team"):
			return syscall.ENOSPC
		case dir:
			if dirAdds.Add(1) > 1 { // watched at the start, refused at every try after
				return syscall.ENOSPC
			}
		}
		return nil
	}
	reload.RetryWatchesEvery(t, 50*time.Millisecond)
	h := watchHooked(t, dir, reload.Options{Watch: true}, reload.Hooks{Add: add})
	h.waitLog(t, "the warning", "level=WARN", "inotify")
	h.waitCatchUp(t)
	if !h.until(5*time.Second, func() bool { return dirAdds.Load() >= 3 }) {
		t.Fatalf("watching was not tried again; log:\n%s", h.logs)
	}
	// Two polls after a try lost the watch: the first would take it for a replacement.
	h.waitSteps(t, h.mark(), "a poll", func(s step) bool { return s.poll })
	h.waitSteps(t, h.mark(), "another poll", func(s step) bool { return s.poll })
	if strings.Contains(h.logs.String(), "the config directory was replaced") {
		t.Errorf("a lost watch is taken for the directory replaced; log:\n%s", h.logs)
	}
	write(t, path, rules("v2"))
	h.waitFor(t, "v2", 5*time.Second)
}

// A limit reached again after watching resumed (here, by a new subdirectory) warns
// again, and its rule files are polled again.
func TestInotifyLimitReachedAgainWarnsAgain(t *testing.T) {
	dir := t.TempDir()
	team, later := filepath.Join(dir, "team"), filepath.Join(dir, "later")
	mkdir(t, team)
	write(t, filepath.Join(team, "edge.yaml"), rules("v1"))
	var raised atomic.Bool
	add := func(name string) error {
		switch filepath.Clean(name) {
		case team:
			if !raised.Load() {
				return syscall.ENOSPC
			}
		case later:
			return syscall.ENOSPC
		}
		return nil
	}
	reload.RetryWatchesEvery(t, 50*time.Millisecond)
	h := watchHooked(t, dir, reload.Options{Watch: true}, reload.Hooks{Add: add})
	h.waitLog(t, "the warning", "level=WARN", "inotify")
	h.waitCatchUp(t)
	raised.Store(true)
	h.waitLog(t, "the switch back to watching", "level=INFO", "watching the whole directory again")

	mkdir(t, later)
	if !h.until(5*time.Second, func() bool { return strings.Count(h.logs.String(), "level=WARN") == 2 }) {
		t.Fatalf("the limit reached again is not warned of again; log:\n%s", h.logs)
	}
	// Moved there (the rename is seen in team's watch), then edited with its new
	// directory unwatched: the poll sees that (a load still pending may too).
	mark := h.mark()
	if err := os.Rename(filepath.Join(team, "edge.yaml"), filepath.Join(later, "edge.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitSteps(t, mark, "the load of the moved file", func(s step) bool { return s.load })
	write(t, filepath.Join(later, "edge.yaml"), rules("v2"))
	h.waitFor(t, "v2", 5*time.Second)
}
