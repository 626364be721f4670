package extauthz

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlssvc "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testlog"
)

// serverRules: the edge-like rules the server tests decide with.
const serverRules = `domain: edge
descriptors:
  - key: remote_address
    rate_limit: {name: per-ip, unit: minute, requests_per_unit: 3, algorithm: sliding_window_log}
  - key: api_key
    rate_limits:
      - {name: per-key-burst, unit: second, requests_per_unit: 1, algorithm: token_bucket, burst: 3}
      - {name: per-key-daily, unit: day, requests_per_unit: 10000}
  - key: generic_key
    value: pair
    rate_limit: {name: pair-demo, unit: second, unit_multiplier: 2, requests_per_unit: 2}
  - key: generic_key
    value: shadow
    shadow_mode: true
    rate_limit: {name: shadow-demo, unit: minute, requests_per_unit: 1}
  - key: generic_key
    value: free
    rate_limit: {unlimited: true}
  - key: generic_key
    value: costly
    rate_limit: {name: costly, unit: minute, requests_per_unit: 1000000}
ext_authz:
  descriptors:
    - when: {path: {exact: /ip}}
      entries: [{remote_address: {xff_num_trusted_hops: 1}}]
    - when: {path: {exact: /key}}
      entries: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}]
    - when: {path: {exact: /pair}}
      entries: [{remote_address: {xff_num_trusted_hops: 1}}]
    - when: {path: {exact: /pair}}
      entries: [{generic_key: {descriptor_value: pair}}]
    - when: {path: {exact: /shadow}}
      entries: [{generic_key: {descriptor_value: shadow}}]
    - when: {path: {exact: /free}}
      entries: [{generic_key: {descriptor_value: free}}]
    - when: {path: {exact: /costly}}
      entries: [{remote_address: {xff_num_trusted_hops: 1}}]
    - when: {path: {exact: /costly}}
      entries: [{generic_key: {descriptor_value: costly}}]
      hits_addend: {request_header: x-cost}
`

// base is an epoch-aligned test time (a multiple of every window below).
const base = int64(1_700_000_040_000)

type env struct {
	t       *testing.T
	now     atomic.Int64
	engine  *countingEngine
	decider *decide.Decider
	rls     *rls.Server
}

// countingEngine counts engine calls and can be made to fail like a store.
type countingEngine struct {
	limiter.Engine
	calls atomic.Int64
	fail  atomic.Bool
}

func (e *countingEngine) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	e.calls.Add(1)
	if e.fail.Load() {
		return limiter.Outcome{}, fmt.Errorf("%w: redis: connection refused", limiter.ErrStore)
	}
	return e.Engine.Evaluate(ctx, now, checks, out)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t}
	e.now.Store(base)
	rs, err := descriptors.Parse("edge.yaml", []byte(serverRules))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Clock: e.now.Load, Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	e.engine = &countingEngine{Engine: mem}
	e.decider = decide.New(rs, e.engine, decide.Options{Keys: storekey.New(keyPrefix, 0)})
	e.rls = rls.New(e.decider, ratelimitheaders.Options{RetryAfter: true}, nil)
	return e
}

func (e *env) server(o Options) *Server { return New(e.decider, o, nil) }

// keyPrefix is the prefix of the storage keys both doors' decider uses.
const keyPrefix = "rlx:"

// reconfigure replaces e.decider by one on the same rules, engine and keys with other
// options; servers made before, and e.rls, keep the old one.
func (e *env) reconfigure(o decide.Options) {
	o.Keys = storekey.New(keyPrefix, 0)
	e.decider = decide.New(e.decider.Rules(), e.engine, o)
}

var defaultOpts = Options{XRateLimitHeaders: true, Headers: ratelimitheaders.Options{RetryAfter: true}}

// req builds a check for path from client ip (through one load balancer, as
// envoy/ext_authz.yaml's connection manager sees it), with extra headers.
func req(path, ip string, hdr ...string) *authv3.CheckRequest {
	h := map[string]string{":path": path, ":method": "GET", ":authority": "example.com"}
	if ip != "" {
		h["x-forwarded-for"] = ip + ",127.0.0.1"
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		h[hdr[i]] = hdr[i+1]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1"}}}},
		Request:           &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Headers: h, Path: path, Method: "GET"}},
		ContextExtensions: map[string]string{DomainExtension: "edge"},
	}}
}

// answer is a CheckResponse flattened for assertions.
type answer struct {
	grpc    codes.Code
	http    int // 200 for OK
	headers map[string]string
	body    string
}

