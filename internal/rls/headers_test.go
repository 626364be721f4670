package rls_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// headerRules: one limit per algorithm whose numbers make every SPEC §6 value easy to
// derive by hand at now = 1,700,000,000,000 (now mod 1 h = 800 s, mod 1 min = 20 s,
// mod 5 min = 200 s).
const headerRules = `
domain: h
descriptors:
  - key: fw
    rate_limit: {name: fw, unit: hour, requests_per_unit: 5}
  - key: tb
    rate_limit: {name: tb, unit: second, requests_per_unit: 2, algorithm: token_bucket, burst: 4}
  - key: gcra
    rate_limit: {name: g, unit: minute, requests_per_unit: 10, algorithm: gcra}
  - key: log
    rate_limit: {name: log, unit: minute, requests_per_unit: 3, algorithm: sliding_window_log}
  - key: five
    rate_limit: {name: five-min, unit: minute, unit_multiplier: 5, requests_per_unit: 100}
  - key: unnamed
    rate_limit: {unit: minute, requests_per_unit: 7}
  - key: shadow
    shadow_mode: true
    rate_limit: {name: sh, unit: hour, requests_per_unit: 1}
  - key: free
    rate_limit: {unlimited: true}
  - key: quote
    rate_limit: {name: 'a "q" \ b', unit: hour, requests_per_unit: 2}
  - key: qmin               # quota_mode: soft, 1 a minute
    quota_mode: true
    rate_limit: {name: qmin, unit: minute, requests_per_unit: 1}
  - key: qhour              # quota_mode: soft, 2 an hour
    quota_mode: true
    rate_limit: {name: qhour, unit: hour, requests_per_unit: 2}
`

type hfixture struct {
	client rlsv3.RateLimitServiceClient
	clock  *atomic.Int64
}

func startHeaders(t *testing.T, opts ratelimitheaders.Options) *hfixture {
	t.Helper()
	return startRules(t, headerRules, opts)
}

// startRules serves rules (of domain h) over gRPC with opts, on a clock the test moves.
func startRules(t *testing.T, rules string, opts ratelimitheaders.Options) *hfixture {
	t.Helper()
	rs, err := descriptors.Parse("h.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	clock := &atomic.Int64{}
	clock.Store(now)
	engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: clock.Load})
	t.Cleanup(func() { engine.Close() })
	d := decide.New(rs, engine, decide.Options{Keys: storekey.New("h:", 0)})
	if err := opts.Validate(); err != nil {
		t.Fatal(err)
	}
	conn := testgrpc.Serve(t, func(gs *grpc.Server) {
		rlsv3.RegisterRateLimitServiceServer(gs, rls.New(d, opts, nil))
	})
	return &hfixture{client: rlsv3.NewRateLimitServiceClient(conn), clock: clock}
}

func (f *hfixture) call(t *testing.T, hits uint32, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "h", Descriptors: ds, HitsAddend: hits})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func responseHeaders(t *testing.T, resp *rlsv3.RateLimitResponse) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, h := range resp.ResponseHeadersToAdd {
		if _, dup := m[h.Key]; dup {
			t.Fatalf("header %s added twice", h.Key)
		}
		m[h.Key] = h.Value
	}
	return m
}

