package decide

import (
	"context"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
)

// OverLimitCache returns the cache in use, or nil.
func (d *Decider) OverLimitCache() *overlimit.Cache { return d.cache }

// cachedDenial answers the plan from the cache when it can.
func (d *Decider) cachedDenial(now int64, p *plan, decisions []limiter.Decision) (int64, bool) {
	if d.cache == nil || p.override {
		return 0, false
	}
	return d.cache.Lookup(now, p.checks, decisions)
}

// storeEvaluate asks the engine, and remembers the denials of its answer that leave
// their keys frozen. Only the store's own answers are remembered: a store failure
// policy's local engine never feeds the cache. Nor are a request override's (requests
// with different override rates share a key, so a key frozen for one rate is not
// frozen for another).
func (d *Decider) storeEvaluate(ctx context.Context, now int64, p *plan, out []limiter.Decision) (limiter.Outcome, error) {
	if d.cache == nil || p.override {
		return d.engine.Evaluate(ctx, now, p.checks, out)
	}
	sent := d.cache.Stamp()
	o, err := d.engine.Evaluate(ctx, now, p.checks, out)
	if err == nil && !o.Allowed {
		d.cache.Remember(overlimit.Call{Now: now, StoreNow: o.Now, Sent: sent, Recv: d.cache.Stamp()}, p.checks, out)
	}
	return o, err
}
