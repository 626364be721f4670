package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
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

// imageDefaults are where the image listens and reads its rules.
var imageDefaults = map[string]string{
	"RATELIMIT_EXT_GRPC_ADDR":  "0.0.0.0:8081",
	"RATELIMIT_EXT_HTTP_ADDR":  "0.0.0.0:8080",
	"RATELIMIT_EXT_CONFIG_DIR": "/etc/ratelimit-ext/config",
}

// The image's listen addresses and rules directory are defaults built into the binary by
// the `go build` line (-X), not ENV lines: those would be RATELIMIT_EXT_* variables,
// which outrank envoyproxy/ratelimit's, so a deployment switching images would lose its
// PORT, GRPC_PORT and RUNTIME_ROOT. The example rules are copied where the binary looks.
func TestDockerfileBuildsTheContainerDefaultsIn(t *testing.T) {
	df := readDockerfile(t)
	d, err := parseDockerfile([]byte(df))
	if err != nil {
		t.Fatal(err)
	}
	for k := range d.Env {
		if strings.HasPrefix(k, "RATELIMIT_EXT_") {
			t.Errorf("the image sets %s with ENV, which outranks envoyproxy/ratelimit's variables: build it in as a default (-X)", k)
		}
	}
	in := needInputs(t) // built with the Dockerfile's command
	for k, want := range imageDefaults {
		if got := in.Defaults[k]; got != want {
			t.Errorf("serve -h of the Dockerfile's build: %s defaults to %q, want %q", k, got, want)
		}
	}
	copyRules := regexp.MustCompile(`(?m)^COPY config/ ` + regexp.QuoteMeta(imageDefaults["RATELIMIT_EXT_CONFIG_DIR"]) + `/?$`)
	if !copyRules.MatchString(df) {
		t.Errorf("the final stage does not COPY config/ to the default config directory %s", imageDefaults["RATELIMIT_EXT_CONFIG_DIR"])
	}
}

// A plain file-mode deployment of envoyproxy/ratelimit switches to the image keeping its
// environment: RUNTIME_ROOT/RUNTIME_SUBDIRECTORY, HOST/PORT and GRPC_HOST/GRPC_PORT win
// over what the image sets, so the binary the Dockerfile builds, run with the image's
// ENV as Docker runs it, serves the deployment's own rules on its own ports.
func TestDockerfileBinaryTakesEnvoyproxyRatelimitsVariables(t *testing.T) {
	bin := needBinary(t)
	d, err := parseDockerfile([]byte(readDockerfile(t)))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	rules := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(rules, 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "domain: mine\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"
	if err := os.WriteFile(filepath.Join(rules, "mine.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	// Up to 5 tries: a port freePort found may be taken before the process binds it.
	var p *Process
	var ports [2]int
	for attempt := 1; ; attempt++ {
		for i := range ports {
			var err error
			if ports[i], err = freePort(); err != nil {
				t.Fatal(err)
			}
		}
		env := []string{"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "HOST=127.0.0.1",
			"PORT=" + strconv.Itoa(ports[0]), "GRPC_HOST=127.0.0.1", "GRPC_PORT=" + strconv.Itoa(ports[1]), "LOG_FORMAT=json"}
		for k, v := range d.Env {
			env = append(env, k+"="+v)
		}
		p = &Process{Name: "legacy", Path: bin, Env: env, LogPath: filepath.Join(t.TempDir(), "legacy.log")}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		err := waitUntil(p, 10*time.Second, func() error { return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[0])) })
		if err == nil {
			break
		}
		_ = p.Stop(10 * time.Second)
		log, _ := os.ReadFile(p.LogPath)
		if attempt == 5 || !portTaken(err, p.LogPath) {
			t.Fatalf("no answer on PORT=%d: %v; log:\n%s", ports[0], err, log)
		}
		t.Logf("attempt %d: a port was taken (%v); trying others", attempt, err)
	}
	t.Cleanup(func() { stopLogged(t, p) })
	logs := func() string { b, _ := os.ReadFile(p.LogPath); return string(b) }
	base := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	resp, err := readyClient.Get(base + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /debug/config: %s\n%s", resp.Status, body)
	}
	var cfg struct{ Domains []struct{ Domain string } }
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatalf("/debug/config: %v\n%s", err, body)
	}
	if len(cfg.Domains) != 1 || cfg.Domains[0].Domain != "mine" {
		t.Errorf("serving domains %+v, want only mine, from RUNTIME_ROOT", cfg.Domains)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])), time.Second)
	if err != nil {
		t.Errorf("nothing listens on GRPC_PORT=%d: %v", ports[1], err)
	} else {
		c.Close()
	}
	if strings.Contains(logs(), "ignored") {
		t.Errorf("a variable was reported ignored:\n%s", logs())
	}
}

