package reload_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// A rules checkout's .git directory is skipped by loading, and not watched either: what
// `git fetch` does there (a new directory, a lock file renamed onto a ref, the lock
// removed) reports no event, so reloads nothing and holds no watch. Nor is a
// dot-directory made after the start (a tool's .cache): the event of its making is
// seen, what is done inside it is not. An edit of a rule file beside them reloads.
func TestChangesInsideDotDirectoriesDoNotReload(t *testing.T) {
	dir := t.TempDir()
	git, cache := filepath.Join(dir, ".git"), filepath.Join(dir, ".cache")
	mkdir(t, filepath.Join(git, "refs", "heads"))
	write(t, filepath.Join(git, "HEAD"), "ref: refs/heads/main\n")
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t)
	mkdir(t, cache)
	h.waitSteps(t, 0, "the event of the new .cache", handledEvent(cache)) // handled: watched, were it to be

	mark := h.mark()
	gitFetch(t, git)
	gitFetch(t, cache)
	// Events come in order: once the rule file's is handled, any inside the
	// dot-directories would have been.
	write(t, filepath.Join(dir, "edge.yaml"), rules("v2"))
	steps := h.waitSteps(t, mark, "the event of the rule file's edit", handledEvent(filepath.Join(dir, "edge.yaml")))
	for _, s := range steps {
		if !s.poll && !s.load && (within(git, s.path) || within(cache, s.path)) {
			t.Errorf("%v: a change inside a dot-directory was watched", s)
		}
	}
	h.waitFor(t, "v2", 5*time.Second)
}

// gitFetch does in dir what `git fetch` does in .git: a new directory, a lock file
// renamed onto a ref, another lock file removed.
func gitFetch(t *testing.T, dir string) {
	t.Helper()
	mkdir(t, filepath.Join(dir, "refs", "remotes", "origin"))
	lock := filepath.Join(dir, "refs", "remotes", "origin", "main.lock")
	write(t, lock, "0123456789abcdef\n")
	if err := os.Rename(lock, filepath.Join(dir, "refs", "remotes", "origin", "main")); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "FETCH_HEAD.lock"), "")
	if err := os.Remove(filepath.Join(dir, "FETCH_HEAD.lock")); err != nil {
		t.Fatal(err)
	}
}

// A rule file linked to a file in a dot-directory of the tree (not watched: see above)
// is polled as a link out of the tree is: an edit of its target reloads.
func TestLinkIntoADotDirectoryReloads(t *testing.T) {
	dir := t.TempDir()
	mkdir(t, filepath.Join(dir, ".shared"))
	write(t, filepath.Join(dir, ".shared", "edge.yaml"), rules("v1"))
	link(t, filepath.Join(".shared", "edge.yaml"), filepath.Join(dir, "edge.yaml"))
	h := watchSettled(t, dir, func() { write(t, filepath.Join(dir, ".shared", "edge.yaml"), rules("v2")) }, "v2")
	write(t, filepath.Join(dir, ".shared", "edge.yaml"), rules("v3"))
	h.waitFor(t, "v3", 5*time.Second)
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	path = filepath.Clean(path)
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}
