package compat

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reference"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// The node ids of the two services: one control plane serves both the same snapshot.
const refNode, ourNode = "envoyproxy-ratelimit", "ratelimit-ext"

// versionDomain is a domain every snapshot has, with one unlimited entry named after
// the snapshot's version: a service serves version v once a request for
// version=v is unlimited there (a snapshot is applied whole, never in part). It costs
// no counter, so it can be asked at any time.
const versionDomain = "compat-version"

// serveWait bounds each wait for a service to take or refuse a config; it only
// bounds a failure.
const serveWait = 30 * time.Second

// TestCompatXDS compares the two services with their rules from an xDS server, as
// Envoy Gateway runs envoyproxy/ratelimit (CONFIG_TYPE=GRPC_XDS_SOTW): the corpus of
// TestCompat as RateLimitConfig resources, then an update of every file, then two
// configs both must NACK (a domain twice, a unit the proto does not define) while the
// previous rules keep serving.
func TestCompatXDS(t *testing.T) {
	refBin := referenceBin(t)
	c := newCorpus(t, true)
	x := &xdsPair{cp: xdstest.Start(t, "127.0.0.1:0")}
	x.push(t, "v1", append(c.configs(t), updateCase(false)))
	ours := buildOurs(t, t.TempDir())
	x.pair = &pair{
		ref:  startServer(t, "envoyproxy-ratelimit", refBin, xdsRules(x.cp.Addr, refNode)),
		ours: startServer(t, "ratelimit-ext", ours, xdsRules(x.cp.Addr, ourNode)),
	}
	x.waitServing(t, "v1")

	c.compare(t, x.pair)
	t.Run("the update domain before the update", func(t *testing.T) { x.checkUpdateCase(t, 2, "OK OVER OK OVER") })

	// Each step needs the one before it: the versions each NACK carries, the rules.
	updated := c.updated()
	v2 := append(updated.configs(t), updateCase(true))
	_ = t.Run("an update", func(t *testing.T) {
		x.push(t, "v2", v2)
		// No wait for this service's local over-limit cache to forget the denials seen
		// under v1: a reload clears it, and an entry holds the limit it was made under
		// (internal/overlimit).
		x.waitServing(t, "v2")
		x.checkUpdateCase(t, 4, "OK OK OK OVER OK OK")
		testRandom(t, x.pair, c.seed, updated.plans)
	}) && t.Run("a domain twice is refused", func(t *testing.T) {
		twice := proto.CloneOf(v2[0])
		twice.Name += "-again"
		x.refuse(t, "v3", "v2", append(slices.Clone(v2), twice))
		testTable(t, x.pair, updated)
		// Ends the NACK loop (xdsPair.refuse). v4's rules differ from v2's by their
		// version marker, so applying them clears this service's over-limit cache
		// (decide.SetRules keeps it for an identical rule set): the table, run again
		// below, starts from no denial this one remembers.
		x.push(t, "v4", v2)
		x.waitServing(t, "v4")
	}) && t.Run("a unit the proto does not define is refused", func(t *testing.T) {
		bad := proto.CloneOf(v2[0])
		bad.Descriptors[0].RateLimit = &rlsconfv3.RateLimitPolicy{Unit: 99, RequestsPerUnit: 1}
		x.refuse(t, "v5", "v4", append(slices.Clone(v2[1:]), bad))
		testTable(t, x.pair, updated)
		x.push(t, "v6", v2)
		x.waitServing(t, "v6")
	})
	x.logTally(t)
}

// xdsRules is the environment of rules from the xDS server at addr, for node.
func xdsRules(addr, node string) envFunc {
	return func(redisAddr string, a reference.Addrs) []string { return reference.XDSEnv(redisAddr, addr, node, a) }
}

// xdsPair is the two services and the control plane they take their rules from.
type xdsPair struct {
	*pair
	cp *xdstest.ControlPlane
}

// configs are the corpus's documents as RateLimitConfig resources, each named after
// its document (a domain's, or a part's of a split file: the parts of one domain are
// resources of their own), in name order.
func (c *corpus) configs(t *testing.T) []*rlsconfv3.RateLimitConfig {
	t.Helper()
	var out []*rlsconfv3.RateLimitConfig
	for name, doc := range c.documents() {
		cfg, err := rateLimitConfig(doc)
		if err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		cfg.Name = name
		out = append(out, cfg)
	}
	slices.SortFunc(out, func(a, b *rlsconfv3.RateLimitConfig) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// updated is the corpus after an update: each file mutated (one rule removed, one
// limit changed), under the same domains, with the same requests.
func (c *corpus) updated() *corpus {
	u := *c
	u.plans = make([]*filePlan, len(c.plans))
	for i, fp := range c.plans {
		u.plans[i] = &filePlan{name: fp.name, file: c.g.mutate(fp.file), sequences: fp.sequences}
	}
	return &u
}

// push publishes configs, and the version marker, as version to both nodes.
func (x *xdsPair) push(t *testing.T, version string, configs []*rlsconfv3.RateLimitConfig) {
	t.Helper()
	all := append(slices.Clone(configs), &rlsconfv3.RateLimitConfig{Name: versionDomain, Domain: versionDomain, Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "version", Value: version, RateLimit: &rlsconfv3.RateLimitPolicy{Unlimited: true}}}})
	for _, node := range []string{refNode, ourNode} {
		x.cp.Set(t, node, version, all...)
	}
}

