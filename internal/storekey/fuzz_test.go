package storekey

import (
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// FuzzKeyInjective: two different (domain, entries) inputs never share a key, and keys
// respect the length bound.
func FuzzKeyInjective(f *testing.F) {
	f.Add("d", "a_b", "c", "d", "a", "b_c")
	f.Add("edge", "k", "v", "edge", "k", "v2")
	f.Add("1:", "a", "", "", "1:a", "")
	f.Fuzz(func(t *testing.T, d1, k1, v1, d2, k2, v2 string) {
		b := New("rlx:", 256)
		key1 := b.Key(d1, "id", fixed, []descriptors.Entry{{Key: k1, Value: v1}})
		key2 := b.Key(d2, "id", fixed, []descriptors.Entry{{Key: k2, Value: v2}})
		if len(key1) > 256+len(d1)+32 || len(key2) > 256+len(d2)+32 {
			t.Fatalf("unbounded key: %d, %d bytes", len(key1), len(key2))
		}
		same := d1 == d2 && k1 == k2 && v1 == v2
		if same != (key1 == key2) {
			t.Fatalf("inputs same=%v but keys equal=%v: %q %q", same, key1 == key2, key1, key2)
		}
	})
}
