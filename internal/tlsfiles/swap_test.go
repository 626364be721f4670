package tlsfiles_test

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// A bundle replaced by another file of the same size and modification time (a link
// re-pointed at files whose times were preserved, as `cp -p` or an archive keeps them)
// is still seen: the file's identity is part of its version.
func TestPoolFollowsASwapThatKeepsSizeAndTime(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	dir := t.TempDir()
	oldPEM, newPEM := padToSameSize(readFile(t, oldCA.File), readFile(t, newCA.File))
	at := time.Now().Add(-time.Hour)
	a, b := filepath.Join(dir, "a.crt"), filepath.Join(dir, "b.crt")
	writeWithTime(t, a, oldPEM, at)
	writeWithTime(t, b, newPEM, at)
	bundle := filepath.Join(dir, "ca.crt")
	if err := os.Symlink(a, bundle); err != nil {
		t.Fatal(err)
	}
	pool, err := tlsfiles.LoadPool(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	oldPool, newPool := loadPool(t, a), loadPool(t, b)
	if !pool.Current().Equal(oldPool) {
		t.Fatal("the loaded pool is not the first bundle's")
	}
	// Re-point the link as Kubernetes does: a new link renamed over the old one.
	next := filepath.Join(dir, "ca.crt.next")
	if err := os.Symlink(b, next); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, bundle); err != nil {
		t.Fatal(err)
	}
	if !pool.Current().Equal(newPool) {
		t.Error("a bundle swapped for one of the same size and time was not loaded")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadPool is the pool of the certificates in the PEM file at path.
func loadPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(readFile(t, path)) {
		t.Fatalf("%s holds no certificate", path)
	}
	return p
}
