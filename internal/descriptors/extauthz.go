package descriptors

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// The optional top-level `ext_authz` key of a domain file says how an Envoy ext_authz
// CheckRequest becomes descriptors of that domain (docs/configuration.md, "ext_authz").
// It mirrors the rate-limit actions of Envoy's routes: each item of `descriptors` builds
// one descriptor from its `entries`, in order; an entry that cannot be built (a missing
// header, a failed match, no source address) drops that descriptor, as Envoy drops a
// rate_limits entry whose action produces nothing. All descriptors of one check are
// decided together, all or nothing, exactly like one ShouldRateLimit request.

// Bounds of one ext_authz section.
const (
	MaxExtAuthzDescriptors = 64 // descriptors per domain
)

// ExtAuthz is the compiled ext_authz section of one domain. It belongs to the RuleSet:
// treat it, and everything it holds, as read-only.
type ExtAuthz struct {
	Domain      string
	File        string
	Line        int
	Descriptors []ExtAuthzDescriptor
}

// ExtAuthzDescriptor builds one request descriptor.
type ExtAuthzDescriptor struct {
	Field   string    // e.g. "ext_authz.descriptors[2]", for logs
	Line    int       // of the item
	When    Condition // the descriptor is built only when it holds
	Entries []Source  // one descriptor entry each, in order
	// Cost is the descriptor's hits_addend; nil means the request's cost (1).
	Cost *Cost
}

// Condition restricts a descriptor to some requests (the part of Envoy's route match
// that ext_authz has no routes for). The zero Condition always holds.
type Condition struct {
	Path    *StringMatcher  // on the request path without query string; nil = any
	Headers []HeaderMatcher // all must match
}

// SourceKind names where an entry's value comes from. The names are the YAML keys.
type SourceKind string

const (
	SourceRemoteAddress       SourceKind = "remote_address"        // the client address
	SourceMaskedRemoteAddress SourceKind = "masked_remote_address" // the client address masked to a CIDR
	SourceRequestHeaders      SourceKind = "request_headers"       // a request header's value
	SourceGenericKey          SourceKind = "generic_key"           // a constant
	SourceHeaderValueMatch    SourceKind = "header_value_match"    // a constant when headers match
	SourcePath                SourceKind = "path"                  // the request path, query string removed
	SourceMethod              SourceKind = "method"                // the HTTP method
	SourceHost                SourceKind = "host"                  // :authority (Host)
	SourcePrincipal           SourceKind = "principal"             // the mTLS peer's principal
	SourceContextExtension    SourceKind = "context_extension"     // a context extension set by Envoy or Istio
)

// sourceKinds lists the sources in documentation order.
var sourceKinds = []SourceKind{
	SourceRemoteAddress, SourceMaskedRemoteAddress, SourceRequestHeaders, SourceGenericKey,
	SourceHeaderValueMatch, SourcePath, SourceMethod, SourceHost, SourcePrincipal, SourceContextExtension,
}

// Source builds one descriptor entry. Which fields are used depends on Kind.
type Source struct {
	Kind            SourceKind
	DescriptorKey   string // the entry's key (defaults follow Envoy's action names)
	DescriptorValue string // generic_key, header_value_match: the value; path: an optional constant
	// Remote addresses: UseXFF reads X-Forwarded-For instead of the connection's source
	// address, taking the entry XFFTrustedHops from the right (0 = the last).
	UseXFF         bool
	XFFTrustedHops int
	V4Prefix       int // masked_remote_address: prefix lengths (Envoy's defaults 32 and 128)
	V6Prefix       int
	Header         string          // request_headers: lower-case header name
	SkipIfAbsent   bool            // request_headers: a missing header drops the entry, not the descriptor
	Headers        []HeaderMatcher // header_value_match
	ExpectMatch    bool            // header_value_match: build the entry when the headers match (true) or not (false)
	Match          *StringMatcher  // path: the path must match; nil = any non-empty path
	Key            string          // context_extension: the extension's key
}

// Cost is a descriptor's hits_addend: a constant, or a request header holding a
// non-negative integer (a missing or malformed value drops the descriptor, as Envoy
// drops it when its hits_addend format does not yield a number).
type Cost struct {
	Number int64  // used when Header is ""
	Header string // lower case
}

// ExtAuthz returns the compiled ext_authz section of a domain, or nil when the domain
// is unknown or has none.
func (rs *RuleSet) ExtAuthz(domainName string) *ExtAuthz {
	if rs == nil || rs.domains[domainName] == nil {
		return nil
	}
	return rs.domains[domainName].extAuthz
}

