package descriptors

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

const (
	minuteMs = 60_000
	hourMs   = 3_600_000
	dayMs    = 86_400_000
)

func mustParseFile(t *testing.T, path string) *RuleSet {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return rs
}

func mustParse(t *testing.T, src string) *RuleSet {
	t.Helper()
	rs, err := Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return rs
}

// validated returns p after Validate, as the loader stores it.
func validated(t *testing.T, p limiter.Params) limiter.Params {
	t.Helper()
	if err := p.Validate(); err != nil {
		t.Fatalf("test params invalid: %v", err)
	}
	return p
}

// lines joins its arguments as lines, so that a test's line numbers are its indexes+1.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

func TestParseEveryField(t *testing.T) {
	rs := mustParseFile(t, "testdata/full.yaml")
	kv := []Level{{Key: "k", Value: "v", Kind: ExactValue}}
	f := "testdata/full.yaml"
	want := []*Limit{
		{Domain: "full", Name: "a", Path: "k=v", ID: "k=v#0", Levels: kv, Unit: "minute", UnitMultiplier: 5, RequestsPerUnit: 100,
			Params: validated(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 100, PeriodMs: 5 * minuteMs, Burst: 20}),
			Shadow: true, DetailedMetric: true, Replaces: []string{"other"}, Line: 10, File: f},
		{Domain: "full", Name: "b", Path: "k=v", ID: "k=v#1", Levels: kv, Unit: "hour", UnitMultiplier: 1, RequestsPerUnit: 10,
			Params: validated(t, limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 10, PeriodMs: hourMs, Buckets: 4}),
			Shadow: true, DetailedMetric: true, Replaces: []string{"other"}, Line: 15, File: f},
		{Domain: "full", Path: "k=v", ID: "k=v#2", Levels: kv, Unit: "day", UnitMultiplier: 1, RequestsPerUnit: 7,
			Params: validated(t, limiter.Params{Algorithm: limiter.FixedWindow, Limit: 7, PeriodMs: dayMs}),
			Shadow: true, DetailedMetric: true, Replaces: []string{"other"}, Line: 20, File: f},
		{Domain: "full", Name: "other", Path: "other", ID: "other#0", Levels: []Level{{Key: "other"}}, Unit: "week", UnitMultiplier: 1, RequestsPerUnit: 1,
			Params: validated(t, limiter.Params{Algorithm: limiter.TokenBucket, Limit: 1, PeriodMs: 7 * dayMs}), Line: 25, File: f},
		{Domain: "full", Name: "free", Path: "free", ID: "free#0", Levels: []Level{{Key: "free"}}, Unlimited: true,
			Replaces: []string{"a"}, Line: 31, File: f},
		{Domain: "full", Path: "budget=tenant-*", ID: "budget=tenant-*#0", Levels: []Level{{Key: "budget", Value: "tenant-*", Kind: PatternValue}},
			Unit: "month", UnitMultiplier: 1, RequestsPerUnit: 1_000_000,
			Params: validated(t, limiter.Params{Algorithm: limiter.TokenBudget, Limit: 1_000_000, PeriodMs: 30 * dayMs}), Line: 38, File: f},
		{Domain: "full", Path: "log", ID: "log#0", Levels: []Level{{Key: "log"}}, Unit: "year", UnitMultiplier: 1, RequestsPerUnit: 100,
			Params: validated(t, limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: 100, PeriodMs: 365 * dayMs}), Line: 43, File: f},
	}
	got := rs.Limits("full")
	if len(got) != len(want) {
		t.Fatalf("got %d limits, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("limit %d:\n got %+v\nwant %+v", i, *got[i], *want[i])
		}
	}
	if rs.LimitCount() != len(want) {
		t.Errorf("LimitCount = %d, want %d", rs.LimitCount(), len(want))
	}
}

