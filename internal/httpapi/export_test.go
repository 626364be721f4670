package httpapi

// ProbeWaiters is how many Checks wait on the probe under way (0 without one).
func (r *Readiness) ProbeWaiters() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running == nil {
		return 0
	}
	return r.running.waiters
}
