package conformance

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The throttlekit vectors replayed are the ones their project published: the file's
// sha256 is the golden-vectors.json line of the manifest.sha256 copied beside it
// (SOURCES.md), so an edit to the external file, which would change what conformance
// proves, fails here instead of passing silently.
func TestThrottlekitVectorsMatchTheirChecksum(t *testing.T) {
	files := vectorFiles(t)
	if len(files) == 0 || files[0] != throttlekit {
		return // absent: vectorFiles said so loudly (and fails under CI)
	}
	want := publishedSum(t, filepath.Join(filepath.Dir(throttlekit), "throttlekit-py.contract.manifest.sha256"), "golden-vectors.json")
	data, err := os.ReadFile(throttlekit)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Errorf("%s: sha256 %s, but its project's manifest says %s", throttlekit, got, want)
	}
}

// publishedSum reads the sha256 that the `sha256sum`-format list at path gives name.
func publishedSum(t *testing.T, path, name string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		if sum, file, ok := strings.Cut(strings.TrimSpace(lines.Text()), "  "); ok && file == name {
			return sum
		}
	}
	t.Fatalf("%s lists no %s (%v)", path, name, lines.Err())
	return ""
}
