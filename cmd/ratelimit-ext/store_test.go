package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/breaker"
	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
)

// The store's metrics count the calls that reached the store: while the circuit is
// open, requests are answered without a store call and add neither a store error nor
// a store duration.
func TestOpenCircuitAddsNoStoreCalls(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: every call is refused at once
	re, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: "redis://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	var opened int
	e := guardStore(re, "redis", m, &storeConfig{breakerThreshold: 3, probeInterval: time.Hour},
		func(open bool, _ error) {
			if open {
				opened++
			}
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer e.Close()

	p := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	checks, out := []limiter.LimitCheck{{Key: "k", Params: p, Cost: 1}}, make([]limiter.Decision, 1)
	var fast int
	for range 10 {
		_, err := e.Evaluate(context.Background(), 0, checks, out)
		if !errors.Is(err, limiter.ErrStore) {
			t.Fatalf("want a store error, got %v", err)
		}
		if errors.Is(err, breaker.ErrOpen) {
			fast++
		}
	}
	if opened != 1 || fast != 7 {
		t.Fatalf("circuit opened %d times, %d of 10 calls answered by it; want 1 and 7", opened, fast)
	}
	if errs, calls := storeCounts(t, m); errs != 3 || calls != 3 {
		t.Errorf("store_errors_total %v, store_duration_seconds count %v; want the 3 calls that reached the store", errs, calls)
	}
}

// storeCounts sums ratelimit_ext_store_errors_total and the count of
// ratelimit_ext_store_duration_seconds over their labels.
func storeCounts(t *testing.T, m *metrics.Metrics) (errs, calls float64) {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, s := range f.GetMetric() {
			switch f.GetName() {
			case "ratelimit_ext_store_errors_total":
				errs += s.GetCounter().GetValue()
			case "ratelimit_ext_store_duration_seconds":
				calls += float64(s.GetHistogram().GetSampleCount())
			}
		}
	}
	return errs, calls
}

// A bound, size or interval below 1 (or a hits_addend bound above what any limit
// takes) is refused at start, naming the flag, instead of refusing every request later
// or silently becoming a default.
func TestCountsBelowOneAreRefused(t *testing.T) {
	isolateEnv(t)
	for _, args := range [][]string{
		{"--max-descriptors", "-1"}, {"--max-descriptors", "0"}, {"--max-entries", "0"},
		{"--max-entry-key-bytes", "0"}, {"--max-domain-bytes", "0"},
		{"--max-hits-addend", "0"}, {"--max-request-bytes", "0"}, {"--max-key-length", "0"},
		{"--memory-max-keys", "0"}, {"--store-breaker-threshold", "-3"}, {"--redis-batch-size", "0"},
		{"--redis-batch-lanes", "0"}, {"--local-cache-size", "0"}, {"--xds-max-message-bytes", "0"},
		{"--store-probe-interval", "0s"}, {"--local-cache-max-age", "-1s"},
		{"--redis-read-timeout", "-1ms"}, {"--redis-write-timeout", "0s"}, {"--redis-dial-timeout", "-1s"},
		{"--shutdown-timeout", "0s"},
		{"--max-hits-addend", "4294967296"}, // above Envoy's uint32 and limiter.MaxCost
		{"--grpc-max-concurrent-streams", "0"}, {"--grpc-max-concurrent-streams", "1048577"},
		{"--grpc-max-connection-age", "-1s"}, {"--grpc-max-connection-age-grace", "-1s"},
	} {
		_, err := loadServeConfig(args)
		if err == nil || !strings.Contains(err.Error(), args[0]+" ") {
			t.Errorf("%v: got %v, want an error naming %s", args, err, args[0])
		}
	}
	if _, err := loadServeConfig([]string{"--max-descriptors", "1", "--memory-max-keys", "1"}); err != nil {
		t.Errorf("the smallest valid values: %v", err)
	}
	if _, err := loadServeConfig([]string{"--max-hits-addend", "4294967295"}); err != nil {
		t.Errorf("the largest hits_addend Envoy can send: %v", err)
	}
}

// Mistakes in the store and Redis settings stop the start with the other settings'
// errors, in the flags' words, whichever engine the settings pick; before, they
// surfaced later as the serving error (exit 1, in the log's format) or, for the Redis
// ones, only once the Redis engine was built.
func TestStoreAndRedisSettingsAreCheckedAtStart(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--store-failure-policy", "open"}, `--store-failure-policy "open": want fail_closed, fail_open or local`},
		{[]string{"--store-failure-policy-domains", "edge=bogus"}, "--store-failure-policy-domains: edge=bogus: want"},
		{[]string{"--store-failure-policy-domains", "edge"}, `--store-failure-policy-domains: "edge" is not domain=policy`},
		// Two policies for one domain: the last one used to win, silently.
		{[]string{"--store-failure-policy-domains", "edge=fail_open,billing=local,edge=fail_closed"}, "--store-failure-policy-domains: edge is given two policies, fail_open and fail_closed"},
		{[]string{"--redis-pool-size", "-1"}, "--redis-pool-size -1: want 0"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--redis-mode", "cluster", "--key-prefix", "app{1}:"}, `--key-prefix "app{1}:": no braces on Redis Cluster`},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--redis-tls-ca", "ca.pem"}, "--redis-tls-ca is for a rediss:// --redis-url, not redis://"},
		{[]string{"--redis-url", "unix:///tmp/r.sock", "--redis-tls-key", "k.pem"}, "--redis-tls-key is for a rediss:// --redis-url, not unix://"},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--redis-tls-skip-hostname-verification"}, "--redis-tls-skip-hostname-verification is for a rediss:// --redis-url, not redis://"},
		{[]string{"--redis-url", "unix:///tmp/r.sock", "--redis-tls-server-name", "redis.internal"}, "--redis-tls-server-name is for a rediss:// --redis-url, not unix://"},
		{[]string{"--redis-url", "rediss://127.0.0.1:1", "--redis-tls-server-name", "redis.internal", "--redis-tls-skip-hostname-verification"},
			"--redis-tls-server-name and --redis-tls-skip-hostname-verification: set one"},
		{[]string{"--redis-url", "rediss://127.0.0.1:1?skip_verify=true", "--redis-tls-skip-hostname-verification"},
			"--redis-tls-skip-hostname-verification: skip_verify in --redis-url verifies nothing"},
		{[]string{"--redis-url", "rediss://127.0.0.1:1?skip_verify=1", "--redis-tls-server-name", "redis.internal"},
			"--redis-tls-server-name: skip_verify in --redis-url verifies nothing"},
		{[]string{"--redis-url", "redis://127.0.0.1:1?max_retries=2"}, "--redis-url: max_retries=2 in the URL: retries are not allowed"},
	} {
		if _, err := loadServeConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
	for _, ok := range [][]string{
		{"--store-failure-policy", "local", "--store-failure-policy-domains", "edge=fail_open, billing=fail_closed"},
		{"--store-failure-policy-domains", "edge=fail_open,edge=fail_open"}, // the same policy twice says one thing
		{"--redis-url", "rediss://127.0.0.1:1", "--redis-tls-ca", "ca.pem"},
		{"--redis-url", "redis://127.0.0.1:1?max_retries=-1", "--redis-pool-size", "0"},
		{"--redis-url", "rediss://127.0.0.1:1", "--redis-tls-skip-hostname-verification"},
		{"--redis-url", "rediss://127.0.0.1:1", "--redis-tls-server-name", "redis.internal"},
	} {
		c, err := loadServeConfig(ok)
		if err != nil {
			t.Errorf("%v: %v", ok, err)
			continue
		}
		if o := c.redis(); slices.Contains(ok, "--redis-tls-skip-hostname-verification") != o.TLSSkipHostnameVerification ||
			slices.Contains(ok, "--redis-tls-server-name") != (o.TLSServerName == "redis.internal") {
			t.Errorf("%v: Redis options %+v", ok, o)
		}
		if ok[0] == "--store-failure-policy" && (c.store.parsed.Default != decide.Local || c.store.parsed.PerDomain["billing"] != decide.FailClosed) {
			t.Errorf("%v: parsed %+v", ok, c.store.parsed)
		}
	}
}

