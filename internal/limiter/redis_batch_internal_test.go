package limiter

import (
	"testing"
)

// A batch takes waiting requests in order while the call's sliding_window_log entries
// stay within what one limit may admit; the first request always goes, and requests
// without log entries are not held back by the bound when they come first.
func TestBatchKeepsLogEntriesWithinABound(t *testing.T) {
	max := MaxLogLimit
	for _, tc := range []struct {
		name    string
		first   int64
		pending []int64
		want    int // requests in the batch, first included
	}{
		{"no log entries", 0, []int64{0, 0, 0}, 4},
		{"up to the bound", 100, []int64{max - 300, 200, 1, 0}, 3},
		{"a first request at the bound", max, []int64{0, 0, 1}, 3},
		{"a first request past the bound still takes requests without log entries", 2 * max, []int64{0, 0, 1, 0}, 3},
		{"stops at the first that does not fit, in order", 0, []int64{max, 1, 0}, 2},
		{"the batch size still bounds", 0, []int64{0, 0, 0, 0, 0}, 3},
	} {
		b := &batcher{max: 3}
		if tc.name != "the batch size still bounds" {
			b.max = 64
		}
		for _, l := range tc.pending {
			b.pending = append(b.pending, &batchCall{logs: l})
		}
		first := &batchCall{logs: tc.first}
		batch := b.takeLocked(first)
		var logs int64
		for _, c := range batch {
			logs += c.logs
		}
		if len(batch) != tc.want || batch[0] != first || len(b.pending) != len(tc.pending)-(tc.want-1) {
			t.Errorf("%s: took %d (left %d), want %d", tc.name, len(batch), len(b.pending), tc.want)
		}
		if logs > max && logs != batch[0].logs {
			t.Errorf("%s: %d log entries in one call", tc.name, logs)
		}
	}
}
