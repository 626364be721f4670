package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
)

// confineEnv carries a confinement to the test binary, started in place of a service's
// program: TestMain sees it, applies the confinement to itself and executes the
// program (runConfined).
const confineEnv = "RATELIMIT_E2E_CONFINE"

// confinement is what a service's hardening keys ask the kernel for, as the harness
// applies it to the local process: a container's restrictions without a container.
type confinement struct {
	// ReadOnly (read_only: true): no file may be written, created or removed except
	// under Writable.
	ReadOnly bool
	// Writable: what stays writable in such a container, mapped to the host: /dev (a
	// container's own tmpfs, with /dev/null and /dev/shm) and the read-write mounts.
	Writable   []string
	DropCaps   bool // cap_drop: [ALL]
	NoNewPrivs bool // security_opt: [no-new-privileges:true]
}

// wrap returns the command line and environment that start path with args under c:
// the test binary itself, told by confineEnv what to apply before it executes path.
func (c *confinement) wrap(path string, args, env []string) (string, []string, []string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, fmt.Errorf("confining %s: %w", path, err)
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return "", nil, nil, err
	}
	env = append(append([]string{}, env...), confineEnv+"="+string(spec))
	return self, append([]string{path}, args...), env, nil
}

// confinedCommand reads what wrap passed: the confinement, the program and its
// arguments, and the environment without confineEnv.
func confinedCommand() (*confinement, []string, []string, error) {
	var c confinement
	if err := json.Unmarshal([]byte(os.Getenv(confineEnv)), &c); err != nil {
		return nil, nil, nil, fmt.Errorf("%s: %w", confineEnv, err)
	}
	if len(os.Args) < 2 {
		return nil, nil, nil, fmt.Errorf("%s: no program to run", confineEnv)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, confineEnv+"=") {
			env = append(env, kv)
		}
	}
	return &c, os.Args[1:], env, nil
}

var confineWarning sync.Once

// command returns how to start the service: under its confinement, when it has one and
// this system can apply it (else with a warning, once).
func (sp *ServicePlan) command(args []string) (string, []string, []string, error) {
	if sp.Confine == nil {
		return sp.Path, args, sp.Env, nil
	}
	if err := confineSupport(); err != nil {
		confineWarning.Do(func() {
			fmt.Fprintf(os.Stderr, "e2e: WARNING: services run without their compose hardening (read_only, cap_drop, no-new-privileges): %v\n", err)
		})
		return sp.Path, args, sp.Env, nil
	}
	return sp.Confine.wrap(sp.Path, args, sp.Env)
}