func flatten(t *testing.T, r *authv3.CheckResponse, err error) answer {
	t.Helper()
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	a := answer{grpc: codes.Code(r.GetStatus().GetCode()), headers: map[string]string{}}
	var hs []*corev3.HeaderValueOption
	switch h := r.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.http, hs = 200, h.OkResponse.GetResponseHeadersToAdd()
		if len(h.OkResponse.GetHeaders()) > 0 || len(h.OkResponse.GetHeadersToRemove()) > 0 {
			t.Errorf("OK answer changes the upstream request: %v", h.OkResponse)
		}
	case *authv3.CheckResponse_DeniedResponse:
		a.http, hs, a.body = int(h.DeniedResponse.GetStatus().GetCode()), h.DeniedResponse.GetHeaders(), h.DeniedResponse.GetBody()
	default:
		t.Fatalf("no http_response: %v", r)
	}
	for _, h := range hs {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append action %v", h.GetHeader().GetKey(), h.GetAppendAction())
		}
		if _, dup := a.headers[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s twice", h.GetHeader().GetKey())
		}
		a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return a
}

func (e *env) check(s *Server, r *authv3.CheckRequest) answer {
	e.t.Helper()
	resp, err := s.Check(context.Background(), r)
	return flatten(e.t, resp, err)
}

func wantHeaders(t *testing.T, what string, a answer, want map[string]string) {
	t.Helper()
	if fmt.Sprint(a.headers) != fmt.Sprint(want) {
		t.Errorf("%s: headers\n  %v\nwant\n  %v", what, a.headers, want)
	}
}

// Per client address: 3 per minute (sliding_window_log). Allowed answers carry the
// remaining quota; the 4th is a 429 with Retry-After and the same headers.
func TestCheckPerIP(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	for i := range 3 {
		e.now.Store(base + int64(i)*1000)
		a := e.check(s, req("/ip", "203.0.113.1"))
		if a.grpc != codes.OK || a.http != 200 {
			t.Fatalf("request %d: %v %d", i, a.grpc, a.http)
		}
		// resetAt = oldest stamp + P = base + 60000; reset = ⌊(resetAt − now)/1000⌋.
		wantHeaders(t, fmt.Sprint("request ", i), a, map[string]string{
			"x-ratelimit-limit":     `3, 3;w=60;name="per-ip"`,
			"x-ratelimit-remaining": fmt.Sprint(2 - i),
			"x-ratelimit-reset":     fmt.Sprint(60 - i),
		})
	}
	e.now.Store(base + 2500)
	a := e.check(s, req("/ip", "203.0.113.1"))
	if a.grpc != codes.PermissionDenied || a.http != 429 || a.body != "" {
		t.Fatalf("4th: %v %d %q", a.grpc, a.http, a.body)
	}
	// retryAfterMs = stamp_1 + P − now = 57500 → Retry-After 58 (rounded up).
	wantHeaders(t, "4th", a, map[string]string{
		"x-ratelimit-limit":     `3, 3;w=60;name="per-ip"`,
		"x-ratelimit-remaining": "0",
		"x-ratelimit-reset":     "57",
		"retry-after":           "58",
	})
	// Another client is not affected.
	if a := e.check(s, req("/ip", "203.0.113.2")); a.http != 200 || a.headers["x-ratelimit-remaining"] != "2" {
		t.Errorf("other client: %+v", a)
	}
}

// Per header: the token bucket (capacity 3) reports itself (lowest remaining) with its
// capacity as the limit; a request without the header is not limited at all.
func TestCheckPerHeader(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	var got []string
	for range 4 {
		a := e.check(s, req("/key", "", "x-api-key", "k1"))
		got = append(got, fmt.Sprint(a.http, " ", a.headers["x-ratelimit-remaining"], " ", a.headers["retry-after"]))
	}
	if want := "[200 2  200 1  200 0  429 0 1]"; fmt.Sprint(got) != want {
		t.Errorf("answers %v, want %s", got, want)
	}
	a := e.check(s, req("/key", "", "x-api-key", "k1"))
	if a.headers["x-ratelimit-limit"] != `3, 3;w=3;name="per-key-burst"` {
		t.Errorf("limit header %q", a.headers["x-ratelimit-limit"])
	}
	calls := e.engine.calls.Load()
	for range 10 {
		if a := e.check(s, req("/key", "")); a.http != 200 || len(a.headers) != 0 {
			t.Fatalf("without x-api-key: %+v", a)
		}
	}
	if e.engine.calls.Load() != calls {
		t.Error("a check without descriptors reached the store")
	}
}

