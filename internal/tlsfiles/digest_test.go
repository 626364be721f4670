package tlsfiles

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Only regular files up to maxDigested bytes are read; the same content has the same
// digest, other content another.
func TestDigestReadsOnlySmallRegularFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	a, b := write("a", []byte("one")), write("b", []byte("two"))
	bound := write("bound", bytes.Repeat([]byte("x"), maxDigested))
	tests := []struct {
		name string
		path string
		read bool
	}{
		{"small file", a, true},
		{"file at the bound", bound, true},
		{"file past the bound", write("big", bytes.Repeat([]byte("x"), maxDigested+1)), false},
		{"directory", dir, false},
		{"missing file", filepath.Join(dir, "missing"), false},
	}
	for _, tc := range tests {
		if _, ok := digest(tc.path); ok != tc.read {
			t.Errorf("%s: read %v, want %v", tc.name, ok, tc.read)
		}
	}
	da, _ := digest(a)
	db, _ := digest(b)
	again, _ := digest(write("a again", []byte("one")))
	if da == db || da != again {
		t.Errorf("digests one=%x two=%x one again=%x: want one's equal and two's different", da, db, again)
	}
}
