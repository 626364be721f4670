//go:build !unix

package loadgen

func selfCPU() cpuSample { return cpuSample{why: "no getrusage on this OS"} }
