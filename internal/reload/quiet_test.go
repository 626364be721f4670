package reload_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// link makes name a symlink to target.
func link(t *testing.T, target, name string) {
	t.Helper()
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// waitPolls waits for n polls of the links from now on and returns the steps reported
// meanwhile. With n = 2, a change made before the call has been looked at: the second
// poll started after the first ended.
func (h *harness) waitPolls(t *testing.T, n int) []step {
	t.Helper()
	mark := h.mark()
	var got []step
	polls := func() (k int) {
		got = h.since(mark)
		for _, s := range got {
			if s.poll {
				k++
			}
		}
		return k
	}
	if !h.until(10*time.Second, func() bool { return polls() >= n }) {
		t.Fatalf("%d polls of the links in 10 s, want %d; log:\n%s", polls(), n, h.logs)
	}
	return got
}

// The config directory's parent is watched for events that name the directory itself
// (replaced, removed, re-pointed). Events for the other names there do not reload: a
// rule file, a directory and a link made beside the directory and removed again.
func TestEventsBesideTheDirDoNotReload(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "config")
	mkdir(t, dir)
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})

	mark := h.mark()
	file, sub, ln := filepath.Join(base, "edge.yaml"), filepath.Join(base, "config.new"), filepath.Join(base, "config.tmp")
	write(t, file, rules("beside"))
	mkdir(t, sub)
	link(t, dir, ln)
	for _, p := range []string{file, sub, ln} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	// Events come in order: once the last is handled, so are the others.
	last := filepath.Join(base, "done")
	write(t, last, "")
	steps := h.waitSteps(t, mark, "the events beside the directory",
		handledEvent(file), handledEvent(sub), handledEvent(ln), handledEvent(last))
	for _, s := range steps {
		if s.reload && !s.poll && !s.load && filepath.Dir(filepath.Clean(s.path)) == base {
			t.Errorf("an event on %s, beside the config directory, asked for a reload", s.path)
		}
	}
}

// Linked rule files are polled as loading reads the tree. A link under a dot-directory
// (.git here; a ConfigMap's ..<timestamp> data directory is one too) is never read, so
// an edit of its target does not reload; a rule file whose chain of links runs through
// dot-directories to a file outside the tree (edge.yaml -> ..data/edge.yaml ->
// ../srv/edge.yaml, a ConfigMap whose data links out) is read, and an edit of its
// target reloads.
func TestLinksUnderDotDirectories(t *testing.T) {
	base := t.TempDir()
	dir, srv := filepath.Join(base, "config"), filepath.Join(base, "srv")
	const ts = "..2026_11_22_10_00_00.000000001"
	mkdir(t, filepath.Join(dir, ts))
	mkdir(t, filepath.Join(dir, ".git"))
	mkdir(t, srv)
	write(t, filepath.Join(srv, "edge.yaml"), rules("v1"))
	write(t, filepath.Join(srv, "hidden.yaml"), rules("hidden"))
	link(t, filepath.Join(srv, "edge.yaml"), filepath.Join(dir, ts, "edge.yaml"))
	link(t, ts, filepath.Join(dir, "..data"))
	link(t, filepath.Join("..data", "edge.yaml"), filepath.Join(dir, "edge.yaml"))
	link(t, filepath.Join(srv, "hidden.yaml"), filepath.Join(dir, ".git", "hidden.yaml"))
	h := watch(t, dir, reload.Options{Watch: true})
	if got := h.serving(); got != "v1" {
		t.Fatalf("serving %q at the start, want v1 (through ..data)", got)
	}
	h.waitCatchUp(t) // so that only the poll can find the edits

	write(t, filepath.Join(srv, "hidden.yaml"), rules("hidden, edited"))
	for _, s := range h.waitPolls(t, 2) {
		if s.poll && s.reload {
			t.Fatalf("a poll asked for a reload after an edit of a file only a link under .git leads to; log:\n%s", h.logs)
		}
	}

	write(t, filepath.Join(srv, "edge.yaml"), rules("v2"))
	h.waitFor(t, "v2", 5*time.Second)
}
