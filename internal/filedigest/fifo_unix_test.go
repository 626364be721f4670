//go:build unix

package filedigest

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// A FIFO is not read, and opening it does not wait for a writer: a FIFO put in a rule
// or certificate file's place (even between a stat and the open) must not block the
// watcher that looks at it.
func TestFIFOIsNotReadAndDoesNotBlock(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan bool, 1)
	go func() {
		_, ok := Of(fifo, 16)
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Error("a FIFO was opened to be read")
		}
	case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
		t.Fatal("opening a FIFO blocked")
	}
}
