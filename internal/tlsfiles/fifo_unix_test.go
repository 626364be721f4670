//go:build unix

package tlsfiles

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
)

// A FIFO in a certificate's, key's or CA bundle's place is refused at once, naming the
// file: opening it to read would wait for a writer, and a handshake that loads the
// files would hang with the lock every other handshake needs.
func TestFIFOInPlaceOfAFileIsRefused(t *testing.T) {
	dir := t.TempDir()
	c := testpki.New(t).Issue(t, "server", []string{"localhost"})
	cert, key := c.CertFile, c.KeyFile
	fifo := filepath.Join(dir, "fifo.pem")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for name, load := range map[string]func() error{
		"certificate": func() error { _, err := LoadKeyPair(fifo, key, nil); return err },
		"key":         func() error { _, err := LoadKeyPair(cert, fifo, nil); return err },
		"CA bundle":   func() error { _, err := LoadPool(fifo, nil); return err },
	} {
		done := make(chan error, 1)
		go func() { done <- load() }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), fifo) {
				t.Errorf("%s: error %v, want one naming %s", name, err, fifo)
			}
		case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
			t.Fatalf("%s: loading a FIFO blocked", name)
		}
	}
}
