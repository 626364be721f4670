package jsonkind

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestOf(t *testing.T) {
	for _, c := range []struct {
		v    any
		want string
	}{
		{"", "a string"}, {json.Number(""), "a number"}, {int64(0), "a whole number"}, {uint32(0), "a whole number"},
		{0.5, "a number"}, {true, "true or false"}, {[]string{}, "an array"}, {[2]int{}, "an array"},
		{struct{}{}, "an object"}, {map[string]int{}, "an object"}, {new(int), "a whole number"},
	} {
		if got := Of(reflect.TypeOf(c.v)); got != c.want {
			t.Errorf("%T: %q, want %q", c.v, got, c.want)
		}
	}
}