// Two descriptors in one check are decided all or nothing, and the headers describe
// every descriptor (as Envoy renders them from the RLS statuses).
func TestCheckPairAllOrNothing(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	for i := range 2 {
		if a := e.check(s, req("/pair", "198.51.100.1")); a.http != 200 {
			t.Fatalf("pair %d: %d", i, a.http)
		}
	}
	a := e.check(s, req("/pair", "198.51.100.2"))
	if a.http != 429 {
		t.Fatalf("third pair: %d", a.http)
	}
	// Reported: pair-demo (remaining 0, the lowest); policies: per-ip, pair-demo (w = 2 s).
	wantHeaders(t, "denied pair", a, map[string]string{
		"x-ratelimit-limit":     `2, 3;w=60;name="per-ip", 2;w=2;name="pair-demo"`,
		"x-ratelimit-remaining": "0",
		"x-ratelimit-reset":     "2",
		"retry-after":           "2",
	})
	// The denied check did not charge 198.51.100.2's per-ip limit.
	if a := e.check(s, req("/ip", "198.51.100.2")); a.headers["x-ratelimit-remaining"] != "2" {
		t.Errorf("per-ip after a denied pair: %v", a.headers)
	}
}

// The same descriptor counts once whichever door it comes through: one storage key.
func TestCheckSharesStateWithShouldRateLimit(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	rl := func() *rlssvc.RateLimitResponse {
		t.Helper()
		r, err := e.rls.ShouldRateLimit(context.Background(), &rlssvc.RateLimitRequest{Domain: "edge",
			Descriptors: []*rlsv3.RateLimitDescriptor{{Entries: []*rlsv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.9"}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := rl(); r.GetOverallCode() != rlssvc.RateLimitResponse_OK || r.GetStatuses()[0].GetLimitRemaining() != 2 {
		t.Fatalf("RLS 1: %v", r)
	}
	if a := e.check(s, req("/ip", "192.0.2.9")); a.http != 200 || a.headers["x-ratelimit-remaining"] != "1" {
		t.Fatalf("ext_authz after RLS: %+v", a)
	}
	if r := rl(); r.GetOverallCode() != rlssvc.RateLimitResponse_OK || r.GetStatuses()[0].GetLimitRemaining() != 0 {
		t.Fatalf("RLS 2: %v", r)
	}
	if a := e.check(s, req("/ip", "192.0.2.9")); a.http != 429 {
		t.Fatalf("ext_authz 4th: %+v", a)
	}
	if r := rl(); r.GetOverallCode() != rlssvc.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("RLS 5th: %v", r)
	}
}

// Draft-03 headers are the ones Envoy renders from the RLS answer for the same request:
// compare with the statuses ShouldRateLimit returns for an identical request.
func TestDraft03MatchesTheRLSStatuses(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	a := e.check(s, req("/pair", "192.0.2.50"))
	r, err := e.rls.ShouldRateLimit(context.Background(), &rlssvc.RateLimitRequest{Domain: "edge",
		Descriptors: []*rlsv3.RateLimitDescriptor{
			{Entries: []*rlsv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "192.0.2.50"}}},
			{Entries: []*rlsv3.RateLimitDescriptor_Entry{{Key: "generic_key", Value: "pair"}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	// The RLS answer comes one request later: remaining is one lower on each status.
	st := r.GetStatuses()
	if st[0].GetLimitRemaining() != 1 || st[1].GetLimitRemaining() != 0 {
		t.Fatalf("statuses %v", st)
	}
	want := fmt.Sprintf("%d, %d;w=60;name=%q, %d;w=2;name=%q", st[1].GetCurrentLimit().GetRequestsPerUnit(),
		st[0].GetCurrentLimit().GetRequestsPerUnit(), st[0].GetCurrentLimit().GetName(),
		st[1].GetCurrentLimit().GetRequestsPerUnit(), st[1].GetCurrentLimit().GetName())
	if a.headers["x-ratelimit-limit"] != want || a.headers["x-ratelimit-remaining"] != "1" {
		t.Errorf("ext_authz headers %v; the RLS statuses render as %q", a.headers, want)
	}
}

func TestCheckHeaderFamiliesAndProblemDetails(t *testing.T) {
	e := newEnv(t)
	ietf := e.server(Options{Headers: ratelimitheaders.Options{RetryAfter: true, RateLimitHeaders: true, ProblemDetails: true}})
	a := e.check(ietf, req("/ip", "192.0.2.60"))
	wantHeaders(t, "ietf allowed", a, map[string]string{
		"ratelimit-policy": `"per-ip";q=3;w=60`,
		"ratelimit":        `"per-ip";r=2;t=60`,
	})
	e.check(ietf, req("/ip", "192.0.2.60"))
	e.check(ietf, req("/ip", "192.0.2.60"))
	e.now.Store(base + 10_000)
	a = e.check(ietf, req("/ip", "192.0.2.60"))
	if a.http != 429 || a.headers["retry-after"] != "50" || a.headers["content-type"] != "application/problem+json" ||
		a.headers["ratelimit"] != `"per-ip";r=0;t=50` {
		t.Fatalf("ietf denied: %+v", a)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(a.body), &body); err != nil {
		t.Fatalf("body %q: %v", a.body, err)
	}
	if body["status"] != float64(429) || body["retry_after"] != float64(50) || body["limit"] != "per-ip" {
		t.Errorf("problem body %v", body)
	}

	both := e.server(Options{XRateLimitHeaders: true, Headers: ratelimitheaders.Options{RateLimitHeaders: true}})
	a = e.check(both, req("/ip", "192.0.2.61"))
	for _, h := range []string{"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "ratelimit", "ratelimit-policy"} {
		if a.headers[h] == "" {
			t.Errorf("both families: no %s in %v", h, a.headers)
		}
	}
	none := e.server(Options{})
	for range 3 {
		e.check(none, req("/ip", "192.0.2.62"))
	}
	a = e.check(none, req("/ip", "192.0.2.62"))
	if a.http != 429 || len(a.headers) != 0 || a.body != "" {
		t.Errorf("no headers at all: %+v", a)
	}
}

// The upstream header of the shared switches goes to the upstream request on OK.
func TestCheckUpstreamRemainingHeader(t *testing.T) {
	e := newEnv(t)
	o := defaultOpts
	o.Headers.UpstreamRemainingHeader = "x-quota-left"
	r, err := e.server(o).Check(context.Background(), req("/ip", "192.0.2.63"))
	if err != nil {
		t.Fatal(err)
	}
	hs := r.GetOkResponse().GetHeaders()
	if len(hs) != 1 || hs[0].GetHeader().GetKey() != "x-quota-left" || hs[0].GetHeader().GetValue() != "2" ||
		hs[0].GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
		t.Errorf("upstream headers %v", hs)
	}
}

// Shadow limits never deny and show nothing; unlimited ones never touch the store.
func TestCheckShadowAndUnlimited(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	for range 3 {
		if a := e.check(s, req("/shadow", "")); a.http != 200 || len(a.headers) != 0 {
			t.Fatalf("shadow: %+v", a)
		}
	}
	calls := e.engine.calls.Load()
	if a := e.check(s, req("/free", "")); a.http != 200 || len(a.headers) != 0 {
		t.Fatalf("unlimited: %+v", a)
	}
	if e.engine.calls.Load() != calls {
		t.Error("an unlimited descriptor reached the store")
	}
}

func TestCheckDomainChoice(t *testing.T) {
	e := newEnv(t)
	noDomain := func() *authv3.CheckRequest {
		r := req("/ip", "192.0.2.70")
		r.Attributes.ContextExtensions = nil
		return r
	}
	// Without the extension and without a default: allowed, nothing decided.
	if a := e.check(e.server(defaultOpts), noDomain()); a.http != 200 || len(a.headers) != 0 {
		t.Errorf("no domain: %+v", a)
	}
	if e.engine.calls.Load() != 0 {
		t.Error("a check without a domain reached the store")
	}
	// The default domain applies (Istio sends no context extensions).
	o := defaultOpts
	o.DefaultDomain = "edge"
	if a := e.check(e.server(o), noDomain()); a.headers["x-ratelimit-remaining"] != "2" {
		t.Errorf("default domain: %+v", a)
	}
	// The extension wins over the default.
	r := req("/ip", "192.0.2.70")
	r.Attributes.ContextExtensions[DomainExtension] = "unknown"
	if a := e.check(e.server(o), r); a.http != 200 || len(a.headers) != 0 {
		t.Errorf("unknown domain: %+v", a)
	}
	// An empty extension falls back to the default.
	r.Attributes.ContextExtensions[DomainExtension] = ""
	if a := e.check(e.server(o), r); a.headers["x-ratelimit-remaining"] != "1" {
		t.Errorf("empty extension: %+v", a)
	}
	// A nil or empty request is allowed.
	for _, r := range []*authv3.CheckRequest{nil, {}, {Attributes: &authv3.AttributeContext{}}} {
		if a := e.check(e.server(o), r); a.http != 200 {
			t.Errorf("empty request: %+v", a)
		}
	}
}

// A domain without an ext_authz section, and rules swapped by a reload, are honoured.
func TestCheckFollowsReloads(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	plain, err := descriptors.Parse("edge.yaml", []byte("domain: edge\ndescriptors:\n  - {key: remote_address, rate_limit: {unit: minute, requests_per_unit: 3}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.decider.SetRules(plain)
	if a := e.check(s, req("/ip", "192.0.2.80")); a.http != 200 || len(a.headers) != 0 {
		t.Errorf("domain without ext_authz: %+v", a)
	}
	if e.engine.calls.Load() != 0 {
		t.Error("store reached")
	}
}

// With debug logging on, every skipped descriptor is logged with its reason, one line
// each; with it off, nothing is.
func TestSkippedDescriptorsAreDebugLogged(t *testing.T) {
	e := newEnv(t)
	logged := func(level slog.Level) string {
		var buf bytes.Buffer
		o := defaultOpts
		o.Log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level,
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
				if a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))
		if a := e.check(e.server(o), req("/key", "192.0.2.90")); a.http != 200 {
			t.Fatalf("a check that builds no descriptor: %+v", a)
		}
		return buf.String()
	}
	want := `level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[0] reason="when.path: exact \"/ip\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[1] reason="request_headers: header x-api-key is missing"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[2] reason="when.path: exact \"/pair\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[3] reason="when.path: exact \"/pair\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[4] reason="when.path: exact \"/shadow\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[5] reason="when.path: exact \"/free\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[6] reason="when.path: exact \"/costly\" does not match"
level=DEBUG msg="ext_authz descriptor skipped" domain=edge descriptor=ext_authz.descriptors[7] reason="when.path: exact \"/costly\" does not match"
`
	if got := logged(slog.LevelDebug); got != want {
		t.Errorf("debug log:\n%s\nwant\n%s", got, want)
	}
	if got := logged(slog.LevelInfo); got != "" {
		t.Errorf("info log: %q", got)
	}
}

func TestCheckStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.engine.fail.Store(true)
	// envoy: the gRPC error Envoy's failure_mode_allow / status_on_error turn into an answer.
	_, err := e.server(defaultOpts).Check(context.Background(), req("/ip", "192.0.2.90"))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("envoy mode: %v", err)
	}
	o := defaultOpts
	o.FailureMode = ModeAllow
	if a := e.check(e.server(o), req("/ip", "192.0.2.90")); a.grpc != codes.OK || a.http != 200 || len(a.headers) != 0 {
		t.Errorf("allow mode: %+v", a)
	}
	o.FailureMode, o.Headers.ProblemDetails = ModeDeny, true
	a := e.check(e.server(o), req("/ip", "192.0.2.90"))
	if a.grpc != codes.Unavailable || a.http != 503 || a.headers["content-type"] != "application/problem+json" || !strings.Contains(a.body, `"status":503`) {
		t.Errorf("deny mode: %+v", a)
	}
	o.Headers.ProblemDetails = false
	if a := e.check(e.server(o), req("/ip", "192.0.2.90")); a.http != 503 || a.body != "" || len(a.headers) != 0 {
		t.Errorf("deny mode without body: %+v", a)
	}
	// The shared store failure policy comes first: fail_open allows (no headers)
	// whatever the ext_authz failure mode.
	e.reconfigure(decide.Options{Failure: decide.FailurePolicy{Default: decide.FailOpen}})
	if a := e.check(e.server(o), req("/ip", "192.0.2.90")); a.grpc != codes.OK || len(a.headers) != 0 {
		t.Errorf("fail_open policy: %+v", a)
	}
}

func TestCheckInvalidAndCanceled(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	// A client's long value is decided, not refused: an error would let Envoy pass the
	// request past every limit on the check.
	resp, err := s.Check(context.Background(), req("/key", "", "x-api-key", strings.Repeat("k", 20_000)))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("a 20,000-byte value: %v, %v", resp, err)
	}
	// A client's cost above --max-hits-addend counts as the bound: neither refused
	// (Envoy would pass the check past the per-IP limit too) nor free. costly allows
	// 1,000,000 a minute: 100 checks costing 20,000 each, charged 10,000, use it up.
	bounds := decide.DefaultBounds
	bounds.MaxCost = 10_000
	e.reconfigure(decide.Options{Bounds: bounds})
	s = e.server(defaultOpts)
	for i := range 101 {
		a := e.check(s, req("/costly", fmt.Sprintf("10.9.%d.%d", i/200, i%200+1), "x-cost", "20000"))
		if want := i < 100; (a.grpc == codes.OK) != want {
			t.Fatalf("check %d costing 20,000 over a bound of 10,000: %+v, want allowed %v", i+1, a, want)
		}
	}
	// A store call that fails because Envoy gave up (the context ended) is answered
	// with the context's code, whatever the failure mode.
	e.engine.fail.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	o := defaultOpts
	o.FailureMode = ModeAllow
	_, err = e.server(o).Check(ctx, req("/key", "", "x-api-key", "k"))
	if status.Code(err) != codes.Canceled {
		t.Errorf("canceled: %v", err)
	}
}

type recorder struct {
	mu      sync.Mutex
	apis    []string
	errs    []error
	unknown []string // the domains of the checks observed as for an unknown domain
}

func (r *recorder) Observe(api string, _ time.Time, req *decide.Request, res *decide.Result, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.apis = append(r.apis, api)
	r.errs = append(r.errs, err)
	if res != nil && res.UnknownDomain {
		r.unknown = append(r.unknown, req.Domain)
	}
}

func TestCheckObserved(t *testing.T) {
	e := newEnv(t)
	rec := &recorder{}
	s := New(e.decider, defaultOpts, rec)
	e.check(s, req("/ip", "192.0.2.100"))
	e.check(s, req("/nothing", "192.0.2.100")) // no descriptor: not decided, not observed
	if fmt.Sprint(rec.apis) != "[ext_authz]" {
		t.Errorf("observed %v", rec.apis)
	}
}

// A check for a domain the rules do not define is observed as one, as ShouldRateLimit's
// are (ratelimit_ext_unknown_domain_requests_total{api="ext_authz"}): a domain misspelt
// in Envoy's context extension or in --ext-authz-default-domain, or rules that were not
// mounted, lift every limit, and docs/metrics.md's alert on that metric must see it.
// So is a check with no domain at all. A domain the rules define without an ext_authz
// section is a different matter (a warning, not an unknown domain).
func TestCheckForAnUnknownDomainIsObserved(t *testing.T) {
	e := newEnv(t)
	rs, err := descriptors.Compile(descriptors.File{Name: "edge.yaml", Data: []byte(serverRules)},
		descriptors.File{Name: "plain.yaml", Data: []byte("domain: plain\ndescriptors:\n  - {key: remote_address, rate_limit: {unit: minute, requests_per_unit: 3}}\n")})
	if err != nil {
		t.Fatal(err)
	}
	e.decider.SetRules(rs)
	rec := &recorder{}
	s := New(e.decider, defaultOpts, rec)
	for _, domain := range []string{"edge", "egde", "plain", ""} {
		r := req("/ip", "192.0.2.103")
		r.Attributes.ContextExtensions[DomainExtension] = domain
		if a := e.check(s, r); a.http != 200 {
			t.Fatalf("domain %q: %+v", domain, a)
		}
	}
	if fmt.Sprintf("%q", rec.unknown) != `["egde" ""]` || len(rec.apis) != 3 || rec.apis[1] != APIName {
		t.Errorf("observed %v, unknown domains %q; want edge decided, egde and no domain observed as unknown, plain not observed", rec.apis, rec.unknown)
	}
}

// A check the store fails is observed too, with its error (the store-error metrics),
// whatever the failure mode answers.
func TestCheckObservedOnStoreFailure(t *testing.T) {
	e := newEnv(t)
	e.engine.fail.Store(true)
	rec := &recorder{}
	o := defaultOpts
	o.FailureMode = ModeAllow
	if a := e.check(New(e.decider, o, rec), req("/ip", "192.0.2.101")); a.http != 200 {
		t.Fatalf("allow mode: %+v", a)
	}
	if len(rec.errs) != 1 || !errors.Is(rec.errs[0], limiter.ErrStore) {
		t.Errorf("observed %v with errors %v, want one check with the store's error", rec.apis, rec.errs)
	}
}

// A check over the request bounds is refused with InvalidArgument, as ShouldRateLimit
// refuses it, in every failure mode: it is not a store failure, so neither allowed
// (ModeAllow) nor a 503 (ModeDeny) nor UNAVAILABLE (ModeEnvoy); and the store is not
// called.
func TestCheckOverTheBoundsIsInvalidInEveryFailureMode(t *testing.T) {
	e := newEnv(t)
	bounds := decide.DefaultBounds
	bounds.MaxDescriptors = 1
	e.reconfigure(decide.Options{Bounds: bounds})
	for _, mode := range []FailureMode{ModeEnvoy, ModeAllow, ModeDeny} {
		o := defaultOpts
		o.FailureMode = mode
		resp, err := e.server(o).Check(context.Background(), req("/pair", "192.0.2.102")) // 2 descriptors
		if status.Code(err) != codes.InvalidArgument || resp != nil {
			t.Errorf("%v mode: %v, %v; want InvalidArgument", mode, resp, err)
		}
	}
	if n := e.engine.calls.Load(); n != 0 {
		t.Errorf("%d store calls for checks over the bounds", n)
	}
}

// Over a real gRPC connection, next to the RLS on the same server (as serve.go does).
func TestCheckOverGRPC(t *testing.T) {
	e := newEnv(t)
	conn := testgrpc.Serve(t, func(gs *grpc.Server) {
		rlssvc.RegisterRateLimitServiceServer(gs, e.rls)
		e.server(defaultOpts).Register(gs)
	})
	client := authv3.NewAuthorizationClient(conn)
	for i := range 4 {
		r, err := client.Check(context.Background(), req("/ip", "192.0.2.110"))
		a := flatten(t, r, err)
		if want := map[bool]int{true: 200, false: 429}[i < 3]; a.http != want {
			t.Fatalf("check %d: %d, want %d", i, a.http, want)
		}
	}
	r, err := client.Check(context.Background(), req("/ip", "192.0.2.110"))
	if err != nil || r.GetDeniedResponse().GetStatus().GetCode() != typev3.StatusCode_TooManyRequests {
		t.Errorf("denied over gRPC: %v %v", r, err)
	}
	if _, err := rlssvc.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), &rlssvc.RateLimitRequest{Domain: "edge",
		Descriptors: []*rlsv3.RateLimitDescriptor{{Entries: []*rlsv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "1.2.3.4"}}}}}); err != nil {
		t.Errorf("the RLS on the same server: %v", err)
	}
}

