package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

type countingObserver struct{ n int }

func (o *countingObserver) Observe(string, time.Time, *decide.Request, *decide.Result, error) { o.n++ }

// An ignored refund is logged once per process; every outcome still reaches the metrics.
func TestRefundWarnerLogsOnce(t *testing.T) {
	var buf bytes.Buffer
	next := &countingObserver{}
	w := &refundWarner{next: next, log: slog.New(slog.NewTextHandler(&buf, nil))}
	plain := &decide.Request{Domain: "edge", Descriptors: []decide.Descriptor{{}}}
	refund := &decide.Request{Domain: "edge", Descriptors: []decide.Descriptor{{}, {Refund: true}}}
	res := &decide.Result{}
	w.Observe("rls", time.Now(), plain, res, nil)
	w.Observe("rls", time.Now(), nil, nil, nil)
	w.Observe("rls", time.Now(), refund, nil, errors.New("store down")) // not answered OK
	if buf.Len() != 0 {
		t.Fatalf("a warning without a refund:\n%s", buf.String())
	}
	for range 3 {
		w.Observe("rls", time.Now(), refund, res, nil)
	}
	if n := strings.Count(buf.String(), "is_negative_hits"); n != 1 || !strings.Contains(buf.String(), "domain=edge") {
		t.Errorf("%d warnings, want 1 naming the domain:\n%s", n, buf.String())
	}
	if next.n != 6 {
		t.Errorf("metrics saw %d outcomes, want 6", next.n)
	}
}
