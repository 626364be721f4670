package reload_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// A symlinked config directory whose target is deleted and made again at the same
// path: no event names the config directory (the link does not change, and the
// target's own watch ends with it), and the new directory can even get the old one's
// inode number. The poll finds the directory unwatched and watches it again, so that
// edits there are seen.
func TestSymlinkedDirTargetMadeAgain(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "r1")
	mkdir(t, target)
	write(t, filepath.Join(target, "edge.yaml"), rules("v1"))
	dir := filepath.Join(base, "config")
	link(t, "r1", dir)
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t)

	if err := os.RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	mkdir(t, target)
	write(t, filepath.Join(target, "edge.yaml"), rules("v2"))
	h.waitLog(t, "the directory made again", "config directory was replaced")
	h.waitFor(t, "v2", 5*time.Second)
	write(t, filepath.Join(target, "edge.yaml"), rules("v3"))
	h.waitFor(t, "v3", 5*time.Second)
}

// A real directory above the config directory replaced by a rename (`mv current
// current.old; mv current.new current`): the config directory's path resolves as
// before, but to another directory, and no event in the watched directories says so.
// The poll finds it and watches the new tree.
func TestDirAboveReplacedByRename(t *testing.T) {
	base := t.TempDir()
	for _, v := range []string{"current", "next"} {
		mkdir(t, filepath.Join(base, v, "config"))
	}
	write(t, filepath.Join(base, "current", "config", "edge.yaml"), rules("v1"))
	write(t, filepath.Join(base, "next", "config", "edge.yaml"), rules("v2"))
	dir := filepath.Join(base, "current", "config")
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t)

	if err := os.Rename(filepath.Join(base, "current"), filepath.Join(base, "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(base, "next"), filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	h.waitLog(t, "the replaced directory", "config directory was replaced")
	h.waitFor(t, "v2", 5*time.Second)
	write(t, filepath.Join(dir, "edge.yaml"), rules("v3"))
	h.waitFor(t, "v3", 5*time.Second)
}
