package deploy

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// A small reader of PromQL, enough to check the alert rules against the registry
// without depending on Prometheus itself: it finds the metric selectors with their
// label matchers, the `by` / `without` label lists of aggregations with the selectors
// they aggregate, and the thresholds histogram_quantile results are compared with.
// What it does not read (vector matching with on / ignoring, selectors without a
// metric name) it refuses, so that a rule using it is not passed unchecked.

type tokenKind int

const (
	tIdent  tokenKind = iota // metric, label, function or keyword
	tNumber                  // 0.005, 1e3, 86400
	tString                  // a quoted string, unquoted
	tRange                   // [5m] or [1h:1m], content skipped
	tPunct                   // ( ) { } , and operators
)

type token struct {
	kind tokenKind
	text string
}

// tokenize splits a PromQL expression into tokens; # starts a comment to the line end.
func tokenize(expr string) ([]token, error) {
	var out []token
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			s, n, err := readString(expr[i:])
			if err != nil {
				return nil, err
			}
			out = append(out, token{tString, s})
			i += n
		case c == '[':
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("unclosed [ at %d", i)
			}
			out = append(out, token{tRange, expr[i+1 : i+end]})
			i += end + 1
		case isIdentStart(c):
			j := i + 1
			for j < len(expr) && isIdentPart(expr[j]) {
				j++
			}
			out = append(out, token{tIdent, expr[i:j]})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i + 1 // digits, a fraction, an exponent, a duration's units (offset 5m)
			for j < len(expr) && (isIdentPart(expr[j]) || expr[j] == '.' ||
				(expr[j] == '+' || expr[j] == '-') && (expr[j-1] == 'e' || expr[j-1] == 'E')) {
				j++
			}
			out = append(out, token{tNumber, expr[i:j]})
			i = j
		default:
			op := readOperator(expr[i:])
			if op == "" {
				return nil, fmt.Errorf("unexpected %q at %d", c, i)
			}
			out = append(out, token{tPunct, op})
			i += len(op)
		}
	}
	return out, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

// readOperator returns the operator or punctuation s starts with, two-character
// operators first, or "".
func readOperator(s string) string {
	for _, op := range []string{"==", "!=", ">=", "<=", "=~", "!~"} {
		if strings.HasPrefix(s, op) {
			return op
		}
	}
	if strings.ContainsRune("(){},=<>+-*/%^", rune(s[0])) {
		return s[:1]
	}
	return ""
}

// readString reads the quoted string s starts with: its value and its length in s.
// Backquoted strings have no escapes; the others have Go's.
func readString(s string) (string, int, error) {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q != '`':
			i++
		case s[i] == q:
			if q == '`' {
				return s[1:i], i + 1, nil
			}
			if q == '\'' { // strconv.Unquote reads '...' as one rune
				v, err := strconv.Unquote(`"` + strings.ReplaceAll(s[1:i], `"`, `\"`) + `"`)
				return v, i + 1, err
			}
			v, err := strconv.Unquote(s[:i+1])
			return v, i + 1, err
		}
	}
	return "", 0, fmt.Errorf("unclosed string %s", s)
}

// matcher is one label matcher of a selector: label op value.
type matcher struct{ label, op, value string }

// selector is a metric selector: the metric's name and its matchers.
type selector struct {
	metric   string
	matchers []matcher
}

// grouping is an aggregation's `by` or `without` clause and the selectors it aggregates.
// An aggregation without a clause is read as `by ()`: its result keeps no label.
type grouping struct {
	without   bool
	labels    []string
	selectors []selector
}

// threshold is `histogram_quantile(…) op value`, with the bucket metric it reads.
type threshold struct {
	metric string
	op     string
	value  float64
}

// query is what the checks read from one expression.
type query struct {
	selectors  []selector
	groupings  []grouping
	thresholds []threshold
}

// aggregations take a `by` / `without` clause; keywords are never metric names.
var (
	aggregations = set("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio")
	keywords = set("by", "without", "on", "ignoring", "group_left", "group_right", "and",
		"or", "unless", "bool", "offset", "inf", "nan")
	matchOps = set("=", "!=", "=~", "!~")
)

func set(items ...string) map[string]bool {
	m := map[string]bool{}
	for _, s := range items {
		m[s] = true
	}
	return m
}

// parseQuery reads expr's selectors, groupings and histogram_quantile thresholds.
func parseQuery(expr string) (query, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return query{}, err
	}
	p := &parser{toks: toks}
	if err := p.scan(); err != nil {
		return query{}, err
	}
	return p.q, nil
}