func requestHeaders(resp *rlsv3.RateLimitResponse) map[string]string {
	m := map[string]string{}
	for _, h := range resp.RequestHeadersToAdd {
		m[h.Key] = h.Value
	}
	return m
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// step is one request of a header scenario: the clock offset from now, the request, and
// the exact response headers expected. Filler steps only advance state.
type step struct {
	at     int64 // ms after now
	hits   uint32
	descs  [][]string
	want   map[string]string
	filler bool
}

// fill is n requests for one descriptor whose answers are not checked.
func fill(n int, kv ...string) []step {
	out := make([]step, n)
	for i := range out {
		out[i] = step{descs: [][]string{kv}, filler: true}
	}
	return out
}

func concat(parts ...[]step) []step {
	var out []step
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func (f *hfixture) run(t *testing.T, steps []step) {
	t.Helper()
	for i, s := range steps {
		f.clock.Store(now + s.at)
		var ds []*ratelimitv3.RateLimitDescriptor
		for _, kv := range s.descs {
			ds = append(ds, desc(kv...))
		}
		got := responseHeaders(t, f.call(t, s.hits, ds...))
		if !s.filler && !equalMaps(got, s.want) {
			t.Fatalf("step %d: headers %v, want %v", i, got, s.want)
		}
	}
}

// Every value below is derived from SPEC §4 and §6 in the comments next to it.
func TestRateLimitHeaders(t *testing.T) {
	rl := func(policy, limit string) map[string]string {
		return map[string]string{"ratelimit-policy": policy, "ratelimit": limit}
	}
	withRetry := func(m map[string]string, s string) map[string]string {
		m["retry-after"] = s
		return m
	}
	one := func(want map[string]string, kv ...string) []step {
		return []step{{descs: [][]string{kv}, want: want}}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"fixed_window", concat(
			// ws = now − 800,000; resetAt − now = 2,800,000 ms → t = 2800; remaining 5 − 1 = 4.
			one(rl(`"fw";q=5;w=3600`, `"fw";r=4;t=2800`), "fw", "a"),
			fill(3, "fw", "a"),
			one(rl(`"fw";q=5;w=3600`, `"fw";r=0;t=2800`), "fw", "a"),
			// Denied: retryAfterMs = resetAt − now = 2,800,000 → Retry-After 2800, t = 2800.
			one(withRetry(rl(`"fw";q=5;w=3600`, `"fw";r=0;t=2800`), "2800"), "fw", "a"),
		)},
		{"token_bucket", concat(
			// Cold (4, now), cost 1: remaining ⌊3⌋ = 3, resetAt = now + ⌈(4 − 3)/(2/1000)⌉ = now + 500 → t = 1.
			one(rl(`"tb";q=4;w=2`, `"tb";r=3;t=1`), "tb", "a"),
			fill(3, "tb", "a"),
			// Denied at 0 tokens: retryAfterMs = ⌈1/(2/1000)⌉ = 500 → Retry-After 1;
			// resetAt − now = ⌈4/(2/1000)⌉ = 2000, capped by the wait → t = ⌈500/1000⌉ = 1.
			one(withRetry(rl(`"tb";q=4;w=2`, `"tb";r=0;t=1`), "1"), "tb", "a"),
		)},
		{"gcra", concat(
			// T = 6000, τ = 60,000. First: newTat = now + 6000, remaining ⌊(60,000 − 6000)/6000⌋ = 9,
			// resetAt = now + 6000 → t = 6.
			one(rl(`"g";q=10;w=60`, `"g";r=9;t=6`), "gcra", "a"),
			fill(9, "gcra", "a"),
			// 11th: tat = now + 60,000, allowAt = now + 6000 → deny, retryAfterMs 6000 → Retry-After 6;
			// resetAt − now = 60,000 but t is capped by the wait: 6 (Retry-After ≥ t, draft §6).
			one(withRetry(rl(`"g";q=10;w=60`, `"g";r=0;t=6`), "6"), "gcra", "a"),
		)},
		{"sliding_window_log cost 2", []step{
			// resetAt = oldest stamp + P.
			{at: 0, descs: [][]string{{"log", "a"}}, want: rl(`"log";q=3;w=60`, `"log";r=2;t=60`)},
			{at: 10_000, descs: [][]string{{"log", "a"}}, want: rl(`"log";q=3;w=60`, `"log";r=1;t=50`)},
			{at: 20_000, descs: [][]string{{"log", "a"}}, want: rl(`"log";q=3;w=60`, `"log";r=0;t=40`)},
			// At +30 s, cost 2: n = 3, k = min(max(3 + 2 − 3, 1), 3) = 2, retryAfterMs =
			// stamp_2 + P − now = 10,000 + 60,000 − 30,000 = 40,000 → Retry-After 40;
			// resetAt − now = 0 + 60,000 − 30,000 → t = 30 (shorter than the wait: no cap).
			{at: 30_000, hits: 2, descs: [][]string{{"log", "a"}}, want: withRetry(rl(`"log";q=3;w=60`, `"log";r=0;t=30`), "40")},
		}},
		// 5-minute window: w = 300, resetAt − now = 300,000 − 200,000 → t = 100.
		{"unit_multiplier window", one(rl(`"five-min";q=100;w=300`, `"five-min";r=99;t=100`), "five", "a")},
		// resetAt − now = 60,000 − 20,000 → t = 40.
		{"unnamed limit uses its descriptor path", one(rl(`"unnamed";q=7;w=60`, `"unnamed";r=6;t=40`), "unnamed", "a")},
		{"names are escaped as structured-field strings", one(rl(`"a \"q\" \\ b";q=2;w=3600`, `"a \"q\" \\ b";r=1;t=2800`), "quote", "a")},
		// five-min has 99 left, fw 4: fw is the most restrictive.
		{"least remaining across descriptors", []step{
			{descs: [][]string{{"five", "b"}, {"fw", "b"}}, want: rl(`"fw";q=5;w=3600`, `"fw";r=4;t=2800`)},
		}},
		// After three hits fw has 1 left after a fourth, as quote after its first: the
		// first in request order wins the tie.
		{"the first of equals in request order", concat(
			fill(3, "fw", "t"),
			[]step{{descs: [][]string{{"quote", "t"}, {"fw", "t"}}, want: rl(`"a \"q\" \\ b";q=2;w=3600`, `"a \"q\" \\ b";r=1;t=2800`)}},
		)},
		{"the longest wait among denying limits", concat(
			fill(5, "fw", "c"),
			fill(10, "gcra", "c"),
			// Both deny: gcra waits 6 s, fw 2800 s. Retry-After and the fields report fw.
			[]step{{descs: [][]string{{"gcra", "c"}, {"fw", "c"}}, want: withRetry(rl(`"fw";q=5;w=3600`, `"fw";r=0;t=2800`), "2800")}},
		)},
		{"shadow, unlimited and unmatched report nothing", concat(
			one(nil, "shadow", "a"),
			one(nil, "shadow", "a"), // would deny: still OK, still nothing
			one(nil, "free", "a"),
			one(nil, "nope", "a"),
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startHeaders(t, ratelimitheaders.Options{RetryAfter: true, RateLimitHeaders: true}).run(t, tc.steps)
		})
	}
}

// quota_mode (decide/quota.go): the fields describe what limits the request. An allowed
// request is not limited by a quota descriptor over its limit; a denied one waits for
// every ordinary limit that denies and, when every quota descriptor is over, for the
// first of them to come back: the limit whose wait Retry-After carries.
func TestRateLimitHeadersInQuotaMode(t *testing.T) {
	rl := func(policy, limit string) map[string]string {
		return map[string]string{"ratelimit-policy": policy, "ratelimit": limit}
	}
	withRetry := func(m map[string]string, s string) map[string]string {
		m["retry-after"] = s
		return m
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"an allowed request is not described by a quota descriptor over its limit", concat(
			fill(1, "qmin", "a"),
			// qmin a is over (its status says OVER_LIMIT), qhour b has room: allowed, and
			// qhour b is charged, 2 − 1 = 1 left, resetAt − now = 2,800,000 → t = 2800.
			[]step{{descs: [][]string{{"qmin", "a"}, {"qhour", "b"}}, want: rl(`"qhour";q=2;w=3600`, `"qhour";r=1;t=2800`)}},
		)},
		{"every quota descriptor over: the first to come back", concat(
			fill(1, "qmin", "c"),
			fill(2, "qhour", "c"),
			// qmin waits 60,000 − 20,000 = 40,000 ms, qhour 2,800,000: the request can pass
			// once qmin comes back, Retry-After 40, and the fields report qmin, t = 40.
			[]step{{descs: [][]string{{"qmin", "c"}, {"qhour", "c"}}, want: withRetry(rl(`"qmin";q=1;w=60`, `"qmin";r=0;t=40`), "40")}},
		)},
		{"an ordinary limit denies: it, not a quota descriptor that did not count", concat(
			fill(4, "tb", "d"),
			fill(2, "qhour", "d"),
			// qmin e has room, so qhour d being over (a 2800 s wait) does not deny; tb at
			// 0 tokens does, waiting 500 ms: Retry-After 1, t = 1 (as in token_bucket above).
			[]step{{descs: [][]string{{"tb", "d"}, {"qhour", "d"}, {"qmin", "e"}}, want: withRetry(rl(`"tb";q=4;w=2`, `"tb";r=0;t=1`), "1")}},
		)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startHeaders(t, ratelimitheaders.Options{RetryAfter: true, RateLimitHeaders: true}).run(t, tc.steps)
		})
	}

	// The upstream header likewise tells the quota the request used, not one it did not.
	f := startHeaders(t, ratelimitheaders.Options{UpstreamRemainingHeader: "x-quota"})
	f.call(t, 0, desc("qmin", "u"))
	resp := f.call(t, 0, desc("qmin", "u"), desc("qhour", "u"))
	if resp.OverallCode != ok || resp.Statuses[0].Code != over {
		t.Fatalf("test premise: overall %v, qmin %v; want OK with qmin over", resp.OverallCode, resp.Statuses[0].Code)
	}
	if got := requestHeaders(resp)["x-quota"]; got != "1" {
		t.Errorf("x-quota %q, want qhour's 1", got)
	}
}

