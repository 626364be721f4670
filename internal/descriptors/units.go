package descriptors

import "strings"

// UnitMillis returns the length of a rate-limit unit (second..year, any case) in ms.
func UnitMillis(unit string) (int64, bool) {
	ms, ok := unitMs[strings.ToLower(unit)]
	return ms, ok
}
