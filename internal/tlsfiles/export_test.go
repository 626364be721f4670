package tlsfiles

import "time"

// SetRetryFailed sets how long a version that failed to load is left alone, and
// returns a function that restores it.
func SetRetryFailed(d time.Duration) (restore func()) {
	old := retryFailed
	retryFailed = d
	return func() { retryFailed = old }
}