// serves reports whether s answers with the rules of version (versionDomain).
func serves(s *server, version string) bool {
	resp, err := s.shouldRateLimit(request(versionDomain, entries("version", version)))
	if err != nil || len(resp.GetStatuses()) != 1 {
		return false // envoyproxy/ratelimit answers an error before its first config
	}
	st := resp.GetStatuses()[0]
	return st.GetCurrentLimit() == nil && st.GetLimitRemaining() == math.MaxUint32
}

// waitServing waits until both services answer with the rules of version.
func (x *xdsPair) waitServing(t *testing.T, version string) {
	t.Helper()
	for _, s := range []*server{x.ref, x.ours} {
		deadline := time.Now().Add(serveWait)
		for !serves(s, version) {
			if time.Now().After(deadline) {
				t.Fatalf("%s does not serve version %s after %v\n%s", s.name, version, serveWait, s.tail())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// refuse pushes configs as version, which both services must NACK, and checks that
// both still serve prev, the version before. go-control-plane's snapshot cache
// answers a NACK by sending the version again, which envoyproxy/ratelimit NACKs at
// once, in a loop (this service paces its NACKs): the caller pushes a good version
// soon after.
func (x *xdsPair) refuse(t *testing.T, version, prev string, configs []*rlsconfv3.RateLimitConfig) {
	t.Helper()
	x.push(t, version, configs)
	for node, reply := range x.replies(t, version, prev) {
		if reply.GetErrorDetail() == nil {
			t.Errorf("%s ACKed version %s; want a NACK from both services", node, version)
		} else {
			t.Logf("%s NACKed version %s: %s", node, version, reply.GetErrorDetail().GetMessage())
		}
	}
	for _, s := range []*server{x.ref, x.ours} {
		if serves(s, version) || !serves(s, prev) {
			t.Errorf("%s does not serve version %s, the one before the refused %s\n%s", s.name, prev, version, s.tail())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// replies waits for each node's first reply to version: its ACK, or a NACK, which
// carries prev, the version the node holds (a NACK of an earlier refused version
// carries an earlier one).
func (x *xdsPair) replies(t *testing.T, version, prev string) map[string]*discoveryv3.DiscoveryRequest {
	t.Helper()
	got := map[string]*discoveryv3.DiscoveryRequest{}
	x.cp.Requests.NextWithin(t, "both services' replies to version "+version, func(r *discoveryv3.DiscoveryRequest) bool {
		nack := r.GetErrorDetail() != nil && r.GetVersionInfo() == prev
		ack := r.GetErrorDetail() == nil && r.GetVersionInfo() == version && r.GetResponseNonce() != ""
		if node := r.GetNode().GetId(); (nack || ack) && got[node] == nil {
			got[node] = r
		}
		return len(got) == 2
	}, serveWait)
	return got
}

// updateCase is a domain whose update is known: a limit changed (path: 1 an hour,
// then 3) and a descriptor removed (method), so that a service that kept the old rules
// shows in our codes, not only in a comparison.
func updateCase(updated bool) *rlsconfv3.RateLimitConfig {
	hour := func(n uint32) *rlsconfv3.RateLimitPolicy {
		return &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: n}
	}
	cfg := &rlsconfv3.RateLimitConfig{Name: "update", Domain: "update", Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "path", RateLimit: hour(1)}, {Key: "method", RateLimit: hour(1)}}}
	if updated {
		cfg.Descriptors = []*rlsconfv3.RateLimitDescriptor{{Key: "path", RateLimit: hour(3)}}
	}
	return cfg
}

// updateCaseRequests are path n times, then method twice.
func updateCaseRequests(n int) []*rlsv3.RateLimitRequest {
	var reqs []*rlsv3.RateLimitRequest
	for range n {
		reqs = append(reqs, request("update", entries("path", "/api")))
	}
	return append(reqs, request("update", entries("method", "GET")), request("update", entries("method", "GET")))
}

// checkUpdateCase compares both services on the update domain from empty counters,
// and checks our overall codes.
func (x *xdsPair) checkUpdateCase(t *testing.T, paths int, want string) {
	t.Helper()
	report, codes := x.sequence(t, updateCaseRequests(paths), 3600)
	if report != "" {
		t.Errorf("update domain: %s", report)
	}
	if got := shortCodes(codes); got != want {
		t.Errorf("update domain: our overall codes %q, want %q", got, want)
	}
}
