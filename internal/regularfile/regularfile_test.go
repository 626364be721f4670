package regularfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A regular file within the bound is read, through a link too; anything else is
// refused with an error naming the file and saying what it is.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	edge := write("edge", strings.Repeat("x", 16))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(edge, link); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]string{"a file of exactly the bound": edge, "a link to it": link} {
		if b, err := Read(p, 16); err != nil || string(b) != strings.Repeat("x", 16) {
			t.Errorf("%s: %q, %v; want its content", name, b, err)
		}
	}

	big := write("big", strings.Repeat("x", 17))
	missing := filepath.Join(dir, "missing")
	for _, c := range []struct {
		name, path, want string
	}{
		{"over the bound", big, big + ": 17 bytes, larger than 16 bytes"},
		{"a directory", dir, dir + ": not a regular file (a directory)"},
		{"missing", missing, missing},
	} {
		if _, err := Read(c.path, 16); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	if _, err := Read(missing, 16); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a missing file: %v, want fs.ErrNotExist", err)
	}
}

func TestBoundIsWrittenInMiBWhenWhole(t *testing.T) {
	for n, want := range map[int64]string{16 << 20: "16 MiB", 1 << 20: "1 MiB", 1<<20 + 1: "1048577 bytes", 16: "16 bytes"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