var (
	extAuthzFields           = []string{"descriptors"}
	extAuthzDescriptorFields = []string{"when", "entries", "hits_addend"}
	whenFields               = []string{"path", "headers"}
	hitsAddendFields         = []string{"number", "request_header"}
)

// sourceFields are the fields each source accepts.
var sourceFields = map[SourceKind][]string{
	SourceRemoteAddress:       {"descriptor_key", "xff_num_trusted_hops"},
	SourceMaskedRemoteAddress: {"descriptor_key", "v4_prefix_mask_len", "v6_prefix_mask_len", "xff_num_trusted_hops"},
	SourceRequestHeaders:      {"header_name", "descriptor_key", "skip_if_absent"},
	SourceGenericKey:          {"descriptor_value", "descriptor_key"},
	SourceHeaderValueMatch:    {"descriptor_value", "descriptor_key", "expect_match", "headers"},
	SourcePath:                append([]string{"descriptor_key", "descriptor_value"}, stringMatchFields...),
	SourceMethod:              {"descriptor_key"},
	SourceHost:                {"descriptor_key"},
	SourcePrincipal:           {"descriptor_key"},
	SourceContextExtension:    {"key", "descriptor_key"},
}

// defaultKeys are the entry keys Envoy's actions use (or, for sources Envoy has no
// action for, the source's name).
var defaultKeys = map[SourceKind]string{
	SourceRemoteAddress: "remote_address", SourceMaskedRemoteAddress: "masked_remote_address",
	SourceGenericKey: "generic_key", SourceHeaderValueMatch: "header_match",
	SourcePath: "path", SourceMethod: "method", SourceHost: "host", SourcePrincipal: "principal",
}

// maxReachCheck bounds the rule nodes checkReachable follows per level.
const maxReachCheck = 10_000

// maxTrustedHops bounds xff_num_trusted_hops: more proxies than this in front of Envoy
// is a configuration mistake.
const maxTrustedHops = 64

// parseExtAuthz parses the ext_authz section of file mapping f. It runs after the
// descriptors, so it can check each ext_authz descriptor against the domain's rules.
func (p *fileParser) parseExtAuthz(f fields) {
	v := f.vals["ext_authz"]
	if v == nil {
		if f.keys["ext_authz"] != nil {
			p.errorf(f.keyLine("ext_authz"), "ext_authz", "empty; want a mapping with descriptors (or drop the key)")
		}
		return
	}
	before := p.problems()
	ef, ok := p.mapping(v, "ext_authz", extAuthzFields)
	if !ok {
		return
	}
	items := p.list(ef, "descriptors")
	switch dv := ef.vals["descriptors"]; {
	case dv == nil:
		if p.problems() == before { // not after a misspelt field name
			p.errorf(ef.line, ef.at("descriptors"), "missing; want at least one descriptor")
		}
		return
	case dv.Kind != yaml.SequenceNode:
		return // reported by list
	case len(items) == 0:
		p.errorf(dv.Line, ef.at("descriptors"), "empty list; want at least one descriptor")
		return
	case len(items) > MaxExtAuthzDescriptors:
		p.errorf(dv.Line, ef.at("descriptors"), "%d descriptors; at most %d", len(items), MaxExtAuthzDescriptors)
		return
	}
	x := &ExtAuthz{File: p.file, Line: ef.line}
	ok = true
	for i, it := range items {
		d, fine := p.extAuthzDescriptor(it, fmt.Sprintf("%s[%d]", ef.at("descriptors"), i))
		if !fine {
			ok = false
			continue
		}
		x.Descriptors = append(x.Descriptors, d)
	}
	if !ok || p.dom == nil {
		return
	}
	x.Domain = p.dom.name
	p.dom.extAuthz = x
}

func (p *fileParser) extAuthzDescriptor(item *yaml.Node, field string) (ExtAuthzDescriptor, bool) {
	d := ExtAuthzDescriptor{Field: field, Line: item.Line}
	before := p.problems()
	f, ok := p.mapping(item, field, extAuthzDescriptorFields)
	if !ok {
		return d, false
	}
	fine := true
	if w := f.vals["when"]; w != nil {
		wf, ok := p.mapping(w, f.at("when"), whenFields)
		if ok {
			d.When, ok = p.condition(wf)
		}
		fine = fine && ok
	}
	entries, ok := p.sources(f)
	d.Entries = entries
	fine = fine && ok
	if h := f.vals["hits_addend"]; h != nil {
		hf, ok := p.mapping(h, f.at("hits_addend"), hitsAddendFields)
		if ok {
			d.Cost, ok = p.cost(hf)
		}
		fine = fine && ok
	}
	fine = fine && p.problems() == before // unknown fields are reported, not returned
	if fine {
		p.checkReachable(f, d)
	}
	return d, fine
}

