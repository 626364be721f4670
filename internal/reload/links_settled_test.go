package reload_test

import (
	"os"
	"path/filepath"
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
