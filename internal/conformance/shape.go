package conformance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// The shape check: encoding/json fills File from whatever fields it knows, so a
// misspelt field ("cots"), another primitive's field (costs in a rateLimit op) or a
// decision field left out (read as 0) would replay without complaint and prove less
// than it seems to. checkShape refuses each of them, and a field given twice, at its
// line and column, naming the suite and the op. Lease suites are out of scope (SPEC §8)
// and not looked into.

// node is a JSON value with the offset where it begins.
type node struct {
	at      int64
	object  bool
	members []member // an object's, in file order
	items   []*node  // an array's
	scalar  any      // anything else, as json.Decoder's Token returns it
}

// member is one field of an object; at is where its name begins.
type member struct {
	name  string
	at    int64
	value *node
}

// field returns the object's field name, or nil.
func (n *node) field(name string) *node {
	for _, m := range n.members {
		if m.name == name {
			return m.value
		}
	}
	return nil
}

// nameAt is where the object's field name begins (the object's start without it).
func (n *node) nameAt(name string) int64 {
	for _, m := range n.members {
		if m.name == name {
			return m.at
		}
	}
	return n.at
}

// str is the string the field name holds, or "".
func (n *node) str(name string) string {
	if v := n.field(name); v != nil {
		s, _ := v.scalar.(string)
		return s
	}
	return ""
}

// parseTree reads data (valid JSON: Load decoded it already) into nodes.
func parseTree(data []byte) (*node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return readNode(dec, data)
}

func readNode(dec *json.Decoder, data []byte) (*node, error) {
	n := &node{at: nextValue(data, dec.InputOffset())}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok {
	case json.Delim('{'):
		n.object = true
		for dec.More() {
			at := nextValue(data, dec.InputOffset())
			name, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := readNode(dec, data)
			if err != nil {
				return nil, err
			}
			n.members = append(n.members, member{name.(string), at, v})
		}
		_, err = dec.Token()
	case json.Delim('['):
		for dec.More() {
			v, err := readNode(dec, data)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, v)
		}
		_, err = dec.Token()
	default:
		n.scalar = tok
	}
	return n, err
}

// nextValue skips the spacing and separators before the next token at off.
func nextValue(data []byte, off int64) int64 {
	for off < int64(len(data)) && strings.IndexByte(" \t\r\n,:", data[off]) >= 0 {
		off++
	}
	return off
}

// shapeError is a refused field, at a node's or a field name's offset.
type shapeError struct {
	at    int64
	where string // the path in the file: suites[2] "name": ops[0].expect
	msg   string
}

// fields are the fields an object may have; the required ones must be there.
type fields struct {
	required []string
	optional []string
}

var (
	fileFields = fields{[]string{"suites"}, []string{"contractVersion", "decisionFields", "description", "generatedFrom", "frozen"}}
	decision   = fields{required: []string{"allowed", "limit", "remaining", "resetAt", "retryAfterMs"}}
	strategy   = fields{required: []string{"kind", "options"}}
	limitDef   = fields{[]string{"kind", "options", "key"}, []string{"shadow"}}

	// suiteFields and opFields are per primitive; lease is not looked into.
	suiteFields = map[string]fields{
		"rateLimit":   {required: []string{"primitive", "name", "strategy", "key", "ops"}},
		"tokenBudget": {required: []string{"primitive", "name", "options", "ops"}},
		"request":     {required: []string{"primitive", "name", "limits", "ops"}},
	}
	opFields = map[string]fields{
		"rateLimit":   {required: []string{"now", "cost", "expect"}},
		"tokenBudget": {required: []string{"now", "tokens", "expect"}},
		"request":     {required: []string{"now", "costs", "expect"}},
	}
	requestExpect = fields{required: []string{"allowed", "decisions"}}

	// optionFields are each strategy kind's options (SPEC §8 names, and ours).
	optionFields = map[string]fields{
		"gcra":             {[]string{"limit", "periodMs"}, []string{"burst"}},
		"tokenBucket":      {[]string{"capacity"}, []string{"refillPerSec", "refill", "periodMs"}},
		"fixedWindow":      {required: []string{"limit", "windowMs"}},
		"slidingWindow":    {[]string{"limit", "windowMs"}, []string{"buckets"}},
		"slidingWindowLog": {required: []string{"limit", "windowMs"}},
		"tokenBudget":      {required: []string{"budget", "windowMs"}},
	}
	// snakeKinds are the YAML names of the kinds, which the project's vectors use.
	snakeKinds = map[string]string{"token_bucket": "tokenBucket", "fixed_window": "fixedWindow",
		"sliding_window": "slidingWindow", "sliding_window_log": "slidingWindowLog", "token_budget": "tokenBudget"}
)

// names lists the fields for a message: "a, b or c".
func (fs fields) names() string {
	all := slices.Concat(fs.required, fs.optional)
	if len(all) == 1 {
		return all[0]
	}
	return strings.Join(all[:len(all)-1], ", ") + " or " + all[len(all)-1]
}

// checkObject refuses n unless it is an object with the required fields, no others,
// and none twice.
func checkObject(n *node, where string, fs fields) *shapeError {
	if !n.object {
		return &shapeError{n.at, where, "want an object"}
	}
	seen := map[string]bool{}
	for _, m := range n.members {
		switch {
		case seen[m.name]:
			return &shapeError{m.at, where, fmt.Sprintf("repeated field %q", m.name)}
		case !slices.Contains(fs.required, m.name) && !slices.Contains(fs.optional, m.name):
			return &shapeError{m.at, where, fmt.Sprintf("unknown field %q (want %s)", m.name, fs.names())}
		}
		seen[m.name] = true
	}
	for _, name := range fs.required {
		if !seen[name] {
			return &shapeError{n.at, where, fmt.Sprintf("missing field %q", name)}
		}
	}
	return nil
}

