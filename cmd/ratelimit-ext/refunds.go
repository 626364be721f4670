package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
)

// refundWarner passes every ShouldRateLimit outcome on to next (the metrics) and logs,
// once per process, that a refund (Envoy's is_negative_hits) was ignored: it used to be
// an error, and an operator who configured refunds would otherwise only see them fail
// to happen (ratelimit_ext_refunds_ignored_total counts every one).
type refundWarner struct {
	next rls.Observer
	log  *slog.Logger
	once sync.Once
}

func (w *refundWarner) Observe(api string, start time.Time, req *decide.Request, res *decide.Result, err error) {
	w.next.Observe(api, start, req, res, err)
	if req == nil {
		return
	}
	for i := range req.Descriptors {
		if req.Descriptors[i].Refund {
			w.once.Do(func() {
				w.log.Warn("a descriptor with Envoy's is_negative_hits (a refund) was answered OK and changed nothing: refunds are not supported; ratelimit_ext_refunds_ignored_total counts them",
					"domain", req.Domain)
			})
			return
		}
	}
}
