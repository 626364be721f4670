package xdsrules

import (
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is how long the subscriber waits before it opens a new stream after one
// ended or failed to open: Initial, doubling on each consecutive failure up to Max,
// each wait drawn at random from [d·(1−Jitter), d·(1+Jitter)] so that a fleet that lost
// its server together does not reconnect in lockstep. It starts over at Initial once a
// stream has delivered a response that was accepted: a stream that ended with only
// rejected (NACKed) responses is a failure too, so a server that closes the stream
// after each NACK is not reconnected to every Initial forever. The same values drive
// gRPC's own connection backoff.
type Backoff struct {
	Initial, Max time.Duration
	Jitter       float64 // 0 ≤ Jitter < 1
}

// DefaultBackoff waits 1 s, 2 s, 4 s, ... up to a minute, ±50%.
var DefaultBackoff = Backoff{Initial: time.Second, Max: time.Minute, Jitter: 0.5}

func (b Backoff) validate() error {
	switch {
	case b.Initial <= 0:
		return errors.New("backoff: the initial wait must be positive")
	case b.Max < b.Initial:
		return errors.New("backoff: the longest wait must be at least the initial one")
	case !(b.Jitter >= 0 && b.Jitter < 1): // also rejects NaN
		return errors.New("backoff: jitter must be at least 0 and below 1")
	}
	return nil
}

// retries counts consecutive failures for one Backoff; not safe for concurrent use.
type retries struct {
	b Backoff
	n int
}

// next returns the wait before the next attempt and counts the failure.
func (r *retries) next() time.Duration {
	d := r.b.Initial
	for i := 0; i < r.n && d < r.b.Max; i++ {
		if d > r.b.Max/2 {
			d = r.b.Max // doubling would pass Max (and could overflow)
		} else {
			d *= 2
		}
	}
	r.n++
	if r.b.Jitter == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + r.b.Jitter*(2*rand.Float64()-1)))
}

// reset starts over at Initial.
func (r *retries) reset() { r.n = 0 }
