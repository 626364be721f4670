//go:build unix

package descriptors

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A rule file is read only as a regular file, checked on the file it opened: a FIFO
// swapped in after the walker looked at the path (a deploy tool replacing files) is
// refused with an error naming it, not waited on, which would hold up the load and
// every later reload.
func TestAFIFOSwappedInAfterTheLookIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "edge.yaml")
	if err := os.WriteFile(path, []byte("domain: edge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path) // the walker's look: a regular file
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		c := newCompiler(Options{})
		(&walker{c: c, seen: map[string]bool{}}).file("edge.yaml", path, info)
		_, err := c.finish()
		done <- err
	}()
	select {
	case err := <-done:
		if want := "edge.yaml: file: cannot read: not a regular file (a FIFO)"; err == nil || err.Error() != want {
			t.Errorf("loading a FIFO: %v, want %q", err, want)
		}
	case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
		t.Fatal("loading a FIFO blocked")
	}
}
