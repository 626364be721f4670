package compat

import (
	"path/filepath"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// mergedFiles is how many of the corpus's random files TestCompatMergedRandom splits:
// its first ones, about half, so that it adds a couple of seconds to `make test`.
const mergedFiles = 12

// TestCompatMergedRandom is TestCompat's random part on merged domains: both services
// started with MERGE_DOMAIN_CONFIG=true, and each copy of a generated file split into
// two or three files of its domain (split), which must answer as the one file does in
// TestCompat. The seed draws the same files and requests as TestCompat's, then the
// splits; the table cases are TestCompat's alone.
func TestCompatMergedRandom(t *testing.T) {
	refBin := referenceBin(t)
	c := newCorpus(t, false)
	c.cases, c.plans = nil, c.plans[:mergedFiles]
	var parts, empty int
	for _, fp := range c.plans {
		fp.parts = c.g.split(fp.file)
		parts += len(fp.parts)
		for _, part := range fp.parts {
			if len(part.rules) == 0 {
				empty++
			}
		}
	}
	t.Logf("%d files split into %d, %d of them without descriptors", len(c.plans), parts, empty)
	root := t.TempDir()
	writeConfigDir(t, filepath.Join(root, "ratelimit", "config"), c)
	ours := buildOurs(t, t.TempDir())
	env := withMergedDomains(fileRules(root))
	p := &pair{ref: startServer(t, "envoyproxy-ratelimit", refBin, env), ours: startServer(t, "ratelimit-ext", ours, env)}
	testRandom(t, p, c.seed, c.plans)
	p.logTally(t)
}

// split deals f's top-level rules out to two or three parts, files of one domain once
// merged. The rules of one key stay together, in their order in f: envoyproxy/ratelimit
// merges the files of a domain in Go map order, which can change from one load to the
// next, and appends each file's value patterns to the ones before. Overlapping patterns
// of one key (`10.*` and `10.0.*`, or `*`) split across files would then be tried in
// an order neither this test nor its user can know, and the reference's answer would
// depend on it (docs/migrating.md: this service merges in name order). Kept in one file,
// they are tried in that file's order whatever the merge order is; rules of different
// keys never meet in a lookup (no key is another key plus `_`, rules_test.go).
//
// A file whose rules have one key leaves the second part with no descriptors at all,
// which both must load as adding nothing to the domain.
func (g *generator) split(f *ruleFile) []*ruleFile {
	var keys []string
	byKey := map[string][]*rule{}
	for _, r := range f.rules {
		if byKey[r.key] == nil {
			keys = append(keys, r.key)
		}
		byKey[r.key] = append(byKey[r.key], r)
	}
	// As many parts as keys, up to the two or three drawn, and never fewer than two.
	parts := make([]*ruleFile, max(2, min(2+g.rng.IntN(2), len(keys))))
	for i := range parts {
		parts[i] = &ruleFile{}
	}
	for i, k := range g.rng.Perm(len(keys)) {
		part := parts[i%len(parts)]
		part.rules = append(part.rules, byKey[keys[k]]...)
	}
	return parts
}

// TestCompatMergedRandomXDS is TestCompatMergedRandom with the rules from an xDS server,
// as Envoy Gateway runs envoyproxy/ratelimit: each part of a split file is a
// RateLimitConfig resource of its own, and with MERGE_DOMAIN_CONFIG=true both services
// merge the resources of one domain.
func TestCompatMergedRandomXDS(t *testing.T) {
	refBin := referenceBin(t)
	c := newCorpus(t, true)
	c.cases, c.plans = nil, c.plans[:mergedFiles]
	for _, fp := range c.plans {
		fp.parts = c.g.split(fp.file)
	}
	x := &xdsPair{cp: xdstest.Start(t, "127.0.0.1:0")}
	x.push(t, "v1", c.configs(t))
	ours := buildOurs(t, t.TempDir())
	x.pair = &pair{
		ref:  startServer(t, "envoyproxy-ratelimit", refBin, withMergedDomains(xdsRules(x.cp.Addr, refNode))),
		ours: startServer(t, "ratelimit-ext", ours, withMergedDomains(xdsRules(x.cp.Addr, ourNode))),
	}
	x.waitServing(t, "v1")
	testRandom(t, x.pair, c.seed, c.plans)
	x.logTally(t)
}