// problems counts the problems reported so far, kept or not.
func (p *fileParser) problems() int { return len(p.errs) + p.omitted }

func (p *fileParser) condition(f fields) (Condition, bool) {
	var c Condition
	fine := true
	if pv := f.vals["path"]; pv != nil {
		pf, ok := p.mapping(pv, f.at("path"), stringMatchFields)
		if ok {
			c.Path, ok = p.stringMatch(pf, true)
		}
		fine = fine && ok
	}
	hs, ok := p.headerMatchers(f, "headers", false)
	c.Headers = hs
	return c, fine && ok
}

func (p *fileParser) cost(f fields) (*Cost, bool) {
	switch {
	case f.has("number") && f.has("request_header"):
		p.errorf(f.keyLine("request_header"), f.at("request_header"), "number and request_header are exclusive")
		return nil, false
	case f.has("number"):
		n, ok := p.integer(f, "number", 0)
		if ok && n > limiter.MaxCost {
			p.errorf(f.keyLine("number"), f.at("number"), "must be at most %d, got %d", limiter.MaxCost, n)
			return nil, false
		}
		return &Cost{Number: n}, ok
	case f.has("request_header"):
		h, ok := p.headerName(f, "request_header")
		return &Cost{Header: h}, ok
	}
	p.errorf(f.line, orRoot(f.path), "want number or request_header")
	return nil, false
}

// sources parses the entries list of one descriptor.
func (p *fileParser) sources(f fields) ([]Source, bool) {
	v := f.vals["entries"]
	if v == nil {
		p.errorf(f.line, f.at("entries"), "missing; want at least one entry")
		return nil, false
	}
	items := p.list(f, "entries")
	switch {
	case v.Kind != yaml.SequenceNode:
		return nil, false // reported by list
	case len(items) == 0:
		p.errorf(v.Line, f.at("entries"), "empty list; want at least one entry")
		return nil, false
	case len(items) > MaxDepth:
		p.errorf(v.Line, f.at("entries"), "%d entries; rules nest at most %d levels, so a longer descriptor matches nothing", len(items), MaxDepth)
		return nil, false
	}
	names := make([]string, len(sourceKinds))
	for i, k := range sourceKinds {
		names[i] = string(k)
	}
	out := make([]Source, 0, len(items))
	fine := true
	for i, it := range items {
		field := fmt.Sprintf("%s[%d]", f.at("entries"), i)
		ef, ok := p.mapping(it, field, names)
		if !ok {
			fine = false
			continue
		}
		var given []string
		for _, n := range names {
			if ef.keys[n] != nil {
				given = append(given, n)
			}
		}
		if len(given) != 1 {
			switch {
			case len(given) > 1:
				p.errorf(ef.keyLine(given[1]), field, "%s and %s in one entry; give each entry its own list item", given[0], given[1])
			case len(resolve(it).Content) == 0:
				p.errorf(ef.line, field, "empty; want one of %s", strings.Join(names, ", "))
			} // else: an unknown source, reported by mapping
			fine = false
			continue
		}
		s, ok := p.source(ef, SourceKind(given[0]))
		if !ok {
			fine = false
			continue
		}
		out = append(out, s)
	}
	return out, fine
}