type parser struct {
	toks []token
	q    query
	// selAt is the token index of each selector in q.selectors, to find an
	// aggregation's selectors by its parentheses.
	selAt []int
}

func (p *parser) is(i int, kind tokenKind, text string) bool {
	return i < len(p.toks) && p.toks[i].kind == kind && p.toks[i].text == text
}

// scan reads every selector, then the groupings and thresholds, which refer to them.
func (p *parser) scan() error {
	for i := 0; i < len(p.toks); i++ {
		t := p.toks[i]
		switch {
		case p.is(i, tPunct, "{"):
			return fmt.Errorf("a selector without a metric name (token %d): not read", i)
		case t.kind != tIdent:
		case t.text == "on" || t.text == "ignoring" || t.text == "group_left" || t.text == "group_right":
			return fmt.Errorf("vector matching (%s) is not read by this checker", t.text)
		case keywords[strings.ToLower(t.text)]:
			if t.text == "by" || t.text == "without" {
				_, end, err := p.labelList(i + 1)
				if err != nil {
					return err
				}
				i = end
			}
		case aggregations[t.text] || p.is(i+1, tPunct, "("): // read below; a function
		default:
			end, err := p.selector(i)
			if err != nil {
				return err
			}
			i = end
		}
	}
	for i, t := range p.toks {
		called := p.is(i+1, tPunct, "(") || p.is(i+1, tIdent, "by") || p.is(i+1, tIdent, "without")
		if t.kind == tIdent && aggregations[t.text] && called {
			if err := p.aggregation(i); err != nil {
				return err
			}
		}
		if t.kind == tIdent && t.text == "histogram_quantile" && p.is(i+1, tPunct, "(") {
			if err := p.quantile(i); err != nil {
				return err
			}
		}
	}
	return nil
}

// selector reads the metric name at i and its matchers; it returns the last token's index.
func (p *parser) selector(i int) (int, error) {
	s := selector{metric: p.toks[i].text}
	p.selAt = append(p.selAt, i)
	end := i
	if p.is(i+1, tPunct, "{") {
		j := i + 2
		for !p.is(j, tPunct, "}") {
			if j+2 >= len(p.toks) || p.toks[j].kind != tIdent || p.toks[j+1].kind != tPunct || !matchOps[p.toks[j+1].text] || p.toks[j+2].kind != tString {
				return 0, fmt.Errorf("%s: want label op \"value\" at token %d", s.metric, j)
			}
			s.matchers = append(s.matchers, matcher{p.toks[j].text, p.toks[j+1].text, p.toks[j+2].text})
			j += 3
			if p.is(j, tPunct, ",") {
				j++
			}
		}
		end = j
	}
	p.q.selectors = append(p.q.selectors, s)
	return end, nil
}

// labelList reads `( label, … )` from i: the labels and the index of the `)`.
func (p *parser) labelList(i int) ([]string, int, error) {
	if !p.is(i, tPunct, "(") {
		return nil, 0, fmt.Errorf("want ( after by / without at token %d", i)
	}
	var labels []string
	for j := i + 1; j < len(p.toks); j++ {
		switch t := p.toks[j]; {
		case p.is(j, tPunct, ")"):
			return labels, j, nil
		case t.kind == tIdent:
			labels = append(labels, t.text)
		case !p.is(j, tPunct, ","):
			return nil, 0, fmt.Errorf("unexpected %q in a label list", t.text)
		}
	}
	return nil, 0, fmt.Errorf("unclosed label list at token %d", i)
}

// closing returns the index of the `)` matching the `(` at i.
func (p *parser) closing(i int) (int, error) {
	depth := 0
	for j := i; j < len(p.toks); j++ {
		switch {
		case p.is(j, tPunct, "("):
			depth++
		case p.is(j, tPunct, ")"):
			depth--
			if depth == 0 {
				return j, nil
			}
		}
	}
	return 0, fmt.Errorf("unclosed ( at token %d", i)
}

// aggregation reads `agg by (…) (…)`, `agg (…) by (…)` or `agg (…)` at i.
func (p *parser) aggregation(i int) error {
	g := grouping{}
	open := i + 1
	clause := -1
	if p.is(open, tIdent, "by") || p.is(open, tIdent, "without") {
		clause = open
		_, end, err := p.labelList(open + 1)
		if err != nil {
			return err
		}
		open = end + 1
	}
	if !p.is(open, tPunct, "(") {
		return fmt.Errorf("%s: want ( at token %d", p.toks[i].text, open)
	}
	end, err := p.closing(open)
	if err != nil {
		return err
	}
	if clause < 0 && (p.is(end+1, tIdent, "by") || p.is(end+1, tIdent, "without")) {
		clause = end + 1
	}
	if clause >= 0 {
		g.without = p.toks[clause].text == "without"
		if g.labels, _, err = p.labelList(clause + 1); err != nil {
			return err
		}
	}
	for k, at := range p.selAt {
		if at > open && at < end {
			g.selectors = append(g.selectors, p.q.selectors[k])
		}
	}
	p.q.groupings = append(p.q.groupings, g)
	return nil
}

