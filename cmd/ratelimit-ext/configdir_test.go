package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A relative --config-dir that does not exist (the binary started from another
// directory than the repository's, say) is named with the working directory it was
// looked up in, so the error says where the rules were expected.
func TestMissingRelativeConfigDirNamesTheWorkingDirectory(t *testing.T) {
	wd := t.TempDir()
	t.Chdir(wd)
	code, out := runStderr(t, "serve", "--config-dir", "rules", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	if want := filepath.Join(wd, "rules"); !strings.Contains(out, want) || !strings.Contains(out, "working directory") {
		t.Errorf("error does not say the directory was looked up in the working directory (%s):\n%s", want, out)
	}
	// An absolute path needs no such note.
	abs := filepath.Join(wd, "absent")
	if _, out := runStderr(t, "serve", "--config-dir", abs, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"); strings.Contains(out, "working directory") {
		t.Errorf("absolute path explained as relative:\n%s", out)
	}
	if _, err := os.Stat(abs); err == nil {
		t.Fatal("test setup: the absent directory exists")
	}
}
