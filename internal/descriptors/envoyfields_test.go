package descriptors

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// envoyproxy/ratelimit's newer descriptor fields, in the shapes its own tests use: each
// row matches one request descriptor and checks what the field left on the limit.
func TestParseEnvoyproxyFields(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: files",
		"    value: 'files/*'",
		"    share_threshold: true",
		"    rate_limit: {unit: minute, requests_per_unit: 100}",
		"  - key: path",
		"    value: 'path/*'",
		"    share_threshold: on",
		"    descriptors:",
		"      - key: file",
		"        value: 'file/*'",
		"        share_threshold: false",
		"        descriptors:",
		"          - key: type",
		"            rate_limit: {unit: minute, requests_per_unit: 120}",
		"  - key: route",
		"    value_to_metric: true",
		"    descriptors:",
		"      - key: method",
		"        rate_limit: {unit: minute, requests_per_unit: 60}",
		"      - key: user",
		"        value_to_metric: yes",
		"        detailed_metric: true",
		"        rate_limit: {unit: minute, requests_per_unit: 60}",
		"  - key: quiet",
		"    value_to_metric: false",
		"    rate_limit: {unit: minute, requests_per_unit: 1}",
		"  - key: key1",
		"    value: value1",
		"    descriptors:",
		"      - key: subkey1",
		"        rate_limit: {unit: second, requests_per_unit: 5}",
		"        metadata:",
		"          name: service_1",
		"  - key: key2",
		"    rate_limits: [{unit: minute, requests_per_unit: 20}, {unit: hour, requests_per_unit: 100}]",
		"    metadata:",
		"      service_with_quota: {name: service_2, weight: 3, share: 0.5, on: yes, quoted: 'yes', none: ~, since: 2026-01-02}",
		"      backends: [a, {b: 1}]",
		"    descriptors:",
		"      - key: below",
		"        rate_limit: {unit: second, requests_per_unit: 1}",
		"  - key: key3",
		"    metadata: {}",
		"    rate_limit: {unit: second, requests_per_unit: 1}",
		"  - key: service",
		"    value: service_1",
		"    quota_mode: true",
		"    rate_limits: [{unit: minute, requests_per_unit: 1}, {unit: hour, requests_per_unit: 10}]",
		"    descriptors:",
		"      - key: user",
		"        rate_limit: {unit: minute, requests_per_unit: 1}",
	))
	tests := []struct {
		name    string
		entries []Entry
		check   func(l *Limit) bool
	}{
		{"share_threshold on the limit's own level", []Entry{{"files", "files/a.pdf"}}, func(l *Limit) bool {
			return l.Levels[0].Shared && l.Levels[0].Value == "files/*"
		}},
		{"share_threshold per level, ancestors included", []Entry{{"path", "path/x"}, {"file", "file/y"}, {"type", "pdf"}}, func(l *Limit) bool {
			return l.Levels[0].Shared && !l.Levels[1].Shared && !l.Levels[2].Shared && !l.ValueToMetric
		}},
		{"value_to_metric on an ancestor level", []Entry{{"route", "api"}, {"method", "GET"}}, func(l *Limit) bool {
			return l.ValueToMetric && l.Levels[0].ValueToMetric && !l.Levels[1].ValueToMetric
		}},
		{"value_to_metric next to detailed_metric", []Entry{{"route", "api"}, {"user", "u"}}, func(l *Limit) bool {
			return l.ValueToMetric && l.DetailedMetric && l.Levels[1].ValueToMetric
		}},
		{"value_to_metric: false", []Entry{{"quiet", "q"}}, func(l *Limit) bool { return !l.ValueToMetric }},
		{"metadata on a nested entry", []Entry{{"key1", "value1"}, {"subkey1", "x"}}, func(l *Limit) bool {
			return reflect.DeepEqual(l.Metadata, map[string]any{"name": "service_1"})
		}},
		{"metadata keeps YAML's types, text for the rest", []Entry{{"key2", "x"}}, func(l *Limit) bool {
			return reflect.DeepEqual(l.Metadata, map[string]any{
				"service_with_quota": map[string]any{"name": "service_2", "weight": int64(3), "share": 0.5, "on": true, "quoted": "yes", "none": nil, "since": "2026-01-02"},
				"backends":           []any{"a", map[string]any{"b": int64(1)}},
			})
		}},
		{"metadata is the entry's own, not its children's", []Entry{{"key2", "x"}, {"below", "y"}}, func(l *Limit) bool {
			return l.Metadata == nil
		}},
		{"empty metadata is none", []Entry{{"key3", "x"}}, func(l *Limit) bool { return l.Metadata == nil }},
		{"quota_mode on every limit of the entry", []Entry{{"service", "service_1"}}, func(l *Limit) bool { return l.Quota }},
		{"quota_mode is the entry's own, not its children's", []Entry{{"service", "service_1"}, {"user", "u"}}, func(l *Limit) bool {
			return !l.Quota
		}},
		{"no quota_mode", []Entry{{"key3", "x"}}, func(l *Limit) bool { return !l.Quota }},
	}
	for _, tt := range tests {
		ls := rs.Match("d", tt.entries)
		if len(ls) == 0 {
			t.Errorf("%s: %v matched nothing", tt.name, tt.entries)
		}
		for _, l := range ls {
			if !tt.check(l) {
				t.Errorf("%s: %v matched %s, failing its check", tt.name, tt.entries, l.ID)
			}
		}
	}
}

// The rules dump shows what the fields did, so an operator can check a migrated file.
func TestDumpShowsEnvoyproxyFields(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: q",
		"    quota_mode: true",
		"    rate_limit: {unit: minute, requests_per_unit: 1}",
		"  - key: tenant",
		"    value: 't-*'",
		"    share_threshold: true",
		"    descriptors:",
		"      - key: user",
		"        value_to_metric: true",
		"        metadata: {backend: {name: b1}}",
		"        rate_limit: {unit: minute, requests_per_unit: 1}",
	))
	js, err := json.Marshal(rs.Dump())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"share_threshold":["tenant=t-*"]`, `"value_to_metric":["user"]`, `"metadata":{"backend":{"name":"b1"}}`, `"quota_mode":true`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("dump lacks %s:\n%s", want, js)
		}
	}
}
