package decide

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// A config tree in envoyproxy/ratelimit's layout (RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config,
// several domains, a dot-file) and format, using each of its documented shapes, loads
// unchanged and gets the decisions that format promises.
func TestEnvoyproxyRatelimitConfigTree(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ratelimit", "config")
	files := map[string]string{
		"mongo.yaml": `
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 2
  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 3
`,
		"edge.yaml": `
domain: edge_proxy_per_ip
descriptors:
  - key: remote_address
    rate_limit:
      unit: SECOND
      requests_per_unit: 2
  - key: remote_address
    value: 10.0.0.1
    rate_limit:
      unlimited: true
  - key: path
    value: "/api/*"
    rate_limit:
      unit: minute
      requests_per_unit: 1
    detailed_metric: true
`,
		"messaging.yaml": `
domain: messaging
descriptors:
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 2
  - key: to_number
    rate_limit:
      name: per-number
      unit: day
      requests_per_unit: 3
  - key: to_number
    value: "2061111111"
    rate_limit:
      name: vip
      unit: day
      requests_per_unit: 1
      replaces:
        - name: per-number
  - key: shadow_test
    shadow_mode: true
    rate_limit:
      unit: second
      requests_per_unit: 1
`,
		// the newer fields (quota_mode, share_threshold, value_to_metric, metadata), in
		// the shapes of envoyproxy/ratelimit's examples/ratelimit/config/quota.yaml and
		// test/config/{share_threshold,metadata}.yaml
		"newer.yaml": `
domain: newer
descriptors:
  - key: service
    value: service_1
    quota_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 1
    metadata:
      service_with_quota:
        name: service_1
  - key: service
    value: service_2
    quota_mode: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
  - key: files
    value: files/*
    share_threshold: true
    value_to_metric: true
    rate_limit:
      unit: minute
      requests_per_unit: 2
`,
		// one name on two limits, as envoyproxy/ratelimit allows: separate counters, and
		// replaces removes both
		"shared.yaml": `
domain: shared
descriptors:
  - key: user
    rate_limit: {name: default, unit: day, requests_per_unit: 1}
  - key: api_key
    rate_limit: {name: default, unit: day, requests_per_unit: 1}
  - key: plan
    value: premium
    rate_limit:
      unit: day
      requests_per_unit: 100
      replaces: [{name: default}]
`,
		".hidden.yaml": "this is not YAML the loader should ever read: {",
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := descriptors.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return 1_700_000_000_000 }})
	defer mem.Close()
	d := New(rs, mem, Options{Keys: storekey.New("compat:", 0)})

	type call struct {
		domain string
		descs  [][]string
		want   []bool // over limit per descriptor
	}
	desc := func(kv ...string) []string { return kv }
	calls := []call{
		// exact values, each with its own counter
		{"mongo_cps", [][]string{desc("database", "users")}, []bool{false}},
		{"mongo_cps", [][]string{desc("database", "users")}, []bool{false}},
		{"mongo_cps", [][]string{desc("database", "users")}, []bool{true}},
		{"mongo_cps", [][]string{desc("database", "default")}, []bool{false}},
		{"mongo_cps", [][]string{desc("database", "other")}, []bool{false}}, // no rule: OK
		// bare key: per-value counters; an exact unlimited entry beats it; upper-case unit
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.2")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.2")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.2")}, []bool{true}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.3")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.1")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.1")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("remote_address", "10.0.0.1")}, []bool{false}},
		// wildcard value, detailed_metric
		{"edge_proxy_per_ip", [][]string{desc("path", "/api/v1")}, []bool{false}},
		{"edge_proxy_per_ip", [][]string{desc("path", "/api/v1")}, []bool{true}},
		{"edge_proxy_per_ip", [][]string{desc("path", "/web")}, []bool{false}},
		// nested: the limit sits at the second level only
		{"messaging", [][]string{desc("message_type", "marketing", "to_number", "2062222222")}, []bool{false}},
		{"messaging", [][]string{desc("message_type", "marketing", "to_number", "2062222222")}, []bool{false}},
		{"messaging", [][]string{desc("message_type", "marketing", "to_number", "2062222222")}, []bool{true}},
		{"messaging", [][]string{desc("message_type", "marketing")}, []bool{false}},
		// replaces: a request that matches vip drops per-number from all its descriptors;
		// without vip in the request, per-number (3/day) applies
		{"messaging", [][]string{desc("to_number", "2061111111"), desc("to_number", "2063333333")}, []bool{false, false}},
		{"messaging", [][]string{desc("to_number", "2063333333")}, []bool{false}},
		{"messaging", [][]string{desc("to_number", "2063333333")}, []bool{false}},
		{"messaging", [][]string{desc("to_number", "2063333333")}, []bool{false}}, // 3rd charge: the vip request did not count
		{"messaging", [][]string{desc("to_number", "2063333333")}, []bool{true}},
		{"messaging", [][]string{desc("to_number", "2061111111"), desc("to_number", "2063333333")}, []bool{true, false}},
		// shadow mode never denies
		{"messaging", [][]string{desc("shadow_test", "x")}, []bool{false}},
		{"messaging", [][]string{desc("shadow_test", "x")}, []bool{false}},
		// share_threshold: every file under files/* draws on one counter
		{"newer", [][]string{desc("files", "files/a.pdf")}, []bool{false}},
		{"newer", [][]string{desc("files", "files/b.csv")}, []bool{false}},
		{"newer", [][]string{desc("files", "files/c.txt")}, []bool{true}},
		// quota_mode: the request is allowed while one quota descriptor has room (the
		// second, with service_1 over), denied when none has (the third)
		{"newer", [][]string{desc("service", "service_1"), desc("service", "service_2")}, []bool{false, false}},
		{"newer", [][]string{desc("service", "service_1"), desc("service", "service_2")}, []bool{true, false}},
		{"newer", [][]string{desc("service", "service_1"), desc("service", "service_2")}, []bool{true, true}},
		// a shared name: each limit counts on its own; a premium plan replaces both
		{"shared", [][]string{desc("user", "u1")}, []bool{false}},
		{"shared", [][]string{desc("user", "u1")}, []bool{true}},
		{"shared", [][]string{desc("api_key", "k1")}, []bool{false}},
		{"shared", [][]string{desc("api_key", "k1")}, []bool{true}},
		{"shared", [][]string{desc("user", "u1"), desc("api_key", "k1"), desc("plan", "premium")}, []bool{false, false, false}},
	}
	for i, c := range calls {
		req := &Request{Domain: c.domain}
		for _, kv := range c.descs {
			var ds Descriptor
			for j := 0; j+1 < len(kv); j += 2 {
				ds.Entries = append(ds.Entries, descriptors.Entry{Key: kv[j], Value: kv[j+1]})
			}
			req.Descriptors = append(req.Descriptors, ds)
		}
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		// Any descriptor over denies the request, except in quota mode, where it takes
		// all of them (only the service descriptors of "newer" are in quota mode).
		denied := slices.Contains(c.want, true)
		if c.domain == "newer" && c.descs[0][0] == "service" {
			denied = !slices.Contains(c.want, false)
		}
		if res.OverLimit != denied {
			t.Fatalf("call %d (%s %v): request denied = %v, want %v", i, c.domain, c.descs, res.OverLimit, denied)
		}
		for j, want := range c.want {
			if res.Statuses[j].OverLimit != want {
				t.Fatalf("call %d (%s %v): over limit = %v, want %v", i, c.domain, c.descs[j], res.Statuses[j].OverLimit, want)
			}
		}
	}
}
