package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/jsonkind"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
)

// maxDecideBody bounds the JSON decision endpoint's request body.
const maxDecideBody = 1 << 20

// decideRequest is the request as written; toRequest reads its numbers (kept as
// written, so that an error can say which field is wrong and how).
type decideRequest struct {
	Domain      string          `json:"domain"`
	HitsAddend  json.RawMessage `json:"hits_addend"`
	Descriptors []struct {
		Entries []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"entries"`
		HitsAddend json.RawMessage `json:"hits_addend"`
	} `json:"descriptors"`
}

type decideStatus struct {
	Code                 string        `json:"code"`
	CurrentLimit         *currentLimit `json:"current_limit,omitempty"`
	LimitRemaining       int64         `json:"limit_remaining"`
	DurationUntilResetMs int64         `json:"duration_until_reset_ms"`
	CostClamped          bool          `json:"cost_clamped,omitempty"` // its cost was above --max-hits-addend and counted as that
}

// currentLimit is the limit a status reports, as ShouldRateLimit reports it:
// requests_per_unit is the decision's limit, the ceiling clients see (SPEC §1): a
// gcra rule's burst, a token_bucket's capacity, else the rule's requests_per_unit, over
// the window it stands for (descriptors.Limit.ReportedWindow).
type currentLimit struct {
	Name            string `json:"name,omitempty"`
	RequestsPerUnit int64  `json:"requests_per_unit"`
	Unit            string `json:"unit"`
	UnitMultiplier  int64  `json:"unit_multiplier,omitempty"`
	Algorithm       string `json:"algorithm"`
}

type decideResponse struct {
	OverallCode  string         `json:"overall_code"`
	Statuses     []decideStatus `json:"statuses"`
	RetryAfterMs int64          `json:"retry_after_ms,omitempty"`
	// UnknownDomain says the rules define no such domain: ShouldRateLimit answers it
	// OK without a word, and a misspelt domain would look here like a passing request.
	UnknownDomain bool `json:"unknown_domain,omitempty"`
}

// decideHandler answers POST /v1/decide with the same decision ShouldRateLimit gives
// (and charges the same state): a way to exercise rules with curl.
func (a *API) decideHandler(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, code, err := readDecideRequest(w, r)
	if err != nil {
		if a.obs != nil { // counted as an invalid request, as a bad decide.Request is
			a.obs.Observe("decide", start, nil, nil, fmt.Errorf("%w: %w", decide.ErrInvalid, err))
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	res, err := a.decider.Decide(r.Context(), req)
	if a.obs != nil {
		a.obs.Observe("decide", start, req, res, err)
	}
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, decide.ErrInvalid) {
			code = http.StatusBadRequest
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, toDecideResponse(res))
}

// readDecideRequest reads the body, one JSON object and nothing after it, as the
// request ShouldRateLimit would be given; on failure it returns the HTTP status to
// answer with.
func readDecideRequest(w http.ResponseWriter, r *http.Request) (*decide.Request, int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDecideBody))
	var in decideRequest
	if err == nil {
		err = decodeDecideRequest(body, &in)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", tooLarge.Limit)
	case err != nil:
		return nil, http.StatusBadRequest, fmt.Errorf("bad JSON: %w", err)
	}
	req, err := in.toRequest()
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	return req, 0, nil
}

// toRequest is the decide.Request in stands for. Its hits_addends must be numbers
// ShouldRateLimit's proto can carry, so that the same request means the same there: the
// request's is a uint32, a descriptor's a UInt64Value (absent when null or left out).
func (in *decideRequest) toRequest() (*decide.Request, error) {
	hits, ok := wholeNumber(in.HitsAddend, math.MaxUint32)
	if !ok {
		return nil, fmt.Errorf("%w: hits_addend %.40s is not a whole number from 0 to %d (a uint32, as ShouldRateLimit's)",
			decide.ErrInvalid, in.HitsAddend, uint64(math.MaxUint32))
	}
	req := &decide.Request{Domain: in.Domain, HitsAddend: hits, Descriptors: make([]decide.Descriptor, len(in.Descriptors))}
	for i, d := range in.Descriptors {
		if len(d.Entries) == 0 { // {}, null or "entries": []: a slip, which would answer OK
			return nil, fmt.Errorf("%w: descriptor %d has no entries, so it would match no rule", decide.ErrInvalid, i)
		}
		for _, e := range d.Entries {
			req.Descriptors[i].Entries = append(req.Descriptors[i].Entries, descriptors.Entry{Key: e.Key, Value: e.Value})
		}
		if absent(d.HitsAddend) {
			continue
		}
		cost, ok := wholeNumber(d.HitsAddend, math.MaxUint64)
		if !ok {
			return nil, fmt.Errorf("%w: descriptor %d: hits_addend %.40s is not a whole number from 0 to %d (a UInt64Value, as ShouldRateLimit's)",
				decide.ErrInvalid, i, d.HitsAddend, uint64(math.MaxUint64))
		}
		req.Descriptors[i].Cost = &cost
	}
	return req, nil
}

// absent says a member's value, as decoded into a json.RawMessage, is left out or null.
func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// wholeNumber reads raw, one JSON value, as a whole number from 0 to limit; absent is
// 0. Like the proto's JSON mapping (protojson, so grpcurl) it takes a number in any
// notation, 1e3 and 1000.0 as 1000, but not a string. It never writes out more than 20
// digits (2^64 has 20), however large the exponent.
func wholeNumber(raw json.RawMessage, limit uint64) (uint64, bool) {
	if absent(raw) {
		return 0, true
	}
	s := strings.ToLower(string(raw))
	if s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, false // not a number: a string, true, an object...
	}
	neg := s[0] == '-'
	mantissa, exp, _ := strings.Cut(strings.TrimPrefix(s, "-"), "e")
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	if digits == "" {
		return 0, true // 0, -0, 0.0e9
	}
	// Beyond ±2^31 no exponent of these digits (in a body of 1 MiB) makes a whole
	// number below 2^64.
	e, err := strconv.ParseInt(cmp.Or(exp, "0"), 10, 32)
	if neg || err != nil {
		return 0, false
	}
	// The value is digits × 10^shift: a whole number when shift is not negative once
	// the trailing zeros of digits are counted in it.
	significant := strings.TrimRight(digits, "0")
	shift := int(e) - len(frac) + len(digits) - len(significant)
	if shift < 0 || len(significant)+shift > 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(significant+strings.Repeat("0", shift), 10, 64)
	return n, err == nil && n <= limit
}

// decodeDecideRequest decodes body, one JSON object and nothing after it, into in.
func decodeDecideRequest(body []byte, in *decideRequest) error {
	if err := notUTF8(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil {
		return readable(err)
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return errors.New("data after the request object")
	}
	if err := loneSurrogate(body); err != nil {
		return err
	}
	return checkNames(body)
}

// readable words a decoding error by the request's field names and JSON's kinds of
// value: encoding/json's own says "Go struct field" and prints Go types.
func readable(err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return errors.New("empty body: want one JSON object, the request")
	case errors.As(err, &te):
		field := strings.TrimPrefix(te.Field, ".")
		if field == "" {
			return fmt.Errorf("the request is a JSON %s: want an object", te.Value)
		}
		return fmt.Errorf("%s: want %s, got a JSON %s", field, jsonkind.Of(te.Type), te.Value)
	}
	return err
}

// notUTF8 refuses a body that is not UTF-8, as JSON must be (RFC 8259 §8.1).
// encoding/json reads each byte that is not part of UTF-8 as U+FFFD, so values that
// differ in such bytes would share one counter, and not the one ShouldRateLimit charges
// for the same bytes (internal/utf8codec reads each as '!').
func notUTF8(body []byte) error {
	if utf8.Valid(body) {
		return nil
	}
	i := 0
	for {
		r, n := utf8.DecodeRune(body[i:])
		if r == utf8.RuneError && n == 1 {
			return fmt.Errorf("the body is not valid UTF-8 at byte %d (0x%02x); JSON text is UTF-8", i, body[i])
		}
		i += n
	}
}

// loneSurrogate refuses a \u escape in body, a valid JSON text, that is half of a UTF-16
// surrogate pair without the other half: it stands for no character, and encoding/json
// would read it as U+FFFD, as notUTF8 says of stray bytes.
func loneSurrogate(body []byte) error {
	// In a valid JSON text a backslash only starts an escape, inside a string.
	for i := bytes.IndexByte(body, '\\'); i >= 0; {
		next := i + 2 // past a one-character escape
		if body[i+1] == 'u' {
			next = i + 6
			switch r := escapedUnit(body[i+2 : i+6]); {
			case utf16.IsSurrogate(r) && r < 0xdc00 && next+6 <= len(body) && body[next] == '\\' && body[next+1] == 'u' &&
				utf16.DecodeRune(r, escapedUnit(body[next+2:next+6])) != utf8.RuneError:
				next += 6 // a pair
			case utf16.IsSurrogate(r):
				return fmt.Errorf("the escape %s at byte %d is half of a UTF-16 surrogate pair, not a character", body[i:i+6], i)
			}
		}
		j := bytes.IndexByte(body[next:], '\\')
		if j < 0 {
			return nil
		}
		i = next + j
	}
	return nil
}

// escapedUnit is the UTF-16 code unit of the four hex digits of a \u escape.
func escapedUnit(hex []byte) rune {
	v, _ := strconv.ParseUint(string(hex), 16, 16) // valid JSON: four hex digits
	return rune(v)
}

// requestNames are the member names of a request, at any depth, spelled as they must be.
// encoding/json matches a name to a field without regard to case (and folds ſ to s),
// so checkNames refuses the other spellings it took. One set serves every depth
// because no two of these names differ only in case: a name the decoder took as a
// field of one object is in the set only if it is that field's own spelling.
var requestNames = fieldNames(reflect.TypeFor[decideRequest](), map[string]bool{})

// fieldNames adds to names the JSON names of t's fields and of the structs within
// them (a descriptor's, an entry's), read from their tags: the request's one spelling.
func fieldNames(t reflect.Type, names map[string]bool) map[string]bool {
	for t.Kind() == reflect.Slice || t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return names
	}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		names[name] = true
		fieldNames(f.Type, names)
	}
	return names
}

// checkNames returns an error naming the first member of body, a valid JSON text that
// decoded into a decideRequest, that is not spelled as the request's field is, or that
// appears twice in one object. encoding/json takes either (a name in another case as
// the field, the last of two values), so the request it decodes may not be the one
// another reader of the text sees: a request that says two things is refused instead.
func checkNames(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	// Numbers as written: one no float64 holds (1e400) is toRequest's to refuse.
	dec.UseNumber()
	var objects [][]string // the names seen in each open object or array (nil) around the token
	wantName := false      // the next token is a member name or the end of an object
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if name, ok := tok.(string); ok && wantName {
			if !requestNames[name] {
				return fmt.Errorf("json: unknown field %q", name) // as DisallowUnknownFields words it
			}
			top := &objects[len(objects)-1]
			if slices.Contains(*top, name) {
				return fmt.Errorf("member %q appears twice in one object", name)
			}
			*top = append(*top, name)
			wantName = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			objects = append(objects, []string{})
		case json.Delim('['):
			objects = append(objects, nil)
		case json.Delim('}'), json.Delim(']'):
			objects = objects[:len(objects)-1]
		}
		// After a value, or the start of an object, a name follows if an object is open.
		wantName = len(objects) > 0 && objects[len(objects)-1] != nil
	}
}

func toDecideResponse(res *decide.Result) decideResponse {
	out := decideResponse{OverallCode: "OK", Statuses: make([]decideStatus, len(res.Statuses)), RetryAfterMs: res.RetryAfterMs(),
		UnknownDomain: res.UnknownDomain}
	if res.OverLimit {
		out.OverallCode = "OVER_LIMIT"
	}
	for i, st := range res.Statuses {
		s := decideStatus{Code: "OK", CostClamped: st.CostClamped}
		if st.OverLimit {
			s.Code = "OVER_LIMIT"
		}
		if l := st.Limit; l != nil {
			w := l.ReportedWindow()
			// Clamped as ShouldRateLimit's uint32 fields carry them (a rule may say 2^32).
			s.CurrentLimit = &currentLimit{Name: l.Name, RequestsPerUnit: int64(ratelimitheaders.ClampU32(st.Decision.Limit)),
				Unit: w.Unit, UnitMultiplier: w.Multiplier, Algorithm: l.Params.Algorithm.String()}
			s.LimitRemaining = int64(ratelimitheaders.ClampU32(st.Decision.Remaining))
			s.DurationUntilResetMs = max(0, st.Decision.ResetAt-res.Now)
		} else if st.Unlimited {
			s.LimitRemaining = math.MaxUint32 // as ShouldRateLimit answers
		}
		out.Statuses[i] = s
	}
	return out
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
