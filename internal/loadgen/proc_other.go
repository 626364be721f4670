//go:build !linux

package loadgen

// processCPU is only implemented on Linux (/proc).
func processCPU(pid int) cpuSample { return cpuSample{why: "process CPU needs Linux /proc"} }