// The build stage's Go is go.mod's: the official golang image sets GOTOOLCHAIN=local,
// so a base image older than go.mod's go line refuses to build the module, and a
// floating tag turns into that after a go.mod bump.
func TestDockerfileBuildsWithGoModsGo(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	from := regexp.MustCompile(`(?m)^FROM (?:--platform=\S+ )?golang:(\S+) AS build$`).FindStringSubmatch(readDockerfile(t))
	if from == nil || from[1] != string(m[1]) {
		t.Errorf("Dockerfile build stage: FROM golang:%v, want golang:%s (go.mod's go line)", from, m[1])
	}
}

// Blank lines and comments inside a continued instruction are skipped, as Docker skips
// them, instead of ending it.
func TestDockerfileContinuationSkipsBlankLinesAndComments(t *testing.T) {
	got := dockerInstrs([]byte("FROM x AS build\nRUN go build \\\n\n    # a note\n    -o /out/a ./cmd/a\nENTRYPOINT [\"/a\"]\n"))
	want := []dockerInstr{
		{op: "FROM", args: "x AS build", line: 1, oneLine: true},
		{op: "RUN", args: "go build  -o /out/a ./cmd/a", line: 2},
		{op: "ENTRYPOINT", args: `["/a"]`, line: 6, oneLine: true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("instructions %+v, want %+v", got, want)
	}
}

// A multi-platform build (docker buildx build --platform linux/amd64,linux/arm64) runs
// the build stage on the builder's own platform and cross-compiles for each target, so
// no Go toolchain runs under emulation: the stage is FROM --platform=$BUILDPLATFORM and
// its `go build` takes GOOS/GOARCH from TARGETOS/TARGETARCH. A plain `docker build`
// without BuildKit (and the e2e harness) leaves them empty: the host's platform.
// The build line's environment, up to `go build`, is run here with `go env` instead.
func TestDockerfileCrossCompilesForTheTargetPlatform(t *testing.T) {
	df := readDockerfile(t)
	if !regexp.MustCompile(`(?m)^FROM --platform=\$BUILDPLATFORM golang:\S+ AS build$`).MatchString(df) {
		t.Error("the build stage is not FROM --platform=$BUILDPLATFORM: a multi-platform build would run Go under emulation")
	}
	d, err := parseDockerfile([]byte(df))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(d.BuildCmd, "go build")
	if i < 0 {
		t.Fatalf("build command %q has no `go build`", d.BuildCmd)
	}
	goEnv := d.BuildCmd[:i] + "go env GOOS GOARCH"
	host := runtime.GOOS + " " + runtime.GOARCH
	cases := []struct {
		name  string
		stray string            // a variable of the caller's environment
		args  map[string]string // build arguments as Docker passes them
		want  string
	}{
		{"no target (legacy builder, e2e harness)", "", nil, host},
		{"no target, TARGETARCH in the caller's environment", "TARGETARCH=arm64", nil, host},
		{"buildx linux/arm64", "", map[string]string{"TARGETOS": "linux", "TARGETARCH": "arm64"}, "linux arm64"},
		{"buildx linux/amd64", "", map[string]string{"TARGETOS": "linux", "TARGETARCH": "amd64"}, "linux amd64"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := os.Environ()
			if tc.stray != "" {
				base = append(base, tc.stray)
			}
			cmd := exec.Command("sh", "-c", goEnv)
			cmd.Env = d.buildEnv(base, tc.args)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", goEnv, err, out)
			}
			if got := strings.Join(strings.Fields(string(out)), " "); got != tc.want {
				t.Errorf("%s builds for %q, want %q", goEnv, got, tc.want)
			}
		})
	}
}

// A variable the `go build` line uses must be an ARG of its stage: Docker expands
// anything else to empty, so an undeclared TARGETARCH would put the builder's binary
// into every platform's image.
func TestDockerfileBuildLineVariablesMustBeDeclared(t *testing.T) {
	const build = "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=${TARGETARCH} go build -o /out/a ./cmd/a\n" +
		"FROM scratch\nCOPY --from=build /out/a /a\nENTRYPOINT [\"/a\"]\n"
	cases := []struct {
		name            string
		global, inStage string // ARG lines before the first FROM, and in the build stage
		wantErr         string
		wantArgs        map[string]string
	}{
		{"both declared", "", "ARG TARGETOS TARGETARCH\n", "", map[string]string{"TARGETOS": "", "TARGETARCH": ""}},
		{"declared with a default", "", "ARG TARGETOS=linux\nARG TARGETARCH\n", "", map[string]string{"TARGETOS": "linux", "TARGETARCH": ""}},
		{"one missing", "", "ARG TARGETOS\n", "TARGETARCH", nil},
		{"declared before FROM only", "ARG TARGETOS TARGETARCH\n", "", "TARGETOS", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := parseDockerfile([]byte(tc.global + "FROM golang:1 AS build\n" + tc.inStage + build))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(d.BuildArgs, tc.wantArgs) {
				t.Errorf("build arguments %v, want %v", d.BuildArgs, tc.wantArgs)
			}
		})
	}
}
