package rls

import (
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

// dynamicMetadata is the response's dynamic_metadata as envoyproxy/ratelimit sets it
// with RESPONSE_DYNAMIC_METADATA=true. Envoy keeps it under the rate-limit filter's
// namespace (envoy.filters.http.ratelimit) for later filters, routing and access logs,
// so its names and shape are envoyproxy/ratelimit's:
//
//	domain               the request's domain
//	descriptors          one {entries: ["key=value", ...]} per request descriptor, in
//	                     order, with hitsAddend when the descriptor has its own
//	hitsAddend           the request's hits_addend, when not 0
//	quotaModeEnabled     whether a descriptor matched a quota_mode limit
//	quotaModeViolations  the indices of the quota descriptors over their limit, when any
//	metadata             the rules' metadata of the descriptors within their limits
//	                     (status OK), merged in request order, when any
//
// There a descriptor's limit override is also written, in protobuf's text format,
// whose output is unstable by design, so nothing can rely on it; it is left out here.
func dynamicMetadata(in *rlsv3.RateLimitRequest, res *decide.Result) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(in.GetDomain())}
	descs := make([]*structpb.Value, len(in.GetDescriptors()))
	for i, d := range in.GetDescriptors() {
		entries := make([]*structpb.Value, len(d.GetEntries()))
		for j, e := range d.GetEntries() {
			entries[j] = structpb.NewStringValue(e.GetKey() + "=" + e.GetValue())
		}
		df := map[string]*structpb.Value{"entries": structpb.NewListValue(&structpb.ListValue{Values: entries})}
		if h := d.GetHitsAddend(); h != nil {
			df["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
		}
		descs[i] = structpb.NewStructValue(&structpb.Struct{Fields: df})
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: descs})
	if h := in.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}

	quota := false
	var violations []*structpb.Value
	merged := map[string]*structpb.Value{}
	for i := range res.Statuses {
		st := &res.Statuses[i]
		for _, c := range st.Checked {
			quota = quota || c.Limit.Quota
		}
		// A descriptor's limits all carry its rule's metadata (descriptors.Limit: one
		// map shared by the rule's limits; replaces only drops limits, and an override
		// copies its base limit), so the first checked limit's is the descriptor's.
		if !st.OverLimit && len(st.Checked) > 0 {
			mergeMetadata(merged, st.Checked[0].Limit.Metadata)
		}
		if st.OverLimit && st.Limit.Quota {
			violations = append(violations, structpb.NewNumberValue(float64(i)))
		}
	}
	fields["quotaModeEnabled"] = structpb.NewBoolValue(quota)
	if len(violations) > 0 {
		fields["quotaModeViolations"] = structpb.NewListValue(&structpb.ListValue{Values: violations})
	}
	if len(merged) > 0 {
		fields["metadata"] = structpb.NewStructValue(&structpb.Struct{Fields: merged})
	}
	return &structpb.Struct{Fields: fields}
}

// mergeMetadata adds src to dst as envoyproxy/ratelimit merges descriptors' metadata: a
// key dst lacks is added, two mappings under one key merge key by key, and otherwise
// the value already there stays (the earlier descriptor's). dst holds only values made
// here, never the rules' own, so merging into them changes no rule.
func mergeMetadata(dst map[string]*structpb.Value, src map[string]any) {
	for k, v := range src {
		cur, ok := dst[k]
		if !ok {
			dst[k] = metadataValue(v)
			continue
		}
		if m, isMap := v.(map[string]any); isMap && cur.GetStructValue() != nil {
			mergeMetadata(cur.GetStructValue().Fields, m)
		}
	}
}

// metadataValue converts one value of a rule's metadata, which holds only what
// descriptors' metadata parser produces: mappings, lists, strings, int64, float64, bool
// and nil (null).
func metadataValue(v any) *structpb.Value {
	switch v := v.(type) {
	case map[string]any:
		fields := make(map[string]*structpb.Value, len(v))
		for k, x := range v {
			fields[k] = metadataValue(x)
		}
		return structpb.NewStructValue(&structpb.Struct{Fields: fields})
	case []any:
		list := make([]*structpb.Value, len(v))
		for i, x := range v {
			list[i] = metadataValue(x)
		}
		return structpb.NewListValue(&structpb.ListValue{Values: list})
	case string:
		return structpb.NewStringValue(v)
	case int64:
		return structpb.NewNumberValue(float64(v))
	case float64:
		return structpb.NewNumberValue(v)
	case bool:
		return structpb.NewBoolValue(v)
	}
	return structpb.NewNullValue()
}
