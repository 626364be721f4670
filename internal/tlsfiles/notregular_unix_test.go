//go:build unix

package tlsfiles_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// returns runs f and fails the test if it does not return: loading a FIFO with an
// ordinary open waits for a writer for good, holding the lock every handshake needs.
func returns(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // not a timing assert: a blocked open never returns
		t.Fatalf("%s blocked", what)
	}
}

func mkfifo(t *testing.T, path string) string {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	return path
}

// A certificate, key or CA bundle that is not a regular file of at most 16 MiB (a
// FIFO, a directory, a device, the wrong large file) is refused at once, with an
// error naming it and saying what it is.
func TestLoadRefusesWhatIsNotASmallRegularFile(t *testing.T) {
	dir := t.TempDir()
	c := testpki.New(t).Issue(t, "server", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	huge := filepath.Join(dir, "huge.pem")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, 16<<20+1); err != nil { // sparse: nothing is written
		t.Fatal(err)
	}
	fifo := mkfifo(t, filepath.Join(dir, "fifo.pem"))
	for _, bad := range []struct{ path, want string }{
		{fifo, fifo + ": not a regular file (a FIFO)"},
		{dir, dir + ": not a regular file (a directory)"},
		{"/dev/zero", "/dev/zero: not a regular file (a device)"},
		{huge, huge + ": 16777217 bytes, larger than 16 MiB"},
	} {
		for use, load := range map[string]func() error{
			"certificate": func() error { _, err := tlsfiles.LoadKeyPair(bad.path, c.KeyFile, nil); return err },
			"key":         func() error { _, err := tlsfiles.LoadKeyPair(c.CertFile, bad.path, nil); return err },
			"CA bundle":   func() error { _, err := tlsfiles.LoadPool(bad.path, nil); return err },
		} {
			var err error
			returns(t, "loading "+bad.path+" as the "+use, func() { err = load() })
			if err == nil || !strings.Contains(err.Error(), bad.want) {
				t.Errorf("%s %s: error %v, want one saying %q", use, bad.path, err, bad.want)
			}
		}
	}
}

// A rotation that puts a FIFO in a file's place is a change that does not load: the
// previous certificate and bundle stay in use, and it is reported as such.
func TestRotationToAFIFOKeepsThePreviousFiles(t *testing.T) {
	ca := testpki.New(t)
	first := ca.Issue(t, "first", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	dir := t.TempDir()
	cert, key, bundle := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	place(t, cert, first.CertFile, 1)
	place(t, key, first.KeyFile, 1)
	place(t, bundle, ca.File, 1)
	log, logged := logBuffer()
	kp, err := tlsfiles.LoadKeyPair(cert, key, log)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tlsfiles.LoadPool(bundle, log)
	if err != nil {
		t.Fatal(err)
	}
	loaded := pool.Current()

	for _, path := range []string{cert, bundle} {
		if err := os.Rename(mkfifo(t, path+".next"), path); err != nil {
			t.Fatal(err)
		}
	}
	var kpStatus, poolStatus tlsfiles.Status
	returns(t, "a handshake after the rotation", func() {
		if got := commonName(kp.Certificate()); got != "first" {
			t.Errorf("after a rotation to a FIFO: %q, want the previous pair (first)", got)
		}
		if pool.Current() != loaded {
			t.Error("after a rotation to a FIFO, the bundle in use changed")
		}
		kpStatus, poolStatus = kp.Status(), pool.Status()
	})
	if !kpStatus.Failing || !poolStatus.Failing {
		t.Errorf("status: pair %+v, bundle %+v; want both failing", kpStatus, poolStatus)
	}
	for _, path := range []string{cert, bundle} {
		if !strings.Contains(logged.String(), path+": not a regular file (a FIFO)") {
			t.Errorf("no warning naming %s as a FIFO:\n%s", path, logged)
		}
	}
	if n := strings.Count(logged.String(), "did not load"); n != 2 {
		t.Errorf("%d warnings that a change did not load, want one for each of the two:\n%s", n, logged)
	}
}
