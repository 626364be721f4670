package compat

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reference"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// Two teams' files of one domain, as MERGE_DOMAIN_CONFIG=true is used: each team owns
// its file. team-b replaces a limit of team-a's file, and has a value pattern and a
// nested entry. Each case has its own copy of both under a domain of its own, so that
// it starts from counters no other case touched.
const (
	teamARules = `descriptors:
  - key: path
    value: /a
    rate_limit: {name: a-path, unit: hour, requests_per_unit: 2}
  - key: user
    rate_limit: {unit: hour, requests_per_unit: 3}
`
	teamBRules = `descriptors:
  - key: tenant
    value: t1
    descriptors:
      - key: user
        rate_limit: {unit: hour, requests_per_unit: 1}
  - key: api
    value: x*
    rate_limit: {name: b-api, unit: hour, requests_per_unit: 2, replaces: [{name: a-path}]}
`
)

// mergedDomain is the domain of merged case i; its files are teamFiles(i).
func mergedDomain(i int) string { return fmt.Sprintf("merged%d", i) }

// teamFiles are the two documents of domain, by file name.
func teamFiles(domain string) map[string]string {
	return map[string]string{
		domain + "-team-a.yaml": "domain: " + domain + "\n" + teamARules,
		domain + "-team-b.yaml": "domain: " + domain + "\n" + teamBRules,
	}
}

// mergedCases are requests for "merged", which each case sends to its own domain.
func mergedCases() []tableCase {
	one := func(kv ...string) *rlsv3.RateLimitRequest { return request("merged", entries(kv...)) }
	return []tableCase{
		{"the first file's exact value", []tableStep{{one("path", "/a"), 3}}, "OK OK OVER"},
		{"the first file's key alone", []tableStep{{one("user", "u1"), 4}}, "OK OK OK OVER"},
		{"the second file's nested entry", []tableStep{{one("tenant", "t1", "user", "u1"), 2}}, "OK OVER"},
		{"the second file's pattern", []tableStep{{one("api", "xyz"), 3}}, "OK OK OVER"},
		{"replaces across files", []tableStep{{request("merged", entries("path", "/a"), entries("api", "xq")), 3}}, "OK OK OVER"},
		{"no entry of either file", []tableStep{{one("tenant", "t2"), 2}}, "OK OK"},
	}
}

// withMergedDomains is env with envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG=true, which
// ours maps onto --merge-domains.
func withMergedDomains(env envFunc) envFunc {
	return func(redisAddr string, a reference.Addrs) []string {
		return append(env(redisAddr, a), "MERGE_DOMAIN_CONFIG=true")
	}
}

// TestCompatMergedDomains compares the two services started with MERGE_DOMAIN_CONFIG=true
// on rule files of which two name one domain: their top-level descriptors make up the
// domain in both, and the answers must agree.
func TestCompatMergedDomains(t *testing.T) {
	refBin := referenceBin(t)
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := mergedCases()
	for i := range cases {
		for name, doc := range teamFiles(mergedDomain(i)) {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	ours := buildOurs(t, t.TempDir())
	env := withMergedDomains(fileRules(root))
	p := &pair{ref: startServer(t, "envoyproxy-ratelimit", refBin, env), ours: startServer(t, "ratelimit-ext", ours, env)}
	testMerged(t, p, cases)
	p.logTally(t)
}

// testMerged runs each merged case from empty counters, compares both services and
// checks our codes against the case's.
func testMerged(t *testing.T, p *pair, cases []tableCase) {
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var seq []*rlsv3.RateLimitRequest
			for _, s := range c.steps {
				for range s.n {
					r := proto.CloneOf(s.req)
					r.Domain = mergedDomain(i)
					seq = append(seq, r)
				}
			}
			report, codes := p.sequence(t, seq, 3600)
			if report != "" {
				t.Errorf("%s\n--- team-a ---\n%s--- team-b ---\n%s", report, teamARules, teamBRules)
			}
			if got := shortCodes(codes); got != c.want {
				t.Errorf("our overall codes %q, want %q", got, c.want)
			}
		})
	}
}

// TestCompatMergedDomainsXDS is TestCompatMergedDomains with the files as RateLimitConfig
// resources from an xDS server; then a resource that repeats a top-level descriptor
// of another resource of its domain, which both services must refuse (NACK).
func TestCompatMergedDomainsXDS(t *testing.T) {
	refBin := referenceBin(t)
	cases := mergedCases()
	var configs []*rlsconfv3.RateLimitConfig
	for i := range cases {
		for name, doc := range teamFiles(mergedDomain(i)) {
			cfg, err := rateLimitConfig(doc)
			if err != nil {
				t.Fatalf("%v\n%s", err, doc)
			}
			cfg.Name = strings.TrimSuffix(name, ".yaml")
			configs = append(configs, cfg)
		}
	}
	x := &xdsPair{cp: xdstest.Start(t, "127.0.0.1:0")}
	x.push(t, "v1", configs)
	ours := buildOurs(t, t.TempDir())
	x.pair = &pair{
		ref:  startServer(t, "envoyproxy-ratelimit", refBin, withMergedDomains(xdsRules(x.cp.Addr, refNode))),
		ours: startServer(t, "ratelimit-ext", ours, withMergedDomains(xdsRules(x.cp.Addr, ourNode))),
	}
	x.waitServing(t, "v1")
	testMerged(t, x.pair, cases)

	t.Run("a descriptor in two resources of a domain is refused", func(t *testing.T) {
		again, err := rateLimitConfig("domain: " + mergedDomain(0) + "\n" + teamARules)
		if err != nil {
			t.Fatal(err)
		}
		again.Name = mergedDomain(0) + "-team-c"
		x.refuse(t, "v2", "v1", append(configs, again))
	})
	x.logTally(t)
}
