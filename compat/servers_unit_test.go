package compat

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A service that exits before it is ready is reported as exited, and stopping it
// afterwards returns: the test fails with its log instead of hanging until go test's
// timeout (stop once waited for an exit waitHealthy had already taken). Runs without
// the reference.
func TestAServiceThatExitsAtStartIsReported(t *testing.T) {
	p, err := startProc(exec.Command("false"))
	if err != nil {
		t.Fatal(err)
	}
	if err := waitHealthy("http://"+freeAddr(t)+"/healthcheck", p); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("waitHealthy: %v, want the exit", err)
	}
	stopped := make(chan struct{})
	go func() { p.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second): // bounds the failure only
		t.Fatal("stop did not return for a process that had exited")
	}
}
