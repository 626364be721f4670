package tlsfiles

import "time"

// SetRetryFailed sets how long a version that failed to load is left alone, and
// returns a function that restores it.
func SetRetryFailed(d time.Duration) (restore func()) {
	old := retryFailed
	retryFailed = d
	return func() { retryFailed = old }
}

// SetRehashEvery sets how often unchanged-looking files are read again to compare
// their content, and returns a function that restores it.
func SetRehashEvery(d time.Duration) (restore func()) {
	old := rehashEvery
	rehashEvery = d
	return func() { rehashEvery = old }
}
