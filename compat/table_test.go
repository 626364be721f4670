package compat

import (
	"strconv"
	"strings"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// tableRules are the hand-written rules of the table cases, in envoyproxy/ratelimit's
// format (flow mappings included, as its users write them); each case has a copy under
// a domain of its own (tableYAML). Every limit counts over an hour or a day, so a case
// rarely needs a second attempt.
const tableRules = `descriptors:
  # An exact value wins over the patterns, which win in file order over the key alone.
  - key: path
    value: /api/v1
    rate_limit: {unit: hour, requests_per_unit: 1, name: exact}
  - key: path
    value: "/api/*"
    rate_limit: {unit: hour, requests_per_unit: 2, name: api-slash}
  - key: path
    value: "/api*"
    rate_limit: {unit: hour, requests_per_unit: 3, name: api}
  - key: path
    rate_limit: {unit: hour, requests_per_unit: 4, name: any-path}
  # A limit applies at the depth of the request descriptor's last entry only.
  - key: remote_address
    rate_limit: {unit: day, requests_per_unit: 2, name: per-ip}
    descriptors:
      - key: method
        value: POST
        rate_limit: {unit: hour, requests_per_unit: 1, name: per-ip-post}
  - key: generic_key
    value: blocked
    rate_limit: {unit: hour, requests_per_unit: 0, name: blocklist}
  - key: generic_key
    value: free
    rate_limit: {unlimited: true}
  - key: generic_key
    value: trial
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 1, name: shadow-trial}
` + shareRule + `  - key: tenant
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: plan
    value: standard
    rate_limit: {unit: hour, requests_per_unit: 1, name: standard}
  - key: plan
    value: premium
    rate_limit:
      unit: hour
      requests_per_unit: 3
      name: premium
      replaces: [{name: standard}]
`

// shareRule is the table rule with share_threshold, which a RateLimitConfig has no
// field for: over xDS the table is without it (xdsTableYAML), and its case is left out.
const shareRule = `  # share_threshold: every value the pattern matches shares one counter.
  - key: tenant
    value: "acme*"
    share_threshold: true
    rate_limit: {unit: hour, requests_per_unit: 2, name: acme}
`

// shareCase is the name of the case about shareRule.
const shareCase = "share_threshold shares one counter among the values"

func tableYAML(domain string) string { return "domain: " + domain + "\n" + tableRules }

// xdsTableYAML is tableYAML without shareRule.
func xdsTableYAML(domain string) string {
	return strings.Replace(tableYAML(domain), shareRule, "", 1)
}

// tableStep is one request of a case, sent n times (1 when n is 0).
type tableStep struct {
	req *rlsv3.RateLimitRequest
	n   int
}

func TestTableCasesAreWellFormed(t *testing.T) {
	for _, c := range tableCases() {
		n := 0
		for _, s := range c.steps {
			n += max(s.n, 1)
		}
		if got := len(strings.Fields(c.want)); got != n {
			t.Errorf("%s: want lists %d codes for %d requests", c.name, got, n)
		}
	}
}

type tableCase struct {
	name  string
	steps []tableStep
	want  string // our overall codes, one per request sent: what the case is about
}

// tableCases are the cases. Each has a copy of tableRules under a domain of its own,
// tableDomain(its index): the requests for "table" are sent to it.
func tableCases() []tableCase {
	cases := tableCaseList()
	for i, c := range cases {
		for _, s := range c.steps {
			if s.req.Domain == "table" {
				s.req.Domain = tableDomain(i)
			}
		}
	}
	return cases
}

func tableDomain(i int) string { return "table" + strconv.Itoa(i) }

func tableCaseList() []tableCase {
	one := func(kv ...string) *rlsv3.RateLimitRequest { return request("table", entries(kv...)) }
	return []tableCase{
		{"an exact value wins over patterns", []tableStep{{one("path", "/api/v1"), 2}}, "OK OVER"},
		{"the first pattern in file order wins", []tableStep{{one("path", "/api/v2"), 3}}, "OK OK OVER"},
		{"a later pattern matches what the first does not", []tableStep{{one("path", "/apiary"), 4}}, "OK OK OK OVER"},
		{"the key alone counts each value apart", []tableStep{{one("path", "/home"), 5}, {one("path", "/about"), 1}},
			"OK OK OK OK OVER OK"},
		{"a limit applies at the depth of the last entry only", []tableStep{
			{one("remote_address", "10.0.0.1", "method", "POST"), 2},
			{one("remote_address", "10.0.0.1", "method", "GET"), 1},
			{one("remote_address", "10.0.0.1", "method", "POST", "path", "/x"), 1},
			{one("remote_address", "10.0.0.1"), 3},
		}, "OK OVER OK OK OK OK OVER"},
		{"requests_per_unit 0 blocks", []tableStep{{one("generic_key", "blocked"), 2}}, "OVER OVER"},
		{"unlimited never counts", []tableStep{{one("generic_key", "free"), 3}}, "OK OK OK"},
		{"shadow_mode never denies", []tableStep{{one("generic_key", "trial"), 3}}, "OK OK OK"},
		{shareCase, []tableStep{
			{one("tenant", "acme1"), 1}, {one("tenant", "acme2"), 1}, {one("tenant", "acme3"), 1},
			{one("tenant", "globex"), 2}, {one("tenant", "initech"), 1},
		}, "OK OK OVER OK OK OK"},
		{"replaces drops the replaced limit from the request", []tableStep{
			{request("table", entries("plan", "standard"), entries("plan", "premium")), 4},
		}, "OK OK OK OVER"},
		{"a replaced limit still counts on its own", []tableStep{{one("plan", "standard"), 2}}, "OK OVER"},
		{"a denied request: compared up to the denial", []tableStep{
			{request("table", entries("plan", "standard"), entries("tenant", "zeta")), 3},
		}, "OK OVER OVER"},
		{"an unknown domain is not limited", []tableStep{{request("nope", entries("path", "/api")), 2}}, "OK OK"},
		{"hits_addend is the cost (a denied cost is charged there only)", []tableStep{{withHits(one("path", "/apiary"), 2), 2}, {one("path", "/apiary"), 1}},
			"OK OVER OK"},
		{"a check-only descriptor (hits_addend 0) charges nothing", []tableStep{
			{one("path", "/api/v1"), 1}, {request("table", checkOnly(entries("path", "/api/v1"))), 2}, {one("path", "/api/v1"), 1},
		}, "OK OK OK OVER"},
		{"an override is the limit of a matched descriptor", []tableStep{
			{request("table", withOverride(entries("path", "/api/v1"), 3)), 4},
		}, "OK OK OK OVER"},
		{"an override limits an unmatched descriptor too", []tableStep{
			{request("table", withOverride(entries("user", "alice"), 1)), 2},
		}, "OK OVER"},
	}
}

// testTable runs each case from empty counters, compares both services, and checks
// our codes against the case's (so that a case shows what it is about, not only that
// the two services agree).
// Over xDS, shareCase is left out.
func testTable(t *testing.T, p *pair, cr *corpus) {
	for i, c := range cr.cases {
		if cr.xds && c.name == shareCase {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var seq []*rlsv3.RateLimitRequest
			for _, s := range c.steps {
				for range max(s.n, 1) {
					seq = append(seq, s.req)
				}
			}
			report, codes := p.sequence(t, seq, 3600)
			if report != "" {
				t.Errorf("%s\n--- %s.yaml ---\n%s", report, tableDomain(i), cr.tableYAML(tableDomain(i)))
			}
			if got := shortCodes(codes); got != c.want {
				t.Errorf("our overall codes %q, want %q", got, c.want)
			}
		})
	}
}

func withHits(r *rlsv3.RateLimitRequest, n uint32) *rlsv3.RateLimitRequest {
	r.HitsAddend = n
	return r
}

func checkOnly(d *ratelimitv3.RateLimitDescriptor) *ratelimitv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(0)
	return d
}

func withOverride(d *ratelimitv3.RateLimitDescriptor, rpu uint32) *ratelimitv3.RateLimitDescriptor {
	d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit_HOUR}
	return d
}
