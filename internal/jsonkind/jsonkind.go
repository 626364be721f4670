// Package jsonkind says in JSON's words what a Go type accepts, so that a decoding
// error (encoding/json's UnmarshalTypeError, which names Go types) can be told in the
// terms of the JSON text a person wrote.
package jsonkind

import (
	"encoding/json"
	"reflect"
)

// Of names the JSON values a Go type accepts: "a string", "a whole number", "an
// array", "an object", ...
func Of(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Pointer:
		return Of(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		if t == reflect.TypeFor[json.Number]() {
			return "a number"
		}
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return "a " + t.String()
}
