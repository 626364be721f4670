//go:build unix

package regularfile

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A FIFO or a device at the path is refused at once, naming it: an ordinary open of a
// FIFO waits for a writer, and /dev/zero never ends.
func TestFIFOAndDeviceAreRefusedWithoutWaiting(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for path, want := range map[string]string{
		fifo:        fifo + ": not a regular file (a FIFO)",
		"/dev/zero": "/dev/zero: not a regular file (a device)",
	} {
		done := make(chan error, 1)
		go func() {
			_, err := Read(path, 1<<20)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %v, want one saying %q", path, err, want)
			}
		case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
			t.Fatalf("%s: reading blocked", path)
		}
	}
}
