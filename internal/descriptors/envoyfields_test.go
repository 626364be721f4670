package descriptors

import (
	"encoding/json"
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
	}
	for _, tt := range tests {
		ls := rs.Match("d", tt.entries)
		if len(ls) != 1 || !tt.check(ls[0]) {
			t.Errorf("%s: %v matched %v, failing its check", tt.name, tt.entries, ids(ls))
		}
	}
}

// The rules dump shows what the fields did, so an operator can check a migrated file.
func TestDumpShowsEnvoyproxyFields(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: tenant",
		"    value: 't-*'",
		"    share_threshold: true",
		"    descriptors:",
		"      - key: user",
		"        value_to_metric: true",
		"        rate_limit: {unit: minute, requests_per_unit: 1}",
	))
	js, err := json.Marshal(rs.Dump())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"share_threshold":["tenant=t-*"]`, `"value_to_metric":["user"]`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("dump lacks %s:\n%s", want, js)
		}
	}
}