// The circuit breaker's log line names the per-domain policies beside the default, so
// that a domain answered fail_open does not read as answered by the default.
func TestCircuitLogNamesDomainPolicies(t *testing.T) {
	s := storeConfig{policy: "fail_closed", domainPolicies: "edge=fail_open"}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.policyAttrs("cause", "x")); got != "[policy fail_closed domain_policies edge=fail_open cause x]" {
		t.Errorf("attributes %s", got)
	}
	s = storeConfig{policy: "fail_open"}
	if err := s.check(); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.policyAttrs()); got != "[policy fail_open]" {
		t.Errorf("attributes without per-domain policies: %s", got)
	}
}

// Settings that would be silently ignored are refused: arguments that are not flags,
// and a Redis URL with the memory engine.
func TestIgnoredSettingsAreRefused(t *testing.T) {
	isolateEnv(t)
	if _, err := loadServeConfig([]string{"--max-descriptors", "3", "config/"}); err == nil || !strings.Contains(err.Error(), `unexpected argument "config/"`) {
		t.Errorf("a positional argument: %v", err)
	}
	_, err := loadServeConfig([]string{"--engine", "memory", "--redis-url", "redis://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "--redis-url is set but --engine is memory") {
		t.Errorf("--engine memory with --redis-url: %v", err)
	}
	if _, err := loadServeConfig([]string{"--engine", "memcached"}); err == nil || !strings.Contains(err.Error(), `--engine "memcached"`) {
		t.Errorf("an unknown engine: %v, want it refused with the flags", err)
	}
}

// An error about a flag the environment set says which variable set it, including an
// envoyproxy/ratelimit variable mapped onto ours; a flag given on the command line is
// not explained.
func TestFlagErrorsNameTheirEnvironmentVariable(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string // in the error; "" = no explanation
	}{
		{map[string]string{"RATELIMIT_EXT_MAX_DESCRIPTORS": "0"}, nil,
			"--max-descriptors 0: want at least 1 (--max-descriptors is set by RATELIMIT_EXT_MAX_DESCRIPTORS)"},
		{map[string]string{"RATELIMIT_EXT_STORE_FAILURE_POLICY": "open"}, nil,
			"(--store-failure-policy is set by RATELIMIT_EXT_STORE_FAILURE_POLICY)"},
		{map[string]string{"RATELIMIT_EXT_REDIS_URL": "127.0.0.1:6399"}, nil,
			"(--redis-url is set by RATELIMIT_EXT_REDIS_URL)"},
		{map[string]string{"LOG_LEVEL": "verbose"}, nil, // not a logrus level either
			"(--log-level is set by LOG_LEVEL, mapped to RATELIMIT_EXT_LOG_LEVEL)"},
		{map[string]string{"RATELIMIT_EXT_MAX_DESCRIPTORS": "5"}, []string{"--max-descriptors", "-2"}, ""},
	} {
		for k, v := range tc.env {
			os.Setenv(k, v)
		}
		_, err := loadServeConfig(tc.args)
		switch {
		case err == nil:
			t.Errorf("%v %v: no error", tc.env, tc.args)
		case tc.want == "" && strings.Contains(err.Error(), "set by"):
			t.Errorf("%v %v: %v, want no explanation (the command line set the flag)", tc.env, tc.args, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("%v %v: %v, want %q", tc.env, tc.args, err, tc.want)
		}
		for k := range tc.env {
			os.Unsetenv(k)
		}
		os.Unsetenv("RATELIMIT_EXT_LOG_LEVEL") // set by the legacy mapping
	}
	if _, err := loadServeConfig([]string{"--retry-after-jitter", "2h"}); err == nil || !strings.HasPrefix(err.Error(), "--retry-after-jitter 2h0m0s: ") {
		t.Errorf("jitter: %v, want an error naming only --retry-after-jitter", err)
	}
}

// mentionsFlag finds a flag's name, not a longer flag's.
func TestMentionsFlag(t *testing.T) {
	for _, tc := range []struct {
		text, name string
		want       bool
	}{
		{"--local-cache-size 0: want at least 1", "local-cache-size", true},
		{"--local-cache-size 0: want at least 1", "local-cache", false},
		{"--log-level \"trace\": want debug", "log-level", true},
		{"bad --redis-url", "redis-url", true},
		{"--redis-url2", "redis-url", false},
	} {
		if got := mentionsFlag(tc.text, tc.name); got != tc.want {
			t.Errorf("mentionsFlag(%q, %q) = %v", tc.text, tc.name, got)
		}
	}
}

// isolateEnv runs a test on an environment without any setting of ours or of
// envoyproxy/ratelimit's, whatever the machine has: every variable but the few a Go
// process needs is unset, and the whole environment is restored after the test,
// including the variables the legacy mapping sets with os.Setenv. Not for parallel tests.
func isolateEnv(t *testing.T) {
	before := os.Environ()
	for _, kv := range before {
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && k != "HOME" && k != "TMPDIR" && !strings.HasPrefix(k, "GO") {
			os.Unsetenv(k)
		}
	}
	t.Cleanup(func() {
		os.Clearenv()
		for _, kv := range before {
			k, v, _ := strings.Cut(kv, "=")
			os.Setenv(k, v)
		}
	})
}

// A per-domain failure policy for a domain the rules do not define (a typo) is named
// in a warning at start; a domain the rules define is not (it comes first, so its
// warning, were there one, would be logged before the other).
func TestUnruledPolicyDomainIsWarned(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--store-failure-policy-domains", "edge=fail_closed,egde=fail_open")
	warned := func(domain string) bool {
		return strings.Contains(s.log(), `"msg":"--store-failure-policy-domains names a domain the rules do not define","domain":"`+domain+`"`)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !warned("egde") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !warned("egde") {
		t.Errorf("no warning for the undefined domain egde:\n%s", s.log())
	}
	if warned("edge") {
		t.Errorf("a warning for edge, which the rules define:\n%s", s.log())
	}
}

// --ext-authz-default-domain naming a domain the rules do not define, or one without an
// ext_authz section, is warned of (every check without a domain would be allowed); one
// with a section is not.
func TestExtAuthzDefaultDomainIsChecked(t *testing.T) {
	rs, err := descriptors.Parse("edge.yaml", []byte(`domain: edge
descriptors:
  - key: remote_address
    rate_limit: {unit: second, requests_per_unit: 1}
ext_authz:
  descriptors:
    - entries: [{remote_address: {}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	empty, err := descriptors.Compile()
	if err != nil {
		t.Fatal(err)
	}
	plain, err := descriptors.Parse("plain.yaml", []byte("domain: plain\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rules  *descriptors.RuleSet
		domain string
		want   string
	}{
		{rs, "edge", ""},
		{rs, "", ""},
		{rs, "egde", "names a domain the rules do not define"},
		{plain, "plain", "names a domain without an ext_authz section"},
		{empty, "edge", ""}, // xDS's placeholder before the first rules: nothing to check yet
	} {
		var buf bytes.Buffer
		warnExtAuthzDefaultDomain(slog.New(slog.NewTextHandler(&buf, nil)), tc.domain, tc.rules)
		switch {
		case tc.want == "" && buf.Len() != 0:
			t.Errorf("domain %q: a warning:\n%s", tc.domain, buf.String())
		case tc.want != "" && !strings.Contains(buf.String(), tc.want) || tc.want != "" && !strings.Contains(buf.String(), "domain="+tc.domain):
			t.Errorf("domain %q: no warning saying %q:\n%s", tc.domain, tc.want, buf.String())
		}
	}
}

// serve checks --ext-authz-default-domain against the rules it serves.
func TestServeWarnsOfAnUnruledExtAuthzDefaultDomain(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--ext-authz-default-domain", "egde")
	const warning = `"msg":"--ext-authz-default-domain names a domain the rules do not define: checks without a domain of their own are allowed","domain":"egde"`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log(), warning) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(s.log(), warning) {
		t.Errorf("no warning for the undefined default domain egde:\n%s", s.log())
	}
}

// An ext_authz section that can build more descriptors than --max-descriptors is named
// in a warning at start.
func TestExtAuthzSectionOverTheBoundIsWarned(t *testing.T) {
	s := startBinary(t, buildBinary(t), "--max-descriptors", "2", "--config-dir", "../../config")
	const warning = `"msg":"an ext_authz section can build checks over a request bound; such a check is refused, and Envoy's failure mode decides it","domain":"edge","bound":"--max-descriptors"`
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.log(), warning) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(s.log(), warning) {
		t.Errorf("no warning for edge's ext_authz section:\n%s", s.log())
	}
}

// Every request bound an ext_authz section can build checks beyond is named: more
// entries in one descriptor, a longer entry key, a longer domain.
func TestExtAuthzSectionOverEachBoundIsWarned(t *testing.T) {
	rs, err := descriptors.Parse("edge.yaml", []byte(`domain: edge
descriptors:
  - key: generic_key
    value: a
    descriptors:
      - key: a_rather_long_key
        descriptors:
          - key: remote_address
            rate_limit: {unit: second, requests_per_unit: 1}
ext_authz:
  descriptors:
    - entries:
        - generic_key: {descriptor_value: a}
        - generic_key: {descriptor_value: b, descriptor_key: a_rather_long_key}
        - remote_address: {}
      hits_addend: {number: 500}
`))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	warnExtAuthzOverBound(log, rs, decide.DefaultBounds)
	if buf.Len() != 0 {
		t.Errorf("warnings within the default bounds:\n%s", buf.String())
	}
	warnExtAuthzOverBound(log, rs, decide.Bounds{MaxDescriptors: 1, MaxEntries: 2, MaxKeyLen: 16, MaxDomainLen: 3, MaxCost: 499})
	for _, want := range []string{"bound=--max-entries value=2 section=3", "bound=--max-entry-key-bytes value=16 section=17",
		"hits_addend is above --max-hits-addend; it counts as the bound\" domain=edge descriptor=ext_authz.descriptors[0] hits_addend=500 max_hits_addend=499"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("no warning with %q:\n%s", want, buf.String())
		}
	}
	if strings.Contains(buf.String(), "--max-descriptors") {
		t.Errorf("a warning for --max-descriptors, which one descriptor does not exceed:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "--max-domain-bytes") { // rulesOverBound's, once
		t.Errorf("the domain over its bound warned of by the ext_authz section too:\n%s", buf.String())
	}
}

// A misspelt RATELIMIT_EXT_ variable is refused, but not the variables Kubernetes puts
// in every pod for a Service named ratelimit-ext (or ratelimit-ext-anything): they would
// otherwise stop every pod of the shipped Deployment from starting.
func TestUnknownVariablesAreRefusedButNotServiceLinks(t *testing.T) {
	isolateEnv(t)
	t.Setenv("RATELIMIT_EXT_LOG_LEVL", "debug")
	if _, err := loadServeConfig(nil); err == nil || !strings.Contains(err.Error(), "RATELIMIT_EXT_LOG_LEVL is not a setting") {
		t.Errorf("a misspelt variable: %v", err)
	}
	os.Unsetenv("RATELIMIT_EXT_LOG_LEVL")
	// Names shaped like service links, but values that are not: settings gone wrong.
	for k, v := range map[string]string{
		"RATELIMIT_EXT_REDIS_SERVICE_HOST":     "redis",
		"RATELIMIT_EXT_LOG_LEVEL_SERVICE_PORT": "debug",
		"RATELIMIT_EXT_GRPC_PORT":              "8081",
		"RATELIMIT_EXT_PORT_1_TCP_ADDR":        "anything",
	} {
		t.Setenv(k, v)
		if _, err := loadServeConfig(nil); err == nil || !strings.Contains(err.Error(), k+" is not a setting") {
			t.Errorf("%s=%s: %v, want it refused", k, v, err)
		}
		os.Unsetenv(k)
	}
	for k, v := range map[string]string{
		"RATELIMIT_EXT_SERVICE_HOST":            "10.96.0.12",
		"RATELIMIT_EXT_SERVICE_PORT":            "8081",
		"RATELIMIT_EXT_SERVICE_PORT_GRPC":       "8081",
		"RATELIMIT_EXT_SERVICE_PORT_HTTP":       "8080",
		"RATELIMIT_EXT_PORT":                    "tcp://10.96.0.12:8081",
		"RATELIMIT_EXT_PORT_8081_TCP":           "tcp://10.96.0.12:8081",
		"RATELIMIT_EXT_PORT_8081_TCP_PROTO":     "tcp",
		"RATELIMIT_EXT_PORT_8081_TCP_PORT":      "8081",
		"RATELIMIT_EXT_PORT_8081_TCP_ADDR":      "10.96.0.12",
		"RATELIMIT_EXT_METRICS_SERVICE_HOST":    "10.96.0.13",
		"RATELIMIT_EXT_METRICS_PORT":            "tcp://10.96.0.13:9090",
		"RATELIMIT_EXT_METRICS_PORT_9090_TCP":   "tcp://10.96.0.13:9090",
		"RATELIMIT_EXT_METRICS_SERVICE_PORT_M":  "9090",
		"RATELIMIT_EXT_SERVICE_PORT_ADDR":       "8080", // ports named addr and grpc-proto
		"RATELIMIT_EXT_SERVICE_PORT_GRPC_PROTO": "8081",
	} {
		t.Setenv(k, v)
	}
	if _, err := loadServeConfig(nil); err != nil {
		t.Errorf("Kubernetes service-link variables: %v", err)
	}
}

// --memory-max-mib takes 0 (automatic) up to what fits in int64 bytes; a larger value
// would wrap to the automatic bound without a word.
func TestMemoryMaxMiBRange(t *testing.T) {
	isolateEnv(t)
	for _, v := range []string{"-1", "8796093022208"} { // 2^43 MiB = 2^63 bytes
		if _, err := loadServeConfig([]string{"--memory-max-mib", v}); err == nil || !strings.Contains(err.Error(), "--memory-max-mib") {
			t.Errorf("--memory-max-mib %s: %v, want an error naming the flag", v, err)
		}
	}
	if _, err := loadServeConfig([]string{"--memory-max-mib", "8796093022207"}); err != nil {
		t.Errorf("the largest --memory-max-mib: %v", err)
	}
}

// --max-key-length is bounded too: a key past it is hashed, so a larger bound only lets
// clients' values take more memory per key.
func TestMaxKeyLengthRange(t *testing.T) {
	isolateEnv(t)
	for _, v := range []string{"0", "65537"} {
		if _, err := loadServeConfig([]string{"--max-key-length", v}); err == nil || !strings.Contains(err.Error(), "--max-key-length") {
			t.Errorf("--max-key-length %s: %v, want an error naming the flag", v, err)
		}
	}
	if _, err := loadServeConfig([]string{"--max-key-length", "65536"}); err != nil {
		t.Errorf("the largest --max-key-length: %v", err)
	}
}

// A reload that drops a domain the serving rules define (its file deleted, or cut
// before its domain line) lifts that domain's limits: each such domain is named in a
// warning; domains that stay, or come new, are not.
func TestVanishedDomainIsWarned(t *testing.T) {
	parse := func(files ...string) *descriptors.RuleSet {
		t.Helper()
		var fs []descriptors.File
		for i, f := range files {
			fs = append(fs, descriptors.File{Name: fmt.Sprintf("f%d.yaml", i), Data: []byte(f)})
		}
		rs, err := descriptors.Compile(fs...)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rule := func(domain string) string {
		return "domain: " + domain + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	warnVanishedDomains(log, parse(rule("edge"), rule("billing")), parse(rule("edge"), rule("new")))
	if out := logs.String(); !strings.Contains(out, "domain=billing") || strings.Contains(out, "domain=edge") || strings.Contains(out, "domain=new") {
		t.Errorf("log:\n%s\nwant a warning naming billing only", out)
	}
	logs.Reset()
	warnVanishedDomains(log, nil, parse(rule("edge"))) // the first rules (xDS): nothing vanished
	if logs.Len() != 0 {
		t.Errorf("a warning with no rules serving before:\n%s", logs.String())
	}
}

// With --merge-domains a domain outlives one of its files: a reload that drops every
// limit of a file of a domain it keeps (the file deleted) lifts those limits as a
// dropped domain lifts its own, and is warned of with the file named. A file edited,
// or renamed with its limits, and a domain gone whole (warnVanishedDomains') are not.
func TestVanishedFileOfAKeptDomainIsWarned(t *testing.T) {
	team := func(key string) string {
		return "domain: edge\ndescriptors:\n  - key: " + key + "\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
	}
	merged := func(files map[string]string) *descriptors.RuleSet {
		t.Helper()
		var fs []descriptors.File
		for name, data := range files {
			fs = append(fs, descriptors.File{Name: name, Data: []byte(data)})
		}
		rs, err := descriptors.Options{MergeDomains: true}.Compile(fs...)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	serving := merged(map[string]string{"a.yaml": team("user"), "b.yaml": team("key")})
	for _, tc := range []struct {
		name string
		next *descriptors.RuleSet
		want string // the file named in the warning; "" for none
	}{
		{"a file deleted", merged(map[string]string{"a.yaml": team("user")}), "b.yaml"},
		{"a file edited", merged(map[string]string{"a.yaml": team("user"), "b.yaml": team("other")}), ""},
		{"a file renamed", merged(map[string]string{"a.yaml": team("user"), "c.yaml": team("key")}), ""},
		{"the domain gone", merged(map[string]string{"x.yaml": "domain: x\n" + strings.SplitN(team("user"), "\n", 2)[1]}), ""},
	} {
		var logs bytes.Buffer
		warnVanishedFiles(slog.New(slog.NewTextHandler(&logs, nil)), serving, tc.next)
		out := logs.String()
		if tc.want == "" && out != "" || tc.want != "" && (!strings.Contains(out, "domain=edge file="+tc.want) || strings.Count(out, "\n") != 1) {
			t.Errorf("%s: log:\n%s\nwant one warning naming %q, or none for \"\"", tc.name, out, tc.want)
		}
	}
	var logs bytes.Buffer
	warnVanishedFiles(slog.New(slog.NewTextHandler(&logs, nil)), nil, serving) // the first rules (xDS)
	if logs.Len() != 0 {
		t.Errorf("a warning with no rules serving before:\n%s", logs.String())
	}
}

// The running service warns when a reload drops a domain: billing.yaml deleted while
// edge.yaml stays.
func TestReloadWarnsOfAVanishedDomain(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"edge", "billing"} {
		rule := "domain: " + d + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
		if err := os.WriteFile(filepath.Join(dir, d+".yaml"), []byte(rule), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := startBinary(t, buildBinary(t), "--config-dir", dir, "--watch=true")
	if err := os.Remove(filepath.Join(dir, "billing.yaml")); err != nil {
		t.Fatal(err)
	}
	want := `"msg":"a domain's rules are gone: its requests are no longer limited","domain":"billing"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.log(), want) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(s.log(), want) {
		t.Errorf("no warning for the dropped domain:\n%s", s.log())
	}
}

// The service names, at start, a file of its config directory it does not read for
// its name: envoyproxy/ratelimit would have read it. A reload says it again only when
// the list changed. A long list is cut at ten names.
func TestServeWarnsOfSkippedFiles(t *testing.T) {
	dir := t.TempDir()
	rule := func(n int) string {
		return fmt.Sprintf("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: %d}\n", n)
	}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("edge.yaml", rule(1))
	write("config", strings.Replace(rule(1), "edge", "cm", 1))
	s := startBinary(t, buildBinary(t), "--config-dir", dir, "--watch=true")
	note := `"msg":"not read, as the names do not end in .yaml or .yml: config`
	waitCount := func(what string, n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); strings.Count(s.log(), what) < n && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		if got := strings.Count(s.log(), what); got != n {
			t.Fatalf("%d lines with %s, want %d:\n%s", got, what, n, s.log())
		}
	}
	waitCount(note+" (", 1)

	write("edge.yaml", rule(2)) // a reload, the same files skipped: no second warning
	waitCount(`"msg":"config reloaded"`, 1)
	waitCount(note, 1)

	write("notes.txt", "")
	write("edge.yaml", rule(3)) // a reload with one more skipped file: warned again
	waitCount(`"msg":"config reloaded"`, 2)
	waitCount(note+", notes.txt (", 1)

	for i := range 12 {
		write(fmt.Sprintf("n%02d.txt", i), "")
	}
	rs, err := descriptors.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := skippedNote(rs); !strings.Contains(got, ": config, n00.txt, ") || !strings.Contains(got, "n08.txt and 4 more (") {
		t.Errorf("note for 14 skipped files: %q", got)
	}
}
