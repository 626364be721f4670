package compat

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Sizes of the random part: files, single-descriptor requests per file (each sent
// singleRounds times, interleaved, so that limits up to 5 are crossed) and requests of
// several descriptors per file (each sent multiSends times from empty counters).
const (
	randomFiles  = 25
	singlesPer   = 8
	singleRounds = 6
	multisPer    = 4
	multiSends   = 5
)

// TestCompat starts envoyproxy/ratelimit and this service on the same rule files (the
// hand-written table cases' and randomFiles generated ones) and compares their answers:
// the table cases first, then the random requests. TestCompatXDS compares the same
// corpus delivered over xDS.
//
// Every sequence of requests has a domain of its own (a copy of its file's rules under
// another name), so that it starts from counters no earlier sequence touched, in Redis
// and in this service's local over-limit cache, which remembers denials for up to a
// second (docs/performance.md) and so outlives a FLUSHALL.
func TestCompat(t *testing.T) {
	refBin := referenceBin(t)
	c := newCorpus(t, false)
	root := t.TempDir()
	writeConfigDir(t, filepath.Join(root, "ratelimit", "config"), c)
	ours := buildOurs(t, t.TempDir())
	env := fileRules(root)
	p := &pair{ref: startServer(t, "envoyproxy-ratelimit", refBin, env), ours: startServer(t, "ratelimit-ext", ours, env)}

	c.compare(t, p)
	// Last, as it charges a table case's counter.
	t.Run("counters are in each Redis", func(t *testing.T) { testBothStore(t, p) })
	p.logTally(t)
}

// corpus is what is compared, drawn from one seed: the table cases and randomFiles
// generated files with their requests.
type corpus struct {
	seed  uint64
	g     *generator // drawn from seed; draws on for the updates of TestCompatXDS
	xds   bool       // for rules over xDS: only what a RateLimitConfig can carry
	plans []*filePlan
	cases []tableCase
}

// newCorpus draws the corpus from $COMPAT_SEED, or from a new seed. For xDS (a
// RateLimitConfig has no share_threshold nor value_to_metric) the files are the same
// draw without those two fields, and the table rules without the share_threshold one.
func newCorpus(t *testing.T, xds bool) *corpus {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("COMPAT_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("COMPAT_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (COMPAT_SEED=%d repeats this run)", seed, seed)
	c := &corpus{seed: seed, xds: xds, cases: tableCases()}
	c.g = &generator{rng: rand.New(rand.NewPCG(seed, 0)), xds: xds}
	c.plans = make([]*filePlan, randomFiles)
	for i := range c.plans {
		c.plans[i] = c.g.plan(fmt.Sprintf("random%d", i))
	}
	return c
}

// tableYAML is the table rules under domain, as this corpus delivers them.
func (c *corpus) tableYAML(domain string) string {
	if c.xds {
		return xdsTableYAML(domain)
	}
	return tableYAML(domain)
}

// compare runs the table cases, then the random sequences.
func (c *corpus) compare(t *testing.T, p *pair) {
	t.Run("table", func(t *testing.T) { testTable(t, p, c) })
	t.Run("random", func(t *testing.T) { testRandom(t, p, c.seed, c.plans) })
}

// testRandom compares both services on each plan's sequences, and stops after three
// files that differ.
func testRandom(t *testing.T, p *pair, seed uint64, plans []*filePlan) {
	failures := 0
	for _, fp := range plans {
		if report := fp.run(t, p); report != "" {
			failures++
			t.Errorf("seed %d, file %s.yaml (each sequence its own copy of it, named by its domain):\n%s\n%s",
				seed, fp.name, report, fp.listing())
		}
		if failures == 3 {
			t.Fatalf("stopping after %d files that differ (seed %d)", failures, seed)
		}
	}
}

// logTally logs what was compared, and both logs' ends when something differed.
func (p *pair) logTally(t *testing.T) {
	t.Logf("compared: %v", &p.tally)
	if t.Failed() {
		t.Log(p.ref.tail())
		t.Log(p.ours.tail())
	}
}

// filePlan is a generated file and the sequences of requests sent for it, each under
// a domain of its own.
type filePlan struct {
	name      string
	file      *ruleFile
	parts     []*ruleFile // file split into files of one domain (TestCompatMergedRandom); nil: one file
	sequences []planned
}

// documents are the rule documents of the file's copy for domain, by file name
// (without .yaml): the file, or each of its parts.
func (fp *filePlan) documents(domain string) map[string]string {
	if fp.parts == nil {
		return map[string]string{domain: fp.file.yaml(domain)}
	}
	docs := map[string]string{}
	for i, part := range fp.parts {
		docs[fmt.Sprintf("%s-part%d", domain, i)] = part.yaml(domain)
	}
	return docs
}

// listing is the file's rules, or its parts', under fp.name, for a report.
func (fp *filePlan) listing() string {
	docs := fp.documents(fp.name)
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(docs)) {
		fmt.Fprintf(&b, "--- %s.yaml ---\n%s", name, docs[name])
	}
	return b.String()
}

type planned struct {
	what   string // what the sequence is, for the report
	domain string
	reqs   []*rlsv3.RateLimitRequest
	window int64 // the shortest window its limits count over (see pair.sequence)
}

// plan draws a file and its requests: the single-descriptor requests interleaved in
// one sequence, each sent singleRounds times (requests that share a counter in one
// service must share it in the other), then multisPer requests of two or three of
// those descriptors (the same one twice at times), each sent multiSends times in a
// sequence of its own.
func (g *generator) plan(name string) *filePlan {
	fp := &filePlan{name: name, file: g.file()}
	singles := make([]*ratelimitv3.RateLimitDescriptor, singlesPer)
	for i := range singles {
		singles[i] = g.descriptor(fp.file)
	}
	keepOverridesApart(singles)
	s := planned{what: "single descriptors", domain: name + "-s", window: window(fp.file, singles)}
	for range singleRounds {
		for _, i := range g.rng.Perm(len(singles)) {
			domain := s.domain
			if g.chance(0.03) {
				domain = "unknown" // a domain no file defines
			}
			s.reqs = append(s.reqs, request(domain, singles[i]))
		}
	}
	fp.sequences = append(fp.sequences, s)
	for m := range multisPer {
		ds := []*ratelimitv3.RateLimitDescriptor{pick(g, singles), pick(g, singles)}
		if g.chance(0.4) {
			ds = append(ds, pick(g, singles))
		}
		ds = g.costs(ds)
		s := planned{what: "several descriptors", domain: fmt.Sprintf("%s-m%d", name, m), window: window(fp.file, ds)}
		var hits uint32
		if g.chance(0.25) {
			hits = 2 // the request's cost, for the descriptors without their own
		}
		for range multiSends {
			r := request(s.domain, ds...)
			r.HitsAddend = hits
			s.reqs = append(s.reqs, r)
		}
		fp.sequences = append(fp.sequences, s)
	}
	return fp
}

// run compares both services on each sequence; it returns the first mismatch's
// report, or "".
func (fp *filePlan) run(t *testing.T, p *pair) string {
	t.Helper()
	for _, s := range fp.sequences {
		if report, _ := p.sequence(t, s.reqs, s.window); report != "" {
			return s.what + ", " + report
		}
	}
	return ""
}

// costs gives some of ds a hits_addend of their own (0 is a check-only cost), on
// copies: the single-descriptor sequence keeps costing 1, where a denial leaves
// the counters alike.
func (g *generator) costs(ds []*ratelimitv3.RateLimitDescriptor) []*ratelimitv3.RateLimitDescriptor {
	out := make([]*ratelimitv3.RateLimitDescriptor, len(ds))
	for i, d := range ds {
		out[i] = d
		if g.chance(0.15) {
			out[i] = proto.CloneOf(d)
			out[i].HitsAddend = wrapperspb.UInt64(pick(g, []uint64{0, 1, 3}))
		}
	}
	return out
}

// keepOverridesApart drops the limit override of a descriptor whose entries another
// descriptor sends with another override or none. envoyproxy/ratelimit keys a counter
// by the entries and the window, whatever the limit, so there the override and the
// configured limit share one counter when their windows start together; here an
// override has a counter of its own (docs/migrating.md).
func keepOverridesApart(ds []*ratelimitv3.RateLimitDescriptor) {
	for _, d := range ds {
		for _, o := range ds {
			if d.Limit != nil && sameEntries(d, o) && !proto.Equal(d.Limit, o.Limit) {
				d.Limit = nil
			}
		}
	}
}

func sameEntries(a, b *ratelimitv3.RateLimitDescriptor) bool {
	return slices.EqualFunc(a.Entries, b.Entries, func(x, y *ratelimitv3.RateLimitDescriptor_Entry) bool {
		return x.Key == y.Key && x.Value == y.Value
	})
}

// window is the shortest window among f's limits and the descriptors' overrides.
func window(f *ruleFile, ds []*ratelimitv3.RateLimitDescriptor) int64 {
	w := f.smallestUnit()
	for _, d := range ds {
		if s := overrideSeconds(d); s > 0 && (w == 0 || s < w) {
			w = s
		}
	}
	return w
}

// writeConfigDir writes a copy of each file for each domain that uses it.
func writeConfigDir(t *testing.T, dir string, c *corpus) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range c.documents() {
		if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// documents are the corpus's rule documents by file name (without .yaml), which is
// their domain unless a file is split: a copy of the table rules for each table case,
// and of each file (or its parts) for each of its sequences.
func (c *corpus) documents() map[string]string {
	docs := map[string]string{}
	for i := range c.cases {
		docs[tableDomain(i)] = c.tableYAML(tableDomain(i))
	}
	for _, fp := range c.plans {
		for _, s := range fp.sequences {
			maps.Copy(docs, fp.documents(s.domain))
		}
	}
	return docs
}

// testBothStore checks that both services keep their counters in their own Redis: what
// is compared is the Redis engine, and a flush empties both.
func testBothStore(t *testing.T, p *pair) {
	req := request(tableDomain(0), entries("path", "/api/v1"))
	for _, s := range []*server{p.ref, p.ours} {
		s.flush(t)
		if _, err := s.shouldRateLimit(req); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if n, err := s.redis.Client().DBSize(context.Background()).Result(); err != nil || n == 0 {
			t.Errorf("%s: %d keys in its Redis after a request that met a limit (%v); want some", s.name, n, err)
		}
	}
}

// entries is a descriptor of key, value pairs.
func entries(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// shortCodes writes overall codes as the table cases do: OK or OVER.
func shortCodes(codes []string) string {
	return strings.ReplaceAll(strings.Join(codes, " "), "OVER_LIMIT", "OVER")
}