// Each switch alone: what it adds on an allowed and on a denied answer, and nothing else.
// fw allows 5 per hour: the 1st answer is allowed with 4 left, the 6th denied with
// retryAfterMs = resetAt − now = 2,800,000 (Retry-After 2800).
func TestEachHeaderSwitch(t *testing.T) {
	problemCT := map[string]string{"content-type": "application/problem+json"}
	for _, tc := range []struct {
		name                 string
		opts                 ratelimitheaders.Options
		allowed, denied      map[string]string // response headers
		upAllowed, upDenied  map[string]string // request headers to the upstream
		bodyAllowed, bodyDen bool
	}{
		{name: "all off", opts: ratelimitheaders.Options{}},
		{name: "default: Retry-After only", opts: ratelimitheaders.Options{RetryAfter: true},
			denied: map[string]string{"retry-after": "2800"}},
		{name: "RateLimit fields", opts: ratelimitheaders.Options{RateLimitHeaders: true},
			allowed: map[string]string{"ratelimit-policy": `"fw";q=5;w=3600`, "ratelimit": `"fw";r=4;t=2800`},
			denied:  map[string]string{"ratelimit-policy": `"fw";q=5;w=3600`, "ratelimit": `"fw";r=0;t=2800`}},
		{name: "problem details", opts: ratelimitheaders.Options{ProblemDetails: true},
			denied: problemCT, bodyDen: true},
		{name: "upstream remaining", opts: ratelimitheaders.Options{UpstreamRemainingHeader: "X-RateLimit-Remaining-Quota"},
			upAllowed: map[string]string{"x-ratelimit-remaining-quota": "4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startHeaders(t, tc.opts)
			first := f.call(t, 0, desc("fw", "s"))
			for range 4 {
				f.call(t, 0, desc("fw", "s"))
			}
			denied := f.call(t, 0, desc("fw", "s"))
			if first.OverallCode != ok || denied.OverallCode != over {
				t.Fatalf("codes %v, %v", first.OverallCode, denied.OverallCode)
			}
			for _, c := range []struct {
				what     string
				resp     *rlsv3.RateLimitResponse
				want, up map[string]string
				wantBody bool
			}{
				{"allowed", first, tc.allowed, tc.upAllowed, tc.bodyAllowed},
				{"denied", denied, tc.denied, tc.upDenied, tc.bodyDen},
			} {
				if got := responseHeaders(t, c.resp); !equalMaps(got, c.want) {
					t.Errorf("%s: response headers %v, want %v", c.what, got, c.want)
				}
				if got := requestHeaders(c.resp); !equalMaps(got, c.up) {
					t.Errorf("%s: request headers %v, want %v", c.what, got, c.up)
				}
				if got := len(c.resp.RawBody) > 0; got != c.wantBody {
					t.Errorf("%s: raw_body %q", c.what, c.resp.RawBody)
				}
			}
		})
	}
}

