package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
)

// refuses posts each body and wants a 400 whose error contains want, and nothing
// charged: the address x, which each body names somewhere, still has both of its
// units left afterwards.
func refuses(t *testing.T, cases map[string]struct{ body, want string }) {
	t.Helper()
	obs := &invalidCounter{}
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), obs)) + "/v1/decide"
	for name, c := range cases {
		code, resp := do(t, "POST", url, c.body)
		var answer struct{ Error string }
		if err := json.Unmarshal([]byte(resp), &answer); code != http.StatusBadRequest || err != nil || !strings.Contains(answer.Error, c.want) {
			t.Errorf("%s: %d %.300s, want 400 with an error saying %q", name, code, resp, c.want)
		}
	}
	if obs.invalid != len(cases) || obs.other != 0 {
		t.Errorf("observed %d invalid and %d other requests, want %d invalid", obs.invalid, obs.other, len(cases))
	}
	if got := postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}],"hits_addend":0}]}`); got.Statuses[0].LimitRemaining != 2 {
		t.Errorf("a refused request charged a limit: %d of 2 left", got.Statuses[0].LimitRemaining)
	}
}

// A member named twice in one object is refused: encoding/json would keep the last
// value, so the request decided would not be the one another reader of the same text
// sees, and nothing would say so. (Named twice in two cases: see
// TestDecideRefusesNamesInAnotherCase.)
func TestDecideRefusesDuplicateMembers(t *testing.T) {
	refuses(t, map[string]struct{ body, want string }{
		"domain twice":      {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}]}],"domain":"other"}`, `"domain" appears twice`},
		"value twice":       {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"y","value":"x"}]}]}`, `"value" appears twice`},
		"hits_addend twice": {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}],"hits_addend":0,"hits_addend":1}]}`, `"hits_addend" appears twice`},
		"descriptors twice": {`{"domain":"web","descriptors":[],"descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}`, `"descriptors" appears twice`},
	})
}

// The same names in different objects are no duplicates.
func TestDecideTakesTheSameNamesInDifferentObjects(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	got := postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}],"hits_addend":1},{"entries":[{"key":"ip","value":"y"}],"hits_addend":2}]}`)
	if len(got.Statuses) != 2 || got.Statuses[0].LimitRemaining != 1 || got.Statuses[1].LimitRemaining != 0 {
		t.Fatalf("%+v", got)
	}
}

// A body that is not UTF-8, or a string escape that is half of a UTF-16 surrogate pair,
// is refused. encoding/json would read each such byte or escape as U+FFFD: distinct
// values would share one counter, and not the one ShouldRateLimit charges for the same
// bytes (it reads them as '!', internal/utf8codec).
func TestDecideRefusesTextThatIsNotUTF8(t *testing.T) {
	refuses(t, map[string]struct{ body, want string }{
		"a Latin-1 byte in a value": {"{\"domain\":\"web\",\"descriptors\":[{\"entries\":[{\"key\":\"ip\",\"value\":\"x\xe9\"}]}]}", "not valid UTF-8 at byte 65 (0xe9)"},
		"a byte in the domain":      {"{\"domain\":\"w\xffeb\",\"descriptors\":[{\"entries\":[{\"key\":\"ip\",\"value\":\"x\"}]}]}", "not valid UTF-8 at byte 12 (0xff)"},
		"a lone high surrogate":     {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x\ud800"}]}]}`, `\ud800 at byte 65 is half of a UTF-16 surrogate pair`},
		"a lone low surrogate":      {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x\uDC00\u0041"}]}]}`, `\uDC00 at byte 65 is half`},
		"two high surrogates":       {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x\ud800\ud800"}]}]}`, `\ud800 at byte 65 is half`},
	})
}