// quantile reads `histogram_quantile(φ, …) op number` at i.
func (p *parser) quantile(i int) error {
	end, err := p.closing(i + 1)
	if err != nil {
		return err
	}
	th := threshold{}
	for k, at := range p.selAt {
		if at > i+1 && at < end {
			th.metric = p.q.selectors[k].metric
		}
	}
	if end+2 >= len(p.toks) || p.toks[end+1].kind != tPunct || p.toks[end+2].kind != tNumber {
		return fmt.Errorf("histogram_quantile is not compared with a number")
	}
	th.op = p.toks[end+1].text
	if th.value, err = strconv.ParseFloat(p.toks[end+2].text, 64); err != nil {
		return err
	}
	p.q.thresholds = append(p.q.thresholds, th)
	return nil
}

func TestParseQuery(t *testing.T) {
	for _, c := range []struct {
		expr string
		want query
	}{
		{
			// Functions, keywords and numbers are not metrics; matchers keep their op.
			expr: `metric_a{x="1", y!~'a|b'} - time() < 7 * 86400 and on_metric offset 5m`,
			want: query{selectors: []selector{
				{"metric_a", []matcher{{"x", "=", "1"}, {"y", "!~", "a|b"}}}, {"on_metric", nil},
			}},
		},
		{
			// Strings may hold braces, quotes and commas; a range holds a duration.
			expr: "rate(m{path=\"/a{b},\\\"c\\\"\", le=`0.5`}[5m:1m]) # a comment m2{x=\"y\"}",
			want: query{selectors: []selector{{"m", []matcher{{"path", "=", "/a{b},\"c\""}, {"le", "=", "0.5"}}}}},
		},
		{
			// The clause before or after the argument; nested aggregations.
			expr: `count by (job) (count(config_info{hash!=""}) by (job, hash)) > 1`,
			want: query{
				selectors: []selector{{"config_info", []matcher{{"hash", "!=", ""}}}},
				groupings: []grouping{
					{labels: []string{"job"}, selectors: []selector{{"config_info", []matcher{{"hash", "!=", ""}}}}},
					{labels: []string{"job", "hash"}, selectors: []selector{{"config_info", []matcher{{"hash", "!=", ""}}}}},
				},
			},
		},
		{
			// Each histogram_quantile with its comparison; an aggregation without a clause
			// groups by no label.
			expr: `histogram_quantile(0.99, sum without (instance) (rate(h_bucket{e="r"}[5m]))) > 0.002
				or max(g) >= 1e-3 or histogram_quantile(0.5, rate(h2_bucket[1m])) <= 2.5e-3`,
			want: query{
				selectors: []selector{{"h_bucket", []matcher{{"e", "=", "r"}}}, {"g", nil}, {"h2_bucket", nil}},
				groupings: []grouping{
					{without: true, labels: []string{"instance"}, selectors: []selector{{"h_bucket", []matcher{{"e", "=", "r"}}}}},
					{selectors: []selector{{"g", nil}}},
				},
				thresholds: []threshold{
					{"h_bucket", ">", 0.002}, {"h2_bucket", "<=", 0.0025},
				},
			},
		},
	} {
		got, err := parseQuery(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.expr, got, c.want)
		}
	}
}

// What the reader does not understand is refused, not passed unchecked.
func TestParseQueryRefuses(t *testing.T) {
	for _, expr := range []string{
		`{__name__="m"}`,                        // no metric name
		`a / on (job) b`,                        // vector matching
		`a * ignoring (x) group_left b`,         // vector matching
		`m{x="1"`,                               // unclosed selector
		`m{x=1}`,                                // unquoted value
		`sum by job (m)`,                        // no list
		`sum(rate(m[5m])`,                       // unclosed (
		`histogram_quantile(0.9, m_bucket) > x`, // no number
		`m{x="unclosed}`,                        // unclosed string
		`m ? 1`,                                 // not PromQL
	} {
		if q, err := parseQuery(expr); err == nil {
			t.Errorf("%s: read as %+v, want an error", expr, q)
		}
	}
}
