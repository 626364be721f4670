package reload_test

import (
	"fmt"
	"os"
	"path/filepath"
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