func TestParseDefaults(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: plain",
		"    rate_limit: {unit: second, requests_per_unit: 5}",
		"  - key: gcra",
		"    rate_limit: {unit: minute, requests_per_unit: 60, algorithm: gcra}",
		"  - key: sliding",
		"    rate_limit: {unit: minute, requests_per_unit: 60, algorithm: sliding_window}",
		"  - key: blocked", // envoyproxy/ratelimit's way to deny a value outright
		"    rate_limit: {unit: second, requests_per_unit: 0}",
		"  - key: blocked-log",
		"    rate_limit: {unit: minute, requests_per_unit: 0, algorithm: sliding_window_log}",
	))
	tests := []struct {
		key  string
		want limiter.Params
	}{
		{"plain", limiter.Params{Algorithm: limiter.FixedWindow, Limit: 5, PeriodMs: 1000, Burst: 5}},
		{"gcra", limiter.Params{Algorithm: limiter.GCRA, Limit: 60, PeriodMs: minuteMs, Burst: 60}},
		{"sliding", limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 60, PeriodMs: minuteMs, Burst: 60, Buckets: 10}},
		{"blocked", limiter.Params{Algorithm: limiter.FixedWindow, Limit: 0, PeriodMs: 1000, Burst: 1}},
		{"blocked-log", limiter.Params{Algorithm: limiter.FixedWindow, Limit: 0, PeriodMs: minuteMs, Burst: 1}},
	}
	for _, tt := range tests {
		ls := rs.Match("d", []Entry{{tt.key, "x"}})
		if len(ls) != 1 {
			t.Fatalf("%s: %d limits", tt.key, len(ls))
		}
		p := ls[0].Params
		if p.Algorithm != tt.want.Algorithm || p.Limit != tt.want.Limit || p.PeriodMs != tt.want.PeriodMs ||
			p.Burst != tt.want.Burst || p.Buckets != tt.want.Buckets {
			t.Errorf("%s: params %+v, want %+v", tt.key, p, tt.want)
		}
		if ls[0].UnitMultiplier != 1 || ls[0].Shadow || ls[0].DetailedMetric || ls[0].Replaces != nil || ls[0].Name != "" {
			t.Errorf("%s: defaults not applied: %+v", tt.key, *ls[0])
		}
	}
}

// What envoyproxy/ratelimit accepts in files seen in the wild loads here too, meaning
// the same: Envoy Gateway's rendered rules (a top-level name, value: "" for a key
// without value, a trailing "---") and a name on a descriptor entry, all ignored there.
func TestParseUpstreamLeniencies(t *testing.T) {
	rs := mustParse(t, lines(
		"name: first-listener",
		"domain: d",
		"descriptors:",
		"  - name: ignored",
		"    key: route",
		`    value: ""`,
		"    rate_limit: {unit: minute, requests_per_unit: 3}",
		"---",
	))
	ls := rs.Match("d", []Entry{{"route", "any-value"}})
	if len(ls) != 1 || ls[0].Params.Limit != 3 || ls[0].Levels[0].Kind != BareKey {
		t.Fatalf("value \"\" should be a key without value: %+v", ls)
	}
	if _, err := Parse("t.yaml", []byte("domain: a\n---\n---\ndomain: b\n")); err == nil ||
		!strings.Contains(err.Error(), "more than one YAML document") {
		t.Errorf("a second domain after an empty document: %v", err)
	}
	if _, err := Parse("t.yaml", []byte("domain: a\n---\nkey: [bad\n")); err == nil ||
		!strings.Contains(err.Error(), ": yaml: did not find expected") {
		t.Errorf("a syntax error in a later document: %v, want the YAML error", err)
	}
}

func TestParseFileAlgorithmDefault(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"algorithm: Token_Bucket",
		"descriptors:",
		"  - key: a",
		"    rate_limit: {unit: second, requests_per_unit: 5}",
		"  - key: b",
		"    rate_limit: {unit: second, requests_per_unit: 5, algorithm: fixed_window}",
	))
	if got := rs.Match("d", []Entry{{"a", "1"}})[0].Params.Algorithm; got != limiter.TokenBucket {
		t.Errorf("a: algorithm %v, want the file default token_bucket", got)
	}
	if got := rs.Match("d", []Entry{{"b", "1"}})[0].Params.Algorithm; got != limiter.FixedWindow {
		t.Errorf("b: algorithm %v, want its own fixed_window", got)
	}
}

