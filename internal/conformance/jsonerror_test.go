package conformance

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A vector file's JSON errors name the line and column of what was refused: the byte
// a syntax error stopped at, and the start of a value of the wrong type.
func TestLoadErrorsSayWhere(t *testing.T) {
	for _, tc := range []struct{ name, json, want string }{
		{"syntax", "{\n  \"suites\": [,]\n}", ":2:14: invalid character ',' looking for beginning of value"},
		{"string for a number", "{\"suites\": [{\"ops\": [\n  {\"now\": 1},\n  {\"now\": \"soon\"}]}]}",
			`:3:11: suites.ops.now: a JSON string where a whole number belongs`},
		{"escaped quote", "{\"suites\": [{\"ops\": [{\"now\": \"a\\\"b\"}]}]}",
			`:1:30: suites.ops.now: a JSON string where a whole number belongs`},
		{"fraction", "{\"suites\": [{\"ops\": [{\"now\": 12.5}]}]}",
			`:1:30: suites.ops.now: a JSON number 12.5 where a whole number belongs`},
		{"literal", "{\"suites\": [{\"ops\": [{\"expect\": {\"allowed\": 1}}]}]}",
			`:1:45: suites.ops.expect.allowed: a JSON number where true or false belongs`},
		{"object", "{\"suites\": [{\"name\": {\"x\": [1]}}]}",
			`:1:22: suites.name: a JSON object where a string belongs`},
		{"array", "{\"contractVersion\": [\"5\"]}",
			`:1:21: contractVersion: a JSON array where a string belongs`},
		{"the file itself", "[1]", `:1:1: the file: a JSON array where an object belongs`},
		{"out of range", "{\"suites\": [{\"ops\": [{\"now\": 99999999999999999999}]}]}",
			`:1:30: suites.ops.now: the number 99999999999999999999 is out of range for int64`},
		{"after a multibyte character", "{\"suites\": [{\"name\": \"é\", \"ops\": \"x\"}]}",
			`:1:34: suites.ops: a JSON string where an array belongs`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "v.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil || err.Error() != path+tc.want {
				t.Errorf("Load: %v\nwant %s%s", err, path, tc.want)
			}
			var syntax *json.SyntaxError
			var typ *json.UnmarshalTypeError
			if !errors.As(err, &syntax) && !errors.As(err, &typ) {
				t.Errorf("Load: %v does not unwrap to encoding/json's error", err)
			}
		})
	}
}
