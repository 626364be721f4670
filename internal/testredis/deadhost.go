package testredis

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"
)

// DeadHost returns the address of a host that never answers a connection attempt: a
// loopback listening socket whose accept queue (backlog 0) is full and never drained,
// so the kernel drops every further SYN and a dial waits until it times out, as with a
// Redis host that died or is cut off by a partition. The socket closes when the test
// ends.
func DeadHost(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	for range 16 { // fill the accept queue until a connection attempt hangs
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	t.Fatal("the accept queue of a loopback listener never filled")
	return ""
}
