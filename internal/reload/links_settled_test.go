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

// watchSettled watches dir with change made between the caller's load and the start of
// the watches, and returns once the start's catch-up load has served settled, the
// rules change makes. That load is the only one the start triggers (the watches and
// the links' first look come after change), so from here on a reload happens only if
// the watcher sees the next change itself.
func watchSettled(t *testing.T, dir string, change func(), settled string) *harness {
	t.Helper()
	h := watchAfter(t, dir, reload.Options{Watch: true}, change)
	h.waitFor(t, settled, 5*time.Second)
	return h
}

// linkedOutside lays out base/config/edge.yaml -> base/srv/edge.yaml holding rules v1
// and returns the config directory and the link's target.
func linkedOutside(t *testing.T) (dir, target string) {
	t.Helper()
	base := t.TempDir()
	dir, srv := filepath.Join(base, "config"), filepath.Join(base, "srv")
	mkdir(t, dir)
	mkdir(t, srv)
	target = filepath.Join(srv, "edge.yaml")
	write(t, target, rules("v1"))
	if err := os.Symlink(target, filepath.Join(dir, "edge.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir, target
}

// An edit in place of a linked rule file outside the directory that keeps its size
// (the same file, the same length: only its time says it changed) reloads.
func TestSameSizeEditOfALinkedFileReloads(t *testing.T) {
	dir, target := linkedOutside(t)
	h := watchSettled(t, dir, func() { write(t, target, rules("v2")) }, "v2")
	write(t, target, rules("v3")) // as long as v2's
	h.waitFor(t, "v3", 5*time.Second)
}

// A linked rule file replaced by another file of the same size and modification time
// (as a copy that preserves times, renamed onto it) reloads: it is another file.
func TestLinkedFileReplacedBySameSizeAndTimeReloads(t *testing.T) {
	dir, target := linkedOutside(t)
	h := watchSettled(t, dir, func() { write(t, target, rules("v2")) }, "v2")
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(target), ".edge.yaml.tmp")
	write(t, tmp, rules("v3")) // as long as v2's
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, target); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v3", 5*time.Second)
}

// Every edit in a subdirectory that is a symlink to a directory outside the tree
// reloads, not only one the start's catch-up load happens to see.
func TestEditsThroughASymlinkedSubdirectoryReload(t *testing.T) {
	base := t.TempDir()
	dir, elsewhere := filepath.Join(base, "config"), filepath.Join(base, "elsewhere")
	mkdir(t, dir)
	mkdir(t, elsewhere)
	write(t, filepath.Join(elsewhere, "edge.yaml"), rules("v1"))
	if err := os.Symlink(elsewhere, filepath.Join(dir, "shared")); err != nil {
		t.Fatal(err)
	}
	h := watchSettled(t, dir, func() { write(t, filepath.Join(elsewhere, "edge.yaml"), rules("v2")) }, "v2")
	write(t, filepath.Join(elsewhere, "edge.yaml"), rules("v3"))
	h.waitFor(t, "v3", 5*time.Second)
}

// A reload that finds the rules unchanged is still a load: it is reported (metrics
// count every load attempt) and logged; only the start's catch-up stays silent.
func TestUnchangedReloadIsReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	h := watchSettled(t, dir, func() { write(t, path, rules("v2")) }, "v2")
	loads := h.loads.Load()
	write(t, path, rules("v2")) // the same rules, written again
	h.waitLog(t, "the unchanged reload", "config reloaded", "changed=false")
	if h.loads.Load() == loads { // OnLoad is told before the line is logged
		t.Error("the unchanged reload was logged but not reported to OnLoad")
	}
}

// A polled rule file rewritten in place with the same size and its modification time
// put back (a tool that keeps times, `cp -p` onto it, or two writes within one tick of
// a filesystem's coarse timestamps) reloads: only its content says it changed. Both
// kinds of polled file: a link to a file outside the directory, and every rule file
// once an inotify limit left the tree unwatched.
func TestPolledFileRewrittenWithSameSizeAndTimeReloads(t *testing.T) {
	noInstanceLeft := reload.Hooks{NewWatcher: func() error {
		return fmt.Errorf("couldn't initialize inotify: %w", syscall.EMFILE)
	}}
	tests := []struct {
		name   string
		layout func(t *testing.T) (dir, file string)
		hooks  reload.Hooks
	}{
		{"a link to a file outside the directory", linkedOutside, reload.Hooks{}},
		{"a file in the directory, after an inotify limit", inTheDirectory, noInstanceLeft},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, file := tt.layout(t)
			h := watchWith(t, dir, reload.Options{Watch: true}, func() { write(t, file, rules("v2")) }, tt.hooks)
			h.waitFor(t, "v2", 5*time.Second)
			fi, err := os.Stat(file)
			if err != nil {
				t.Fatal(err)
			}
			// Right after a poll, so that the next one sees the file only once its time
			// is put back (the write alone, with a new time, would reload anyway).
			h.waitSteps(t, h.mark(), "a poll", func(s step) bool { return s.poll })
			write(t, file, rules("v3")) // as long as v2's, in place
			if err := os.Chtimes(file, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
			h.waitFor(t, "v3", 5*time.Second)
		})
	}
}

// inTheDirectory lays out dir/edge.yaml holding rules v1 and returns dir and the file.
func inTheDirectory(t *testing.T) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "edge.yaml")
	write(t, file, rules("v1"))
	return dir, file
}
