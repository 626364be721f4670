package limiter

import (
	"fmt"
	"strings"
)

// storeError is a failed store call as ErrStore: "store unavailable: redis: why" and
// the hint, if any. go-redis's own errors begin "redis: " too, which is not repeated.
func storeError(err error, hint string) error {
	if why, ok := strings.CutPrefix(err.Error(), "redis: "); ok {
		err = reworded{why, err}
	}
	return fmt.Errorf("%w: redis: %w%s", ErrStore, err, hint)
}

// reworded is an error under another message; it still unwraps to the error.
type reworded struct {
	msg string
	err error
}

func (e reworded) Error() string { return e.msg }
func (e reworded) Unwrap() error { return e.err }
