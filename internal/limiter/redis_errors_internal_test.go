package limiter

import (
	"errors"
	"testing"
)

// A store error says "redis" once, whether or not go-redis's own message begins with
// it, keeps its hint, and is still both ErrStore and the error it wraps.
func TestStoreErrorSaysRedisOnce(t *testing.T) {
	pool := errors.New("redis: connection pool timeout")
	dial := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	for _, tc := range []struct {
		err        error
		hint, want string
	}{
		{pool, "", "store unavailable: redis: connection pool timeout"},
		{dial, " (a hint)", "store unavailable: redis: dial tcp 127.0.0.1:1: connect: connection refused (a hint)"},
	} {
		got := storeError(tc.err, tc.hint)
		if got.Error() != tc.want || !errors.Is(got, ErrStore) || !errors.Is(got, tc.err) {
			t.Errorf("storeError(%q) = %q (ErrStore %v, wraps %v), want %q and both",
				tc.err, got, errors.Is(got, ErrStore), errors.Is(got, tc.err), tc.want)
		}
	}
}
