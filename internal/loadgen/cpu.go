package loadgen

import "time"

// cpuSample is a process's cumulative CPU time.
type cpuSample struct {
	user, sys time.Duration
	ok        bool
	why       string // when !ok
}

func (a cpuSample) sub(b cpuSample) cpuSample {
	if !a.ok || !b.ok {
		why := a.why
		if why == "" {
			why = b.why
		}
		return cpuSample{why: why}
	}
	return cpuSample{user: a.user - b.user, sys: a.sys - b.sys, ok: true}
}

func (a cpuSample) cpu(wall time.Duration, requests int64) CPU {
	if !a.ok {
		return CPU{Unsupported: true, MissingReason: a.why}
	}
	c := CPU{User: a.user.Seconds(), System: a.sys.Seconds()}
	total := a.user + a.sys
	if wall > 0 {
		c.Cores = total.Seconds() / wall.Seconds()
	}
	if requests > 0 {
		c.PerRequestUs = float64(total/time.Nanosecond) / 1000 / float64(requests)
	}
	return c
}

// procSample is a watched process's cumulative CPU time.
type procSample = cpuSample

func sampleProcs(pids map[string]int) map[string]procSample {
	if len(pids) == 0 {
		return nil
	}
	out := make(map[string]procSample, len(pids))
	for name, pid := range pids {
		out[name] = processCPU(pid)
	}
	return out
}

func procDelta(before, after map[string]procSample) map[string]procSample {
	if len(before) == 0 {
		return nil
	}
	out := make(map[string]procSample, len(before))
	for name, b := range before {
		out[name] = after[name].sub(b)
	}
	return out
}
