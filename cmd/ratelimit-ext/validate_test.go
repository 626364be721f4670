package main

import (
	"os"
	"path/filepath"
	"testing"
)

// validate exits 0 on good rules, 1 on broken ones, 2 on bad usage, and -h asks for
// help instead of naming a directory.
func TestValidateExitCodes(t *testing.T) {
	broken := t.TempDir()
	if err := os.WriteFile(filepath.Join(broken, "edge.yaml"), []byte("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: seconds, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"validate", "../../config"}, 0},
		{[]string{"validate", broken}, 1},
		{[]string{"validate"}, 2},
		{[]string{"validate", "a", "b"}, 2},
		{[]string{"validate", "-h"}, 0},
	} {
		if got := run(tc.args); got != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, got, tc.want)
		}
	}
}
