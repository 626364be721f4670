package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"text/template"
	"unicode"

	"gopkg.in/yaml.v3"
)

// alertsFile is the alerting rules file docs/deploy.md tells operators to load.
var alertsFile = filepath.Join("prometheus", "ratelimit-ext-alerts.yaml")

// ruleFile is a Prometheus rules file with the keys Prometheus reads; decoded with
// KnownFields, a misspelt key (`annotation:`) fails instead of being dropped.
type ruleFile struct {
	Groups []struct {
		Name     string            `yaml:"name"`
		Interval string            `yaml:"interval"`
		Limit    int               `yaml:"limit"`
		Labels   map[string]string `yaml:"labels"`
		Rules    []alertRule       `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []alertRule
	groups := map[string]bool{}
	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] || len(g.Rules) == 0 {
			t.Errorf("group %q: want a unique name and rules", g.Name)
		}
		groups[g.Name] = true
		rules = append(rules, g.Rules...)
	}
	if len(rules) < 10 {
		t.Fatalf("%s: %d rules", alertsFile, len(rules))
	}
	return rules
}

var (
	alertName = regexp.MustCompile(`^RatelimitExt[A-Z][A-Za-z0-9]*$`)
	// promDuration is Prometheus' duration syntax (5m, 1h30m), which Go's does not take whole.
	promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	severities   = set("critical", "warning") // critical pages; warning opens a ticket
	annotations  = []string{"description", "runbook_url", "summary"}
)

// TestAlertRules: every rule is an alert with a unique name, an expression, a `for`, a
// severity, a summary, a description and a runbook link, and its templates parse.
func TestAlertRules(t *testing.T) {
	names := map[string]bool{}
	for _, r := range loadAlerts(t) {
		if !alertName.MatchString(r.Alert) || names[r.Alert] || r.Record != "" {
			t.Errorf("rule %q (record %q): want an alert named RatelimitExt… once", r.Alert, r.Record)
		}
		names[r.Alert] = true
		if strings.TrimSpace(r.Expr) == "" || !promDuration.MatchString(r.For) {
			t.Errorf("%s: expr %q, for %q: want both", r.Alert, r.Expr, r.For)
		}
		if len(r.Labels) != 1 || !severities[r.Labels["severity"]] {
			t.Errorf("%s: labels %v, want only severity, one of %v", r.Alert, r.Labels, slices.Sorted(maps.Keys(severities)))
		}
		keys := slices.Sorted(maps.Keys(r.Annotations))
		if !slices.Equal(keys, annotations) {
			t.Errorf("%s: annotations %v, want %v", r.Alert, keys, annotations)
		}
		for k, text := range r.Annotations {
			if strings.TrimSpace(text) == "" {
				t.Errorf("%s: empty %s", r.Alert, k)
			}
			if err := parseAlertTemplate(text); err != nil {
				t.Errorf("%s: %s: %v", r.Alert, k, err)
			}
		}
	}
}

// parseAlertTemplate parses an annotation as Prometheus does: text/template with
// $labels and $value defined, and its functions (stubs here: only parsing is checked).
func parseAlertTemplate(text string) error {
	stub := func(v any) string { return fmt.Sprint(v) }
	funcs := template.FuncMap{}
	for _, f := range []string{"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp", "title", "toUpper", "toLower"} {
		funcs[f] = stub
	}
	const defs = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	_, err := template.New("annotation").Funcs(funcs).Parse(defs + text)
	return err
}

// targetLabels are the labels Prometheus adds at scrape time. Rules may group by them,
// but not match on them: a rules file for every deployment cannot know the job.
var targetLabels = set("job", "instance")

// TestAlertRulesUseExportedMetrics: every metric an expression names is one the service
// exports (a histogram's with _bucket, _sum or _count); every label matched or grouped
// by is one that metric has (le on _bucket; job and instance to group by); and every
// value matched is one the service gives that label.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	fams := exportedFamilies(t)
	for _, r := range loadAlerts(t) {
		q, err := parseQuery(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", r.Alert, err)
			continue
		}
		if len(q.selectors) == 0 {
			t.Errorf("%s: no metric in %s", r.Alert, r.Expr)
		}
		for _, err := range checkQuery(q, fams) {
			t.Errorf("%s: %v", r.Alert, err)
		}
		for _, err := range checkTemplateLabels(templateLabels(r), q, fams) {
			t.Errorf("%s: %v", r.Alert, err)
		}
	}
}

// checkTemplateLabels returns the labels an alert's annotations read that its
// expression's result does not have: no metric of it has the label, or an aggregation
// drops it (job and instance too). Every aggregation counts: without vector matching
// (which the reader refuses), both sides of a binary operation keep the same labels,
// so one that drops a label drops it from the result.
func checkTemplateLabels(labels []string, q query, fams map[string]*family) []error {
	var errs []error
	for _, l := range labels {
		switch {
		case !targetLabels[l] && !queryHasLabel(q, fams, l):
			errs = append(errs, fmt.Errorf("an annotation reads $labels.%s, which no metric of the expression has", l))
		case slices.ContainsFunc(q.groupings, func(g grouping) bool { return slices.Contains(g.labels, l) == g.without }):
			errs = append(errs, fmt.Errorf("an annotation reads $labels.%s, which an aggregation drops", l))
		}
	}
	return errs
}

// checkQuery returns what q uses that fams do not export.
func checkQuery(q query, fams map[string]*family) []error {
	var errs []error
	for _, s := range q.selectors {
		f, le := lookup(fams, s.metric)
		if f == nil {
			errs = append(errs, fmt.Errorf("%s is not a metric the service exports", s.metric))
			continue
		}
		for _, m := range s.matchers {
			if err := checkMatcher(f, le, m); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.metric, err))
			}
		}
	}
	for _, g := range q.groupings {
		for _, l := range g.labels {
			for _, s := range g.selectors {
				if f, le := lookup(fams, s.metric); f != nil && !targetLabels[l] && !hasLabel(f, le, l) {
					errs = append(errs, fmt.Errorf("grouped by %s, which %s does not have", l, s.metric))
				}
			}
		}
	}
	return errs
}

// lookup finds the family a series name belongs to, and whether it is a bucket series (le).
func lookup(fams map[string]*family, name string) (f *family, le bool) {
	if f := fams[name]; f != nil {
		return f, false
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if f := fams[strings.TrimSuffix(name, suffix)]; f != nil && f.histogram && strings.HasSuffix(name, suffix) {
			return f, suffix == "_bucket"
		}
	}
	return nil, false
}

func hasLabel(f *family, le bool, label string) bool {
	_, ok := f.labels[label]
	return ok || le && label == "le"
}

// plainAlternatives reads a regexp that is only literal alternatives (a|b).
var plainAlternatives = regexp.MustCompile(`^[A-Za-z0-9_]+(\|[A-Za-z0-9_]+)*$`)

// checkMatcher: the label is the metric's, and each value matched is one the service
// gives it. A misspelt value fails both ways: kind="timout" matches nothing, and
// kind!="cancelled" matches everything.
func checkMatcher(f *family, le bool, m matcher) error {
	if !hasLabel(f, le, m.label) {
		return fmt.Errorf("no label %s", m.label)
	}
	if m.label == "le" {
		if !slices.ContainsFunc(f.buckets, func(b float64) bool { return fmt.Sprint(b) == m.value }) && m.value != "+Inf" {
			return fmt.Errorf("le=%q is not a bucket (%v)", m.value, f.buckets)
		}
		return nil
	}
	values := []string{m.value}
	if m.op == "=~" || m.op == "!~" {
		if !plainAlternatives.MatchString(m.value) {
			return fmt.Errorf("%s%s%q: only literal alternatives (a|b) are checked", m.label, m.op, m.value)
		}
		values = strings.Split(m.value, "|")
	}
	for _, v := range values {
		if !f.labels[m.label][v] {
			why := "not a value the service gives it"
			if inputLabels[m.label] {
				why = "its values come from the rules or requests"
			}
			return fmt.Errorf("%s%s%q: %s (it gives %v)", m.label, m.op, v, why, slices.Sorted(maps.Keys(f.labels[m.label])))
		}
	}
	return nil
}

// Each mistake a rule can make is found: the checks above are only as good as these.
func TestCheckQueryFindsMistakes(t *testing.T) {
	fams := exportedFamilies(t)
	for _, c := range []struct{ expr, want string }{
		{`rate(ratelimit_ext_store_error_total[5m]) > 0`, "not a metric the service exports"},
		{`ratelimit_ext_store_duration_seconds_bucket{engne="redis"}`, "no label engne"},
		{`ratelimit_ext_store_duration_seconds_sum{le="0.005"}`, "no label le"},
		{`ratelimit_ext_store_duration_seconds_bucket{le="0.003"}`, "not a bucket"},
		{`ratelimit_ext_store_errors_total{kind="timout"}`, "not a value the service gives it"},
		{`ratelimit_ext_store_errors_total{kind!="cancelled"}`, "not a value the service gives it"},
		{`ratelimit_ext_requests_total{outcome=~"unavailable|invald"}`, "not a value the service gives it"},
		{`ratelimit_ext_requests_total{outcome=~"unavail.*"}`, "only literal alternatives"},
		{`ratelimit_ext_decisions_total{domain="edge"}`, "values come from the rules or requests"},
		{`ratelimit_ext_detailed_decisions_total{descriptor="_overflow"}`, "values come from the rules or requests"},
		{`ratelimit_ext_ready{job="ratelimit-ext"}`, "no label job"},
		{`sum by (job, engine) (rate(ratelimit_ext_requests_total[5m]))`, "grouped by engine"},
		{`histogram_quantile(0.99, sum by (job, le) (rate(ratelimit_ext_request_duration_seconds_count[5m]))) > 0.005`, "grouped by le"},
	} {
		q, err := parseQuery(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		errs := checkQuery(q, fams)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s: %v, want one error saying %q", c.expr, errs, c.want)
		}
	}
	good := `sum by (job, instance, api, le) (rate(ratelimit_ext_request_duration_seconds_bucket{api=~"rls|decide", le="0.005"}[5m]))`
	if q, err := parseQuery(good); err != nil || len(checkQuery(q, fams)) != 0 {
		t.Errorf("%s: %v %v, want no error", good, err, checkQuery(q, fams))
	}
}

// An annotation that reads a label the expression's result does not have renders it
// empty: the checks find it, whether no metric has the label or an aggregation drops it.
func TestTemplateLabelsFindsMistakes(t *testing.T) {
	fams := exportedFamilies(t)
	for _, c := range []struct{ expr, label, want string }{
		{`ratelimit_ext_ready == 0`, "api", "no metric of the expression has"},
		{`max by (job) (ratelimit_ext_store_circuit_open) > 0`, "instance", "an aggregation drops"},
		{`sum by (job) (rate(ratelimit_ext_requests_total[5m])) > 0`, "api", "an aggregation drops"},
		{`sum without (api) (rate(ratelimit_ext_requests_total[5m])) > 0`, "api", "an aggregation drops"},
		{`sum(rate(ratelimit_ext_requests_total[5m])) > 0`, "job", "an aggregation drops"},
		{`count by (job) (count by (job, hash) (ratelimit_ext_config_info)) > 1`, "hash", "an aggregation drops"},
	} {
		q, err := parseQuery(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		errs := checkTemplateLabels([]string{c.label}, q, fams)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), c.want) {
			t.Errorf("%s, $labels.%s: %v, want one error saying %q", c.expr, c.label, errs, c.want)
		}
	}
	for _, c := range []struct{ expr, label string }{
		{`ratelimit_ext_ready == 0`, "instance"},
		{`sum by (job, api) (rate(ratelimit_ext_requests_total[5m])) > 0`, "api"},
		{`sum without (instance) (rate(ratelimit_ext_requests_total[5m])) > 0`, "api"},
		{`histogram_quantile(0.99, sum by (job, api, le) (rate(ratelimit_ext_request_duration_seconds_bucket[5m]))) > 0.005`, "api"},
	} {
		q, err := parseQuery(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if errs := checkTemplateLabels([]string{c.label}, q, fams); len(errs) != 0 {
			t.Errorf("%s, $labels.%s: %v, want no error", c.expr, c.label, errs)
		}
	}
}

// templateLabels lists the labels an alert's annotations read ($labels.x).
func templateLabels(r alertRule) []string {
	re := regexp.MustCompile(`\$labels\.(\w+)`)
	var out []string
	for _, text := range r.Annotations {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

func queryHasLabel(q query, fams map[string]*family, label string) bool {
	for _, s := range q.selectors {
		if f, le := lookup(fams, s.metric); f != nil && hasLabel(f, le, label) {
			return true
		}
	}
	return false
}

// Every histogram_quantile alert compares the quantile with one of the histogram's bucket
// boundaries: between two, histogram_quantile only interpolates, so a threshold there
// (2 ms between 1.5 and 2.5 ms) fires on calls of 1.6 ms and can miss calls of 2.4 ms.
func TestHistogramAlertThresholdsAreBucketBoundaries(t *testing.T) {
	fams := exportedFamilies(t)
	n := 0
	for _, r := range loadAlerts(t) {
		q, err := parseQuery(r.Expr)
		if err != nil {
			t.Fatalf("%s: %v", r.Alert, err)
		}
		for _, th := range q.thresholds {
			n++
			f, le := lookup(fams, th.metric)
			if f == nil || !le {
				t.Errorf("%s: histogram_quantile over %q, not a histogram's _bucket series", r.Alert, th.metric)
				continue
			}
			if !slices.Contains(f.buckets, th.value) {
				t.Errorf("%s: threshold %v is not a bucket boundary of %s (%v)", r.Alert, th.value, th.metric, f.buckets)
			}
		}
	}
	if n < 2 {
		t.Errorf("found %d histogram_quantile thresholds, want the latency alerts'", n)
	}
}

// TestAlertRunbooks: every runbook_url is a heading of the docs, at the repository's
// address (the module path) on main.
func TestAlertRunbooks(t *testing.T) {
	base := "https://" + modulePath(t) + "/blob/main/"
	for _, r := range loadAlerts(t) {
		u := r.Annotations["runbook_url"]
		rel, ok := strings.CutPrefix(u, base)
		file, anchor, hasAnchor := strings.Cut(rel, "#")
		if !ok || !hasAnchor || !strings.HasPrefix(file, "docs/") {
			t.Errorf("%s: runbook_url %q: want %sdocs/FILE.md#section", r.Alert, u, base)
			continue
		}
		md, err := os.ReadFile(filepath.Join(repoRoot, file))
		if err != nil {
			t.Errorf("%s: runbook_url %q: %v", r.Alert, u, err)
			continue
		}
		if !markdownAnchors(string(md))[anchor] {
			t.Errorf("%s: runbook_url %q: %s has no heading #%s", r.Alert, u, file, anchor)
		}
	}
}

func modulePath(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if m, ok := strings.CutPrefix(line, "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatal("go.mod has no module line")
	return ""
}

// markdownAnchors returns the anchors GitHub gives the headings of md (outside code
// blocks): lower case, punctuation dropped, spaces as hyphens.
func markdownAnchors(md string) map[string]bool {
	anchors := map[string]bool{}
	fenced := false
	sc := bufio.NewScanner(strings.NewReader(md))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		heading, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " ")
		if fenced || !ok || !strings.HasPrefix(line, "#") {
			continue
		}
		var b strings.Builder
		for _, r := range strings.ToLower(heading) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		anchors[b.String()] = true
	}
	return anchors
}

func TestMarkdownAnchors(t *testing.T) {
	md := "# Metrics\n## Rules and health\n```yaml\n# not a heading\n```\n### `POST /v1/decide`\n#hashtag\n## One script call per request, or one for many\n"
	got := slices.Sorted(maps.Keys(markdownAnchors(md)))
	want := []string{"metrics", "one-script-call-per-request-or-one-for-many", "post-v1decide", "rules-and-health"}
	if !slices.Equal(got, want) {
		t.Errorf("anchors %q, want %q", got, want)
	}
}

// The PrometheusRule docs/deploy.md builds for the Prometheus Operator (the file
// indented under `spec:`) holds the file's groups unchanged. The test runs the docs'
// command, with `cat` for kubectl.
func TestPrometheusRuleWrap(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```sh\n(\\{ printf 'apiVersion: monitoring.coreos.com/v1.*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal("docs/deploy.md has no command that wraps the rules in a PrometheusRule")
	}
	kubectl := regexp.MustCompile(`\| kubectl apply [^\n]*-f -`)
	if !kubectl.Match(block[1]) {
		t.Fatalf("the command does not end in kubectl apply -f -:\n%s", block[1])
	}
	script := kubectl.ReplaceAllLiteral(block[1], []byte("| cat"))
	cmd := exec.Command("sh", "-c", string(script))
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
	var wrapped struct {
		APIVersion string                `yaml:"apiVersion"`
		Kind       string                `yaml:"kind"`
		Metadata   struct{ Name string } `yaml:"metadata"`
		Spec       map[string]any        `yaml:"spec"`
	}
	var file map[string]any
	data, _ := os.ReadFile(alertsFile)
	if err := yaml.Unmarshal(out, &wrapped); err != nil {
		t.Fatalf("the PrometheusRule does not decode: %v\n%s", err, out)
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	if wrapped.APIVersion != "monitoring.coreos.com/v1" || wrapped.Kind != "PrometheusRule" || wrapped.Metadata.Name == "" {
		t.Errorf("wrapped as %s %s %q", wrapped.APIVersion, wrapped.Kind, wrapped.Metadata.Name)
	}
	if !reflect.DeepEqual(wrapped.Spec, file) {
		t.Errorf("the PrometheusRule's spec is not the rules file")
	}
}
