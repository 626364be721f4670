package descriptors

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// parseErrors parses src as t.yaml and returns the error lines.
func parseErrors(t *testing.T, src string) []string {
	t.Helper()
	rs, err := Parse("t.yaml", []byte(src))
	if err == nil {
		t.Fatalf("no error; loaded %s", rs.Summary())
	}
	if rs != nil {
		t.Errorf("a RuleSet came back with the error")
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %T is not a *LoadError", err)
	}
	return strings.Split(err.Error(), "\n")
}

const (
	head = "domain: d\ndescriptors:\n  - key: k\n" // lines 1-3
	want = "(want second|minute|hour|day|week|month|year)"
)

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown unit", lines(
			"domain: d",
			"descriptors:",
			"  - key: k",
			"    rate_limit:",
			"      unit: seconds",
			"      requests_per_unit: 1",
		), []string{`t.yaml:5: descriptors[0].rate_limit.unit: unknown unit "seconds" ` + want}},
		{"missing unit and requests", head + lines(
			"    rate_limit:",
			"      name: x",
		), []string{
			"t.yaml:5: descriptors[0].rate_limit.unit: missing " + want,
			"t.yaml:5: descriptors[0].rate_limit.requests_per_unit: missing (to block every request write 0; for no limit, unlimited: true)",
		}},
		{"missing domain", lines(
			"descriptors: []",
		), []string{"t.yaml:1: domain: missing; every file needs a domain"}},
		{"empty domain", `domain: ""` + "\n", []string{"t.yaml:1: domain: empty"}},
		{"domain not a string", "domain: [a]\n", []string{"t.yaml:1: domain: want a string, got a list"}},
		{"unknown file field", "domain: d\ndescriptor: []\n", []string{
			"t.yaml:2: descriptor: unknown field (want domain, algorithm, descriptors, ext_authz, name)"}},
		{"unknown descriptor field", head + "    rate_limt: {}\n", []string{
			"t.yaml:4: descriptors[0].rate_limt: unknown field (want key, value, rate_limit, rate_limits, shadow_mode, quota_mode, detailed_metric, share_threshold, value_to_metric, metadata, replaces, descriptors, name)"}},
		{"unknown limit field", head + lines(
			"    rate_limit:",
			"      unit: second",
			"      requests_per_second: 1",
		), []string{
			"t.yaml:5: descriptors[0].rate_limit.requests_per_unit: missing (to block every request write 0; for no limit, unlimited: true)",
			"t.yaml:6: descriptors[0].rate_limit.requests_per_second: unknown field (want name, unit, unit_multiplier, requests_per_unit, algorithm, burst, buckets, unlimited, replaces)",
		}},
		{"quota_mode not a boolean", head + lines(
			"    quota_mode: soft",
		), []string{`t.yaml:4: descriptors[0].quota_mode: want true or false, got the string "soft"`}},
		{"metadata not a mapping", head + lines(
			"    metadata: service_1",
			"  - key: k2",
			"    metadata: [a, b]",
		), []string{
			`t.yaml:4: descriptors[0].metadata: want a mapping, got the string "service_1"`,
			`t.yaml:6: descriptors[1].metadata: want a mapping, got a list`,
		}},
		{"metadata keys and numbers", head + lines(
			"    metadata:",
			"      routing:",
			"        [a]: 1",
			"  - key: k2",
			"    metadata:",
			"      name: a",
			"      name: b",
			"  - key: k3",
			"    metadata: {weights: [1, .nan]}",
			"  - key: k4",
			"    metadata: {big: !!int 99999999999999999999}",
			"  - key: k5",
			"    metadata: {base: &b {x: 1}, <<: *b}",
		), []string{
			`t.yaml:6: descriptors[0].metadata.routing: metadata keys must be strings, got a list`,
			`t.yaml:10: descriptors[1].metadata.name: key given twice (first at line 9)`,
			`t.yaml:12: descriptors[2].metadata.weights[1]: want a finite number, got .nan`,
			`t.yaml:14: descriptors[3].metadata.big: number 99999999999999999999 is out of range`,
			`t.yaml:16: descriptors[4].metadata: YAML merge keys are not supported; repeat the fields or use an alias for the whole value`,
		}},
		{"value_to_metric not a boolean", head + lines(
			"    value_to_metric: 1",
		), []string{`t.yaml:4: descriptors[0].value_to_metric: want true or false, got 1`}},
		{"share_threshold without a pattern", lines(
			"domain: d",
			"descriptors:",
			"  - key: exact",
			"    value: v",
			"    share_threshold: true",
			"  - key: bare",
			"    share_threshold: yes",
			"  - key: off",
			"    value: v",
			"    share_threshold: false",
		), []string{
			`t.yaml:5: descriptors[0].share_threshold: needs a value pattern (with '*'): an exact value already has one counter, and a key without value counts each value on its own`,
			`t.yaml:7: descriptors[1].share_threshold: needs a value pattern (with '*'): an exact value already has one counter, and a key without value counts each value on its own`,
		}},
		{"share_threshold not a boolean", head + lines(
			"    value: 'a*'",
			"    share_threshold: [true]",
		), []string{`t.yaml:5: descriptors[0].share_threshold: want true or false, got a list`}},
		{"descriptor fields at the root and in ext_authz", lines(
			"domain: d",
			"detailed_metric: true",
			"ext_authz:",
			"  shadow_mode: true",
		), []string{
			`t.yaml:2: detailed_metric: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
			`t.yaml:4: ext_authz.shadow_mode: unknown field (want descriptors)`,
		}},
		{"descriptor fields inside a limit", head + lines(
			"    rate_limit:",
			"      unit: second",
			"      requests_per_unit: 1",
			"      share_threshold: true",
			"      shadow_mode: true",
			"      value_to_metric: true",
			"      metadata: {name: x}",
			"      quota_mode: true",
		), []string{
			`t.yaml:7: descriptors[0].rate_limit.share_threshold: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
			`t.yaml:8: descriptors[0].rate_limit.shadow_mode: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
			`t.yaml:9: descriptors[0].rate_limit.value_to_metric: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
			`t.yaml:10: descriptors[0].rate_limit.metadata: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
			`t.yaml:11: descriptors[0].rate_limit.quota_mode: belongs on the descriptor entry: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it up to get its effect`,
		}},
		{"limit fields on the descriptor entry", lines(
			"domain: d",
			"unit: second",
			"descriptors:",
			"  - key: user",
			"    unit: second",
			"    requests_per_unit: 5",
			"    unlimited: true",
		), []string{
			`t.yaml:2: unit: belongs inside rate_limit: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it into rate_limit to get its effect`,
			`t.yaml:5: descriptors[0].unit: belongs inside rate_limit: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it into rate_limit to get its effect`,
			`t.yaml:6: descriptors[0].requests_per_unit: belongs inside rate_limit: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it into rate_limit to get its effect`,
			`t.yaml:7: descriptors[0].unlimited: belongs inside rate_limit: envoyproxy/ratelimit ignores it here, so delete it to keep that behaviour, or move it into rate_limit to get its effect`,
		}},
		{"a limit field inside rate_limit, in the wrong mapping", head + lines(
			"    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: a, unit: second}]}",
		), []string{
			`t.yaml:4: descriptors[0].rate_limit.replaces[0].unit: unknown field (want name)`,
		}},
		{"field given twice", head + lines(
			"    key: k2",
		), []string{"t.yaml:4: descriptors[0].key: field given twice (first at line 3)"}},
		{"merge key", head + lines(
			"    <<: {value: v}",
		), []string{"t.yaml:4: descriptors[0].<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value"}},
		// The fields a merge key would bring are not reported missing as well.
		{"merge key bringing required fields", lines(
			"domain: d",
			"descriptors:",
			"  - <<: {key: k}",
			"    rate_limit:",
			"      <<: {unit: second, requests_per_unit: 1}",
		), []string{
			"t.yaml:3: descriptors[0].<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value",
			"t.yaml:5: descriptors[0].rate_limit.<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value",
		}},
		{"merge key bringing a replaces name", lines(
			"domain: d",
			"descriptors:",
			"  - key: k",
			"    rate_limit: {name: a, unit: second, requests_per_unit: 1}",
			"  - key: j",
			"    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{<<: {name: a}}]}",
		), []string{
			"t.yaml:6: descriptors[1].rate_limit.replaces[0].<<: YAML merge keys are not supported; repeat the fields or use an alias for the whole value",
		}},
		{"rate_limit and rate_limits", head + lines(
			"    rate_limit: {unit: second, requests_per_unit: 1}",
			"    rate_limits: [{unit: second, requests_per_unit: 1}]",
		), []string{"t.yaml:5: descriptors[0].rate_limits: rate_limit and rate_limits are exclusive; list every limit under rate_limits"}},
		{"duplicate exact sibling", lines(
			"domain: d",
			"descriptors:",
			"  - key: k",
			"    value: v",
			"  - key: other",
			"  - key: k",
			"    value: v",
		), []string{`t.yaml:6: descriptors[2]: duplicate entry key "k" value "v" (first at line 3)`}},
		{"duplicate bare sibling, nested", lines(
			"domain: d",
			"descriptors:",
			"  - key: a",
			"    descriptors:",
			"      - key: b",
			"      - {key: b}",
		), []string{`t.yaml:6: descriptors[0].descriptors[1]: duplicate entry key "b" without value (first at line 5)`}},
		// A run of '*' matches what one '*' does: "a**" is "a*" written another way,
		// which the message says rather than calling it the same value.
		{"duplicate pattern after normalization", lines(
			"domain: d",
			"descriptors:",
			"  - {key: k, value: 'a*'}",
			"  - {key: k, value: 'a**'}",
			"  - {key: k, value: '**b'}",
			"  - {key: k, value: '*b'}",
			"  - {key: k, value: '**b'}",
		), []string{
			`t.yaml:4: descriptors[1]: duplicate entry key "k" value "a**": it matches the same values as "a*" at line 3 (a run of '*' matches what one '*' does)`,
			`t.yaml:6: descriptors[3]: duplicate entry key "k" value "*b": it matches the same values as "**b" at line 5 (a run of '*' matches what one '*' does)`,
			`t.yaml:7: descriptors[4]: duplicate entry key "k" value "**b" (first at line 5)`,
		}},
		// A repeat through a YAML alias is reported where the alias is, not at its
		// anchor, and so is a first definition that is an alias.
		{"duplicate entry through an alias", lines(
			"domain: d",
			"descriptors:",
			"  - &x {key: k}",
			"  - key: j",
			"  - *x",
		), []string{`t.yaml:5: descriptors[2]: duplicate entry key "k" without value (first at line 3)`}},
		{"duplicate entry, both aliases", lines(
			"domain: d",
			"descriptors:",
			"  - key: a",
			"    descriptors:",
			"      - &x {key: k}",
			"  - key: b",
			"    descriptors:",
			"      - *x",
			"      - *x",
		), []string{`t.yaml:9: descriptors[1].descriptors[1]: duplicate entry key "k" without value (first at line 8)`}},
		{"field given twice through an alias", lines(
			"domain: d",
			"descriptors:",
			"  - &f key: k",
			"    *f : j",
		), []string{"t.yaml:4: descriptors[0].key: field given twice (first at line 3)"}},
		{"metadata key given twice through an alias", head + lines(
			"    metadata:",
			"      &a a: 1",
			"      *a : 2",
		), []string{"t.yaml:6: descriptors[0].metadata.a: key given twice (first at line 5)"}},
		// yaml.v3 reads a !!binary scalar as its base64 text, which would then be matched
		// as the value: rules are text, so it is refused wherever text is read.
		{"!!binary values", lines(
			"domain: !!binary ZA==",
			"descriptors:",
			"  - key: k",
			"    value: !!binary aGVsbG8=",
			"    rate_limit: {unit: second, requests_per_unit: 1}",
			"  - key: j",
			"    metadata: {a: !!binary aGVsbG8=}",
			"    rate_limit: {unit: !<tag:yaml.org,2002:binary> c2Vjb25k, requests_per_unit: 1}",
			"  - key: i",
			"    metadata: {!!binary YQ==: 1}",
		), []string{
			"t.yaml:1: domain: want a string, got !!binary data (rules are text: write it as a string)",
			"t.yaml:4: descriptors[0].value: want a string, got !!binary data (rules are text: write it as a string)",
			"t.yaml:7: descriptors[1].metadata.a: want text, a number, a boolean or null, got !!binary data (rules are text: write it as a string)",
			"t.yaml:8: descriptors[1].rate_limit.unit: want a string, got !!binary data (rules are text: write it as a string)",
			"t.yaml:10: descriptors[2].metadata: metadata keys must be strings, got !!binary data (rules are text: write it as a string)",
		}},
		{"replaces itself", lines(
			"domain: d",
			"descriptors:",
			"  - key: a",
			"    rate_limit:",
			"      name: me",
			"      unit: second",
			"      requests_per_unit: 1",
			"      replaces: [{name: me}]",
		), []string{`t.yaml:8: descriptors[0].rate_limit.replaces[0].name: names this limit's own name "me": it would replace itself (replaces removes every limit of that name)`}},
		// A null or empty limit list carries no replaces either.
		{"replaces beside a null rate_limit", head + lines(
			"    rate_limit:",
			"    replaces: [{name: x}]",
		), []string{"t.yaml:5: descriptors[0].replaces: descriptor has no rate_limit to carry replaces"}},
		{"replaces beside an empty rate_limits", head + lines(
			"    rate_limits: []",
			"    replaces: [{name: x}]",
		), []string{"t.yaml:5: descriptors[0].replaces: descriptor has no rate_limit to carry replaces"}},
		{"replaces without limits and malformed entries", head + lines(
			"    replaces:",
			"      - name: ''",
			"      - {}",
			"      - {name: x, other: y}",
			"      - just-a-name",
		), []string{
			"t.yaml:4: descriptors[0].replaces: descriptor has no rate_limit to carry replaces",
			"t.yaml:5: descriptors[0].replaces[0].name: empty",
			"t.yaml:6: descriptors[0].replaces[1].name: missing",
			"t.yaml:7: descriptors[0].replaces[2].other: unknown field (want name)",
			`t.yaml:8: descriptors[0].replaces[3]: want a mapping, got the string "just-a-name"`,
		}},
		{"empty value is no value: a duplicate of the bare key", head + "  - key: k\n    value: \"\"\n", []string{
			`t.yaml:4: descriptors[1]: duplicate entry key "k" without value (first at line 3)`}},
		{"control character in value", head + "    value: |\n      v\n", []string{
			"t.yaml:4: descriptors[0].value: contains control character U+000A"}},
		{"control character in the domain", "domain: \"a\\nb\"\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n", []string{
			"t.yaml:1: domain: contains control character U+000A"}},
		{"missing and empty key", lines(
			"domain: d",
			"descriptors:",
			"  - value: v",
			"  - key: ''",
		), []string{
			"t.yaml:3: descriptors[0].key: missing",
			"t.yaml:4: descriptors[1].key: empty",
		}},
		{"requests_per_unit negative, float, quoted, huge; burst on a limit of 0", lines(
			"domain: d",
			"descriptors:",
			"  - {key: a, rate_limit: {unit: second, requests_per_unit: 0, algorithm: gcra, burst: 5}}",
			"  - {key: b, rate_limit: {unit: second, requests_per_unit: -5}}",
			"  - {key: c, rate_limit: {unit: second, requests_per_unit: 1.5}}",
			"  - {key: d, rate_limit: {unit: second, requests_per_unit: '100'}}",
			"  - {key: e, rate_limit: {unit: second, requests_per_unit: 99999999999999999999}}",
			"  - {key: f, rate_limit: {unit: second, requests_per_unit: [1]}}",
			"  - {key: g, rate_limit: {unit: second, requests_per_unit: '1', algorithm: gcra, burst: 5}}",
		), []string{
			"t.yaml:3: descriptors[0].rate_limit.burst: has no meaning on requests_per_unit: 0, which blocks every request",
			"t.yaml:4: descriptors[1].rate_limit.requests_per_unit: must not be negative, got -5",
			"t.yaml:5: descriptors[2].rate_limit.requests_per_unit: want a whole number, got 1.5",
			`t.yaml:6: descriptors[3].rate_limit.requests_per_unit: want a whole number, got the string "100"`,
			"t.yaml:7: descriptors[4].rate_limit.requests_per_unit: number 99999999999999999999 is out of range",
			"t.yaml:8: descriptors[5].rate_limit.requests_per_unit: want a whole number, got a list",
			`t.yaml:9: descriptors[6].rate_limit.requests_per_unit: want a whole number, got the string "1"`,
		}},
		{"multiplier, burst and buckets bounds", lines(
			"domain: d",
			"descriptors:",
			"  - {key: a, rate_limit: {unit: second, unit_multiplier: 0, requests_per_unit: 1}}",
			"  - {key: b, rate_limit: {unit: second, requests_per_unit: 1, algorithm: gcra, burst: 0}}",
			"  - {key: c, rate_limit: {unit: second, requests_per_unit: 1, algorithm: sliding_window, buckets: -1}}",
		), []string{
			"t.yaml:3: descriptors[0].rate_limit.unit_multiplier: must be at least 1, got 0",
			"t.yaml:4: descriptors[1].rate_limit.burst: must be at least 1, got 0",
			"t.yaml:5: descriptors[2].rate_limit.buckets: must be at least 1, got -1",
		}},
		{"burst and buckets without their algorithm", lines(
			"domain: d",
			"algorithm: sliding_window",
			"descriptors:",
			"  - {key: a, rate_limit: {unit: second, requests_per_unit: 1, burst: 5}}",
			"  - {key: b, rate_limit: {unit: second, requests_per_unit: 1, buckets: 5, algorithm: gcra}}",
		), []string{
			"t.yaml:4: descriptors[0].rate_limit.burst: applies only to gcra and token_bucket, not sliding_window",
			"t.yaml:5: descriptors[1].rate_limit.buckets: applies only to sliding_window, not gcra",
		}},
		{"unknown algorithms", lines(
			"domain: d",
			"algorithm: leaky_bucket",
			"descriptors:",
			"  - {key: a, rate_limit: {unit: second, requests_per_unit: 1, algorithm: 5, buckets: 2}}",
			"  - {key: b, rate_limit: {unit: second, requests_per_unit: 1, burst: 3}}", // no cascade from the unknown default
		), []string{
			`t.yaml:2: algorithm: unknown algorithm "leaky_bucket" (want gcra|token_bucket|fixed_window|sliding_window|sliding_window_log|token_budget)`,
			`t.yaml:4: descriptors[0].rate_limit.algorithm: unknown algorithm "5" (want gcra|token_bucket|fixed_window|sliding_window|sliding_window_log|token_budget)`,
		}},
		{"absurd magnitudes, naming the field", lines(
			"domain: d",
			"descriptors:",
			"  - key: a",
			"    rate_limit:",
			"      unit: second",
			"      requests_per_unit: 5000000000",
			"  - key: b",
			"    rate_limit: {unit: year, unit_multiplier: 11, requests_per_unit: 1}",
			"  - key: c",
			"    rate_limit: {unit: second, requests_per_unit: 20000, algorithm: sliding_window_log}",
			"  - key: d",
			"    rate_limit: {unit: second, requests_per_unit: 1, unit_multiplier: 9223372036854775807}",
			"  - key: e",
			"    rate_limit: {unit: day, requests_per_unit: 7, algorithm: sliding_window, buckets: 7}",
			"  - key: f",
			"    rate_limit: {unit: second, requests_per_unit: 1, algorithm: gcra, burst: 4294967297}",
		), []string{
			"t.yaml:6: descriptors[0].rate_limit.requests_per_unit: 5000000000 is above the largest limit, 4294967296 (2^32)",
			"t.yaml:8: descriptors[1].rate_limit.unit_multiplier: 11 × year is longer than the longest window, 10 years (315360000000 ms)",
			"t.yaml:10: descriptors[2].rate_limit: sliding_window_log keeps one entry per admitted unit: limit 20000 exceeds the cap 1000 (use sliding_window)",
			"t.yaml:12: descriptors[3].rate_limit.unit_multiplier: 9223372036854775807 × second is longer than the longest window, 10 years (315360000000 ms)",
			"t.yaml:14: descriptors[4].rate_limit: sliding_window: window 86400000 ms is not divisible by buckets 7",
			"t.yaml:16: descriptors[5].rate_limit.burst: 4294967297 is above the largest burst, 4294967296 (2^32)",
		}},
		{"bad booleans", head + lines(
			"    shadow_mode: maybe",
			"    detailed_metric: 1",
			"    rate_limit: {unit: second, requests_per_unit: 1, unlimited: [x]}",
		), []string{
			`t.yaml:4: descriptors[0].shadow_mode: want true or false, got the string "maybe"`,
			"t.yaml:5: descriptors[0].detailed_metric: want true or false, got 1",
			"t.yaml:6: descriptors[0].rate_limit.unlimited: want true or false, got a list",
		}},
		{"unlimited still type-checks its ignored fields", head + lines(
			"    rate_limit: {unlimited: true, unit: fortnight, requests_per_unit: x}",
			"  - key: j",
			"    rate_limit: {unlimited: true, requests_per_unit: -1, burst: 2}",
			"  - key: u",
			"    rate_limit: {unlimited: true, unit: year, unit_multiplier: 20, requests_per_unit: 5000000000, algorithm: gcra, burst: 5000000000}",
		), []string{
			`t.yaml:4: descriptors[0].rate_limit.unit: unknown unit "fortnight" ` + want,
			`t.yaml:4: descriptors[0].rate_limit.requests_per_unit: want a whole number, got the string "x"`,
			"t.yaml:6: descriptors[1].rate_limit.requests_per_unit: must not be negative, got -1",
		}},
		{"wrong shapes", lines(
			"domain: d",
			"descriptors:",
			"  - just-a-key",
			"  - key: k",
			"    descriptors: {key: x}",
			"    rate_limits: {unit: second}",
			"  - key: j",
			"    rate_limit: [1]",
		), []string{
			`t.yaml:3: descriptors[0]: want a mapping, got the string "just-a-key"`,
			"t.yaml:5: descriptors[1].descriptors: want a list, got a mapping",
			"t.yaml:6: descriptors[1].rate_limits: want a list, got a mapping",
			"t.yaml:8: descriptors[2].rate_limit: want a mapping, got a list",
		}},
		{"descriptors not a list at the top", "domain: d\ndescriptors: 5\n", []string{
			"t.yaml:2: descriptors: want a list, got 5"}},
		{"document not a mapping", "- a\n- b\n", []string{"t.yaml:1: document: want a mapping, got a list"}},
		{"yaml syntax", "domain: d\ndescriptors:\n  - key: k\n    value: a: b\n", []string{
			"t.yaml:4: yaml: mapping values are not allowed in this context"}},
		// yaml.v3 names the key's line before a tab in indentation; the error points at the tab.
		{"tab in indentation", "domain: d\ndescriptors:\n  - key: k\n\trate_limit:\n      unit: second\n", []string{
			"t.yaml:4: yaml: found a tab character that violates indentation"}},
		{"tab in indentation of a nested key", "domain: d\ndescriptors:\n  - key: k\n    rate_limit:\n      unit: second\n \t requests_per_unit: 1\n", []string{
			"t.yaml:6: yaml: found a tab character that violates indentation"}},
		// A tab that starts a line's token is another of yaml.v3's errors; it is named.
		{"tab before a list item", "domain: d\ndescriptors:\n\t- key: k\n", []string{
			"t.yaml:3: yaml: found character that cannot start any token: a tab in the indentation; YAML indents with spaces"}},
		{"no token, no tab", "domain: d\ndescriptors:\n  - key: @k\n", []string{
			"t.yaml:3: yaml: found character that cannot start any token"}},
		// yaml.v3 gives no position for a control character; the error finds it.
		{"control character", "domain: d\ndescriptors:\n  - key: k\x01\n", []string{
			"t.yaml:3: yaml: control character U+0001 at column 11; YAML allows only tabs, line breaks and printable characters"}},
		{"DEL after a multi-byte character", "domain: dé\x7f\n", []string{
			"t.yaml:1: yaml: control character U+007F at column 11; YAML allows only tabs, line breaks and printable characters"}},
		{"C1 control character", "domain: d\u0080\n", []string{
			"t.yaml:1: yaml: control character U+0080 at column 10; YAML allows only tabs, line breaks and printable characters"}},
		{"control character after a byte-order mark", "\ufeffdomain: d\x01\n", []string{
			"t.yaml:1: yaml: control character U+0001 at column 10; YAML allows only tabs, line breaks and printable characters"}},
		{"control character after lone CRs", "domain: d\rdescriptors:\r  - key: k\x01\r", []string{
			"t.yaml:3: yaml: control character U+0001 at column 11; YAML allows only tabs, line breaks and printable characters"}},
		{"control character after CR LFs", "domain: d\r\ndescriptors:\r\n  - key: k\x01\r\n", []string{
			"t.yaml:3: yaml: control character U+0001 at column 11; YAML allows only tabs, line breaks and printable characters"}},
		{"control character in UTF-16: no position", "\xff\xfed\x00:\x00 \x00\x01\x00\n\x00", []string{
			"t.yaml: yaml: control characters are not allowed"}},
		// Nor for bytes that are not UTF-8 (a file saved as Latin-1); the error finds them.
		{"Latin-1 in a comment", "domain: d\n# Caf\xe9 limits\ndescriptors: []\n", []string{
			"t.yaml:2: yaml: byte 0xE9 at column 6 starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)"}},
		{"Latin-1 at the end of a value", "domain: d\ndescriptors:\n  - key: k\n    value: caf\xe9\n", []string{
			"t.yaml:4: yaml: byte 0xE9 at column 15 starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)"}},
		{"UTF-16 surrogate in UTF-8", "domain: dé\r\ndescriptors:\r\n  - key: \xed\xa0\x80\r\n", []string{
			"t.yaml:3: yaml: byte 0xED at column 10 starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)"}},
		{"truncated at the end", "\ufeffdomain: d\xc3", []string{
			"t.yaml:1: yaml: byte 0xC3 at column 10 starts no UTF-8 character: YAML files are UTF-8 (was this one saved as Latin-1?)"}},
		// A tab may indent a line in a flow collection: there the error is another's.
		{"tab in a flow collection", "domain: d\ndescriptors: [\n\t{key: @k}\n]\n", []string{
			"t.yaml:3: yaml: found character that cannot start any token"}},
		// yaml.v3 numbers the lines of its parser's errors (unlike its scanner's) from 0:
		// each names the line where the collection holding the mistake starts.
		{"unclosed flow mapping", "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1\n  - key: j\n", []string{
			"t.yaml:4: yaml: did not find expected ',' or '}'"}},
		{"unclosed flow sequence", "domain: d\ndescriptors: [\n  {key: a},\n  {key: b}\n", []string{
			"t.yaml:2: yaml: did not find expected ',' or ']'"}},
		{"stray closing brace", "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}}\n", []string{
			"t.yaml:3: yaml: did not find expected key"}},
		{"list item without its space", "domain: d\ndescriptors:\n  - key: a\n  -key: b\n    value: c\n", []string{
			"t.yaml:3: yaml: did not find expected '-' indicator"}},
		{"list under a scalar", "domain: d\n- x\n", []string{
			"t.yaml:2: yaml: did not find expected key"}},
		{"duplicate directive", "%YAML 1.1\n%YAML 1.1\n---\ndomain: d\n", []string{
			"t.yaml:2: yaml: found duplicate %YAML directive"}},
		// At the end of the file the line is the last one, not the empty one after it.
		{"unclosed at the end", "domain: [\n", []string{
			"t.yaml:1: yaml: did not find expected node content"}},
		// yaml.v3 gives no line for errors on the first line (its line 0).
		{"scanner error on the first line", "domain: @x\n", []string{
			"t.yaml:1: yaml: found character that cannot start any token"}},
		{"mapping value on the first line", "domain: d: e\ndescriptors: []\n", []string{
			"t.yaml:1: yaml: mapping values are not allowed in this context"}},
		{"parser error on the first line", "!foo!bar x\n", []string{
			"t.yaml:1: yaml: found undefined tag handle"}},
		// yaml.v3 gives no position for an alias of an unknown anchor; the error finds it,
		// passing over the same text in comments and quoted strings.
		{"unknown anchor", lines(
			"domain: d # *per_ip in a comment",
			"descriptors:",
			"  - key: 'a *per_ip'",
			"    rate_limit: &per-ip {unit: second, requests_per_unit: 1}",
			"  - key: b",
			"    value: \"*per_ip\"",
			"    rate_limit: *per_ip",
		), []string{"t.yaml:7: yaml: unknown anchor 'per_ip' referenced"}},
		{"unknown anchor after many mentions in comments", strings.Repeat("# see *r\n", 30) + "domain: d\ndescriptors:\n  - {key: a, rate_limit: *r}\n", []string{
			"t.yaml:33: yaml: unknown anchor 'r' referenced"}},
		{"unknown anchor in a flow collection", "domain: d\ndescriptors: [{key: a, rate_limit: *r}]\n", []string{
			"t.yaml:2: yaml: unknown anchor 'r' referenced"}},
		{"anchor used before it is defined", "domain: d\ndescriptors:\n  - {key: a, rate_limit: *r}\n  - {key: b, rate_limit: &r {unit: second, requests_per_unit: 1}}\n  - {key: c, rate_limit: *r}\n", []string{
			"t.yaml:3: yaml: unknown anchor 'r' referenced"}},
		{"empty file", "# only a comment\n", []string{"t.yaml: file: empty; want a mapping with domain and descriptors"}},
		{"several documents", "domain: a\n---\ndomain: b\n", []string{
			"t.yaml:2: file: more than one YAML document; one domain per file"}},
		{"errors sorted by line across checks", lines(
			"domain: d",
			"descriptors:",
			"  - key: a",
			"    replaces: [{name: ghost}]",
			"    rate_limit: {unit: lightyear, requests_per_unit: 1}",
			"  - {key: a}",
		), []string{
			`t.yaml:5: descriptors[0].rate_limit.unit: unknown unit "lightyear" ` + want,
			`t.yaml:6: descriptors[1]: duplicate entry key "a" without value (first at line 3)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseErrors(t, tt.src); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestNestingTooDeep(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	for i := 0; i <= MaxDepth; i++ { // MaxDepth+1 levels
		ind := strings.Repeat("    ", i)
		fmt.Fprintf(&b, "%s  - key: k%d\n", ind, i)
		if i < MaxDepth {
			fmt.Fprintf(&b, "%s    descriptors:\n", ind)
		}
	}
	got := parseErrors(t, b.String())
	field := "descriptors" + strings.Repeat("[0].descriptors", MaxDepth)
	line := 2 + 2*MaxDepth
	want := []string{fmt.Sprintf("t.yaml:%d: %s: descriptors nested deeper than %d levels", line, field, MaxDepth)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// Exactly MaxDepth levels load.
	ok := strings.Join(strings.Split(b.String(), "\n")[:2+2*MaxDepth-1], "\n") + "\n"
	if _, err := Parse("t.yaml", []byte(ok)); err != nil {
		t.Errorf("%d levels rejected: %v", MaxDepth, err)
	}
}

func TestTooManyLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n  - key: k\n    rate_limits:\n      - &l {unit: second, requests_per_unit: 1}\n")
	for i := 1; i <= MaxLimits; i++ {
		b.WriteString("      - *l\n")
	}
	got := parseErrors(t, b.String())
	line := 5 // an aliased node reports the line of its anchor
	want := []string{fmt.Sprintf("t.yaml:%d: descriptors[0].rate_limits[%d]: more than 100000 limits in total", line, MaxLimits)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestAliasBomb: aliases can describe a tree exponentially larger than the file (10^8
// entries here). The entry bound must stop the walk at 200,000 entries; the test's own
// timeout catches a walk that does not stop.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n  - key: x0\n    descriptors: &l0\n      - {key: y, rate_limit: {unit: second, requests_per_unit: 1}}\n")
	for lvl := 1; lvl <= 8; lvl++ {
		fmt.Fprintf(&b, "  - key: x%d\n    descriptors: &l%d\n", lvl, lvl)
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&b, "      - {key: k%d, descriptors: *l%d}\n", i, lvl-1)
		}
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 200000 descriptor entries in total") {
		t.Fatalf("alias bomb not stopped: %v", err)
	}
}

// TestAliasBombOfLongKeys: a tree of few entries but long keys, repeated by aliases at
// every level, builds paths far larger than the file (2^15 paths of up to 15 KB from a
// 31 KB file here, 2.5 GB before the bound). The path bound stops it, naming the file
// and line, while the memory the walk took stays near the bound.
func TestAliasBombOfLongKeys(t *testing.T) {
	key := func(c string) string { return strings.Repeat(c, 1000) }
	var b strings.Builder
	fmt.Fprintf(&b, "domain: d\ndescriptors:\n  - key: l0\n    descriptors: &a0\n")
	for _, c := range []string{"a", "b"} {
		fmt.Fprintf(&b, "      - key: %s\n        rate_limit: {unit: second, requests_per_unit: 1}\n", key(c))
	}
	for i := 1; i < 15; i++ {
		fmt.Fprintf(&b, "  - key: l%d\n    descriptors: &a%d\n", i, i)
		for _, c := range []string{"a", "b"} {
			fmt.Fprintf(&b, "      - key: %s\n        descriptors: *a%d\n", key(c), i-1)
		}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Parse("t.yaml", []byte(b.String()))
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:") || !strings.Contains(err.Error(), "add up to more than 128 MiB") {
		t.Fatalf("long-key alias bomb not stopped: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*MaxPathBytes {
		t.Errorf("the walk allocated %d MiB, want it bounded near %d MiB", grew>>20, MaxPathBytes>>20)
	}
}

// Metadata is bounded in depth per entry and in values per load; like entries, an alias
// bomb (10^8 values here) is stopped by the count, not by the file size.
func TestMetadataBounds(t *testing.T) {
	deep := "domain: d\ndescriptors:\n  - key: k\n    metadata: " +
		strings.Repeat("{a: ", maxMetadataDepth) + "1" + strings.Repeat("}", maxMetadataDepth) + "\n"
	want := []string{"t.yaml:4: descriptors[0].metadata" + strings.Repeat(".a", maxMetadataDepth) + ": metadata nested deeper than 16 levels"}
	if got := parseErrors(t, deep); !reflect.DeepEqual(got, want) {
		t.Errorf("too deep:\n got %q\nwant %q", got, want)
	}
	fits := "domain: d\ndescriptors:\n  - key: k\n    metadata: " +
		strings.Repeat("{a: ", maxMetadataDepth-1) + "1" + strings.Repeat("}", maxMetadataDepth-1) + "\n"
	if _, err := Parse("t.yaml", []byte(fits)); err != nil {
		t.Errorf("%d levels rejected: %v", maxMetadataDepth, err)
	}

	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n  - key: x0\n    metadata: {l: &m0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}\n")
	for lvl := 1; lvl <= 7; lvl++ {
		fmt.Fprintf(&b, "  - key: x%d\n    metadata: {l: &m%d [", lvl, lvl)
		for i := 0; i < 10; i++ {
			fmt.Fprintf(&b, "*m%d, ", lvl-1)
		}
		b.WriteString("0]}\n")
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "more than 100000 metadata values in total") {
		t.Fatalf("metadata alias bomb not stopped: %v", err)
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	for i := 0; i < maxErrors+50; i++ {
		fmt.Fprintf(&b, "  - {key: k%d, bogus: 1}\n", i)
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatal(err)
	}
	if len(le.Errors) != maxErrors || le.Omitted != 50 {
		t.Errorf("kept %d, omitted %d; want %d and 50", len(le.Errors), le.Omitted, maxErrors)
	}
	if !strings.HasSuffix(err.Error(), "\n(50 more errors omitted)") {
		t.Errorf("Error() does not end with the omitted count")
	}
}

func TestErrorsOfSeveralFiles(t *testing.T) {
	_, err := Compile(
		File{Name: "a.yaml", Data: []byte("domain: edge\ndescriptors:\n  - {key: k, rate_limit: {unit: sec, requests_per_unit: 1}}\n")},
		File{Name: "b.yaml", Data: []byte("domain: api\n")},
		File{Name: "c.yaml", Data: []byte("\ndomain: edge\nfoo: 1\n")},
		File{Name: "d.yaml", Data: []byte("domain: [\n")},
		File{Name: "e.yaml", Data: []byte("domain: api2\n")},
	)
	want := []string{
		`a.yaml:3: descriptors[0].rate_limit.unit: unknown unit "sec" ` + want,
		`c.yaml:2: domain: duplicate domain "edge" (already defined in a.yaml:1)`,
		"c.yaml:3: foo: unknown field (want domain, algorithm, descriptors, ext_authz, name)",
		"d.yaml:1: yaml: did not find expected node content",
	}
	if err == nil {
		t.Fatal("no error")
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Text that YAML aliases repeat is bounded where it is copied: in ext_authz string
// matches (each one_of item was copied and folded for every use; a 71 KB file once took
// 102 s and 14 GB) and in metadata (a long string used a few hundred times, which
// /debug/config then wrote out in full). Each load stops at its bound with one error,
// quickly and in little memory; the same aliases used a few times load, and so does a
// rule tree that repeats a template under thousands of aliases (which only the entry
// and path bounds limit).
func TestAliasedTextIsBoundedWhereItIsCopied(t *testing.T) {
	long := strings.Repeat("A", 1000)
	var items strings.Builder
	for i := range 1024 {
		fmt.Fprintf(&items, "%q, ", long+strconv.Itoa(i))
	}
	matchers := func(uses int) string {
		var b strings.Builder
		b.WriteString("domain: d\ndescriptors:\n  - {key: generic_key, value: k, rate_limit: {unit: second, requests_per_unit: 1}}\n")
		b.WriteString("ext_authz:\n  descriptors:\n    - when:\n        headers:\n")
		fmt.Fprintf(&b, "          - {name: x-a, one_of: &O [%s]}\n", strings.TrimSuffix(items.String(), ", "))
		for range uses {
			b.WriteString("          - {name: x-a, one_of: *O}\n")
		}
		b.WriteString("      entries: [{generic_key: {descriptor_value: k}}]\n")
		return b.String()
	}
	metadata := func(uses int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n    metadata:\n      big: &S %q\n      list: [", strings.Repeat("B", 200_000))
		for range uses {
			b.WriteString("*S, ")
		}
		b.WriteString("0]\n")
		return b.String()
	}
	for _, tc := range []struct{ name, file, want string }{
		{"one_of lists", matchers(31), "the ext_authz string matches add up to more than 16 MiB in total"},
		{"metadata strings", metadata(400), "the metadata text adds up to more than 64 MiB in total"},
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		got := parseErrors(t, tc.file)
		runtime.ReadMemStats(&after)
		if len(got) != 1 || !strings.HasPrefix(got[0], "t.yaml:") || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: %q, want one error: %s", tc.name, got, tc.want)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 256<<20 {
			t.Errorf("%s: the load allocated %d MiB, want it bounded", tc.name, grew>>20)
		}
	}

	var tenants strings.Builder
	tenants.WriteString("domain: d\ndescriptors:\n  - key: template\n    descriptors: &t\n")
	for j := range 20 {
		fmt.Fprintf(&tenants, "      - {key: path, value: /api/v1/collection-%04d/items/with/a/longer/suffix, rate_limit: {unit: minute, requests_per_unit: 100}}\n", j)
	}
	for i := range 2000 {
		fmt.Fprintf(&tenants, "  - {key: tenant, value: tenant-%05d, descriptors: *t}\n", i)
	}
	for name, file := range map[string]string{"one_of lists used a few times": matchers(3),
		"metadata used a few times": metadata(100), "a template under 2,000 tenants": tenants.String()} {
		if _, err := Parse("t.yaml", []byte(file)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A replaces list that an alias repeats on many limits is bounded: the load is refused
// with the bound's message instead of building every name for every limit.
func TestReplacesAliasBombIsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n  - key: k0\n    rate_limit: {unit: second, requests_per_unit: 1, replaces: &r [")
	for i := range 200 {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "{name: n%d}", i)
	}
	b.WriteString("]}\n")
	for i := 1; i < 600; i++ {
		fmt.Fprintf(&b, "  - {key: k%d, rate_limit: {unit: second, requests_per_unit: 1, replaces: *r}}\n", i)
	}
	_, err := Parse("t.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d replaced names in total", MaxReplaces)) {
		t.Fatalf("120,000 replaced names: %v, want the bound's error", err)
	}
}

// The messages that point at another definition in the same file (a repeated entry's,
// field's or metadata key's first, the "*" that hides an entry) carry it as Ref, line
// and field path, so that rules from xDS can name it by path without parsing the text;
// for files Error writes it as "at line N" inside the message.
func TestReferencesAreStructured(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		warning bool
		ref     Ref
		text    string // the problem's whole text
	}{
		{"duplicate entry", head + "  - key: k\n", false, Ref{Line: 3, Field: "descriptors[0]"},
			`t.yaml:4: descriptors[1]: duplicate entry key "k" without value (first at line 3)`},
		{"field given twice", head + "    key: j\n", false, Ref{Line: 3, Field: "descriptors[0].key"},
			`t.yaml:4: descriptors[0].key: field given twice (first at line 3)`},
		{"metadata key given twice", head + "    metadata:\n      a: 1\n      a: 2\n", false, Ref{Line: 5, Field: "descriptors[0].metadata.a"},
			`t.yaml:6: descriptors[0].metadata.a: key given twice (first at line 5)`},
		{"hidden by a star", head + "    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: k\n    value: '*'\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
			true, Ref{Line: 5, Field: "descriptors[1]"},
			`t.yaml:3: descriptors[0]: key "k" without value never matches: the value pattern "*" at line 5 matches every value first`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse("t.yaml", []byte(tt.src))
			var got []ConfigError
			if tt.warning {
				if err != nil {
					t.Fatal(err)
				}
				got, _ = rs.Warnings()
			} else {
				var le *LoadError
				if !errors.As(err, &le) {
					t.Fatalf("error %v, want a *LoadError", err)
				}
				got = le.Errors
			}
			if len(got) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(got), got)
			}
			if got[0].Ref == nil || *got[0].Ref != tt.ref {
				t.Errorf("Ref = %+v, want %+v", got[0].Ref, tt.ref)
			}
			if got[0].Error() != tt.text {
				t.Errorf("Error() = %q, want %q", got[0].Error(), tt.text)
			}
		})
	}
}
