//go:build unix

package loadgen

import (
	"syscall"
	"time"
)

// selfCPU reads this process's CPU time with getrusage(RUSAGE_SELF).
func selfCPU() cpuSample {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuSample{why: "getrusage: " + err.Error()}
	}
	return cpuSample{
		user: time.Duration(ru.Utime.Nano()),
		sys:  time.Duration(ru.Stime.Nano()),
		ok:   true,
	}
}
