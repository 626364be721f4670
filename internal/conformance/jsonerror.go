package conformance

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/ratelimit-ext/ratelimit-ext/internal/jsonkind"
)

// decodeError puts the position of a JSON error in front of it: encoding/json reports a
// byte offset, which nobody can find in an editor.
func decodeError(path string, data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset >= 1 && se.Offset <= int64(len(data)) {
		// The offset counts the byte refused.
		return fmt.Errorf("%s:%s: %w", path, position(data, se.Offset-1), err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Offset >= 1 && te.Offset <= int64(len(data)) {
		return typeError{fmt.Sprintf("%s:%s: %s: %s", path, position(data, valueStart(data, te.Offset)),
			cmp.Or(jsonPath(te.Field), "the file"), typeMismatch(te)), err}
	}
	return fmt.Errorf("%s: %w", path, err)
}

// typeError is a type error said in the file's terms; it unwraps to encoding/json's.
type typeError struct {
	msg string
	err error
}

func (e typeError) Error() string { return e.msg }
func (e typeError) Unwrap() error { return e.err }

// typeMismatch says what te refused and what belongs there. A whole number too large
// for the field reads as a JSON number where a whole number belongs, so it says so.
func typeMismatch(te *json.UnmarshalTypeError) string {
	want := jsonkind.Of(te.Type)
	literal, isNumber := strings.CutPrefix(te.Value, "number ")
	if isNumber && want == "a whole number" && !strings.ContainsAny(literal, ".eE") {
		return fmt.Sprintf("the number %s is out of range for %s", literal, te.Type)
	}
	return fmt.Sprintf("a JSON %s where %s belongs", te.Value, want)
}

// position is the 1-based line and column (in characters) of data[off].
func position(data []byte, off int64) string {
	before := data[:off]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("%d:%d", line, col)
}

// valueStart finds where the value a type error refused begins. encoding/json's offset
// is just past a scalar (a string, number or literal) and just past the opening
// bracket of an object or array.
func valueStart(data []byte, end int64) int64 {
	last := end - 1
	switch data[last] {
	case '{', '[':
		return last
	case '"':
		for i := last - 1; i >= 0; i-- {
			if data[i] == '"' && !escaped(data, i) {
				return i
			}
		}
		return last
	}
	i := last
	for i > 0 && isLiteralByte(data[i-1]) {
		i--
	}
	return i
}

// escaped reports whether data[i] follows an odd number of backslashes.
func escaped(data []byte, i int64) bool {
	n := 0
	for j := i - 1; j >= 0 && data[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// isLiteralByte reports whether b can be part of a JSON number, true, false or null.
func isLiteralByte(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b == '-' || b == '+' || b == '.' || b == 'E'
}

// jsonPath is a type error's field path as the file spells it: encoding/json also
// names an embedded struct (Expect's Decision), whose fields sit in the parent's object.
func jsonPath(field string) string {
	t := reflect.TypeFor[File]()
	var kept []string
	for _, name := range strings.Split(field, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice) {
			t = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Struct {
			if f, ok := t.FieldByName(name); ok && f.Anonymous {
				t = f.Type
				continue
			}
		}
		kept = append(kept, name)
		t = fieldTagged(t, name)
	}
	return strings.Join(kept, ".")
}

// fieldTagged is the type of struct t's field whose JSON name is name, or nil.
func fieldTagged(t reflect.Type, name string) reflect.Type {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for f := range t.Fields() {
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f.Type
		}
	}
	return nil
}
