package tlsfiles

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Files up to maxDigested bytes are named by their content; a larger one (or one that
// cannot be read) by "-", and left to size, time and identity.
func TestDigestsReadOnlySmallFiles(t *testing.T) {
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
	big := write("big", bytes.Repeat([]byte("x"), maxDigested+1))
	got := strings.Split(digests([]string{a, b, bound, big, filepath.Join(dir, "missing")}), ";")
	if len(got) != 6 || got[5] != "" {
		t.Fatalf("digests %q: want five entries, each ended by ;", got)
	}
	if got[0] == "-" || got[1] == "-" || got[0] == got[1] {
		t.Errorf("small files %q, %q: want two different digests", got[0], got[1])
	}
	if got[2] == "-" {
		t.Errorf("a file of maxDigested bytes is not read")
	}
	if got[3] != "-" || got[4] != "-" {
		t.Errorf("a file past maxDigested and a missing one: %q, %q, want - for both", got[3], got[4])
	}
	if again := digests([]string{write("a again", []byte("one"))}); again != got[0]+";" {
		t.Errorf("the same content in another file: %q, want %q", again, got[0]+";")
	}
}
