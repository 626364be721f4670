package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readDockerfile(t *testing.T) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Envoy Gateway's rate-limit Deployment runs the command /bin/ratelimit with no
// arguments (envoyproxy/ratelimit's path), which replaces the image's ENTRYPOINT and
// drops its CMD. So the image puts the binary the `go build` line makes there too, and
// its own start is that binary alone: started either way, it does the same.
func TestDockerfileAnswersEnvoyGatewaysCommand(t *testing.T) {
	d, err := parseDockerfile([]byte(readDockerfile(t)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(d.BinPaths, "/bin/ratelimit") {
		t.Errorf("the binary is copied to %v, not to /bin/ratelimit", d.BinPaths)
	}
	if len(d.Entrypoint) != 1 || len(d.Cmd) != 0 {
		t.Errorf("ENTRYPOINT %q, CMD %q: want the binary alone, as /bin/ratelimit runs", d.Entrypoint, d.Cmd)
	}
}

// An ENTRYPOINT that starts no copy of the built binary is an error.
func TestDockerfileEntrypointMustStartTheBinary(t *testing.T) {
	df := readDockerfile(t)
	const entry = `ENTRYPOINT ["/usr/local/bin/ratelimit-ext"]`
	if !strings.Contains(df, entry) {
		t.Fatalf("the Dockerfile has no %s any more; update this test", entry)
	}
	_, err := parseDockerfile([]byte(strings.Replace(df, entry, `ENTRYPOINT ["/usr/bin/ratelimit"]`, 1)))
	if err == nil || !strings.Contains(err.Error(), "does not start the built binary") {
		t.Fatalf("error %v, want one saying the ENTRYPOINT starts no copy of the binary", err)
	}
}
