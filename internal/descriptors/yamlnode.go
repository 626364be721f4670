package descriptors

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// descriptorOnlyFields are envoyproxy/ratelimit's per-descriptor fields. Its loader
// checks field names against one list for every mapping, so it accepts them anywhere and
// ignores them outside a descriptor; here they are an error there that says where they
// take effect (ext_authz, which it does not have, reports them as unknown).
var descriptorOnlyFields = []string{"shadow_mode", "quota_mode", "detailed_metric", "share_threshold", "value_to_metric", "metadata"}

// limitOnlyFields are envoyproxy/ratelimit's rate_limit fields that it accepts, and
// ignores, anywhere else for the same reason (name and replaces mean something on a
// descriptor entry here, so they are not among them).
var limitOnlyFields = []string{"unit", "requests_per_unit", "unlimited", "unit_multiplier"}

// fields is one YAML mapping checked against its schema: present, non-null values by
// field name, with aliases resolved.
type fields struct {
	path string // field path of the mapping itself, "" for the document root
	line int
	// keys are the nodes of the field names as written: for a name given through an
	// alias, the alias, whose line is where the field is (its Value is not the name).
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
	// merged: the mapping has a YAML merge key (refused), so fields it lacks may be in
	// the merged mapping: not worth a "missing" error of their own.
	merged bool
}

// at is the field path of one field of the mapping.
func (f fields) at(name string) string {
	if name == "" {
		name = `""` // an empty key must still show up in the message
	}
	if f.path == "" {
		return name
	}
	return f.path + "." + name
}

func (f fields) has(name string) bool { _, ok := f.vals[name]; return ok }

// missing says whether a required field is absent and worth reporting so.
func (f fields) missing(name string) bool { return !f.has(name) && !f.merged }

// keyLine is the line of a field's key, or of the mapping when the field is absent.
func (f fields) keyLine(name string) int {
	if k := f.keys[name]; k != nil {
		return k.Line
	}
	return f.line
}

// maxAliasHops bounds alias chains; the YAML parser does not produce long ones, but a
// bound keeps resolve total whatever the input.
const maxAliasHops = 64

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < maxAliasHops && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// isBinary says whether n is tagged !!binary: yaml.v3 gives its base64 text as its
// value, which read as text would be another value than the one meant.
func isBinary(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!binary"
}

// kindName describes a node for "want X, got Y" messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch {
		case isNull(n):
			return "null"
		case isBinary(n):
			return "!!binary data (rules are text: write it as a string)"
		case n.Tag == "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		}
		return n.Value
	}
	return "an alias"
}

// mapping checks that n is a mapping whose fields are all in known, each given once.
// Null values count as absent, as YAML (and envoyproxy/ratelimit) read them.
func (p *fileParser) mapping(n *yaml.Node, path string, known []string) (fields, bool) {
	n = resolve(n)
	f := fields{path: path, line: n.Line, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, orRoot(path), "want a mapping, got %s", kindName(n))
		return f, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		written := n.Content[i]
		k, v := resolve(written), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, orRoot(path), "field names must be plain strings, got %s", kindName(k))
			continue
		}
		if p.checkFieldName(f, k.Value, written.Line, known) {
			f.keys[k.Value] = written
			if !isNull(v) {
				f.vals[k.Value] = v
			}
		} else if k.Value == "<<" {
			f.merged = true
		}
	}
	return f, true
}

// checkFieldName reports a repeated, misplaced or unknown field, name, written at line.
func (p *fileParser) checkFieldName(f fields, name string, line int, known []string) bool {
	at := f.at(name)
	switch {
	case f.keys[name] != nil:
		p.refError(line, at, Ref{Line: f.keys[name].Line, Field: at}, "field given twice (first", ")")
	case slices.Contains(known, name):
		return true
	case slices.Contains(descriptorOnlyFields, name) && !strings.HasPrefix(f.path, "ext_authz"):
		p.errorf(line, at, "belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect")
	case slices.Contains(limitOnlyFields, name) && (f.path == "" || slices.Contains(known, "rate_limit")):
		// At the top of a file or on a descriptor entry: beside rate_limit.
		p.errorf(line, at, "belongs inside rate_limit: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it into rate_limit to get its effect")
	case name == "<<":
		p.errorf(line, at, "YAML merge keys are not supported; repeat the fields or use an alias for the whole value")
	default:
		p.errorf(line, at, "unknown field (want %s)", strings.Join(known, ", "))
	}
	return false
}

func orRoot(path string) string {
	if path == "" {
		return "document"
	}
	return path
}

// str returns a scalar field's text. ok is false when the field is absent or not a
// scalar (the latter is reported). Any scalar but !!binary data is accepted, so
// `value: 8080` is "8080".
func (p *fileParser) str(f fields, name string) (s string, line int, ok bool) {
	v := f.vals[name]
	if v == nil {
		return "", f.keyLine(name), false
	}
	if v.Kind != yaml.ScalarNode || isBinary(v) {
		p.errorf(v.Line, f.at(name), "want a string, got %s", kindName(v))
		return "", v.Line, false
	}
	return v.Value, v.Line, true
}

var digitsOnly = regexp.MustCompile(`^[-+]?[0-9_]+$`)

// integer returns a whole-number field, at least min. Quoted numbers and floats are
// rejected: the envoyproxy/ratelimit loader rejects them too.
func (p *fileParser) integer(f fields, name string, min int64) (n int64, ok bool) {
	v := f.vals[name]
	if v == nil {
		return 0, false
	}
	at := f.at(name)
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
		p.errorf(v.Line, at, "want a whole number, got %s", kindName(v))
		return 0, false
	}
	if v.Tag == "!!float" || v.Decode(&n) != nil {
		if digitsOnly.MatchString(v.Value) {
			p.errorf(v.Line, at, "number %s is out of range", v.Value)
		} else {
			p.errorf(v.Line, at, "want a whole number, got %s", kindName(v))
		}
		return 0, false
	}
	if n < min {
		p.errorf(v.Line, at, "must be at least %d, got %d", min, n)
		return 0, false
	}
	return n, true
}

// boolean returns a true/false field (YAML 1.1 yes/no/on/off included, as
// envoyproxy/ratelimit's YAML library read them); absent is false.
func (p *fileParser) boolean(f fields, name string) (b bool, ok bool) {
	v := f.vals[name]
	if v == nil {
		return false, true
	}
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!bool" && v.Tag != "!!str") || v.Decode(&b) != nil {
		p.errorf(v.Line, f.at(name), "want true or false, got %s", kindName(v))
		return false, false
	}
	return b, true
}

// itemLine is the line where item i of the list in field name is written: for an
// alias, the alias's own line rather than its anchor's.
func (f fields) itemLine(name string, i int) int { return f.vals[name].Content[i].Line }

// list returns the items of a sequence field (aliases resolved); nil when absent or
// not a sequence (the latter is reported).
func (p *fileParser) list(f fields, name string) []*yaml.Node {
	v := f.vals[name]
	if v == nil {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		p.errorf(v.Line, f.at(name), "want a list, got %s", kindName(v))
		return nil
	}
	items := make([]*yaml.Node, len(v.Content))
	for i, it := range v.Content {
		items[i] = resolve(it)
	}
	return items
}