// source parses one entry whose only key is kind. `kind: {}` and a bare `kind:` (null)
// both mean "all defaults".
func (p *fileParser) source(ef fields, kind SourceKind) (Source, bool) {
	s := Source{Kind: kind, DescriptorKey: defaultKeys[kind]}
	at := ef.at(string(kind))
	var f fields
	if v := ef.vals[string(kind)]; v != nil {
		var ok bool
		if f, ok = p.mapping(v, at, sourceFields[kind]); !ok {
			return s, false
		}
	} else {
		f = fields{path: at, line: ef.keyLine(string(kind)), keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	}
	fine := true
	if key, ok := p.descriptorText(f, "descriptor_key"); ok {
		s.DescriptorKey = key
	} else if f.has("descriptor_key") {
		fine = false
	}
	var ok bool
	switch kind {
	case SourceRemoteAddress, SourceMaskedRemoteAddress:
		ok = p.addressSource(f, &s)
	case SourceRequestHeaders:
		ok = p.requestHeadersSource(f, &s)
	case SourceGenericKey:
		ok = p.requiredValue(f, &s)
	case SourceHeaderValueMatch:
		ok = p.headerValueMatchSource(f, &s)
	case SourcePath:
		ok = p.pathSource(f, &s)
	case SourceContextExtension:
		ok = p.contextExtensionSource(f, &s)
	default:
		ok = true
	}
	return s, fine && ok
}

// addressSource reads remote_address's and masked_remote_address's fields into s.
func (p *fileParser) addressSource(f fields, s *Source) bool {
	fine := true
	if f.has("xff_num_trusted_hops") {
		n, ok := p.integer(f, "xff_num_trusted_hops", 0)
		if ok && n > maxTrustedHops {
			p.errorf(f.keyLine("xff_num_trusted_hops"), f.at("xff_num_trusted_hops"), "must be at most %d, got %d", maxTrustedHops, n)
			ok = false
		}
		s.UseXFF, s.XFFTrustedHops = true, int(n)
		fine = ok
	}
	if s.Kind != SourceMaskedRemoteAddress {
		return fine
	}
	s.V4Prefix, s.V6Prefix = 32, 128
	// Each field is checked whatever became of the others, so that every mistake is
	// reported at once.
	if n, ok := p.integer(f, "v4_prefix_mask_len", 0); ok {
		s.V4Prefix = int(n)
		fine = p.atMost(f, "v4_prefix_mask_len", n, 32) && fine
	} else if f.has("v4_prefix_mask_len") {
		fine = false
	}
	if n, ok := p.integer(f, "v6_prefix_mask_len", 0); ok {
		s.V6Prefix = int(n)
		fine = p.atMost(f, "v6_prefix_mask_len", n, 128) && fine
	} else if f.has("v6_prefix_mask_len") {
		fine = false
	}
	return fine
}

// requestHeadersSource reads request_headers' fields into s.
func (p *fileParser) requestHeadersSource(f fields, s *Source) bool {
	h, fine := p.headerName(f, "header_name")
	s.Header = h
	if !f.has("descriptor_key") {
		if f.missing("descriptor_key") {
			p.errorf(f.line, f.at("descriptor_key"), "missing (Envoy's request_headers action requires it too)")
		}
		fine = false
	}
	skip, ok := p.boolean(f, "skip_if_absent")
	s.SkipIfAbsent = skip
	return fine && ok
}

// headerValueMatchSource reads header_value_match's fields into s.
func (p *fileParser) headerValueMatchSource(f fields, s *Source) bool {
	fine := p.requiredValue(f, s)
	s.ExpectMatch = true
	if f.has("expect_match") {
		b, ok := p.boolean(f, "expect_match")
		s.ExpectMatch, fine = b, fine && ok
	}
	hs, ok := p.headerMatchers(f, "headers", true)
	s.Headers = hs
	return fine && ok
}

// pathSource reads path's fields into s.
func (p *fileParser) pathSource(f fields, s *Source) bool {
	fine := true
	if v, ok := p.descriptorText(f, "descriptor_value"); ok {
		s.DescriptorValue = v
	} else if f.has("descriptor_value") {
		fine = false
	}
	m, ok := p.stringMatch(f, false)
	s.Match = m
	return fine && ok
}

// contextExtensionSource reads context_extension's fields into s; its key is also the
// descriptor key unless one is given.
func (p *fileParser) contextExtensionSource(f fields, s *Source) bool {
	key, ok := p.requiredText(f, "key", "missing; name the context extension")
	if !ok {
		return false
	}
	s.Key = key
	if !f.has("descriptor_key") {
		s.DescriptorKey = key
	}
	return true
}

func (p *fileParser) atMost(f fields, name string, n, most int64) bool {
	if n > most {
		p.errorf(f.keyLine(name), f.at(name), "must be at most %d, got %d", most, n)
		return false
	}
	return true
}

func (p *fileParser) requiredValue(f fields, s *Source) bool {
	v, ok := p.requiredText(f, "descriptor_value", "missing")
	s.DescriptorValue = v
	return ok
}

// requiredText reads the descriptor text of field name, reporting missing when it is
// absent (and no merge key may hold it).
func (p *fileParser) requiredText(f fields, name, missing string) (string, bool) {
	v, ok := p.descriptorText(f, name)
	if !ok && f.missing(name) {
		p.errorf(f.line, f.at(name), "%s", missing)
	}
	return v, ok
}

// descriptorText reads a descriptor key or value: a non-empty string without control
// characters, like the keys and values of the rules.
func (p *fileParser) descriptorText(f fields, name string) (string, bool) {
	s, line, ok := p.str(f, name)
	switch {
	case !ok:
		return "", false
	case s == "":
		p.errorf(line, f.at(name), "empty")
		return "", false
	case !p.printable(s, line, f.at(name)):
		return "", false
	}
	return s, true
}

// checkReachable reports an ext_authz descriptor that no request could ever get a limit
// for: its entry keys (and constant values) lead to no configured limit of the domain.
// A typo in descriptor_key would otherwise silently switch limiting off. Descriptors
// with skip_if_absent entries can take several shapes and are not checked.
func (p *fileParser) checkReachable(f fields, d ExtAuthzDescriptor) {
	if p.dom == nil || p.merging {
		return
	}
	if msg, ok := unreachable(p.dom, d); ok {
		p.errorf(f.line, f.path, "%s", msg)
	}
}

// unreachable returns checkReachable's message when d reaches no limit of dom.
func unreachable(dom *domain, d ExtAuthzDescriptor) (string, bool) {
	nodes := []*node{dom.root}
	for _, s := range d.Entries {
		if s.SkipIfAbsent {
			return "", false
		}
		seen := map[*node]bool{}
		var next []*node
		for _, n := range nodes {
			for _, c := range n.candidates(s) {
				if !seen[c] {
					seen[c] = true
					next = append(next, c)
				}
			}
			if len(next) > maxReachCheck {
				return "", false // too wide to walk cheaply: give the benefit of the doubt
			}
		}
		if nodes = next; len(nodes) == 0 {
			break
		}
	}
	for _, n := range nodes {
		if len(n.limits) > 0 {
			return "", false
		}
	}
	parts := make([]string, len(d.Entries))
	for i, s := range d.Entries {
		parts[i] = s.DescriptorKey + "=" + s.describeValue()
	}
	return fmt.Sprintf("the descriptor [%s] matches no limit of domain %q; check the descriptor keys against the rules' keys and nesting",
		strings.Join(parts, ", "), dom.name), true
}

// constant returns the entry's value when it does not depend on the request.
func (s *Source) constant() (string, bool) {
	switch s.Kind {
	case SourceGenericKey, SourceHeaderValueMatch:
		return s.DescriptorValue, true
	case SourcePath:
		return s.DescriptorValue, s.DescriptorValue != ""
	}
	return "", false
}

func (s *Source) describeValue() string {
	if v, ok := s.constant(); ok {
		return v
	}
	return "<" + string(s.Kind) + ">"
}

// candidates returns the children of n a request entry built by s could reach.
func (n *node) candidates(s Source) []*node {
	b := n.keys[s.DescriptorKey]
	if b == nil {
		return nil
	}
	if v, ok := s.constant(); ok {
		if c := n.child(Entry{Key: s.DescriptorKey, Value: v}); c != nil {
			return []*node{c}
		}
		return nil
	}
	var out []*node
	for _, c := range b.exact {
		out = append(out, c)
	}
	for _, pc := range b.patterns {
		out = append(out, pc.node)
	}
	if b.bare != nil {
		out = append(out, b.bare)
	}
	return out
}

// String renders the entry for /debug/config and messages, e.g.
// "api_key=<request_headers x-api-key>" or "generic_key=llm".
func (s *Source) String() string {
	if v, ok := s.constant(); ok {
		out := s.DescriptorKey + "=" + v
		if s.Kind == SourceHeaderValueMatch {
			var hs []string
			for i := range s.Headers {
				hs = append(hs, s.Headers[i].String())
			}
			verb := "if"
			if !s.ExpectMatch {
				verb = "unless"
			}
			out += " " + verb + " " + strings.Join(hs, " and ")
		}
		if s.Kind == SourcePath && s.Match != nil {
			out += " if path " + s.Match.String()
		}
		return out
	}
	var detail string
	switch s.Kind {
	case SourceRemoteAddress, SourceMaskedRemoteAddress:
		if s.UseXFF {
			detail = fmt.Sprintf(" xff_num_trusted_hops=%d", s.XFFTrustedHops)
		}
		if s.Kind == SourceMaskedRemoteAddress {
			detail += fmt.Sprintf(" /%d /%d", s.V4Prefix, s.V6Prefix)
		}
	case SourceRequestHeaders:
		detail = " " + s.Header
		if s.SkipIfAbsent {
			detail += " skip_if_absent"
		}
	case SourcePath:
		if s.Match != nil {
			detail = " " + s.Match.String()
		}
	case SourceContextExtension:
		detail = " " + strconv.Quote(s.Key)
	}
	return s.DescriptorKey + "=<" + string(s.Kind) + detail + ">"
}