func TestParseEnvoyFormat(t *testing.T) {
	rs := mustParseFile(t, "testdata/envoy.yaml")
	tests := []struct {
		entries []Entry
		want    string // Name/ID of the one limit, "" for none
		check   func(*Limit) bool
	}{
		{[]Entry{{"remote_address", "10.0.0.1"}}, "remote_address#0", func(l *Limit) bool {
			return l.Unit == "second" && l.RequestsPerUnit == 10 && l.Params.PeriodMs == 1000 && l.Params.Algorithm == limiter.FixedWindow
		}},
		{[]Entry{{"destination_cluster", "mongo_cps"}}, "destination_cluster=mongo_cps#0", func(l *Limit) bool { return l.Shadow && l.RequestsPerUnit == 500 }},
		{[]Entry{{"destination_cluster", "other"}}, "", nil},
		{[]Entry{{"source_cluster", "api_v2"}, {"destination_cluster", "mongo"}}, "source_cluster=api*/destination_cluster=mongo#0", func(l *Limit) bool {
			return l.Name == "api_mongo" && l.DetailedMetric && !l.Shadow && l.Unit == "minute"
		}},
		{[]Entry{{"source_cluster", "web"}, {"destination_cluster", "mongo"}}, "", nil},
		{[]Entry{{"generic_key", "whitelisted"}}, "generic_key=whitelisted#0", func(l *Limit) bool { return l.Unlimited }},
		{[]Entry{{"api_key", "k1"}, {"path", "/cheap"}}, "api_key/path#0", func(l *Limit) bool { return l.Name == "general" }},
		{[]Entry{{"api_key", "k1"}, {"path", "/expensive"}}, "api_key/path=%2Fexpensive#0", func(l *Limit) bool {
			return l.Name == "specific" && reflect.DeepEqual(l.Replaces, []string{"general"}) && l.Params.PeriodMs == 2*hourMs && l.Unit == "hour"
		}},
	}
	for _, tt := range tests {
		ls := rs.Match("envoy_compat", tt.entries)
		if tt.want == "" {
			if ls != nil {
				t.Errorf("%v: got %d limits, want none", tt.entries, len(ls))
			}
			continue
		}
		if len(ls) != 1 || ls[0].ID != tt.want || !tt.check(ls[0]) {
			t.Errorf("%v: got %v, want one limit %s passing its check", tt.entries, ids(ls), tt.want)
		}
	}
}

func TestParseNullsAndScalars(t *testing.T) {
	// Null counts as absent; any scalar is a string; YAML 1.1 booleans are accepted;
	// integers in any YAML notation.
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: port",
		"    value: 8080",
		"    shadow_mode: on",
		"    descriptors: ~",
		"    rate_limit:",
		"      name:",
		"      unit: second",
		"      requests_per_unit: 0x10",
		"  - key: k",
		"    value:",
		"    rate_limit: {unit: minute, requests_per_unit: 1_000}",
	))
	l := rs.Match("d", []Entry{{"port", "8080"}})
	if len(l) != 1 || !l[0].Shadow || l[0].RequestsPerUnit != 16 || l[0].Name != "" {
		t.Fatalf("port: got %v", ids(l))
	}
	l = rs.Match("d", []Entry{{"k", "anything"}})
	if len(l) != 1 || l[0].Levels[0].Kind != BareKey || l[0].RequestsPerUnit != 1000 {
		t.Fatalf("k: got %v", ids(l))
	}
}

// A null rate_limit or rate_limits is absent like any other null field, so it does not
// clash with the other one (a template that fills one of them and leaves the other
// empty).
func TestNullRateLimitBesideRateLimits(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: a",
		"    rate_limit: {unit: second, requests_per_unit: 1}",
		"    rate_limits: ~",
		"  - key: b",
		"    rate_limit:",
		"    rate_limits: [{unit: second, requests_per_unit: 2}, {unit: day, requests_per_unit: 3}]",
		"  - key: c",
		"    rate_limit: {unit: second, requests_per_unit: 4}",
		"    rate_limits: []",
	))
	if l := rs.Match("d", []Entry{{"c", "x"}}); len(l) != 1 || l[0].RequestsPerUnit != 4 {
		t.Errorf("c (an empty rate_limits beside rate_limit): got %v", ids(l))
	}
	if l := rs.Match("d", []Entry{{"a", "x"}}); len(l) != 1 || l[0].RequestsPerUnit != 1 {
		t.Errorf("a: got %v", ids(l))
	}
	if l := rs.Match("d", []Entry{{"b", "x"}}); len(l) != 2 || l[1].RequestsPerUnit != 3 {
		t.Errorf("b: got %v", ids(l))
	}
}

