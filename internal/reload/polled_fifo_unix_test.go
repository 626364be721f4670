//go:build unix

package reload_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// A polled rule file that becomes a FIFO (here a link's target replaced by one) does
// not stop the poll: loading refuses it, and the poll, which reads polled files to see
// edits that keep their size and time, does not open it (that would wait for a writer
// forever). Once a regular file takes its place, it loads.
func TestPolledFIFODoesNotStopThePoll(t *testing.T) {
	dir, target := linkedOutside(t)
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t)
	fifo := filepath.Join(filepath.Dir(target), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	// Runs before the watcher's Close: a poll blocked opening the FIFO (the failure this
	// test is about) is let go by a writer, and the next one finds no FIFO, so that
	// Close does not wait for the poll forever.
	t.Cleanup(func() {
		_ = os.Remove(target)
		if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	if err := os.Link(fifo, target+".new"); err != nil { // fifo, its other name, stays
		t.Fatal(err)
	}
	if err := os.Rename(target+".new", target); err != nil {
		t.Fatal(err)
	}
	h.waitLog(t, "the failed load of the FIFO", "config reload failed", "not a regular file")
	// Two polls after the FIFO was there: a poll blocked on it would report none.
	h.waitSteps(t, h.mark(), "a poll", func(s step) bool { return s.poll })
	h.waitSteps(t, h.mark(), "another poll", func(s step) bool { return s.poll })

	write(t, target+".new", rules("v2"))
	if err := os.Rename(target+".new", target); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 5*time.Second)
}