// The RFC 9457 body names the violated limit; retry_after equals Retry-After.
func TestProblemDetailsBody(t *testing.T) {
	f := startHeaders(t, ratelimitheaders.Options{RetryAfter: true, ProblemDetails: true})
	for range 10 {
		f.call(t, 0, desc("gcra", "p"))
	}
	for range 5 {
		f.call(t, 0, desc("fw", "p"))
	}
	resp := f.call(t, 0, desc("five", "p"), desc("gcra", "p"), desc("fw", "p"))
	if resp.OverallCode != over {
		t.Fatal("not denied")
	}
	var body map[string]any
	if err := json.Unmarshal(resp.RawBody, &body); err != nil {
		t.Fatalf("raw_body is not JSON: %v: %s", err, resp.RawBody)
	}
	want := map[string]any{
		"type":              "https://iana.org/assignments/http-problem-types#quota-exceeded",
		"title":             "Rate limit exceeded",
		"status":            float64(429),
		"detail":            `Rate limit "fw" allows 5 requests per hour; retry after 2800 seconds.`,
		"violated-policies": []any{"g", "fw"},
		"limit":             "fw",
		"retry_after":       float64(2800),
	}
	if g, w := mustJSON(t, body), mustJSON(t, want); g != w {
		t.Fatalf("body\n%s\nwant\n%s", g, w)
	}
	h := responseHeaders(t, resp)
	if h["retry-after"] != "2800" || h["content-type"] != "application/problem+json" {
		t.Fatalf("headers %v", h)
	}
	// A unit_multiplier reads as "per 5 minutes"; one second is singular.
	f2 := startHeaders(t, ratelimitheaders.Options{ProblemDetails: true})
	for range 4 {
		f2.call(t, 0, desc("tb", "p"))
	}
	var b2 map[string]any
	if err := json.Unmarshal(f2.call(t, 0, desc("tb", "p")).RawBody, &b2); err != nil {
		t.Fatal(err)
	}
	if b2["detail"] != `Rate limit "tb" allows 2 requests per second; retry after 1 second.` || b2["retry_after"] != float64(1) {
		t.Fatalf("token bucket body %v", b2)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The upstream header carries the least remaining of the request's limits, on allowed
// answers only (Envoy forwards nothing on OVER_LIMIT).
func TestUpstreamRemainingHeader(t *testing.T) {
	f := startHeaders(t, ratelimitheaders.Options{UpstreamRemainingHeader: "x-quota"})
	for i, want := range []string{"4", "3", "2", "1", "0", ""} {
		resp := f.call(t, 0, desc("five", "u"), desc("fw", "u"), desc("nope", "u"))
		if got := requestHeaders(resp)["x-quota"]; got != want {
			t.Fatalf("request %d: x-quota %q, want %q", i+1, got, want)
		}
	}
	// No enforced limit: no header.
	if got := requestHeaders(f.call(t, 0, desc("shadow", "u"))); len(got) != 0 {
		t.Fatalf("shadow-only request: %v", got)
	}
}

// Jitter spreads Retry-After over [⌈w/1000⌉, ⌈(w + jitter)/1000⌉] and never goes below.
func TestRetryAfterJitter(t *testing.T) {
	// fw's wait at now is 2,800,000 ms.
	for _, tc := range []struct {
		name   string
		jitter time.Duration
		rand   func(int64) int64
		lo, hi int64
	}{
		{"no jitter", 0, nil, 2800, 2800},
		{"smallest draw", 1500 * time.Millisecond, func(int64) int64 { return 0 }, 2800, 2800},
		// ⌈(2,800,000 + 1500)/1000⌉ = 2802.
		{"largest draw", 1500 * time.Millisecond, func(n int64) int64 { return n - 1 }, 2802, 2802},
		{"random", 5 * time.Second, nil, 2800, 2805},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startHeaders(t, ratelimitheaders.Options{RetryAfter: true, RetryAfterJitter: tc.jitter, Rand: tc.rand})
			for range 5 {
				f.call(t, 0, desc("fw", "j"))
			}
			seen := map[int64]bool{}
			for range 200 {
				v, err := strconv.ParseInt(responseHeaders(t, f.call(t, 0, desc("fw", "j")))["retry-after"], 10, 64)
				if err != nil || v < tc.lo || v > tc.hi {
					t.Fatalf("Retry-After %d (%v), want %d..%d", v, err, tc.lo, tc.hi)
				}
				seen[v] = true
			}
			if tc.name == "random" && len(seen) < 3 {
				t.Fatalf("200 denials with 5 s of jitter gave only %v", seen)
			}
		})
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		opts ratelimitheaders.Options
		ok   bool
		name string // the normalised header name
	}{
		{ratelimitheaders.Options{}, true, ""},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "X-RateLimit-Remaining-Quota"}, true, "x-ratelimit-remaining-quota"},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "x_quota.v1"}, true, "x_quota.v1"},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "bad name"}, false, ""},
		{ratelimitheaders.Options{UpstreamRemainingHeader: ":authority"}, false, ""},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "x-ü"}, false, ""},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "Host"}, false, ""},
		{ratelimitheaders.Options{UpstreamRemainingHeader: "content-length"}, false, ""},
		{ratelimitheaders.Options{RetryAfterJitter: -time.Second}, false, ""},
		{ratelimitheaders.Options{RetryAfterJitter: 2 * time.Hour}, false, ""},
		{ratelimitheaders.Options{RetryAfterJitter: time.Hour}, true, ""},
	} {
		o := tc.opts
		err := o.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%+v: err %v, want ok=%v", tc.opts, err, tc.ok)
		}
		if err == nil && o.UpstreamRemainingHeader != tc.name {
			t.Errorf("%+v: header %q, want %q", tc.opts, o.UpstreamRemainingHeader, tc.name)
		}
	}
}

// Retry-After is the wait in whole seconds rounded up (SPEC §6): never early, and
// exact multiples of a second stay as they are.
func TestRetryAfterSecondsRoundsUp(t *testing.T) {
	for _, tc := range []struct{ ms, want int64 }{
		{0, 0}, {1, 1}, {334, 1}, {999, 1}, {1000, 1}, {1001, 2}, {1500, 2}, {2_800_000, 2800}, {2_800_001, 2801},
	} {
		if got := ratelimitheaders.RetryAfterSeconds(tc.ms); got != tc.want {
			t.Errorf("RetryAfterSeconds(%d) = %d, want %d", tc.ms, got, tc.want)
		}
	}
}
