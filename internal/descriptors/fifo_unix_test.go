//go:build unix

package descriptors

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A rule file is read only as a regular file, checked on the file it opened: a FIFO
// swapped in between the walker's look at the path and the read (a deploy tool
// replacing files) is refused, not waited on, which would hold up every later reload.
func TestReadingAFIFODoesNotBlock(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "edge.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := readAtMost(fifo, MaxFileSize+1)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(describeErr(err), "not a regular file (a FIFO)") {
			t.Errorf("reading a FIFO: %v, want an error saying it is not a regular file", err)
		}
	case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
		t.Fatal("reading a FIFO blocked")
	}
}
