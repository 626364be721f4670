package main

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

// refundWarner passes every ShouldRateLimit outcome on to next (the metrics) and logs,
// once per process, that a refund (Envoy's is_negative_hits) was ignored: it used to be
// an error, and an operator who configured refunds would otherwise only see them fail
// to happen (ratelimit_ext_refunds_ignored_total counts every one).
type refundWarner struct {
	next   decide.Observer
	log    *slog.Logger
	warned atomic.Bool // once set, requests are no longer scanned
}

func (w *refundWarner) Observe(api string, start time.Time, req *decide.Request, res *decide.Result, err error) {
	w.next.Observe(api, start, req, res, err)
	if w.warned.Load() || req == nil || res == nil { // refused or failed: not answered OK, and not counted
		return
	}
	for i := range req.Descriptors {
		if req.Descriptors[i].Refund {
			if w.warned.CompareAndSwap(false, true) {
				w.log.Warn("a descriptor with Envoy's is_negative_hits (a refund) was answered OK and changed nothing: refunds are not supported; ratelimit_ext_refunds_ignored_total counts them",
					"domain", req.Domain)
			}
			return
		}
	}
}
