package loadgen

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// processCPU reads another process's cumulative CPU time (all its threads) from
// /proc/PID/stat: utime and stime, in 10 ms ticks.
func processCPU(pid int) cpuSample {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuSample{why: err.Error()}
	}
	// The command name (field 2) is in parentheses and may hold spaces: fields are
	// counted after its closing parenthesis, where field 3 (state) starts.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return cpuSample{why: "unreadable /proc stat"}
	}
	f := bytes.Fields(b[i+1:])
	const utime, stime = 14 - 3, 15 - 3 // field numbers 14 and 15, 1-based, from field 3
	if len(f) <= stime {
		return cpuSample{why: "short /proc stat"}
	}
	u, err1 := strconv.ParseInt(string(f[utime]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[stime]), 10, 64)
	if err1 != nil || err2 != nil {
		return cpuSample{why: "unreadable /proc stat times"}
	}
	tick := time.Second / clockTicks
	return cpuSample{user: time.Duration(u) * tick, sys: time.Duration(s) * tick, ok: true}
}
