package descriptors

import (
	"fmt"
	"math"

	"gopkg.in/yaml.v3"
)

// Bounds on descriptor metadata. An alias can repeat one large mapping under every
// entry without costing file size, so metadata values are counted per load, like
// entries, and every value visited counts, aliases included.
const (
	MaxMetadataValues = 100_000 // mappings, lists and scalars in all metadata of a load
	// MaxMetadataBytes bounds the text (keys and scalars) of all metadata of a load,
	// counted at every use: YAML aliases repeat a long string at no cost to the file,
	// and /debug/config and dynamic metadata write every copy out (a 532 KB file once
	// made a /debug/config of gigabytes).
	MaxMetadataBytes = 64 << 20
	maxMetadataDepth = 16 // nesting levels within one entry's metadata
)

// metadata parses an entry's metadata: free-form YAML (mappings with scalar keys, lists,
// scalars), the data envoyproxy/ratelimit turns into a protobuf Struct for its response
// dynamic metadata. The result is JSON-ready: map[string]any, []any, string, int64,
// float64, bool or nil. An absent or empty mapping gives nil, as there.
func (p *fileParser) metadata(f fields) map[string]any {
	n := f.vals["metadata"]
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, f.at("metadata"), "want a mapping, got %s", kindName(n))
		return nil
	}
	v, ok := p.metaValue(n, f.at("metadata"), 1)
	if !ok {
		return nil
	}
	m := v.(map[string]any)
	if len(m) == 0 {
		return nil
	}
	return m
}

// metaValue converts one node; ok is false when a problem was reported.
func (p *fileParser) metaValue(n *yaml.Node, field string, depth int) (v any, ok bool) {
	n = resolve(n)
	if !p.spend(&p.budget.metadata, 1, n.Line, field) || !p.spend(&p.budget.metadataBytes, len(n.Value), n.Line, field) {
		return nil, false
	}
	if depth > maxMetadataDepth {
		p.errorf(n.Line, field, "metadata nested deeper than %d levels", maxMetadataDepth)
		return nil, false
	}
	switch n.Kind {
	case yaml.MappingNode:
		return p.metaMapping(n, field, depth)
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, item := range n.Content {
			v, ok := p.metaValue(item, fmt.Sprintf("%s[%d]", field, i), depth+1)
			if !ok {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	case yaml.ScalarNode:
		return p.metaScalar(n, field)
	}
	p.errorf(n.Line, field, "want a mapping, list or scalar, got %s", kindName(n))
	return nil, false
}

func (p *fileParser) metaMapping(n *yaml.Node, field string, depth int) (any, bool) {
	out := make(map[string]any, len(n.Content)/2)
	first := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		line := n.Content[i].Line // where the key is written: an alias's own line
		k := resolve(n.Content[i])
		switch {
		case k.Kind != yaml.ScalarNode || isNull(k) || isBinary(k):
			p.errorf(k.Line, field, "metadata keys must be strings, got %s", kindName(k))
			return nil, false
		case k.Tag == "!!merge":
			p.errorf(k.Line, field, "YAML merge keys are not supported; repeat the fields or use an alias for the whole value")
			return nil, false
		}
		if !p.spend(&p.budget.metadataBytes, len(k.Value), k.Line, field) {
			return nil, false
		}
		at := field + "." + k.Value
		if firstLine, dup := first[k.Value]; dup {
			p.refError(line, at, Ref{Line: firstLine, Field: at}, "key given twice (first", ")")
			return nil, false
		}
		first[k.Value] = line
		v, ok := p.metaValue(n.Content[i+1], at, depth+1)
		if !ok {
			return nil, false
		}
		out[k.Value] = v
	}
	return out, true
}

// yaml11Bools are the plain words YAML 1.1, and so envoyproxy/ratelimit's loader, reads
// as booleans; YAML 1.2 reads them as strings.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

// metaScalar keeps YAML's type for null, booleans and numbers and the text for anything
// else (strings, timestamps, custom tags), reading values as envoyproxy/ratelimit does;
// !!binary data, whose text is base64, is refused.
func (p *fileParser) metaScalar(n *yaml.Node, field string) (any, bool) {
	if b, ok := yaml11Bools[n.Value]; ok && n.Tag == "!!str" && n.Style == 0 {
		return b, true
	}
	switch n.Tag {
	case "!!null":
		return nil, true
	case "!!binary":
		p.errorf(n.Line, field, "want text, a number, a boolean or null, got %s", kindName(n))
		return nil, false
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err == nil {
			return b, true
		}
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, true
		}
		p.errorf(n.Line, field, "number %s is out of range", n.Value)
		return nil, false
	case "!!float":
		var f float64
		if err := n.Decode(&f); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return f, true
		}
		// JSON, protobuf's Struct and /debug/config have no place for them.
		p.errorf(n.Line, field, "want a finite number, got %s", n.Value)
		return nil, false
	}
	return n.Value, true
}