// checkShape refuses a field of the file at path that the runner would not read.
func checkShape(path string, data []byte) error {
	root, err := parseTree(data)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if e := checkFile(root); e != nil {
		msg := e.msg
		if e.where != "" {
			msg = e.where + ": " + msg
		}
		return fmt.Errorf("%s:%s: %s", path, position(data, e.at), msg)
	}
	return nil
}

func checkFile(root *node) *shapeError {
	if e := checkObject(root, "", fileFields); e != nil {
		return e
	}
	// The runner compares Decision fields by name: another list or order would be a
	// file that means something else by its numbers.
	if df := root.field("decisionFields"); df != nil && !slices.Equal(scalars(df), decision.required) {
		return &shapeError{df.at, "", fmt.Sprintf("decisionFields: want %s", mustJSON(decision.required))}
	}
	for i, s := range root.field("suites").items {
		if e := checkSuite(s, i); e != nil {
			return e
		}
	}
	return nil
}

// checkSuite checks one suite by its primitive's fields.
func checkSuite(s *node, i int) *shapeError {
	where := fmt.Sprintf("suites[%d]", i)
	if !s.object {
		return &shapeError{s.at, where, "want an object"}
	}
	where += fmt.Sprintf(" %q", s.str("name"))
	primitive := s.str("primitive")
	fs, ok := suiteFields[primitive]
	switch {
	case primitive == "lease":
		return nil // out of scope (SPEC §8): Replay skips it
	case !ok && s.field("primitive") != nil:
		return &shapeError{s.field("primitive").at, where, fmt.Sprintf("primitive: unknown primitive %q (want rateLimit, tokenBudget, request or lease)", primitive)}
	}
	if e := checkObject(s, where, fs); e != nil {
		return e
	}
	where += ": "
	var e *shapeError
	switch primitive {
	case "rateLimit":
		e = checkStrategy(s.field("strategy"), where+"strategy")
	case "tokenBudget":
		e = checkOptions("tokenBudget", s.field("options"), where+"options")
	case "request":
		e = checkLimits(s.field("limits"), where+"limits")
	}
	if e != nil {
		return e
	}
	for j, op := range s.field("ops").items {
		if e := checkOp(op, primitive, fmt.Sprintf("%sops[%d]", where, j)); e != nil {
			return e
		}
	}
	return nil
}

func checkStrategy(n *node, where string) *shapeError {
	if e := checkObject(n, where, strategy); e != nil {
		return e
	}
	return checkKind(n, where)
}

func checkLimits(n *node, where string) *shapeError {
	for i, l := range n.items {
		w := fmt.Sprintf("%s[%d]", where, i)
		if e := checkObject(l, w, limitDef); e != nil {
			return e
		}
		if e := checkKind(l, w); e != nil {
			return e
		}
	}
	return nil
}

// checkKind checks an object's kind and its options.
func checkKind(n *node, where string) *shapeError {
	kind := n.str("kind")
	if k, ok := snakeKinds[kind]; ok {
		kind = k
	}
	if _, ok := optionFields[kind]; !ok {
		return &shapeError{n.field("kind").at, where + ".kind", fmt.Sprintf("unknown strategy kind %q", n.str("kind"))}
	}
	return checkOptions(kind, n.field("options"), where+".options")
}

// checkOptions checks a kind's options: its own names, each a JSON number, and one
// refill rate for a token bucket.
func checkOptions(kind string, n *node, where string) *shapeError {
	if e := checkObject(n, where, optionFields[kind]); e != nil {
		return e
	}
	for _, m := range n.members {
		if _, ok := m.value.scalar.(json.Number); !ok {
			return &shapeError{m.value.at, where + "." + m.name, fmt.Sprintf("a JSON %s where a number belongs", jsonType(m.value))}
		}
	}
	if kind != "tokenBucket" {
		return nil
	}
	perSec := n.field("refillPerSec") != nil
	switch refill, period := n.field("refill") != nil, n.field("periodMs") != nil; {
	case perSec && (refill || period):
		return &shapeError{n.nameAt("refillPerSec"), where, "refillPerSec and refill/periodMs both give the refill rate"}
	case !perSec && !(refill && period):
		return &shapeError{n.at, where, "want refillPerSec, or refill and periodMs"}
	}
	return nil
}

// checkOp checks one op and its expectation by the suite's primitive.
func checkOp(op *node, primitive, where string) *shapeError {
	if e := checkObject(op, where, opFields[primitive]); e != nil {
		return e
	}
	expect, where := op.field("expect"), where+".expect"
	if primitive != "request" {
		return checkObject(expect, where, decision)
	}
	if e := checkObject(expect, where, requestExpect); e != nil {
		return e
	}
	for i, d := range expect.field("decisions").items {
		if e := checkObject(d, fmt.Sprintf("%s.decisions[%d]", where, i), decision); e != nil {
			return e
		}
	}
	return nil
}

// scalars are an array's strings.
func scalars(n *node) []string {
	var out []string
	for _, it := range n.items {
		s, _ := it.scalar.(string)
		out = append(out, s)
	}
	return out
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// jsonType names the JSON type of a node for a message.
func jsonType(n *node) string {
	switch n.scalar.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case nil:
		if n.object {
			return "object"
		}
		if n.items != nil {
			return "array"
		}
		return "null"
	}
	return "value"
}
