package rls_test

import (
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Soft quotas with metadata to route on (a and b: one a minute), an ordinary limit with
// metadata, one without, and one in shadow mode.
const metadataRules = `
domain: h
descriptors:
  - key: backend
    value: a
    quota_mode: true
    metadata: {route: {cluster: a, weight: 1}, tier: gold}
    rate_limit: {name: backend-a, unit: minute, requests_per_unit: 1}
  - key: backend
    value: b
    quota_mode: true
    metadata: {route: {cluster: b, region: eu}, tier: silver, tags: [x, 1, true, null, 2.5]}
    rate_limit: {name: backend-b, unit: minute, requests_per_unit: 1}
  - key: backend
    value: d
    quota_mode: true
    metadata: {tier: bronze}
    rate_limit: {name: backend-d, unit: minute, requests_per_unit: 5}
  - key: user
    metadata: {plan: free}
    rate_limit: {name: user, unit: hour, requests_per_unit: 10}
  - key: plain
    rate_limit: {unit: hour, requests_per_unit: 10}
  - key: dry
    shadow_mode: true
    metadata: {dry: yes}
    rate_limit: {unit: minute, requests_per_unit: 1}
`

// With --response-dynamic-metadata (envoyproxy/ratelimit's RESPONSE_DYNAMIC_METADATA)
// ShouldRateLimit's answer carries its dynamic_metadata: the request, the quota
// descriptors over their limit, and the metadata of the descriptors within theirs.
func TestResponseDynamicMetadata(t *testing.T) {
	f := startRules(t, metadataRules, ratelimitheaders.Options{DynamicMetadata: true})
	withCost := func(d *ratelimitv3.RateLimitDescriptor, hits uint64) *ratelimitv3.RateLimitDescriptor {
		d.HitsAddend = wrapperspb.UInt64(hits)
		return d
	}
	for _, tc := range []struct {
		name  string
		hits  uint32
		descs []*ratelimitv3.RateLimitDescriptor
		code  string
		want  string // the dynamic_metadata, as JSON
	}{
		{"all within: their metadata merged in request order, the first value of a key kept, mappings merged",
			0, []*ratelimitv3.RateLimitDescriptor{desc("backend", "a"), desc("backend", "b"), withCost(desc("user", "u"), 3)}, "OK", `{
			"domain": "h",
			"descriptors": [{"entries": ["backend=a"]}, {"entries": ["backend=b"]}, {"entries": ["user=u"], "hitsAddend": 3}],
			"quotaModeEnabled": true,
			"metadata": {"route": {"cluster": "a", "weight": 1, "region": "eu"}, "tier": "gold",
			             "tags": ["x", 1, true, null, 2.5], "plan": "free"}}`},
		{"one quota descriptor over: a violation, and only the others' metadata",
			1, []*ratelimitv3.RateLimitDescriptor{desc("backend", "a"), desc("backend", "d"), desc("backend", "c", "plain", "p"), desc("user", "u")}, "OK", `{
			"domain": "h",
			"descriptors": [{"entries": ["backend=a"]}, {"entries": ["backend=d"]}, {"entries": ["backend=c", "plain=p"]}, {"entries": ["user=u"]}],
			"hitsAddend": 1,
			"quotaModeEnabled": true,
			"quotaModeViolations": [0],
			"metadata": {"tier": "bronze", "plan": "free"}}`},
		{"every quota descriptor over: denied, both violations, no metadata",
			0, []*ratelimitv3.RateLimitDescriptor{desc("backend", "a"), desc("backend", "b")}, "OVER_LIMIT", `{
			"domain": "h",
			"descriptors": [{"entries": ["backend=a"]}, {"entries": ["backend=b"]}],
			"quotaModeEnabled": true,
			"quotaModeViolations": [0, 1]}`},
		{"no quota_mode, no metadata",
			0, []*ratelimitv3.RateLimitDescriptor{desc("plain", "p")}, "OK", `{
			"domain": "h",
			"descriptors": [{"entries": ["plain=p"]}],
			"quotaModeEnabled": false}`},
		{"shadow mode, within", 0, []*ratelimitv3.RateLimitDescriptor{desc("dry", "x")}, "OK", `{
			"domain": "h", "descriptors": [{"entries": ["dry=x"]}], "quotaModeEnabled": false, "metadata": {"dry": true}}`},
		{"shadow mode, over: never over, so its metadata still counts", 0, []*ratelimitv3.RateLimitDescriptor{desc("dry", "x")}, "OK", `{
			"domain": "h", "descriptors": [{"entries": ["dry=x"]}], "quotaModeEnabled": false, "metadata": {"dry": true}}`},
	} {
		resp := f.call(t, tc.hits, tc.descs...)
		if resp.OverallCode.String() != tc.code {
			t.Fatalf("%s: overall %v, want %s", tc.name, resp.OverallCode, tc.code)
		}
		want := &structpb.Struct{}
		if err := protojson.Unmarshal([]byte(tc.want), want); err != nil {
			t.Fatalf("%s: the expected JSON: %v", tc.name, err)
		}
		if !proto.Equal(resp.DynamicMetadata, want) {
			t.Errorf("%s: dynamic_metadata\n%s\nwant\n%s", tc.name, protojson.Format(resp.DynamicMetadata), protojson.Format(want))
		}
	}

	// Off by default, as there: no dynamic_metadata at all.
	off := startRules(t, metadataRules, ratelimitheaders.Options{})
	if resp := off.call(t, 0, desc("backend", "b")); resp.DynamicMetadata != nil {
		t.Errorf("without the option: dynamic_metadata %v", protojson.Format(resp.DynamicMetadata))
	}
}