// Escapes that are UTF-16 pairs, text that only looks like an escape, and U+FFFD itself
// are values like any other.
func TestDecideTakesEscapedUnicode(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	for _, value := range []string{`\ud83d\ude00`, `\\ud800`, `\ufffd`, "\ufffd", `\u00e9`} {
		got := postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"`+value+`"}]}]}`)
		if got.OverallCode != "OK" {
			t.Errorf("value %s: %+v", value, got)
		}
	}
}

// A descriptor without entries (missing, null or empty) is refused: it can match no
// rule, so answering OK would say a request passes when it only named nothing (a
// misplaced bracket, say), while a real descriptor beside it was charged.
func TestDecideRefusesADescriptorWithoutEntries(t *testing.T) {
	const x = `{"entries":[{"key":"ip","value":"x"}]}`
	refuses(t, map[string]struct{ body, want string }{
		"an empty object":    {`{"domain":"web","descriptors":[` + x + `,{}]}`, "descriptor 1 has no entries"},
		"null":               {`{"domain":"web","descriptors":[null,` + x + `]}`, "descriptor 0 has no entries"},
		"no entries":         {`{"domain":"web","descriptors":[` + x + `,{"entries":[]}]}`, "descriptor 1 has no entries"},
		"null entries":       {`{"domain":"web","descriptors":[{"entries":null,"hits_addend":1},` + x + `]}`, "descriptor 0 has no entries"},
		"an entry misplaced": {`{"domain":"web","descriptors":[{"entries":[]},{"entries":[{"key":"ip","value":"x"}]}]}`, "descriptor 0 has no entries"},
	})
}

// Member names match exactly: encoding/json alone would take a name in another case
// (or with a letter that folds to one of it, as ſ folds to s) as the field, so a
// misspelt request would be decided as if spelt right, while other unknown names are
// refused. Each is refused as the unknown field it is, at every depth.
func TestDecideRefusesNamesInAnotherCase(t *testing.T) {
	const entry, ok = `{"key":"ip","value":"x"}`, `"entries":[{"key":"ip","value":"x"}]`
	refuses(t, map[string]struct{ body, want string }{
		"Domain":                     {`{"Domain":"web","descriptors":[{` + ok + `}]}`, `unknown field "Domain"`},
		"domain twice, in two cases": {`{"domain":"web","Domain":"other","descriptors":[{` + ok + `}]}`, `unknown field "Domain"`},
		"DESCRIPTORS":                {`{"domain":"web","DESCRIPTORS":[{` + ok + `}]}`, `unknown field "DESCRIPTORS"`},
		"descriptors with ſ":         {`{"domain":"web","de\u017fcriptors":[{` + ok + `}]}`, `unknown field "deſcriptors"`},
		"Hits_Addend":                {`{"domain":"web","Hits_Addend":0,"descriptors":[{` + ok + `}]}`, `unknown field "Hits_Addend"`},
		"Entries":                    {`{"domain":"web","descriptors":[{"Entries":[` + entry + `]}]}`, `unknown field "Entries"`},
		"a descriptor's HITS_ADDEND": {`{"domain":"web","descriptors":[{` + ok + `,"HITS_ADDEND":0}]}`, `unknown field "HITS_ADDEND"`},
		"Key":                        {`{"domain":"web","descriptors":[{"entries":[{"Key":"ip","value":"x"}]}]}`, `unknown field "Key"`},
		"VALUE":                      {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","VALUE":"x"}]}]}`, `unknown field "VALUE"`},
		"vaLue in a second entry":    {`{"domain":"web","descriptors":[{"entries":[` + entry + `,{"key":"k","vaLue":"x"}]}]}`, `unknown field "vaLue"`},
	})
}

// A value of the wrong kind is named by the request's field and JSON's kinds, not by
// encoding/json's Go types ("Go struct field .descriptors.entries.value of type string").
func TestDecideNamesWrongKindsInTheRequestsTerms(t *testing.T) {
	refuses(t, map[string]struct{ body, want string }{
		"empty body":      {``, "bad JSON: empty body: want one JSON object, the request"},
		"a list":          {`[{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}]`, "bad JSON: the request is a JSON array: want an object"},
		"domain a number": {`{"domain":5,"descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}`, "bad JSON: domain: want a string, got a JSON number"},
		"descriptors {}":  {`{"domain":"web","descriptors":{"entries":[{"key":"ip","value":"x"}]}}`, "bad JSON: descriptors: want an array, got a JSON object"},
		"entry a number":  {`{"domain":"web","descriptors":[{"entries":[5,{"key":"ip","value":"x"}]}]}`, "bad JSON: descriptors.entries: want an object, got a JSON number"},
		"value a number":  {`{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":1},{"key":"ip","value":"x"}]}]}`, "bad JSON: descriptors.entries.value: want a string, got a JSON number"},
		"key a bool":      {`{"domain":"web","descriptors":[{"entries":[{"key":true,"value":"x"}]}]}`, "bad JSON: descriptors.entries.key: want a string, got a JSON bool"},
	})
}
