package reload_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// A symlinked config directory re-pointed to a new release (`ln -sfn r2 config`) while
// the old release stays on disk, as deploy tools keep a few: the old release's
// directories are no longer watched. Its subdirectory's watch, kept under the name
// config/sub, would report edits of the old release as edits of the rules (reloads
// that change nothing), and hold an inotify watch per directory for every release
// ever served.
func TestOldReleaseNotWatchedAfterRepoint(t *testing.T) {
	base := t.TempDir()
	mkdir(t, filepath.Join(base, "r1", "sub"))
	write(t, filepath.Join(base, "r1", "sub", "edge.yaml"), rules("v1"))
	mkdir(t, filepath.Join(base, "r2"))
	write(t, filepath.Join(base, "r2", "edge.yaml"), rules("v2"))
	dir := filepath.Join(base, "config")
	link(t, "r1", dir)
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t)

	tmp := filepath.Join(base, "config.tmp")
	link(t, "r2", tmp)
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 5*time.Second)

	// An edit in the old release, then one in the new: the watches report events in
	// order, so once the new one's is handled, an event for the old one would have been.
	mark := h.mark()
	write(t, filepath.Join(base, "r1", "sub", "edge.yaml"), rules("old"))
	write(t, filepath.Join(base, "r2", "edge.yaml"), rules("v3"))
	got := h.waitSteps(t, mark, "the event of the edit in the new release", handledEvent(filepath.Join(dir, "edge.yaml")))
	if i := slices.IndexFunc(got, handledEvent(filepath.Join(dir, "sub", "edge.yaml"))); i >= 0 {
		t.Errorf("an edit in the old release was reported as an event of the rules: %v", got)
	}
	h.waitFor(t, "v3", 5*time.Second)
}
