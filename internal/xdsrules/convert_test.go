package xdsrules

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// Shorthands for building RateLimitConfig resources.
type (
	cfgT  = rlsconfv3.RateLimitConfig
	descT = rlsconfv3.RateLimitDescriptor
	polT  = rlsconfv3.RateLimitPolicy
)

func limit(unit rlsconfv3.RateLimitUnit, n uint32) *polT {
	return &polT{Unit: unit, RequestsPerUnit: n}
}

func named(name string, p *polT) *polT { p.Name = name; return p }

func replacing(p *polT, names ...string) *polT {
	for _, n := range names {
		p.Replaces = append(p.Replaces, &rlsconfv3.RateLimitReplace{Name: n})
	}
	return p
}

const (
	second = rlsconfv3.RateLimitUnit_SECOND
	minute = rlsconfv3.RateLimitUnit_MINUTE
	hour   = rlsconfv3.RateLimitUnit_HOUR
	day    = rlsconfv3.RateLimitUnit_DAY
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// Every field of a RateLimitConfig lands in the YAML document an operator would have
// written for envoyproxy/ratelimit. Documents are compared as parsed YAML, so the test
// pins structure, values and scalar types (a value "yes" must stay a string), not
// indentation.
func TestToYAML(t *testing.T) {
	cases := []struct {
		name string
		in   *cfgT
		want string
	}{
		{"domain only", &cfgT{Name: "n", Domain: "edge"}, "domain: edge"},
		{"key, value and a limit", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "remote_address", Value: "10.0.0.1", RateLimit: named("per-ip", limit(second, 10))},
		}}, `
domain: edge
descriptors:
  - key: remote_address
    value: "10.0.0.1"
    rate_limit: {name: per-ip, unit: SECOND, requests_per_unit: 10}`},
		{"a bare key has no value field", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "user", RateLimit: limit(minute, 5)},
		}}, `
domain: edge
descriptors:
  - key: user
    rate_limit: {unit: MINUTE, requests_per_unit: 5}`},
		{"unlimited without a rate", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "internal", RateLimit: &polT{Unlimited: true}},
		}}, `
domain: edge
descriptors:
  - key: internal
    rate_limit: {unlimited: true}`},
		{"unlimited keeps a rate that is set", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "internal", RateLimit: &polT{Unlimited: true, Unit: hour, RequestsPerUnit: 7, Name: "off"}},
		}}, `
domain: edge
descriptors:
  - key: internal
    rate_limit: {name: "off", unit: HOUR, requests_per_unit: 7, unlimited: true}`},
		{"replaces", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "a", RateLimit: named("base", limit(day, 100))},
			{Key: "b", RateLimit: replacing(named("special", limit(day, 1000)), "base", "other")},
		}}, `
domain: edge
descriptors:
  - key: a
    rate_limit: {name: base, unit: DAY, requests_per_unit: 100}
  - key: b
    rate_limit:
      name: special
      unit: DAY
      requests_per_unit: 1000
      replaces: [{name: base}, {name: other}]`},
		{"shadow_mode and detailed_metric", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "k", ShadowMode: true, DetailedMetric: true, RateLimit: limit(second, 1)},
		}}, `
domain: edge
descriptors:
  - key: k
    rate_limit: {unit: SECOND, requests_per_unit: 1}
    shadow_mode: true
    detailed_metric: true`},
		{"nested three levels", &cfgT{Domain: "messaging", Descriptors: []*descT{
			{Key: "message_type", Value: "marketing", Descriptors: []*descT{
				{Key: "to_number", Descriptors: []*descT{
					{Key: "hour", Value: "night", ShadowMode: true, RateLimit: limit(day, 5)},
				}},
			}},
		}}, `
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        descriptors:
          - key: hour
            value: night
            rate_limit: {unit: DAY, requests_per_unit: 5}
            shadow_mode: true`},
		{"strings that YAML would read as something else stay strings", &cfgT{Domain: "true", Descriptors: []*descT{
			{Key: "yes", Value: "123"},
			{Key: "null", Value: "~"},
			{Key: "k", Value: "10.*"},
			{Key: "k", Value: "a: b #c"},
			{Key: "on", Value: "0x1F"},
		}}, `
domain: "true"
descriptors:
  - {key: "yes", value: "123"}
  - {key: "null", value: "~"}
  - {key: k, value: "10.*"}
  - {key: k, value: "a: b #c"}
  - {key: "on", value: "0x1F"}`},
		{"an unset unit is left out, to be reported as missing", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "k", RateLimit: &polT{RequestsPerUnit: 3}},
		}}, `
domain: edge
descriptors:
  - key: k
    rate_limit: {requests_per_unit: 3}`},
		{"an enum number this client does not know is kept", &cfgT{Domain: "edge", Descriptors: []*descT{
			{Key: "k", RateLimit: limit(rlsconfv3.RateLimitUnit(9), 3)},
		}}, `
domain: edge
descriptors:
  - key: k
    rate_limit: {unit: "9", requests_per_unit: 3}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ToYAML(c.in)
			if err != nil {
				t.Fatal(err)
			}
			var gotDoc, wantDoc any
			if err := yaml.Unmarshal(got, &gotDoc); err != nil {
				t.Fatalf("generated YAML does not parse: %v\n%s", err, got)
			}
			if err := yaml.Unmarshal([]byte(c.want), &wantDoc); err != nil {
				t.Fatalf("bad test YAML: %v", err)
			}
			if !reflect.DeepEqual(gotDoc, wantDoc) {
				t.Errorf("got\n%s\nwant\n%s", got, strings.TrimSpace(c.want))
			}
		})
	}
}

// A RateLimitConfig compiles to the same limits as the YAML file written by hand for
// envoyproxy/ratelimit: same paths, units, rates, names, flags and replaces.
func TestCompileMatchesTheFileFormat(t *testing.T) {
	cfg := &cfgT{Name: "edge-config", Domain: "edge", Descriptors: []*descT{
		{Key: "remote_address", RateLimit: named("per-ip", limit(second, 10)), DetailedMetric: true},
		{Key: "path", Value: "/login", RateLimit: named("login", limit(minute, 5)), ShadowMode: true},
		{Key: "path", Value: "/admin*", RateLimit: replacing(named("admin", limit(hour, 50)), "login")},
		{Key: "tenant", Value: "internal", RateLimit: &polT{Unlimited: true}},
		{Key: "tenant", Value: "banned", RateLimit: named("banned", limit(second, 0))}, // blocks, as upstream reads it
		{Key: "tenant", Descriptors: []*descT{
			{Key: "user", RateLimit: named("per-user", limit(day, 1000))},
		}},
	}}
	file := `
domain: edge
descriptors:
  - key: remote_address
    detailed_metric: true
    rate_limit: {name: per-ip, unit: second, requests_per_unit: 10}
  - key: path
    value: /login
    shadow_mode: true
    rate_limit: {name: login, unit: minute, requests_per_unit: 5}
  - key: path
    value: /admin*
    rate_limit: {name: admin, unit: hour, requests_per_unit: 50, replaces: [{name: login}]}
  - key: tenant
    value: internal
    rate_limit: {unlimited: true}
  - key: tenant
    value: banned
    rate_limit: {name: banned, unit: second, requests_per_unit: 0}
  - key: tenant
    descriptors:
      - key: user
        rate_limit: {name: per-user, unit: day, requests_per_unit: 1000}
`
	fromXDS, err := Compile([]*anypb.Any{mustAny(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := descriptors.Parse("edge.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	got, want := fromXDS.Limits("edge"), fromFile.Limits("edge")
	if len(got) != len(want) || len(got) != 6 {
		t.Fatalf("%d limits from xDS, %d from the file, want 6 each", len(got), len(want))
	}
	for i := range got {
		g, w := *got[i], *want[i]
		if g.File != "xds:edge-config" {
			t.Errorf("limit %d: File %q, want xds:edge-config", i, g.File)
		}
		g.File, w.File, g.Line, w.Line = "", "", 0, 0 // where it came from differs, nothing else
		if !reflect.DeepEqual(g, w) {
			t.Errorf("limit %d:\nfrom xDS  %+v\nfrom file %+v", i, g, w)
		}
	}
}

// The same resources in another order compile to the same rule set (same hash), so a
// server that reorders them does not look like a change.
func TestCompileIgnoresResourceOrder(t *testing.T) {
	a := mustAny(t, &cfgT{Name: "a", Domain: "one", Descriptors: []*descT{{Key: "k", RateLimit: limit(second, 1)}}})
	b := mustAny(t, &cfgT{Name: "b", Domain: "two", Descriptors: []*descT{{Key: "k", RateLimit: limit(second, 2)}}})
	ab, err := Compile([]*anypb.Any{a, b})
	if err != nil {
		t.Fatal(err)
	}
	ba, err := Compile([]*anypb.Any{b, a})
	if err != nil {
		t.Fatal(err)
	}
	if ab.Hash() != ba.Hash() {
		t.Fatalf("hash depends on order: %s vs %s", ab.Hash(), ba.Hash())
	}
	if got := ab.Domains(); !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Fatalf("domains %v", got)
	}
}

// An empty response is a valid state of the world: no rules (every request OK).
func TestCompileEmpty(t *testing.T) {
	rs, err := Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs == nil || len(rs.Domains()) != 0 {
		t.Fatalf("rules %v, want an empty rule set", rs.Summary())
	}
}

// A resource within the xDS message bound compiles whatever the size of the YAML it
// is turned into: the 4 MiB bound on a rule file does not apply (the YAML is about
// twice the proto; Envoy Gateway's rules for ~8,400 routes passed 4 MiB of it).
func TestCompileLargeResource(t *testing.T) {
	cfg := &cfgT{Name: "eg/https", Domain: "envoy-gateway"}
	for i := range 30_000 {
		cfg.Descriptors = append(cfg.Descriptors, &descT{Key: "route", Value: fmt.Sprintf("httproute/default/r%05d/rule/0/match/0/%s", i, strings.Repeat("x", 60)),
			RateLimit: limit(minute, 10)})
	}
	res := mustAny(t, cfg)
	if proto.Size(res) > DefaultMaxMessageBytes {
		t.Fatalf("the resource is %d bytes, past the message bound: the test would not show the point", proto.Size(res))
	}
	data, err := ToYAML(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) <= descriptors.MaxFileSize {
		t.Fatalf("the YAML is %d bytes, within a file's bound: the test would not show the point", len(data))
	}
	rs, err := Compile([]*anypb.Any{res})
	if err != nil {
		t.Fatalf("%d bytes of resource, %d of YAML: %v", proto.Size(res), len(data), err)
	}
	if n := rs.LimitCount(); n != 30_000 {
		t.Errorf("%d limits, want 30,000", n)
	}
}

// A resource wrapped in discovery.v3.Resource (go-control-plane wraps resources that
// have a TTL) is unwrapped; a wrapper without a resource (a TTL heartbeat) is refused.
func TestCompileUnwrapsResources(t *testing.T) {
	inner := mustAny(t, &cfgT{Name: "w", Domain: "wrapped", Descriptors: []*descT{{Key: "k", RateLimit: limit(second, 1)}}})
	rs, err := Compile([]*anypb.Any{mustAny(t, &discoveryv3.Resource{Name: "w", Resource: inner})})
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Domains(); !reflect.DeepEqual(got, []string{"wrapped"}) {
		t.Fatalf("domains %v", got)
	}
	_, err = Compile([]*anypb.Any{mustAny(t, &discoveryv3.Resource{Name: "w"})})
	if err == nil || !strings.Contains(err.Error(), "heartbeat") {
		t.Fatalf("heartbeat: %v", err)
	}
}

var lineNumber = regexp.MustCompile(`xds:[^:\s]*:\d+:|\bline \d`)

// Broken resources are errors naming the resource and the field, with no line numbers
// (they would count lines of a document nobody sees).
func TestCompileErrors(t *testing.T) {
	deep := &descT{Key: "last", RateLimit: limit(second, 1)}
	for i := descriptors.MaxDepth; i >= 1; i-- { // MaxDepth+1 levels
		deep = &descT{Key: "k", Descriptors: []*descT{deep}}
	}
	cases := []struct {
		name string
		in   []*anypb.Any
		want []string // substrings of the error
	}{
		{"no unit", []*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
			{Key: "k", RateLimit: &polT{RequestsPerUnit: 3}}}})},
			[]string{"xds:r1: descriptors[0].rate_limit.unit: missing"}},
		{"unknown unit number", []*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
			{Key: "k", RateLimit: limit(rlsconfv3.RateLimitUnit(9), 1)}}})},
			[]string{"xds:r1: descriptors[0].rate_limit.unit", `"9"`}},
		{"duplicate descriptor", []*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
			{Key: "k", Value: "v", RateLimit: limit(second, 1)}, {Key: "k", Value: "v", RateLimit: limit(second, 2)}}})},
			[]string{"xds:r1: descriptors[1]", "duplicate", "(first at descriptors[0])"}},
		{"duplicate nested descriptor", []*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
			{Key: "a", RateLimit: limit(second, 1)},
			{Key: "b", Descriptors: []*descT{{Key: "x", RateLimit: limit(second, 1)}, {Key: "k", RateLimit: limit(second, 1)}, {Key: "k", RateLimit: limit(second, 2)}}}}})},
			[]string{"xds:r1: descriptors[1].descriptors[2]", "duplicate", "(first at descriptors[1].descriptors[1])"}},
		{"no domain", []*anypb.Any{mustAny(t, &cfgT{Name: "r1"})},
			[]string{"xds:r1: domain"}},
		{"one domain in two resources", []*anypb.Any{
			mustAny(t, &cfgT{Name: "first", Domain: "d"}), mustAny(t, &cfgT{Name: "second", Domain: "d"})},
			[]string{"xds:second: domain", `duplicate domain "d"`, "xds:first"}},
		{"two resources with one name", []*anypb.Any{
			mustAny(t, &cfgT{Name: "same", Domain: "a"}), mustAny(t, &cfgT{Name: "same", Domain: "b"})},
			[]string{"resources 0 and 1", `"same"`}},
		{"nested too deep", []*anypb.Any{mustAny(t, &cfgT{Name: "deep", Domain: "d", Descriptors: []*descT{deep}})},
			[]string{"xds:deep:", fmt.Sprintf("deeper than %d", descriptors.MaxDepth)}},
		{"a resource of another type", []*anypb.Any{mustAny(t, &discoveryv3.DiscoveryRequest{})},
			[]string{"resource 0", "DiscoveryRequest", TypeURL}},
		{"undecodable bytes", []*anypb.Any{{TypeUrl: TypeURL, Value: []byte{0xff, 0xff}}},
			[]string{"resource 0", "decoding RateLimitConfig"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Compile(c.in)
			if err == nil {
				t.Fatalf("compiled: %s", rs.Summary())
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if lineNumber.MatchString(err.Error()) {
				t.Errorf("error %q cites a line of the generated document", err)
			}
		})
	}
}

// The warnings of rules from xDS locate what they warn of by field path, as its errors
// do, not by lines of the generated document: a replaces naming no limit, and a bare
// key that a "*" entry before it hides; and its limits carry no line.
func TestCompileWarningsCiteNoLines(t *testing.T) {
	rs, err := Compile([]*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
		{Key: "x", RateLimit: limit(second, 1)},
		{Key: "k", Value: "*", RateLimit: limit(second, 1)},
		{Key: "k", RateLimit: &polT{Unit: second, RequestsPerUnit: 2,
			Replaces: []*rlsconfv3.RateLimitReplace{{Name: "nothing"}}}},
	}})})
	if err != nil {
		t.Fatal(err)
	}
	ws, total := rs.Warnings()
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	text := strings.Join(got, "\n")
	if total != 2 || !strings.Contains(text, `xds:r1: descriptors[2]`) || !strings.Contains(text, `"*" at descriptors[1] matches`) ||
		!strings.Contains(text, `no limit named "nothing"`) {
		t.Errorf("%d warnings:\n%s\nwant the hidden entry at descriptors[2], hidden by descriptors[1], and the replaces naming nothing", total, text)
	}
	if lineNumber.MatchString(text) || strings.Contains(text, "line ") {
		t.Errorf("warnings cite lines of the generated document:\n%s", text)
	}
	// Nor do messages that name a limit by where it is written (the month refusal,
	// the request-bound warnings): its file is the resource, without a line.
	for _, l := range rs.Limits("d") {
		if l.File != "xds:r1" || l.Line != 0 {
			t.Errorf("limit %s is at %s:%d, want xds:r1 and no line", l.ID, l.File, l.Line)
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 100) // two bytes each
	got := truncate(long, 51)
	if len(got) > 51 || !strings.HasSuffix(got, "(truncated)") {
		t.Fatalf("truncate: %q (%d bytes)", got, len(got))
	}
	if !utf8Valid(got) {
		t.Fatalf("truncate cut a rune: %q", got)
	}
	if got := truncate("short", 51); got != "short" {
		t.Fatalf("truncate short: %q", got)
	}
	if got := truncate("bad \xff byte", 51); !utf8Valid(got) {
		t.Fatalf("invalid UTF-8 kept: %q", got)
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "") == s }

// What the current RateLimitConfig proto adds over the module this project builds
// with, and Envoy Gateway sends: the units MONTH (5), YEAR (6) and WEEK (7), and the
// descriptor's quota_mode (field 7), which arrives as an unknown field.
func TestCompileNewerProtoFields(t *testing.T) {
	quota := &descT{Key: "tenant", RateLimit: limit(minute, 3)}
	quota.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 7, protowire.VarintType), 1))
	cfg := &cfgT{Name: "eg", Domain: "eg", Descriptors: []*descT{
		{Key: "m", RateLimit: limit(rlsconfv3.RateLimitUnit(5), 100)},
		{Key: "y", RateLimit: limit(rlsconfv3.RateLimitUnit(6), 1000)},
		{Key: "w", RateLimit: limit(rlsconfv3.RateLimitUnit(7), 10)},
		quota,
	}}
	rs, err := Compile([]*anypb.Any{mustAny(t, cfg)})
	if err != nil {
		t.Fatal(err)
	}
	day := int64(86_400_000)
	for key, want := range map[string]int64{"m": 30 * day, "y": 365 * day, "w": 7 * day} {
		if ls := rs.Match("eg", []descriptors.Entry{{Key: key, Value: "x"}}); len(ls) != 1 || ls[0].Params.PeriodMs != want {
			t.Errorf("unit of %s: %+v, want a window of %d ms", key, ls, want)
		}
	}
	if ls := rs.Match("eg", []descriptors.Entry{{Key: "tenant", Value: "x"}}); len(ls) != 1 || !ls[0].Quota {
		t.Errorf("quota_mode from the newer proto's field 7 was dropped: %+v", ls)
	}
}

// Every compiler message that points at another definition names it by field path in
// rules from xDS, whatever its wording: the reference is a structured field of the
// problem (descriptors.Ref), not "at line N" found in the text. Duplicate and hidden
// entries come from RateLimitConfigs; a field or a metadata key given twice cannot (the
// generated document writes each field once and has no metadata), so those two go
// through the same rewriting from a hand-written document.
func TestReferencesNameThePath(t *testing.T) {
	const head = "domain: d\ndescriptors:\n  - key: k\n"
	fromDocument := func(t *testing.T, src string) string {
		t.Helper()
		_, err := descriptors.Compile(descriptors.File{Name: "xds:r1", Data: []byte(src)})
		if err == nil {
			t.Fatal("compiled")
		}
		return withoutLines(err).Error()
	}
	fromResource := func(t *testing.T, ds ...*descT) string {
		t.Helper()
		rs, err := Compile([]*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: ds})})
		if err != nil {
			return err.Error()
		}
		ws, _ := rs.Warnings()
		if len(ws) != 1 {
			t.Fatalf("%d warnings, want 1: %v", len(ws), ws)
		}
		return ws[0].Error()
	}
	tests := []struct {
		name, got, want string
	}{
		{"duplicate entry", fromResource(t, &descT{Key: "a", RateLimit: limit(second, 1)},
			&descT{Key: "b", Descriptors: []*descT{{Key: "k", RateLimit: limit(second, 1)}, {Key: "k", RateLimit: limit(second, 2)}}}),
			`xds:r1: descriptors[1].descriptors[1]: duplicate entry key "k" without value (first at descriptors[1].descriptors[0])`},
		{"the same pattern written another way", fromResource(t, &descT{Key: "k", Value: "a*", RateLimit: limit(second, 1)}, &descT{Key: "k", Value: "a**", RateLimit: limit(second, 2)}),
			`xds:r1: descriptors[1]: duplicate entry key "k" value "a**": it matches the same values as "a*" at descriptors[0] (a run of '*' matches what one '*' does)`},
		{"hidden by a star", fromResource(t, &descT{Key: "k", Value: "*", RateLimit: limit(second, 1)}, &descT{Key: "k", Value: "b*", RateLimit: limit(second, 2)}),
			`xds:r1: descriptors[1]: key "k" value "b*" never matches: the value pattern "*" at descriptors[0] matches every value first`},
		{"field given twice", fromDocument(t, head+"    key: j\n"),
			`xds:r1: descriptors[0].key: field given twice (first at descriptors[0].key)`},
		{"metadata key given twice", fromDocument(t, head+"    metadata: {a: 1, a: 2}\n"),
			`xds:r1: descriptors[0].metadata.a: key given twice (first at descriptors[0].metadata.a)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got  %s\nwant %s", tt.got, tt.want)
			}
		})
	}
}

// A tab in a descriptor value (one Envoy can take from a request header) compiles from
// xDS as it loads from a file; other control characters are refused in both.
func TestCompileTabInAValue(t *testing.T) {
	rs, err := Compile([]*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
		{Key: "k", Value: "a\tb", RateLimit: limit(second, 1)}}})})
	if err != nil {
		t.Fatal(err)
	}
	if ls := rs.Match("d", []descriptors.Entry{{Key: "k", Value: "a\tb"}}); len(ls) != 1 {
		t.Errorf("k=\"a\\tb\" matched %d limits, want 1", len(ls))
	}
	_, err = Compile([]*anypb.Any{mustAny(t, &cfgT{Name: "r1", Domain: "d", Descriptors: []*descT{
		{Key: "k", Value: "a\nb", RateLimit: limit(second, 1)}}})})
	if err == nil || !strings.Contains(err.Error(), "xds:r1: descriptors[0].value: contains control character U+000A") {
		t.Errorf("a newline in a value: %v", err)
	}
}
