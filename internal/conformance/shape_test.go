package conformance

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// shapeBase is a valid vector file with one suite of each primitive the runner replays
// and one it skips; each case below edits one place of it.
const shapeBase = `{"contractVersion": "5", "decisionFields": ["allowed", "limit", "remaining", "resetAt", "retryAfterMs"],
 "suites": [
  {"primitive": "rateLimit", "name": "g", "key": "k",
   "strategy": {"kind": "gcra", "options": {"limit": 1, "periodMs": 1000}},
   "ops": [{"now": 1, "cost": 1, "expect": {"allowed": true, "limit": 1, "remaining": 0, "resetAt": 1001, "retryAfterMs": 0}}]},
  {"primitive": "tokenBudget", "name": "b", "options": {"budget": 5, "windowMs": 60000},
   "ops": [{"now": 1, "tokens": 2, "expect": {"allowed": true, "limit": 5, "remaining": 3, "resetAt": 60000, "retryAfterMs": 0}}]},
  {"primitive": "request", "name": "r",
   "limits": [{"kind": "token_bucket", "options": {"capacity": 2, "refill": 1, "periodMs": 1000}, "key": "a", "shadow": false}],
   "ops": [{"now": 1, "costs": [1], "expect": {"allowed": true,
     "decisions": [{"allowed": true, "limit": 2, "remaining": 1, "resetAt": 501, "retryAfterMs": 0}]}}]},
  {"primitive": "lease", "name": "l", "ttlMs": 1000, "events": [{"op": "grant"}]}
 ]}`

// A vector file's every field is one the runner reads for the suite's primitive: a
// field it would ignore (unknown, misspelt, or another primitive's), a field it would
// read as 0 because it is missing, and a field given twice are refused by Load at their
// line and column, naming the suite and the op.
func TestLoadRefusesFieldsItWouldIgnore(t *testing.T) {
	for _, tc := range []struct {
		name, old, new string
		at             string // the refused text: the error's line and column are its first one's
		want           string
	}{
		{"as given", "", "", "", ""},
		{"an unknown top-level field", `"suites": [`, `"suitez": [], "suites": [`, `"suitez"`,
			`unknown field "suitez" (want suites, contractVersion, decisionFields, description, generatedFrom or frozen)`},
		{"a misspelt op field", `"cost": 1,`, `"cost": 1, "cots": 2,`, `"cots"`,
			`suites[0] "g": ops[0]: unknown field "cots" (want now, cost or expect)`},
		{"another primitive's op field", `"cost": 1,`, `"cost": 1, "costs": [1],`, `"costs"`,
			`suites[0] "g": ops[0]: unknown field "costs" (want now, cost or expect)`},
		{"another primitive's suite field", `"key": "k",`, `"key": "k", "limits": [],`, `"limits"`,
			`suites[0] "g": unknown field "limits" (want primitive, name, strategy, key or ops)`},
		{"a missing decision field", `"resetAt": 1001, "retryAfterMs": 0}`, `"resetAt": 1001}`, `{"allowed": true, "limit": 1,`,
			`suites[0] "g": ops[0].expect: missing field "retryAfterMs"`},
		{"a missing cost", `"now": 1, "cost": 1,`, `"now": 1,`, `{"now": 1,`,
			`suites[0] "g": ops[0]: missing field "cost"`},
		{"an option the kind does not use", `"periodMs": 1000}}`, `"periodMs": 1000, "windowMs": 5}}`, `"windowMs": 5`,
			`suites[0] "g": strategy.options: unknown field "windowMs" (want limit, periodMs or burst)`},
		{"an option as a string", `{"limit": 1, "periodMs"`, `{"limit": "1", "periodMs"`, `"1"`,
			`suites[0] "g": strategy.options.limit: a JSON string where a number belongs`},
		{"a repeated field", `"remaining": 0,`, `"remaining": 0, "remaining": 1,`, `"remaining": 1`,
			`suites[0] "g": ops[0].expect: repeated field "remaining"`},
		{"a request decision beside decisions", `{"allowed": true,
     "decisions"`, `{"allowed": true, "remaining": 1,
     "decisions"`, `"remaining": 1`,
			`suites[2] "r": ops[0].expect: unknown field "remaining" (want allowed or decisions)`},
		{"a request limit's unknown field", `"shadow": false`, `"shadow": false, "shadowMode": true`, `"shadowMode"`,
			`suites[2] "r": limits[0]: unknown field "shadowMode" (want kind, options, key or shadow)`},
		{"two refill rates", `"refill": 1,`, `"refillPerSec": 1, "refill": 1,`, `"refillPerSec"`,
			`suites[2] "r": limits[0].options: refillPerSec and refill/periodMs both give the refill rate`},
		{"an unknown kind", `"kind": "gcra"`, `"kind": "gcrA"`, `"gcrA"`,
			`suites[0] "g": strategy.kind: unknown strategy kind "gcrA"`},
		{"an unknown primitive", `"primitive": "tokenBudget"`, `"primitive": "budget"`, `"budget"`,
			`suites[1] "b": primitive: unknown primitive "budget" (want rateLimit, tokenBudget, request or lease)`},
		{"decision fields in another order", `"resetAt", "retryAfterMs"]`, `"retryAfterMs", "resetAt"]`, `["allowed", "limit"`,
			`decisionFields: want ["allowed","limit","remaining","resetAt","retryAfterMs"]`},
		{"throttlekit's provenance fields", `"contractVersion": "5",`, `"contractVersion": "1", "generatedFrom": "throttlekit@1.4.0", "frozen": false,`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := strings.Replace(shapeBase, tc.old, tc.new, 1)
			if tc.old != "" && doc == shapeBase {
				t.Fatalf("the edit %q does not apply", tc.old)
			}
			path := filepath.Join(t.TempDir(), "v.json")
			if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			i := strings.Index(doc, tc.at)
			if i < 0 {
				t.Fatalf("%q is not in the edited file", tc.at)
			}
			line := strings.Count(doc[:i], "\n") + 1
			col := i - strings.LastIndex(doc[:i], "\n")
			want := fmt.Sprintf("%s:%d:%d: %s", path, line, col, tc.want)
			if err == nil || err.Error() != want {
				t.Errorf("Load: %v\nwant %s", err, want)
			}
		})
	}
}