// Concurrent checks on one key never admit more than the limit.
func TestCheckConcurrent(t *testing.T) {
	e := newEnv(t)
	s := e.server(defaultOpts)
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := s.Check(context.Background(), req("/ip", "192.0.2.120"))
			if err == nil && r.GetOkResponse() != nil {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 3 {
		t.Errorf("%d checks allowed, want 3", ok.Load())
	}
}

func TestParseFailureMode(t *testing.T) {
	for in, want := range map[string]FailureMode{"envoy": ModeEnvoy, "allow": ModeAllow, "deny": ModeDeny} {
		if m, err := ParseFailureMode(in); err != nil || m != want || m.String() != in {
			t.Errorf("ParseFailureMode(%q) = %v, %v", in, m, err)
		}
	}
	if _, err := ParseFailureMode("open"); err == nil {
		t.Error("ParseFailureMode accepts open")
	}
}

// Checks naming domains the rules do not define are allowed with a warning per domain,
// up to maxWarned of them; then one line says the rest are left out, and nothing more
// is logged however many follow. A domain is logged cut to loggedDomainBytes.
func TestUnknownDomainWarningsAreBounded(t *testing.T) {
	e := newEnv(t)
	logs := &testlog.Buffer{}
	o := defaultOpts
	o.Log = slog.New(slog.NewTextHandler(logs, nil))
	s := e.server(o)
	check := func(domain string) {
		t.Helper()
		r := req("/ip", "192.0.2.80")
		r.Attributes.ContextExtensions[DomainExtension] = domain
		if a := e.check(s, r); a.http != 200 {
			t.Fatalf("domain %.20q: %+v, want allowed", domain, a)
		}
	}
	long := strings.Repeat("d", 100_000)
	check(long)
	check(long) // once per domain
	for i := range 2 * maxWarned {
		check(fmt.Sprintf("unknown-%d", i))
	}
	check(long + "x") // past the bound: not logged
	out := logs.String()
	if n := strings.Count(out, "check for an unknown domain"); n != maxWarned {
		t.Errorf("%d unknown-domain warnings, want %d (one per domain, up to the bound)", n, maxWarned)
	}
	if n := strings.Count(out, "further unknown domains are left out"); n != 1 {
		t.Errorf("%d lines saying the rest are left out, want 1", n)
	}
	if !strings.Contains(out, strings.Repeat("d", loggedDomainBytes)+"…") || strings.Contains(out, strings.Repeat("d", loggedDomainBytes+1)) {
		t.Errorf("the long domain not logged cut to %d bytes", loggedDomainBytes)
	}
	if len(out) > 100_000 {
		t.Errorf("%d bytes of log for %d checks", len(out), 2*maxWarned+3)
	}
	// Past the bound, a domain the rules define without an ext_authz section is still
	// warned of: the flood of unknown domains does not hide it.
	other, err := descriptors.Parse("n.yaml", []byte("domain: noauthz\ndescriptors:\n  - {key: k, rate_limit: {unit: minute, requests_per_unit: 3}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.decider.SetRules(other)
	r := req("/ip", "192.0.2.81")
	r.Attributes.ContextExtensions[DomainExtension] = "noauthz"
	if a := e.check(s, r); a.http != 200 {
		t.Fatalf("a domain without an ext_authz section: %+v, want allowed", a)
	}
	if out := logs.String(); !strings.Contains(out, "without an ext_authz section") {
		t.Error("a domain without an ext_authz section was not warned of after the unknown-domain bound")
	}
}

// A domain is logged as valid UTF-8 (other bytes as U+FFFD), cut at a character
// boundary.
func TestLoggedDomain(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"edge", "edge"},
		{"a\xffb", "a\uFFFDb"},
		{strings.Repeat("a", loggedDomainBytes-1) + "é" + "tail", strings.Repeat("a", loggedDomainBytes-1) + "…"},
		{strings.Repeat("a", loggedDomainBytes) + "tail", strings.Repeat("a", loggedDomainBytes) + "…"},
	} {
		if got := logged(c.in); got != c.want {
			t.Errorf("logged(%.20q…) = %.30q…, want %.30q…", c.in, got, c.want)
		}
	}
}

// A gRPC request over the limit gets grpc-status 8 (RESOURCE_EXHAUSTED) among the denied
// headers: Envoy answers a gRPC request's local reply with the grpc-status it finds
// there, and otherwise maps the 429 to 14 (UNAVAILABLE), which gRPC clients retry at
// once. Other requests, allowed ones, and a fail-closed 503 (UNAVAILABLE is right
// there) get none. The content type is recognised as Envoy does (application/grpc, or
// application/grpc+<codec>; not gRPC-Web), from either header encoding.
func TestCheckGRPCDenialIsResourceExhausted(t *testing.T) {
	for _, tc := range []struct {
		name, contentType string
		raw               bool // encode_raw_headers: header_map instead of headers
		want              string
	}{
		{"grpc", "application/grpc", false, "8"},
		{"grpc+proto", "application/grpc+proto", false, "8"},
		{"grpc, raw headers", "application/grpc", true, "8"},
		{"grpc-web", "application/grpc-web", false, ""},
		{"grpc-web+proto", "application/grpc-web+proto", false, ""},
		{"json", "application/json", false, ""},
		{"no content type", "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := e.server(defaultOpts)
			check := func() answer {
				r := req("/key", "", "x-api-key", "k1")
				h := r.Attributes.Request.Http
				if tc.contentType != "" {
					h.Headers["content-type"] = tc.contentType
				}
				if tc.raw {
					hm := &corev3.HeaderMap{}
					for k, v := range h.Headers {
						hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
					}
					h.Headers, h.HeaderMap = nil, hm
				}
				return e.check(s, r)
			}
			for i := range 3 {
				if a := check(); a.http != 200 || a.headers["grpc-status"] != "" {
					t.Fatalf("allowed %d: %+v", i, a)
				}
			}
			a := check()
			if a.http != 429 || a.headers["grpc-status"] != tc.want || a.headers["retry-after"] != "1" {
				t.Errorf("denied: %+v, want grpc-status %q", a, tc.want)
			}
			e.engine.fail.Store(true)
			o := defaultOpts
			o.FailureMode = ModeDeny
			if a := e.check(e.server(o), req("/key", "", "x-api-key", "k1", "content-type", tc.contentType)); a.http != 503 || len(a.headers) != 0 {
				t.Errorf("fail-closed deny: %+v", a)
			}
		})
	}
}
