package e2e

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// One topology serves the whole suite (started in TestMain). Tests isolate themselves with
// distinct client addresses, API keys and tenants; the few shared generic_key counters
// (fixed, sliding, shadow, strict, pair, write) are each used by one test only, so run the
// suite once per topology: -count=1, in file order (no -shuffle).
var (
	topo     *Topology
	bld      *Build
	inputs   Inputs
	setupErr error
	skipMsg  string
)

func TestMain(m *testing.M) {
	if os.Getenv(confineEnv) != "" {
		os.Exit(runConfined()) // started as a confined service's wrapper, not to test
	}
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	work, err := os.MkdirTemp("", "ratelimit-ext-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if os.Getenv("E2E_KEEP") != "" {
			fmt.Println("e2e: keeping", work)
			return
		}
		os.RemoveAll(work)
	}()
	setupErr = setup(work)
	var missing *ToolMissingError
	switch {
	case setupErr == nil:
	case errors.As(setupErr, &missing) && os.Getenv("CI") != "true":
		skipMsg = loud("SKIPPING the end-to-end suite: " + setupErr.Error() +
			"\nNothing was tested through Envoy. (With CI=true this is a failure.)")
		fmt.Fprintln(os.Stderr, skipMsg)
		setupErr = nil
	default:
		fmt.Fprintln(os.Stderr, loud("e2e setup failed:\n"+setupErr.Error()))
	}
	code := m.Run()
	if topo != nil {
		if code != 0 || setupErr != nil {
			fmt.Println(loud("process logs (" + work + ")"))
			topo.DumpLogs(os.Stdout)
		}
		topo.Close()
	}
	return code
}

func loud(msg string) string {
	bar := strings.Repeat("!", 78)
	return bar + "\n" + msg + "\n" + bar
}

// setup builds the service as the Dockerfile does, maps docker-compose.yml and starts it.
func setup(work string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	start := time.Now()
	bld, err = BuildService(root, work)
	if err != nil {
		return err
	}
	fmt.Printf("e2e: built ratelimit-ext in %v with the Dockerfile's command: %s\n",
		time.Since(start).Round(time.Millisecond), bld.Command)
	pin, err := EnvoyPin(root)
	if err != nil {
		return err
	}
	compose, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		return err
	}
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return err
	}
	inputs = Inputs{Root: root, Compose: compose, Dockerfile: dockerfile, KnownEnv: bld.KnownEnv,
		Defaults: bld.Defaults, ReadFile: os.ReadFile, Pin: pin, WorkDir: work,
		Binaries: map[string]string{kindRatelimit: bld.Binary}}
	if testing.Short() {
		skipMsg = "-short: the end-to-end topology is not started"
		return nil
	}
	envoy, err := FindEnvoy(root)
	if err != nil {
		return err
	}
	redis, err := FindRedis()
	if err != nil {
		return err
	}
	inputs.Binaries[kindEnvoy], inputs.Binaries[kindRedis] = envoy, redis
	line, ver, err := EnvoyVersion(envoy)
	if err != nil {
		return err
	}
	fmt.Println("e2e: envoy --version:", line) // a version other than the pin: below
	if ver != pin {
		msg := fmt.Sprintf("%s is Envoy %s but e2e/requirements.txt pins %s", envoy, ver, pin)
		if os.Getenv("CI") == "true" {
			return errors.New(msg)
		}
		fmt.Fprintln(os.Stderr, loud("WARNING: "+msg+"; results may differ from CI"))
	}
	// Up to 3 tries, each with ports of its own and a fresh copy of the mounts, when a
	// port MakePlan found free was taken before its service bound it.
	for attempt := 1; ; attempt++ {
		plan, err := MakePlan(inputs)
		if err != nil {
			return err
		}
		if topo, err = Start(plan, inputs.WorkDir); err == nil || attempt == 3 || !portTaken(err, topo.logPaths()...) {
			return err
		}
		fmt.Fprintf(os.Stderr, "e2e: starting the topology failed (attempt %d), trying other ports: %v\n", attempt, err)
		topo.DumpLogs(os.Stderr)
		topo.Close()
		topo, inputs.WorkDir = nil, filepath.Join(work, fmt.Sprintf("attempt-%d", attempt+1))
	}
}

// needTopology skips or fails a test that needs the running topology.
func needTopology(t *testing.T) *Topology {
	t.Helper()
	if skipMsg != "" {
		t.Skip(skipMsg)
	}
	if setupErr != nil {
		t.Fatalf("setup failed: %v", setupErr)
	}
	undecidedAtStart = undecidedCounts() // undecided reports what this test adds
	return topo
}
