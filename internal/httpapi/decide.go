package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// maxDecideBody bounds the JSON decision endpoint's request body.
const maxDecideBody = 1 << 20

type decideRequest struct {
	Domain      string `json:"domain"`
	HitsAddend  uint64 `json:"hits_addend"`
	Descriptors []struct {
		Entries []struct {
			Key   string `json:"key"`
			Value string `json:"value"`
		} `json:"entries"`
		HitsAddend *uint64 `json:"hits_addend,omitempty"`
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
}

// decideHandler answers POST /v1/decide with the same decision ShouldRateLimit gives
// (and charges the same state): a way to exercise rules with curl.
func (a *API) decideHandler(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var in decideRequest
	if code, err := readDecideRequest(w, r, &in); err != nil {
		if a.obs != nil { // counted as an invalid request, as a bad decide.Request is
			a.obs.Observe("decide", start, nil, nil, fmt.Errorf("%w: %w", decide.ErrInvalid, err))
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	req := &decide.Request{Domain: in.Domain, HitsAddend: in.HitsAddend, Descriptors: make([]decide.Descriptor, len(in.Descriptors))}
	for i, d := range in.Descriptors {
		for _, e := range d.Entries {
			req.Descriptors[i].Entries = append(req.Descriptors[i].Entries, descriptors.Entry{Key: e.Key, Value: e.Value})
		}
		req.Descriptors[i].Cost = d.HitsAddend
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

// readDecideRequest decodes the body, one JSON object and nothing after it, into in; on
// failure it returns the HTTP status to answer with.
func readDecideRequest(w http.ResponseWriter, r *http.Request, in *decideRequest) (int, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDecideBody))
	if err == nil {
		err = decodeDecideRequest(body, in)
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", tooLarge.Limit)
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("bad JSON: %w", err)
	}
	for i, d := range in.Descriptors {
		if len(d.Entries) == 0 { // {}, null or "entries": []: a slip, which would answer OK
			return http.StatusBadRequest, fmt.Errorf("%w: descriptor %d has no entries, so it would match no rule", decide.ErrInvalid, i)
		}
	}
	return 0, nil
}

// decodeDecideRequest decodes body, one JSON object and nothing after it, into in.
func decodeDecideRequest(body []byte, in *decideRequest) error {
	if err := notUTF8(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(in); err != nil {
		return err
	}
	if dec.Decode(&struct{}{}) != io.EOF {
		return errors.New("data after the request object")
	}
	if err := loneSurrogate(body); err != nil {
		return err
	}
	return checkNames(body)
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
var requestNames = map[string]bool{ // the request's, a descriptor's, an entry's
	"domain": true, "descriptors": true, "hits_addend": true, "entries": true, "key": true, "value": true,
}

// checkNames returns an error naming the first member of body, a valid JSON text that
// decoded into a decideRequest, that is not spelled as the request's field is, or that
// appears twice in one object. encoding/json takes either (a name in another case as
// the field, the last of two values), so the request it decodes may not be the one
// another reader of the text sees: a request that says two things is refused instead.
func checkNames(body []byte) error {
	dec := json.NewDecoder(bytes.NewReader(body))
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
	out := decideResponse{OverallCode: "OK", Statuses: make([]decideStatus, len(res.Statuses)), RetryAfterMs: res.RetryAfterMs()}
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
			s.CurrentLimit = &currentLimit{Name: l.Name, RequestsPerUnit: st.Decision.Limit, Unit: w.Unit,
				UnitMultiplier: w.Multiplier, Algorithm: l.Params.Algorithm.String()}
			s.LimitRemaining = st.Decision.Remaining
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
