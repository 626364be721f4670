package descriptors

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// rulesForExtAuthz are the limits the ext_authz sections below are checked against.
const rulesForExtAuthz = `domain: d
descriptors:
  - key: remote_address
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: masked_remote_address
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: api_key
    rate_limit: {unit: minute, requests_per_unit: 5}
  - key: generic_key
    value: llm
    descriptors:
      - key: tenant
        rate_limit: {unit: minute, requests_per_unit: 5}
  - key: header_match
    value: "wr*"
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: path
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: route
    value: api
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: method
    descriptors:
      - key: host
        descriptors:
          - key: principal
            rate_limit: {unit: second, requests_per_unit: 5}
  - key: tenant
    rate_limit: {unit: second, requests_per_unit: 5}
  - key: t
    rate_limit: {unit: second, requests_per_unit: 5}
`

func TestExtAuthzEverySource(t *testing.T) {
	rs := mustParse(t, rulesForExtAuthz+lines(
		"ext_authz:",                    // 32
		"  descriptors:",                // 33
		"    - when:",                   // 34
		"        path: {prefix: /api/}", // 35
		"        headers:",              // 36
		"          - {name: X-Env, exact: prod, ignore_case: true}",
		"          - {name: x-debug, present: false}",
		"      entries:",
		"        - remote_address: {}",
		"    - entries:",
		"        - masked_remote_address: {v4_prefix_mask_len: 24, v6_prefix_mask_len: 64, xff_num_trusted_hops: 2}",
		"    - entries:",
		"        - request_headers: {header_name: X-API-Key, descriptor_key: api_key}",
		"    - entries:",
		"        - generic_key: {descriptor_value: llm}",
		"        - request_headers: {header_name: x-tenant, descriptor_key: tenant, skip_if_absent: true}",
		"      hits_addend: {request_header: X-Cost}",
		"    - entries:",
		"        - header_value_match:",
		"            descriptor_value: write",
		"            expect_match: false",
		"            headers: [{name: ':method', one_of: [GET, HEAD], invert: false}]",
		"    - entries:",
		"        - path: {}",
		"      hits_addend: {number: 0}",
		"    - entries:",
		"        - path: {descriptor_key: route, descriptor_value: api, regex: '/api/v[0-9]+/.*'}",
		"    - entries:",
		"        - method:",
		"        - host: {}",
		"        - principal: {}",
		"    - entries:",
		"        - context_extension: {key: tenant}",
		"    - entries:",
		"        - context_extension: {key: tenant_id, descriptor_key: t}",
	))
	x := rs.ExtAuthz("d")
	if x == nil {
		t.Fatal("no ext_authz section")
	}
	if x.Domain != "d" || x.File != "t.yaml" || x.Line != 33 || len(x.Descriptors) != 10 {
		t.Fatalf("section: %+v", x)
	}
	d0 := x.Descriptors[0]
	if d0.Field != "ext_authz.descriptors[0]" || d0.Line != 34 {
		t.Errorf("descriptor 0: field %q line %d", d0.Field, d0.Line)
	}
	if d0.When.Path.String() != `prefix "/api/"` || len(d0.When.Headers) != 2 ||
		d0.When.Headers[0].String() != `x-env exact "prod" ignore_case` || d0.When.Headers[1].String() != "x-debug absent" {
		t.Errorf("descriptor 0 condition: path %v headers %v", d0.When.Path, d0.When.Headers)
	}
	want := []string{
		"remote_address=<remote_address>",
		"masked_remote_address=<masked_remote_address xff_num_trusted_hops=2 /24 /64>",
		"api_key=<request_headers x-api-key>",
		"generic_key=llm | tenant=<request_headers x-tenant skip_if_absent>",
		`header_match=write unless :method one_of ["GET", "HEAD"]`,
		"path=<path>",
		`route=api if path regex "/api/v[0-9]+/.*"`,
		"method=<method> | host=<host> | principal=<principal>",
		`tenant=<context_extension "tenant">`,
		`t=<context_extension "tenant_id">`,
	}
	for i, d := range x.Descriptors {
		var parts []string
		for _, s := range d.Entries {
			parts = append(parts, s.String())
		}
		if got := strings.Join(parts, " | "); got != want[i] {
			t.Errorf("descriptor %d: %s\n   want %s", i, got, want[i])
		}
	}
	if c := x.Descriptors[3].Cost; c == nil || c.Header != "x-cost" {
		t.Errorf("descriptor 3 cost: %+v", c)
	}
	if c := x.Descriptors[5].Cost; c == nil || c.Header != "" || c.Number != 0 {
		t.Errorf("descriptor 5 cost: %+v", c)
	}
	if x.Descriptors[0].Cost != nil {
		t.Error("descriptor 0 has a cost")
	}
	hv := x.Descriptors[4].Entries[0]
	if hv.ExpectMatch || hv.DescriptorKey != "header_match" {
		t.Errorf("header_value_match: %+v", hv)
	}
	if m := x.Descriptors[1].Entries[0]; !m.UseXFF || m.XFFTrustedHops != 2 || m.V4Prefix != 24 || m.V6Prefix != 64 {
		t.Errorf("masked_remote_address: %+v", m)
	}
	// The dump shows the section.
	js, err := json.Marshal(rs.Dump())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"hits_addend":"header x-cost"`) || !strings.Contains(string(js), `"when":["path prefix \"/api/\""`) {
		t.Errorf("dump lacks the ext_authz section: %s", js)
	}
}

func TestExtAuthzDefaults(t *testing.T) {
	rs := mustParse(t, rulesForExtAuthz+lines(
		"ext_authz:",
		"  descriptors:",
		"    - entries: [{masked_remote_address: {}}]",
		"    - entries: [{header_value_match: {descriptor_value: write, headers: [{name: x, present: true}]}}]",
		"    - entries: [{remote_address: {xff_num_trusted_hops: 0}}]",
	))
	x := rs.ExtAuthz("d")
	m := x.Descriptors[0].Entries[0]
	if m.V4Prefix != 32 || m.V6Prefix != 128 || m.UseXFF || m.DescriptorKey != "masked_remote_address" {
		t.Errorf("masked defaults: %+v", m)
	}
	if hv := x.Descriptors[1].Entries[0]; !hv.ExpectMatch {
		t.Error("expect_match does not default to true")
	}
	if r := x.Descriptors[2].Entries[0]; !r.UseXFF || r.XFFTrustedHops != 0 {
		t.Errorf("xff_num_trusted_hops: 0 must read the last X-Forwarded-For entry: %+v", r)
	}
	if x.Descriptors[0].When.Path != nil || x.Descriptors[0].When.Headers != nil {
		t.Error("an absent when must always hold")
	}
}

func TestExtAuthzAbsent(t *testing.T) {
	rs := mustParse(t, rulesForExtAuthz)
	if rs.ExtAuthz("d") != nil || rs.ExtAuthz("other") != nil {
		t.Error("ExtAuthz without a section")
	}
	var nilRS *RuleSet
	if nilRS.ExtAuthz("d") != nil {
		t.Error("nil RuleSet")
	}
}

func TestExtAuthzInTheExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../config/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse("edge.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	if x := rs.ExtAuthz("edge"); x == nil || len(x.Descriptors) == 0 {
		t.Fatal("config/edge.yaml has no ext_authz section")
	}
}

func TestExtAuthzErrors(t *testing.T) {
	const head = "domain: d\ndescriptors:\n  - {key: k, rate_limit: {unit: second, requests_per_unit: 1}}\n  - {key: generic_key, value: c, rate_limit: {unit: second, requests_per_unit: 1}}\n"
	// The section starts at line 5.
	sec := func(ls ...string) string { return head + "ext_authz:\n" + lines(ls...) }
	one := func(entry string) string { // one descriptor, its entry at line 8
		return sec("  descriptors:", "    - entries:", "        - "+entry)
	}
	cases := []struct {
		name, src, want string
	}{
		{"null section", head + "ext_authz:\n", "t.yaml:5: ext_authz: empty; want a mapping with descriptors (or drop the key)"},
		{"not a mapping", head + "ext_authz: [a]\n", "t.yaml:5: ext_authz: want a mapping, got a list"},
		{"unknown field", sec("  descriptor: []"), "t.yaml:6: ext_authz.descriptor: unknown field (want descriptors)"},
		{"no descriptors", sec("  {}"), "t.yaml:6: ext_authz.descriptors: missing; want at least one descriptor"},
		{"empty descriptors", sec("  descriptors: []"), "t.yaml:6: ext_authz.descriptors: empty list; want at least one descriptor"},
		{"descriptors not a list", sec("  descriptors: {}"), "t.yaml:6: ext_authz.descriptors: want a list, got a mapping"},
		{"unknown descriptor field", sec("  descriptors:", "    - {entries: [{generic_key: {descriptor_value: c}}], cost: 1}"),
			"t.yaml:7: ext_authz.descriptors[0].cost: unknown field (want when, entries, hits_addend)"},
		{"no entries", sec("  descriptors:", "    - when: {path: {exact: /}}"),
			"t.yaml:7: ext_authz.descriptors[0].entries: missing; want at least one entry"},
		{"empty entries", sec("  descriptors:", "    - entries: []"),
			"t.yaml:7: ext_authz.descriptors[0].entries: empty list; want at least one entry"},
		{"too many entries", sec("  descriptors:", "    - entries: ["+strings.Repeat("{method: {}}, ", MaxDepth)+"{method: {}}]"),
			fmt.Sprintf("t.yaml:7: ext_authz.descriptors[0].entries: %d entries; rules nest at most %d levels, so a longer descriptor matches nothing", MaxDepth+1, MaxDepth)},
		{"unknown source", one("remote_adress: {}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].remote_adress: unknown field (want remote_address, masked_remote_address, request_headers, generic_key, header_value_match, path, method, host, principal, context_extension)"},
		{"empty entry", one("{}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0]: empty; want one of remote_address, masked_remote_address, request_headers, generic_key, header_value_match, path, method, host, principal, context_extension"},
		{"two sources in one entry", one("{method: {}, host: {}}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0]: method and host in one entry; give each entry its own list item"},
		{"unknown source field", one("remote_address: {mask: 24}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].remote_address.mask: unknown field (want descriptor_key, xff_num_trusted_hops)"},
		{"negative hops", one("remote_address: {xff_num_trusted_hops: -1}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].remote_address.xff_num_trusted_hops: must be at least 0, got -1"},
		{"too many hops", one("remote_address: {xff_num_trusted_hops: 65}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].remote_address.xff_num_trusted_hops: must be at most 64, got 65"},
		{"v4 mask too long", one("masked_remote_address: {v4_prefix_mask_len: 33}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].masked_remote_address.v4_prefix_mask_len: must be at most 32, got 33"},
		{"v6 mask not a number", one("masked_remote_address: {v6_prefix_mask_len: '64'}"),
			`t.yaml:8: ext_authz.descriptors[0].entries[0].masked_remote_address.v6_prefix_mask_len: want a whole number, got the string "64"`},
		{"header without descriptor_key", one("request_headers: {header_name: x-k}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.descriptor_key: missing (Envoy's request_headers action requires it too)"},
		{"header without name", one("request_headers: {descriptor_key: k}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.header_name: missing"},
		{"bad header name", one("request_headers: {header_name: 'x key', descriptor_key: k}"),
			`t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.header_name: "x key" is not a header name (byte ' ' is not allowed)`},
		{"empty pseudo header", one("request_headers: {header_name: ':', descriptor_key: k}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.header_name: empty header name"},
		{"skip_if_absent not a bool", one("request_headers: {header_name: x, descriptor_key: k, skip_if_absent: maybe}"),
			`t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.skip_if_absent: want true or false, got the string "maybe"`},
		{"generic_key without value", one("generic_key: {}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].generic_key.descriptor_value: missing"},
		{"empty descriptor_value", one("generic_key: {descriptor_value: ''}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].generic_key.descriptor_value: empty"},
		{"control character in key", one(`generic_key: {descriptor_value: c, descriptor_key: "a\tb"}`),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].generic_key.descriptor_key: contains control character U+0009"},
		{"header_value_match without headers", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers: missing; want at least one header condition"},
		{"header_value_match with empty headers", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: []}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers: empty list; want at least one header condition"},
		{"header matcher without match", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0]: want a match (one of exact, prefix, suffix, contains, regex, pattern, one_of) or present"},
		{"header matcher with two matches", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x, exact: a, prefix: b}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].prefix: exact and prefix are exclusive; give one match"},
		{"present with a match", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x, present: true, exact: a}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].exact: present and exact are exclusive"},
		{"bad regex", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x, regex: 'a('}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].regex: bad regular expression: missing closing ): `a(`"},
		{"empty one_of", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x, one_of: []}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].one_of: empty list; want at least one value"},
		{"one_of with a list", one("header_value_match: {descriptor_value: c, descriptor_key: generic_key, headers: [{name: x, one_of: [[a]]}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].one_of[0]: want a string, got a list"},
		{"empty prefix", one("path: {descriptor_key: k, prefix: ''}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].path.prefix: empty prefix matches everything; drop the condition instead"},
		{"ignore_case alone", one("path: {descriptor_key: k, ignore_case: true}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].path.ignore_case: ignore_case without a match (want one of exact, prefix, suffix, contains, regex, pattern, one_of)"},
		{"context_extension without key", one("context_extension: {descriptor_key: k}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].context_extension.key: missing; name the context extension"},
		{"method with a value", one("method: {descriptor_value: GET}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].method.descriptor_value: unknown field (want descriptor_key)"},
		{"when path without match", sec("  descriptors:", "    - when: {path: {}}", "      entries: [{generic_key: {descriptor_value: c}}]"),
			"t.yaml:7: ext_authz.descriptors[0].when.path: want one of exact, prefix, suffix, contains, regex, pattern, one_of"},
		{"when unknown field", sec("  descriptors:", "    - when: {method: GET}", "      entries: [{generic_key: {descriptor_value: c}}]"),
			"t.yaml:7: ext_authz.descriptors[0].when.method: unknown field (want path, headers)"},
		{"hits_addend both", sec("  descriptors:", "    - entries: [{generic_key: {descriptor_value: c}}]", "      hits_addend: {number: 1, request_header: x}"),
			"t.yaml:8: ext_authz.descriptors[0].hits_addend.request_header: number and request_header are exclusive"},
		{"hits_addend empty", sec("  descriptors:", "    - entries: [{generic_key: {descriptor_value: c}}]", "      hits_addend: {}"),
			"t.yaml:8: ext_authz.descriptors[0].hits_addend: want number or request_header"},
		{"hits_addend too large", sec("  descriptors:", "    - entries: [{generic_key: {descriptor_value: c}}]", "      hits_addend: {number: 4294967296}"),
			"t.yaml:8: ext_authz.descriptors[0].hits_addend.number: must be at most 4294967295, got 4294967296"},
		{"hits_addend negative", sec("  descriptors:", "    - entries: [{generic_key: {descriptor_value: c}}]", "      hits_addend: {number: -1}"),
			"t.yaml:8: ext_authz.descriptors[0].hits_addend.number: must be at least 0, got -1"},
		{"unreachable key", one("request_headers: {header_name: x-api-key, descriptor_key: apikey}"),
			`t.yaml:7: ext_authz.descriptors[0]: the descriptor [apikey=<request_headers>] matches no limit of domain "d"; check the descriptor keys against the rules' keys and nesting`},
		{"unreachable constant", one("generic_key: {descriptor_value: other}"),
			`t.yaml:7: ext_authz.descriptors[0]: the descriptor [generic_key=other] matches no limit of domain "d"; check the descriptor keys against the rules' keys and nesting`},
		// A merge key is refused on its own: the fields it would bring are not also
		// reported missing.
		{"merge key bringing descriptor_key", one("request_headers: {header_name: x-api-key, <<: {descriptor_key: k}}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].request_headers.<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"},
		{"merge key bringing descriptor_value", one("generic_key: {<<: {descriptor_value: c}}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].generic_key.<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"},
		{"merge key bringing a context extension's key", one("context_extension: {<<: {key: tenant}}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].context_extension.<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"},
		{"merge key bringing a header match", one("header_value_match: {descriptor_value: c, headers: [{name: x, <<: {exact: y}}]}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].header_value_match.headers[0].<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"},
		{"merge key bringing a path match", sec("  descriptors:", "    - when: {path: {<<: {exact: /}}}", "      entries: [{generic_key: {descriptor_value: c}}]"),
			"t.yaml:7: ext_authz.descriptors[0].when.path.<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"},
		{"every prefix length checked", one("masked_remote_address: {v4_prefix_mask_len: 40, v6_prefix_mask_len: 200}"),
			"t.yaml:8: ext_authz.descriptors[0].entries[0].masked_remote_address.v4_prefix_mask_len: must be at most 32, got 40\n" +
				"t.yaml:8: ext_authz.descriptors[0].entries[0].masked_remote_address.v6_prefix_mask_len: must be at most 128, got 200"},
		{"too deep for the rules", sec("  descriptors:", "    - entries: [{generic_key: {descriptor_value: c}}, {method: {}}]"),
			`t.yaml:7: ext_authz.descriptors[0]: the descriptor [generic_key=c, method=<method>] matches no limit of domain "d"; check the descriptor keys against the rules' keys and nesting`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.src))
			if err == nil {
				t.Fatalf("no error; want %s", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// An alias cannot multiply a huge list: the matcher lists are bounded.
func TestExtAuthzMatcherBounds(t *testing.T) {
	head := "domain: d\ndescriptors:\n  - {key: header_match, rate_limit: {unit: second, requests_per_unit: 1}}\next_authz:\n  descriptors:\n"
	var vals []string
	for i := range 1025 {
		vals = append(vals, fmt.Sprint("v", i))
	}
	_, err := Parse("t.yaml", []byte(head+"    - entries: [{header_value_match: {descriptor_value: w, headers: [{name: x, one_of: ["+strings.Join(vals, ", ")+"]}]}}]\n"))
	if err == nil || !strings.Contains(err.Error(), "one_of: 1025 values; at most 1024 (use a pattern or regex)") {
		t.Errorf("one_of bound: %v", err)
	}
	conds := strings.Repeat("{name: x, present: true}, ", 33)
	_, err = Parse("t.yaml", []byte(head+"    - entries: [{header_value_match: {descriptor_value: w, headers: ["+strings.TrimSuffix(conds, ", ")+"]}}]\n"))
	if err == nil || !strings.Contains(err.Error(), "headers: 33 header conditions; at most 32") {
		t.Errorf("header conditions bound: %v", err)
	}
}

func TestExtAuthzTooManyDescriptors(t *testing.T) {
	src := "domain: d\ndescriptors:\n  - {key: method, rate_limit: {unit: second, requests_per_unit: 1}}\next_authz:\n  descriptors:\n" +
		strings.Repeat("    - entries: [{method: {}}]\n", MaxExtAuthzDescriptors+1)
	_, err := Parse("t.yaml", []byte(src))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:6: ext_authz.descriptors: 65 descriptors; at most 64") {
		t.Fatalf("error: %v", err)
	}
}

// Reachability follows patterns, bare keys and nesting, and leaves descriptors whose
// shape varies (skip_if_absent) alone.
func TestExtAuthzReachable(t *testing.T) {
	mustParse(t, rulesForExtAuthz+lines(
		"ext_authz:",
		"  descriptors:",
		"    - entries: [{header_value_match: {descriptor_value: write, headers: [{name: ':method', exact: POST}]}}]", // pattern wr*
		"    - entries: [{generic_key: {descriptor_value: llm}}, {request_headers: {header_name: x-t, descriptor_key: tenant}}]",
		"    - entries: [{generic_key: {descriptor_value: llm}}, {request_headers: {header_name: x-t, descriptor_key: nope, skip_if_absent: true}}]",
	))
	// An errorful file still reports ext_authz problems, without a domain to check against.
	_, err := Parse("t.yaml", []byte("descriptors: []\next_authz: {descriptors: [{entries: [{bogus: {}}]}]}\n"))
	if err == nil || !strings.Contains(err.Error(), "ext_authz.descriptors[0].entries[0].bogus: unknown field") {
		t.Fatalf("error: %v", err)
	}
}

func TestStringMatcher(t *testing.T) {
	rs := mustParse(t, rulesForExtAuthz+lines(
		"ext_authz:",
		"  descriptors:",
		"    - when:",
		"        headers:",
		"          - {name: a, exact: Abc}",
		"          - {name: a, exact: Abc, ignore_case: true}",
		"          - {name: a, prefix: /api}",
		"          - {name: a, suffix: .json}",
		"          - {name: a, contains: mid}",
		"          - {name: a, regex: 'v[0-9]+'}",
		"          - {name: a, regex: 'V[0-9]+', ignore_case: true}",
		"          - {name: a, pattern: 'premium-*'}",
		"          - {name: a, pattern: 'PREMIUM-*', ignore_case: true}",
		"          - {name: a, one_of: [GET, HEAD]}",
		"          - {name: a, one_of: [get], ignore_case: true}",
		"          - {name: a, exact: ''}",
		"          - {name: a, pattern: 'ünï*'}",
		"      entries: [{method: {}}, {host: {}}, {principal: {}}]",
	))
	hs := rs.ExtAuthz("d").Descriptors[0].When.Headers
	cases := []struct {
		i    int
		in   string
		want bool
	}{
		{0, "Abc", true}, {0, "abc", false},
		{1, "ABC", true}, {1, "abcd", false},
		{2, "/api/v1", true}, {2, "/ap", false},
		{3, "x.json", true}, {3, "x.jsonp", false},
		{4, "amidst", true}, {4, "mi", false},
		{5, "v12", true}, {5, "xv12", false}, {5, "v12x", false}, // anchored, as Envoy's safe_regex
		{6, "v1", true},
		{7, "premium-1", true}, {7, "Premium-1", false},
		{8, "premium-1", true},
		{9, "HEAD", true}, {9, "head", false}, {9, "", false},
		{10, "GET", true},
		{11, "", true}, {11, "x", false},
		{12, "ünïcode", true}, {12, "unicode", false},
	}
	for _, tc := range cases {
		if got := hs[tc.i].Match(tc.in, true); got != tc.want {
			t.Errorf("%s on %q: %v, want %v", hs[tc.i].String(), tc.in, got, tc.want)
		}
		if hs[tc.i].Match(tc.in, false) {
			t.Errorf("%s matched a missing header", hs[tc.i].String())
		}
	}
}

// Envoy's HeaderMatcher semantics: invert flips the result, a missing header never
// satisfies a value match (inverted or not), and presence checks see absence.
func TestHeaderMatcherPresenceAndInvert(t *testing.T) {
	exact := &HeaderMatcher{Name: "x", Value: &StringMatcher{kind: "exact", value: "a"}}
	inv := &HeaderMatcher{Name: "x", Value: &StringMatcher{kind: "exact", value: "a"}, Invert: true}
	present := &HeaderMatcher{Name: "x", Present: true}
	absent := &HeaderMatcher{Name: "x", Present: false}
	notPresent := &HeaderMatcher{Name: "x", Present: true, Invert: true}
	cases := []struct {
		h      *HeaderMatcher
		v      string
		ok     bool
		expect bool
	}{
		{exact, "a", true, true}, {exact, "b", true, false}, {exact, "", false, false},
		{inv, "a", true, false}, {inv, "b", true, true}, {inv, "", false, false},
		{present, "", true, true}, {present, "", false, false},
		{absent, "a", true, false}, {absent, "", false, true},
		{notPresent, "a", true, false}, {notPresent, "", false, true},
	}
	for _, tc := range cases {
		if got := tc.h.Match(tc.v, tc.ok); got != tc.expect {
			t.Errorf("%s on (%q, present=%v): %v, want %v", tc.h.String(), tc.v, tc.ok, got, tc.expect)
		}
	}
}
