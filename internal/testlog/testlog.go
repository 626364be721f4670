// Package testlog is a log sink for tests: several goroutines (a server, a watcher, a
// subscriber) write to it while the test reads what was logged, or waits for a line.
package testlog

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects log output; safe for concurrent writers and readers. Use it as the
// writer of a slog handler.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything logged so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// HasLine reports whether one line holds every one of parts.
func (l *Buffer) HasLine(parts ...string) bool {
	for _, line := range strings.Split(l.String(), "\n") {
		found := true
		for _, p := range parts {
			found = found && strings.Contains(line, p)
		}
		if found {
			return true
		}
	}
	return false
}

// WaitLine waits up to within for a line holding every one of parts, and fails the
// test with the whole log if none comes.
func (l *Buffer) WaitLine(t testing.TB, within time.Duration, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !l.HasLine(parts...) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v:\n%s", parts, within, l.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