func TestParseAliases(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: a",
		"    rate_limit: &std {unit: second, requests_per_unit: 7}",
		"  - key: b",
		"    rate_limit: *std",
	))
	if l := rs.Match("d", []Entry{{"b", "x"}}); len(l) != 1 || l[0].RequestsPerUnit != 7 || l[0].ID != "b#0" {
		t.Fatalf("alias: got %v", ids(l))
	}
}

func TestPathEscaping(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: a/b",
		"    value: c=d",
		"    descriptors:",
		"      - key: '%#'",
		"        rate_limit: {unit: second, requests_per_unit: 1}",
		"  - key: a",
		"    value: b/c=d",
		"    rate_limit: {unit: second, requests_per_unit: 1}",
	))
	got := ids(rs.Limits("d"))
	want := []string{"a%2Fb=c%3Dd/%25%23#0", "a=b%2Fc%3Dd#0"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("IDs %q, want %q", got, want)
	}
}

func TestRuleSetViews(t *testing.T) {
	rs, err := Compile(
		File{Name: "a.yaml", Data: []byte("domain: api\ndescriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1}}]\n")},
		File{Name: "b.yaml", Data: []byte(lines(
			"domain: edge",
			"descriptors:",
			"  - key: k",
			"    rate_limits: [{unit: second, requests_per_unit: 1}, {unit: hour, requests_per_unit: 9, algorithm: gcra}]",
		))},
		File{Name: "c.yaml", Data: []byte("domain: empty\n")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Domains(); !reflect.DeepEqual(got, []string{"api", "edge", "empty"}) {
		t.Errorf("Domains = %v", got)
	}
	if got, want := rs.Summary(), "3 domains, 3 limits (edge: 2, api: 1, empty: 0)"; got != want {
		t.Errorf("Summary = %q, want %q", got, want)
	}
	if len(rs.Hash()) != 64 {
		t.Errorf("Hash = %q", rs.Hash())
	}
	js, err := json.Marshal(rs.Dump())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`"domain":"edge"`, `"id":"k#1"`, `"algorithm":"gcra"`, `"period_ms":3600000`, `"burst":9`, `"file":"b.yaml","line":4`} {
		if !strings.Contains(string(js), s) {
			t.Errorf("Dump JSON lacks %s:\n%s", s, js)
		}
	}
	if strings.Contains(string(js), `"burst":1,`) {
		t.Errorf("Dump shows a burst for fixed_window:\n%s", js)
	}
}

func TestHash(t *testing.T) {
	a := mustParse(t, "domain: d\n")
	b := mustParse(t, "domain: d\n")
	c, err := Parse("other.yaml", []byte("domain: d\n"))
	if err != nil {
		t.Fatal(err)
	}
	d := mustParse(t, "domain: d\n# comment\n")
	if a.Hash() != b.Hash() {
		t.Error("same input, different hashes")
	}
	if a.Hash() == c.Hash() || a.Hash() == d.Hash() {
		t.Error("hash ignores the file name or content")
	}
}

func TestEmptyAndNilRuleSet(t *testing.T) {
	for _, rs := range []*RuleSet{nil, mustCompile(t)} {
		if rs.Match("d", []Entry{{"k", "v"}}) != nil || rs.LimitCount() != 0 || len(rs.Domains()) != 0 {
			t.Errorf("%v: not empty", rs)
		}
		if got := rs.Summary(); got != "0 domains, 0 limits" {
			t.Errorf("Summary = %q", got)
		}
		if _, err := json.Marshal(rs.Dump()); err != nil {
			t.Error(err)
		}
	}
}

func mustCompile(t *testing.T, files ...File) *RuleSet {
	t.Helper()
	rs, err := Compile(files...)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func ids(ls []*Limit) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}

// An unlimited limit loads with unit: "" (as generators write it, and as
// envoyproxy/ratelimit loads it) or with no unit at all.
func TestUnlimitedWithoutAUnit(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		`  - {key: a, rate_limit: {unlimited: true, unit: ""}}`,
		"  - {key: b, rate_limit: {unlimited: true}}",
	))
	for _, k := range []string{"a", "b"} {
		if ls := rs.Match("d", []Entry{{k, "1"}}); len(ls) != 1 || !ls[0].Unlimited {
			t.Errorf("%s: %v, want one unlimited limit", k, ids(ls))
		}
	}
}

