//go:build unix

package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve exits with an error naming the file when a TLS flag names something that is
// not a regular file: a FIFO (which an ordinary open would wait on for good, the
// process neither serving nor ending), a directory or a device that never ends.
func TestServeRefusesTLSFilesThatAreNotRegular(t *testing.T) {
	bin := buildBinary(t)
	_, server, _ := newPKI(t)
	fifo := filepath.Join(t.TempDir(), "tls.pem")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	dir, rules := t.TempDir(), t.TempDir()
	for _, bad := range []struct{ path, want string }{
		{fifo, fifo + ": not a regular file (a FIFO)"},
		{dir, dir + ": not a regular file (a directory)"},
		{"/dev/zero", "/dev/zero: not a regular file (a device)"},
	} {
		for _, flag := range []string{"--grpc-tls-cert", "--grpc-tls-key", "--grpc-tls-client-ca"} {
			files := map[string]string{"--grpc-tls-cert": server.CertFile, "--grpc-tls-key": server.KeyFile, "--grpc-tls-client-ca": server.CertFile}
			files[flag] = bad.path
			args := []string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--config-dir", rules}
			for f, path := range files {
				args = append(args, f, path)
			}
			p := launch(t, bin, nil, args...)
			select {
			case <-p.exited:
			case <-time.After(20 * time.Second): // not a timing assert: a blocked open never returns
				t.Fatalf("%s %s: the start neither served nor ended", flag, bad.path)
			}
			var ee *exec.ExitError
			if !errors.As(p.exitErr, &ee) || ee.ExitCode() != 1 || !strings.Contains(p.log(), bad.want) {
				t.Errorf("%s %s: exit %v, want 1 with an error saying %q; log:\n%s", flag, bad.path, p.exitErr, bad.want, p.log())
			}
		}
	}
}
