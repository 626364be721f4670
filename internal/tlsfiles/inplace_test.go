package tlsfiles_test

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// padToSameSize pads the shorter of two PEM files with newlines to the longer's size:
// text around PEM blocks is ignored.
func padToSameSize(a, b []byte) ([]byte, []byte) {
	if n := len(b) - len(a); n > 0 {
		a = append(a, bytes.Repeat([]byte("\n"), n)...)
	} else {
		b = append(b, bytes.Repeat([]byte("\n"), -n)...)
	}
	return a, b
}

// rewriteInPlace writes b over the file at path, which holds as many bytes, and puts
// its modification time back, as `cp -p` onto it does, or two writes within one tick
// of a coarse filesystem clock: its size, time and inode stay as they were.
func rewriteInPlace(t *testing.T, path string, b []byte) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if before.Size() != int64(len(b)) {
		t.Fatalf("%s: %d bytes over %d: not a same-size rewrite", path, len(b), before.Size())
	}
	writeWithTime(t, path, b, before.ModTime())
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Fatalf("%s: the rewrite changed the file's identity, time or size", path)
	}
}

// A file rewritten in place with other content of the same size and time is read
// again: its content is compared too. (Rehashing is made immediate; it is otherwise
// at most once per rehashEvery.)
func TestFilesRewrittenInPlaceWithSameSizeAndTimeAreReadAgain(t *testing.T) {
	defer tlsfiles.SetRehashEvery(0)()
	ca := testpki.New(t)
	first := ca.Issue(t, "first", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	other := ca.Issue(t, "other", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	otherCA := testpki.New(t)
	tests := []struct {
		name string
		// files maps each file to the content it starts with and the content
		// rewritten over it.
		files map[string][2]string
		// load loads the files and returns a function telling what is in use.
		load func(t *testing.T, dir string) (inUse func() string)
		want string
	}{
		{
			name:  "key pair",
			files: map[string][2]string{"tls.crt": {first.CertFile, other.CertFile}, "tls.key": {first.KeyFile, other.KeyFile}},
			load: func(t *testing.T, dir string) func() string {
				kp, err := tlsfiles.LoadKeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), nil)
				if err != nil {
					t.Fatal(err)
				}
				return func() string { return commonName(kp.Certificate()) }
			},
			want: "other",
		},
		{
			name:  "CA bundle",
			files: map[string][2]string{"ca.crt": {ca.File, otherCA.File}},
			load: func(t *testing.T, dir string) func() string {
				pool, err := tlsfiles.LoadPool(filepath.Join(dir, "ca.crt"), nil)
				if err != nil {
					t.Fatal(err)
				}
				firstPool, otherPool := loadPool(t, ca.File), loadPool(t, otherCA.File)
				return func() string {
					switch p := pool.Current(); {
					case p.Equal(firstPool):
						return "first"
					case p.Equal(otherPool):
						return "other"
					}
					return "neither bundle"
				}
			},
			want: "other",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			next := map[string][]byte{}
			for name, src := range tc.files {
				was, now := padToSameSize(readFile(t, src[0]), readFile(t, src[1]))
				writeAt(t, filepath.Join(dir, name), was, -60)
				next[name] = now
			}
			inUse := tc.load(t, dir)
			if got := inUse(); got != "first" {
				t.Fatalf("loaded %q, want first", got)
			}
			for name, b := range next {
				rewriteInPlace(t, filepath.Join(dir, name), b)
			}
			if got := inUse(); got != tc.want {
				t.Errorf("after a same-size, same-time rewrite: %q in use, want %q", got, tc.want)
			}
		})
	}
}