// Descriptors nest 32 levels, as Envoy Gateway renders a rule with 16 header matches
// and its other selectors (one level each); a 32-entry request reaches the deepest
// limit.
func TestThirtyTwoLevels(t *testing.T) {
	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	entries := make([]Entry, 32)
	for i := range 32 {
		ind := strings.Repeat("    ", i)
		fmt.Fprintf(&b, "%s  - key: k%d\n", ind, i)
		if i < 31 {
			fmt.Fprintf(&b, "%s    descriptors:\n", ind)
		} else {
			fmt.Fprintf(&b, "%s    rate_limit: {unit: second, requests_per_unit: 1}\n", ind)
		}
		entries[i] = Entry{fmt.Sprint("k", i), "v"}
	}
	rs := mustParse(t, b.String())
	if ls := rs.Match("d", entries); len(ls) != 1 {
		t.Fatalf("a 32-entry request matched %d limits, want the deepest one", len(ls))
	}
}

// A replaces naming no limit loads, as in envoyproxy/ratelimit, with a warning for each;
// warnings are bounded.
func TestReplacesOfNoLimitWarns(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: a",
		"    replaces: [{name: nope}]",
		"    rate_limit:",
		"      unit: second",
		"      requests_per_unit: 1",
		"      replaces:",
		"        - name: missing",
	))
	ws, total := rs.Warnings()
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	want := []string{
		`t.yaml:4: descriptors[0].replaces[0].name: no limit named "nope" in domain "d": this replaces nothing`,
		`t.yaml:9: descriptors[0].rate_limit.replaces[0].name: no limit named "missing" in domain "d": this replaces nothing`,
	}
	if total != 2 || !reflect.DeepEqual(got, want) {
		t.Errorf("warnings (%d):\n%s\nwant:\n%s", total, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ls := rs.Match("d", []Entry{{"a", "x"}}); len(ls) != 1 {
		t.Errorf("the limit did not load: %v", ids(ls))
	}

	var b strings.Builder
	b.WriteString("domain: d\ndescriptors:\n")
	for i := range 25 {
		fmt.Fprintf(&b, "  - {key: k%d, rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: ghost%d}]}}\n", i, i)
	}
	if ws, total := mustParse(t, b.String()).Warnings(); len(ws) != 10 || total != 25 {
		t.Errorf("25 warnings kept %d, counted %d; want 10 and 25", len(ws), total)
	}
	if ws, total := mustParse(t, "domain: d\n").Warnings(); ws != nil || total != 0 {
		t.Errorf("a clean file warns: %v", ws)
	}
}

// A value pattern "*" matches every value before the bare key and every later pattern:
// those siblings load, with a warning each, whichever comes first in the file. Exact
// values, earlier patterns and other keys are not hidden.
func TestEntriesHiddenByAStarWarn(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - key: k", // 3: bare key, before the star
		"    rate_limit: {unit: second, requests_per_unit: 1}",
		"  - key: k", // 5: an earlier pattern: reachable
		"    value: 'a*'",
		"    rate_limit: {unit: second, requests_per_unit: 2}",
		"  - key: k", // 8: the star
		"    value: '*'",
		"    rate_limit: {unit: second, requests_per_unit: 3}",
		"  - key: k", // 11: a later pattern
		"    value: 'b*'",
		"    rate_limit: {unit: second, requests_per_unit: 4}",
		"  - key: k", // 14: exact: tried before patterns
		"    value: x",
		"    rate_limit: {unit: second, requests_per_unit: 5}",
		"  - key: j", // 17: another key, bare
		"    rate_limit: {unit: second, requests_per_unit: 6}",
		"  - key: j", // 19: a star after the bare key, written as two
		"    value: '**'",
		"    rate_limit: {unit: second, requests_per_unit: 7}",
		"  - key: j", // 22: a pattern after that star
		"    value: 'c*'",
		"    rate_limit: {unit: second, requests_per_unit: 8}",
	))
	ws, total := rs.Warnings()
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	want := []string{
		`t.yaml:3: descriptors[0]: key "k" without value never matches: the value pattern "*" at line 8 matches every value first`,
		`t.yaml:11: descriptors[3]: key "k" value "b*" never matches: the value pattern "*" at line 8 matches every value first`,
		`t.yaml:17: descriptors[5]: key "j" without value never matches: the value pattern "**" at line 19 matches every value first`,
		`t.yaml:22: descriptors[7]: key "j" value "c*" never matches: the value pattern "**" at line 19 matches every value first`,
	}
	if total != len(want) || !reflect.DeepEqual(got, want) {
		t.Errorf("warnings (%d):\n%s\nwant:\n%s", total, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for v, rpu := range map[string]int64{"x": 5, "a1": 2, "b1": 3, "zzz": 3} {
		if ls := rs.Match("d", []Entry{{"k", v}}); len(ls) != 1 || ls[0].RequestsPerUnit != rpu {
			t.Errorf("k=%s matched %v, want the limit of %d", v, ids(ls), rpu)
		}
	}
}

// An entry that a "*" hides is warned of where it is written: through an alias, at the
// alias rather than at its anchor elsewhere in the file.
func TestHiddenEntryThroughAnAlias(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		"  - &bare {key: k, rate_limit: {unit: second, requests_per_unit: 1}}",
		"  - key: j",
		"    descriptors:",
		"      - {key: k, value: '*', rate_limit: {unit: second, requests_per_unit: 2}}",
		"      - *bare",
	))
	ws, _ := rs.Warnings()
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	want := []string{`t.yaml:7: descriptors[1].descriptors[1]: key "k" without value never matches: the value pattern "*" at line 6 matches every value first`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A descriptor value may hold a tab (Envoy takes values from request headers, and
// HTTP allows a tab inside a header value), quoted or in a plain scalar, exact or in a
// pattern; other control characters, and a tab in a key or the domain, stay errors.
func TestTabInAValue(t *testing.T) {
	rs := mustParse(t, lines(
		"domain: d",
		"descriptors:",
		`  - {key: k, value: "a\tb", rate_limit: {unit: second, requests_per_unit: 1}}`,
		"  - {key: k, value: c\td, rate_limit: {unit: second, requests_per_unit: 2}}",
		`  - {key: k, value: "e\t*", rate_limit: {unit: second, requests_per_unit: 3}}`,
	))
	for v, rpu := range map[string]int64{"a\tb": 1, "c\td": 2, "e\tf": 3} {
		if ls := rs.Match("d", []Entry{{"k", v}}); len(ls) != 1 || ls[0].RequestsPerUnit != rpu {
			t.Errorf("k=%q matched %v, want the limit of %d", v, ids(ls), rpu)
		}
	}
	if got := ids(rs.Limits("d")); !reflect.DeepEqual(got, []string{"k=a%09b#0", "k=c%09d#0", "k=e%09*#0"}) {
		t.Errorf("IDs %q: the tab must be escaped", got)
	}
	for _, src := range []string{
		"domain: d\ndescriptors:\n  - {key: \"k\\tj\", rate_limit: {unit: second, requests_per_unit: 1}}\n",
		"domain: \"d\\te\"\ndescriptors: []\n",
		"domain: d\ndescriptors:\n  - {key: k, value: \"a\\rb\", rate_limit: {unit: second, requests_per_unit: 1}}\n",
	} {
		if _, err := Parse("t.yaml", []byte(src)); err == nil || !strings.Contains(err.Error(), "contains control character") {
			t.Errorf("%q: error %v, want a control character refused", src, err)
		}
	}
}
