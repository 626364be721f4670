package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// needConfinement skips a test where the harness cannot confine (see confineSupport),
// loudly, as a suite without its dependency does; with CI=true that is a failure: the
// replicas then ran without their compose hardening, and a change that makes the
// service write a file would pass unseen.
func needConfinement(t *testing.T) {
	t.Helper()
	err := confineSupport()
	switch {
	case err == nil:
	case os.Getenv("CI") == "true":
		t.Fatalf("%v (CI=true: the replicas must run confined)", err)
	default:
		msg := loud("SKIPPED " + t.Name() + ": " + err.Error() + "\nThe replicas ran without their compose hardening. (With CI=true this is a failure.)")
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
}

// A confined process writes only where its container could (Writable) and keeps no
// capability and no way to gain privileges: what read_only, cap_drop: [ALL] and
// no-new-privileges:true give a replica in docker-compose.yml.
func TestConfinementForbidsWritesElsewhere(t *testing.T) {
	needConfinement(t)
	writable, other := t.TempDir(), t.TempDir()
	c := &confinement{ReadOnly: true, DropCaps: true, NoNewPrivs: true, Writable: []string{writable}}
	cases := []struct {
		name, script string
		ok           bool
	}{
		{"create where writable", `echo x > "$W/new"`, true},
		{"create elsewhere", `echo x > "$O/new"`, false},
		{"append elsewhere", `echo x >> "$O/old"`, false},
		{"remove elsewhere", `rm "$O/old"`, false},
		{"make a directory elsewhere", `mkdir "$O/dir"`, false},
		{"read elsewhere", `cat "$O/old"`, true},
		{"no privileges to gain", `grep -Eq '^NoNewPrivs:[[:space:]]+1$' /proc/self/status`, true},
		{"no capabilities", `grep -Eq '^CapEff:[[:space:]]+0+$' /proc/self/status`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(other, "old"), []byte("x\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			path, args, env, err := c.wrap("/bin/sh", []string{"-c", tc.script}, append(os.Environ(), "W="+writable, "O="+other))
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(path, args...)
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if (err == nil) != tc.ok {
				t.Errorf("%s under the confinement: %v, want success %v\n%s", tc.script, err, tc.ok, out)
			}
		})
	}
}

// The topology's replicas run confined as docker-compose.yml asks (their
// x-hardened settings): no privileges to gain, no capabilities.
func TestComposeReplicasRunConfined(t *testing.T) {
	needTopology(t)
	needConfinement(t)
	for _, sp := range topo.Services(kindRatelimit) {
		if sp.Confine == nil || !sp.Confine.ReadOnly {
			t.Errorf("%s: confinement %+v, want read_only", sp.Name, sp.Confine)
		}
		status, err := os.ReadFile("/proc/" + strconv.Itoa(topo.Proc(sp.Name).Pid()) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"NoNewPrivs:\t1\n", "CapEff:\t0000000000000000\n"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("%s: /proc/<pid>/status lacks %q", sp.Name, strings.TrimSpace(want))
			}
		}
	}
}
