package e2e

import "syscall"

// sysProcAttr makes the kernel kill a child when the test binary dies, so an interrupted
// run leaves no redis-server or envoy behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
