package filedigest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a, b, a2 := write("a", "limit: 10"), write("b", "limit: 20"), write("a2", "limit: 10")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(a, link); err != nil {
		t.Fatal(err)
	}
	big := write("big", strings.Repeat("x", 17))
	if _, ok := Of(write("edge", strings.Repeat("x", 16)), 16); !ok {
		t.Error("a file of exactly the limit is not read")
	}

	da, ok := Of(a, 16)
	if !ok {
		t.Fatal("a regular file within the limit is not read")
	}
	if db, _ := Of(b, 16); db == da {
		t.Error("two contents of the same size have the same digest")
	}
	if d, _ := Of(a2, 16); d != da {
		t.Error("the same content in another file has another digest")
	}
	if d, ok := Of(link, 16); !ok || d != da {
		t.Error("a link is not followed to its file")
	}
	for name, p := range map[string]string{"over the limit": big, "a directory": dir, "missing": filepath.Join(dir, "none")} {
		if _, ok := Of(p, 16); ok {
			t.Errorf("%s: read", name)
		}
	}
}
