package reload_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Links from the tree back into it (two here: each level of the walk would have two
// more) are followed once per real directory, as loading does: the watcher starts, and
// an edit reloads. Walking every path through them would take 2^33 steps.
func TestLinksBackIntoTheTreeAreWatchedOnce(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	for _, name := range []string{"again", "and-again"} {
		if err := os.Symlink(dir, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	h := watchSettled(t, dir, func() { write(t, path, rules("v2")) }, "v2")
	write(t, path, rules("v3"))
	h.waitFor(t, "v3", 5*time.Second)
}
