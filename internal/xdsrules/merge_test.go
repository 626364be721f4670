package xdsrules

import (
	"strings"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// Two teams' RateLimitConfig resources for one domain, as MERGE_DOMAIN_CONFIG merges
// them in envoyproxy/ratelimit.
func teamConfigs() (a, b *cfgT) {
	a = &cfgT{Name: "team-a", Domain: "edge", Descriptors: []*descT{
		{Key: "user", RateLimit: named("per-user", limit(minute, 2))}}}
	b = &cfgT{Name: "team-b", Domain: "edge", Descriptors: []*descT{
		{Key: "key", RateLimit: limit(minute, 1)}}}
	return a, b
}

// With MergeDomains, resources naming one domain are merged as files are; a top-level
// entry in two of them is refused, naming both; without it, the second is a duplicate
// domain.
func TestCompileWithMergeDomains(t *testing.T) {
	a, b := teamConfigs()
	dup := &cfgT{Name: "team-c", Domain: "edge", Descriptors: []*descT{{Key: "user", RateLimit: limit(second, 5)}}}
	merge := descriptors.Options{MergeDomains: true}
	for _, tc := range []struct {
		name    string
		opts    descriptors.Options
		configs []*cfgT
		want    string // the error; "" to load
	}{
		{"merged", merge, []*cfgT{b, a}, ""},
		{"not asked", descriptors.Options{}, []*cfgT{a, b}, `xds:team-b: domain: duplicate domain "edge" (already defined in xds:team-a)`},
		{"shared entry", merge, []*cfgT{dup, a}, `xds:team-c: descriptors[0]: duplicate entry key "user" without value: files merged into one domain may not share a top-level entry, nor add entries under another file's (already defined in xds:team-a)`},
	} {
		res := make([]*anypb.Any, len(tc.configs))
		for i, c := range tc.configs {
			res[i] = mustAny(t, c)
		}
		rs, err := CompileWith(tc.opts, res)
		switch {
		case tc.want != "":
			if err == nil || err.Error() != tc.want {
				t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		default:
			for _, e := range []descriptors.Entry{{Key: "user", Value: "u"}, {Key: "key", Value: "k"}} {
				if ls := rs.Match("edge", []descriptors.Entry{e}); len(ls) != 1 || ls[0].Line != 0 {
					t.Errorf("%s: %v matched %d limits, want 1 without a line", tc.name, e, len(ls))
				}
			}
		}
	}
}

// A warning that points into another resource of the domain names it by resource and
// field path, as warnings of rules from xDS do.
func TestCompileWithMergeDomainsWarnsWithoutLines(t *testing.T) {
	star := &cfgT{Name: "a", Domain: "edge", Descriptors: []*descT{{Key: "user", Value: "*", RateLimit: limit(minute, 1)}}}
	bare := &cfgT{Name: "b", Domain: "edge", Descriptors: []*descT{{Key: "user", RateLimit: limit(minute, 2)}}}
	rs, err := CompileWith(descriptors.Options{MergeDomains: true}, []*anypb.Any{mustAny(t, bare), mustAny(t, star)})
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := rs.Warnings()
	want := `xds:b: descriptors[0]: key "user" without value never matches: the value pattern "*" at xds:a descriptors[0] matches every value first (files merged into one domain are tried in name order)`
	if len(ws) != 1 || ws[0].Error() != want {
		t.Errorf("warnings %v, want %q", ws, want)
	}
}

// Over a subscription: with Options.Rules merging domains, two resources for one
// domain are ACKed and both decide; without it the update is NACKed.
func TestSubscriptionMergesDomainsWhenAsked(t *testing.T) {
	a, b := teamConfigs()
	cp := xdstest.Start(t, "127.0.0.1:0")
	svc := startService(t, cp.Addr, Options{Rules: descriptors.Options{MergeDomains: true}})
	cp.Set(t, nodeID, "v1", a, b)
	cp.ACK(t, cp.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "alice", ok, ok, over)
	svc.decisions(t, "edge", "key", "k1", ok, over)

	cp2 := xdstest.Start(t, "127.0.0.1:0")
	startService(t, cp2.Addr, Options{})
	cp2.Set(t, nodeID, "v1", a, b)
	resp := cp2.Response(t, "v1")
	nack, _ := cp2.Requests.Next(t, "NACK of v1", func(r *discoveryv3.DiscoveryRequest) bool {
		return r.GetResponseNonce() == resp.GetNonce()
	})
	if d := nack.GetErrorDetail(); d == nil || !strings.Contains(d.GetMessage(), `duplicate domain "edge"`) {
		t.Errorf("without merging: reply %v, want a NACK for the duplicate domain", nack)
	}
}
