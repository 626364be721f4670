package rls_test

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/metrics"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

const rules = `
domain: test
descriptors:
  - key: burst
    rate_limit: {name: five-per-hour, unit: hour, requests_per_unit: 5}
  - key: pair
    value: tight
    rate_limit: {name: tight, unit: hour, requests_per_unit: 1}
  - key: pair
    value: loose
    rate_limit: {name: loose, unit: hour, requests_per_unit: 100}
  - key: tb
    rate_limit: {name: bucket, unit: second, requests_per_unit: 2, algorithm: token_bucket, burst: 4}
  - key: two
    rate_limits:
      - {name: two-short, unit: minute, requests_per_unit: 10}
      - {name: two-long, unit: hour, requests_per_unit: 12}
  - key: both
    rate_limits:
      - {name: both-minute, unit: minute, requests_per_unit: 3}
      - {name: both-hour, unit: hour, requests_per_unit: 3}
  - key: shadowed
    shadow_mode: true
    rate_limit: {name: shadow, unit: hour, requests_per_unit: 1}
  - key: free
    rate_limit: {unlimited: true}
  - key: old
    rate_limit: {name: old-limit, unit: hour, requests_per_unit: 1}
  - key: new
    replaces: [{name: old-limit}]
    rate_limit: {name: new-limit, unit: hour, requests_per_unit: 50}
  - key: huge
    rate_limit: {name: huge, unit: hour, requests_per_unit: 4294967296}
  - key: free-shadowed          # an unlimited limit beside a shadow-mode one
    shadow_mode: true
    rate_limits:
      - {unlimited: true}
      - {name: free-shadow, unit: minute, requests_per_unit: 5}
  - key: free-named
    rate_limit: {name: free-named, unlimited: true}
  - key: free-replacer
    replaces: [{name: free-named}]
    rate_limit: {name: free-replacer, unit: hour, requests_per_unit: 50}
  - key: twice
    rate_limit: {name: two-minutes, unit: minute, unit_multiplier: 2, requests_per_unit: 3}
  - key: remote_address
    value: 50.0.0.5
    rate_limit: {name: blocked, unit: second, requests_per_unit: 0}
  - key: nested
    value: a
    descriptors:
      - key: b
        rate_limit: {name: nested, unit: minute, unit_multiplier: 5, requests_per_unit: 3}
`

// now is the engine's fixed clock: 2023-11-14T22:13:20Z, an exact multiple of an hour
// plus 1,200 s, so window resets are predictable.
const now = int64(1_700_000_000_000)

type fixture struct {
	client rlsv3.RateLimitServiceClient
}

func start(t *testing.T, globalShadow bool) *fixture {
	return startWith(t, globalShadow, nil, ratelimitheaders.Options{RetryAfter: true})
}

// startWith is start with metrics, when m is not nil (the engine timed and every
// request observed, as the service wires them), and the given rendering options.
func startWith(t *testing.T, globalShadow bool, m *metrics.Metrics, o ratelimitheaders.Options) *fixture {
	t.Helper()
	rs, err := descriptors.Parse("test.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return now }})
	t.Cleanup(func() { mem.Close() })
	var engine limiter.Engine = mem
	var obs decide.Observer
	if m != nil {
		engine, obs = m.Engine("memory", mem), m
	}
	d := decide.New(rs, engine, decide.Options{Keys: storekey.New("t:", 0), Shadow: globalShadow})
	conn := testgrpc.Serve(t, func(gs *grpc.Server) {
		rlsv3.RegisterRateLimitServiceServer(gs, rls.New(d, o, obs))
	})
	return &fixture{client: rlsv3.NewRateLimitServiceClient(conn)}
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func (f *fixture) call(t *testing.T, domain string, hits uint32, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := f.client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds, HitsAddend: hits})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func codesOf(resp *rlsv3.RateLimitResponse) []rlsv3.RateLimitResponse_Code {
	out := []rlsv3.RateLimitResponse_Code{}
	for _, s := range resp.Statuses {
		out = append(out, s.Code)
	}
	return out
}

const (
	ok   = rlsv3.RateLimitResponse_OK
	over = rlsv3.RateLimitResponse_OVER_LIMIT
)

func header(resp *rlsv3.RateLimitResponse, name string) string {
	for _, h := range resp.ResponseHeadersToAdd {
		if h.Key == name {
			return h.Value
		}
	}
	return ""
}

func TestColdBurstAdmitsExactlyTheLimit(t *testing.T) {
	f := start(t, false)
	for i := 0; i < 5; i++ {
		resp := f.call(t, "test", 0, desc("burst", "client-1"))
		if resp.OverallCode != ok {
			t.Fatalf("request %d denied", i+1)
		}
		st := resp.Statuses[0]
		if st.LimitRemaining != uint32(4-i) || st.CurrentLimit.GetName() != "five-per-hour" ||
			st.CurrentLimit.GetRequestsPerUnit() != 5 || st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR {
			t.Fatalf("request %d status %v", i+1, st)
		}
		// The hour window ends at the next multiple of 3,600,000 ms after now.
		if got := st.DurationUntilReset.AsDuration(); got != time.Duration(3_600_000-now%3_600_000)*time.Millisecond {
			t.Fatalf("duration_until_reset %v", got)
		}
		if header(resp, "retry-after") != "" {
			t.Fatal("Retry-After on an allowed response")
		}
	}
	resp := f.call(t, "test", 0, desc("burst", "client-1"))
	if resp.OverallCode != over || resp.Statuses[0].Code != over || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("6th request: %v", resp)
	}
	wantRetry := (3_600_000 - now%3_600_000 + 999) / 1000
	if got := header(resp, "retry-after"); got != itoa(wantRetry) {
		t.Fatalf("Retry-After %q, want %d", got, wantRetry)
	}
	// Another client value has its own counter.
	if f.call(t, "test", 0, desc("burst", "client-2")).OverallCode != ok {
		t.Fatal("a different value shared the counter")
	}
}

func itoa(n int64) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func TestStatusesAreOneToOneInOrder(t *testing.T) {
	f := start(t, false)
	f.call(t, "test", 0, desc("pair", "tight")) // spend tight's only unit
	resp := f.call(t, "test", 0,
		desc("pair", "loose"), desc("no-such-key", "x"), desc("pair", "tight"), desc("free", "y"))
	want := []rlsv3.RateLimitResponse_Code{ok, ok, over, ok}
	got := codesOf(resp)
	if len(got) != len(want) {
		t.Fatalf("%d statuses for 4 descriptors", len(got))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("codes %v, want %v", got, want)
		}
	}
	if resp.OverallCode != over {
		t.Fatal("overall code not OVER_LIMIT")
	}
	if resp.Statuses[1].CurrentLimit != nil || resp.Statuses[3].CurrentLimit != nil {
		t.Fatal("unmatched or unlimited descriptor reported a current_limit")
	}
	// As envoyproxy/ratelimit: an unlimited descriptor has all the room there is, an
	// unmatched one reports nothing.
	if resp.Statuses[3].LimitRemaining != math.MaxUint32 || resp.Statuses[1].LimitRemaining != 0 {
		t.Fatalf("limit_remaining of the unlimited and the unmatched descriptors: %d, %d; want %d, 0",
			resp.Statuses[3].LimitRemaining, resp.Statuses[1].LimitRemaining, uint32(math.MaxUint32))
	}
	if resp.Statuses[0].CurrentLimit.GetName() != "loose" || resp.Statuses[2].CurrentLimit.GetName() != "tight" {
		t.Fatalf("current limits %v / %v", resp.Statuses[0].CurrentLimit, resp.Statuses[2].CurrentLimit)
	}
}

func TestUnknownDomainAndUnmatchedAreOK(t *testing.T) {
	f := start(t, false)
	for _, resp := range []*rlsv3.RateLimitResponse{
		f.call(t, "nope", 0, desc("burst", "x")),
		f.call(t, "test", 0, desc("unknown", "x")),
		f.call(t, "test", 0, desc("nested", "a")),              // too short: the limit sits one level deeper
		f.call(t, "test", 0, desc("burst", "x", "extra", "y")), // too long
	} {
		if resp.OverallCode != ok || resp.Statuses[0].CurrentLimit != nil {
			t.Fatalf("%v", resp)
		}
	}
	resp := f.call(t, "test", 0, desc("nested", "a", "b", "anything"))
	if cl := resp.Statuses[0].CurrentLimit; cl.GetName() != "nested" || cl.GetUnitMultiplier().GetValue() != 5 {
		t.Fatalf("nested limit %v", cl)
	}
}

// A request denied by one descriptor consumes nothing on its siblings.
func TestDeniedRequestConsumesNothing(t *testing.T) {
	f := start(t, false)
	f.call(t, "test", 0, desc("pair", "tight"))
	for i := 0; i < 3; i++ {
		resp := f.call(t, "test", 0, desc("pair", "loose"), desc("pair", "tight"))
		if resp.OverallCode != over {
			t.Fatal("tight did not deny")
		}
		// The loose sibling reports the state as it stands: nothing charged.
		if resp.Statuses[0].Code != ok || resp.Statuses[0].LimitRemaining != 100 {
			t.Fatalf("loose sibling %v", resp.Statuses[0])
		}
	}
	if got := f.call(t, "test", 0, desc("pair", "loose")).Statuses[0].LimitRemaining; got != 99 {
		t.Fatalf("loose remaining %d after its first real charge, want 99", got)
	}
}

// requests_per_unit: 0 denies every request for its value, as envoyproxy/ratelimit's
// blocklist examples expect: OVER_LIMIT until the end of the unit's window, that limit
// reported, and nothing charged on the request's other descriptors.
func TestZeroLimitBlocks(t *testing.T) {
	f := start(t, false)
	for i := 0; i < 3; i++ {
		resp := f.call(t, "test", 0, desc("pair", "loose"), desc("remote_address", "50.0.0.5"))
		st := resp.Statuses[1]
		if resp.OverallCode != over || st.Code != over || st.CurrentLimit.GetName() != "blocked" ||
			st.CurrentLimit.GetRequestsPerUnit() != 0 || st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_SECOND ||
			st.LimitRemaining != 0 || st.DurationUntilReset.AsDuration() != time.Second {
			t.Fatalf("request %d: %v", i, resp)
		}
		if got := header(resp, "retry-after"); got != "1" {
			t.Fatalf("request %d: retry-after %q, want 1 (the rest of the second)", i, got)
		}
		if resp.Statuses[0].Code != ok || resp.Statuses[0].LimitRemaining != 100 {
			t.Fatalf("request %d: sibling %v charged or denied", i, resp.Statuses[0])
		}
	}
	if resp := f.call(t, "test", 0, desc("remote_address", "50.0.0.6")); resp.OverallCode != ok {
		t.Fatalf("another address: %v", resp)
	}
	if resp := f.call(t, "test", 0, desc("pair", "loose")); resp.Statuses[0].LimitRemaining != 99 {
		t.Fatalf("loose remaining after its first real charge: %v", resp)
	}
}

// Two identical descriptors in one request are charged twice, the second seeing the
// first's charge (SPEC §5.1); a request of two that finds one unit left is denied and
// consumes nothing.
func TestIdenticalDescriptorsCountTwice(t *testing.T) {
	f := start(t, false)
	for i, want := range [][2]uint32{{4, 3}, {2, 1}} {
		resp := f.call(t, "test", 0, desc("burst", "dup"), desc("burst", "dup"))
		if resp.OverallCode != ok || resp.Statuses[0].LimitRemaining != want[0] || resp.Statuses[1].LimitRemaining != want[1] {
			t.Fatalf("request %d of two: %v, want OK with %d then %d remaining", i+1, resp, want[0], want[1])
		}
	}
	resp := f.call(t, "test", 0, desc("burst", "dup"), desc("burst", "dup"))
	if resp.OverallCode != over || resp.Statuses[1].Code != over {
		t.Fatalf("two more with one unit left: %v, want the second OVER_LIMIT", resp)
	}
	// The denied request charged neither: exactly one unit is left.
	if r := f.call(t, "test", 0, desc("burst", "dup")); r.OverallCode != ok || r.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("the last unit: %v", r)
	}
	if f.call(t, "test", 0, desc("burst", "dup")).OverallCode != over {
		t.Fatal("a sixth unit was allowed")
	}
}

func TestHitsAddendAndCheckOnly(t *testing.T) {
	f := start(t, false)
	// Request-wide hits_addend 3 on a bucket of 4, refilled 2 per second: full again in
	// 1.5 s, a reset with a fraction of a second.
	if r := f.call(t, "test", 3, desc("tb", "a")).Statuses[0]; r.Code != ok || r.LimitRemaining != 1 ||
		r.DurationUntilReset.AsDuration() != 1500*time.Millisecond {
		t.Fatalf("after cost 3: %v, want 1 remaining and a reset in 1.5 s", r)
	}
	// The descriptor's own hits_addend overrides the request's.
	d := desc("tb", "a")
	d.HitsAddend = wrapperspb.UInt64(2)
	if r := f.call(t, "test", 1, d); r.OverallCode != over || r.Statuses[0].LimitRemaining != 1 {
		t.Fatalf("cost 2 with 1 token: %v", r)
	}
	// hits_addend 0 on the descriptor is a check-only peek: allowed, nothing written.
	peek := desc("tb", "a")
	peek.HitsAddend = wrapperspb.UInt64(0)
	for i := 0; i < 3; i++ {
		if r := f.call(t, "test", 0, peek).Statuses[0]; r.Code != ok || r.LimitRemaining != 1 {
			t.Fatalf("peek %d: %v", i, r)
		}
	}
	if r := f.call(t, "test", 0, desc("tb", "a")).Statuses[0]; r.Code != ok || r.LimitRemaining != 0 {
		t.Fatalf("last token: %v", r)
	}
	// The token bucket refills 2 per second: one token takes 500 ms, so Retry-After is 1.
	if r := f.call(t, "test", 0, desc("tb", "a")); header(r, "retry-after") != "1" {
		t.Fatalf("Retry-After %q, want 1", header(r, "retry-after"))
	}
}

// A descriptor that matched an unlimited limit answers limit_remaining 2^32−1 when no
// enforced limit is reported for it, as envoyproxy/ratelimit does (which applies
// unlimited before replaces): beside a shadow-mode limit, and when replaced.
func TestUnlimitedBesideShadowOrReplaced(t *testing.T) {
	f := start(t, false)
	resp := f.call(t, "test", 0, desc("free-shadowed", "x"), desc("free-named", "x"), desc("free-replacer", "x"))
	for i, st := range resp.Statuses[:2] {
		if st.Code != ok || st.CurrentLimit != nil || st.LimitRemaining != math.MaxUint32 {
			t.Errorf("descriptor %d: %v, want OK without a limit and %d remaining", i, st, uint32(math.MaxUint32))
		}
	}
}

// Each descriptor's own hits_addend is charged to that descriptor alone, whether the
// request's descriptors fit the converted request's inline memory (2) or not.
func TestPerDescriptorHitsAddends(t *testing.T) {
	f := start(t, false)
	ds := []*ratelimitv3.RateLimitDescriptor{desc("tb", "p"), desc("tb", "q"), desc("tb", "r")}
	for i, h := range []uint64{3, 1, 2} {
		ds[i].HitsAddend = wrapperspb.UInt64(h)
	}
	resp := f.call(t, "test", 0, ds...)
	for i, want := range []uint32{1, 3, 2} { // a bucket of 4 each
		if st := resp.Statuses[i]; st.Code != ok || st.LimitRemaining != want {
			t.Fatalf("descriptor %d: %v, want %d remaining; response %v", i, st, want, resp)
		}
	}
}

// current_limit carries a unit multiplier above 1, and none for 1.
func TestUnitMultiplier(t *testing.T) {
	f := start(t, false)
	resp := f.call(t, "test", 0, desc("twice", "a"), desc("burst", "m"))
	if m := resp.Statuses[0].CurrentLimit.GetUnitMultiplier(); m.GetValue() != 2 {
		t.Fatalf("unit_multiplier 2: %v", resp.Statuses[0].CurrentLimit)
	}
	if m := resp.Statuses[1].CurrentLimit.GetUnitMultiplier(); m != nil {
		t.Fatalf("unit_multiplier 1 sent as %v", m)
	}
}

// Envoy's limit_remaining and requests_per_unit are uint32; a limit may be 2^32 (the
// largest the rules accept), so both are clamped to 2^32−1 (SPEC §6), never wrapped.
func TestRemainingAndLimitClampToUint32(t *testing.T) {
	f := start(t, false)
	peek := desc("huge", "a")
	peek.HitsAddend = wrapperspb.UInt64(0)
	r := f.call(t, "test", 0, peek).Statuses[0]
	if r.Code != ok || r.LimitRemaining != math.MaxUint32 || r.CurrentLimit.GetRequestsPerUnit() != math.MaxUint32 {
		t.Fatalf("remaining 2^32 of 2^32: %v", r)
	}
	if r := f.call(t, "test", 2, desc("huge", "a")).Statuses[0]; r.Code != ok || r.LimitRemaining != math.MaxUint32-1 {
		t.Fatalf("remaining after cost 2: %v, want 2^32-2", r)
	}
}

func TestSeveralLimitsReportTheDenyingOrTightest(t *testing.T) {
	f := start(t, false)
	r := f.call(t, "test", 9, desc("two", "x")).Statuses[0]
	if r.CurrentLimit.GetName() != "two-short" || r.LimitRemaining != 1 {
		t.Fatalf("after 9: %v (want two-short, 1 left)", r)
	}
	r = f.call(t, "test", 2, desc("two", "x")).Statuses[0]
	if r.Code != over || r.CurrentLimit.GetName() != "two-short" {
		t.Fatalf("cost 2 with 1 left: %v", r)
	}
}

// When several limits of a descriptor deny, the status reports the one with the
// longest wait, so that Envoy's X-RateLimit-Reset (from duration_until_reset), the
// RateLimit header and Retry-After name the same moment: a client told to come back when
// the minute ends would be denied again by the hour. (now is 20 s into its minute and
// 800 s into its hour.)
func TestSeveralDenialsReportTheLongestWait(t *testing.T) {
	f := startWith(t, false, nil, ratelimitheaders.Options{RetryAfter: true, RateLimitHeaders: true})
	for range 3 {
		f.call(t, "test", 0, desc("both", "y")) // both 3/minute and 3/hour spent
	}
	check := func(what string, resp *rlsv3.RateLimitResponse, name string, remaining uint32) {
		t.Helper()
		r := resp.Statuses[0]
		if r.Code != over || r.CurrentLimit.GetName() != name || r.LimitRemaining != remaining {
			t.Fatalf("%s: reported %v, want %s with %d left", what, r, name, remaining)
		}
		if got := r.DurationUntilReset.AsDuration(); got != 2800*time.Second {
			t.Errorf("%s: duration_until_reset %v, want 2800s (the hour's end)", what, got)
		}
		if got := header(resp, "retry-after"); got != "2800" {
			t.Errorf("%s: Retry-After %q, want 2800", what, got)
		}
		if got := header(resp, "ratelimit"); !strings.Contains(got, "t=2800") {
			t.Errorf("%s: RateLimit %q, want the hour's t=2800", what, got)
		}
	}
	check("both spent", f.call(t, "test", 0, desc("both", "y")), "both-hour", 0)
	// two-short has none left and resets in 40 s; two-long has 2, short of the cost 3,
	// until the hour's end. The status shows the hour, with the 2 it has.
	f.call(t, "test", 10, desc("two", "y"))
	check("unequal remaining", f.call(t, "test", 3, desc("two", "y")), "two-long", 2)
}

func TestShadowMode(t *testing.T) {
	f := start(t, false)
	for i := 0; i < 3; i++ {
		resp := f.call(t, "test", 0, desc("shadowed", "x"))
		if resp.OverallCode != ok {
			t.Fatal("a shadow-mode limit denied")
		}
		// Shadow mode is invisible to clients: no current_limit, so no headers either.
		if resp.Statuses[0].CurrentLimit != nil || len(resp.ResponseHeadersToAdd) != 0 {
			t.Fatalf("a shadow-mode limit was reported: %v", resp)
		}
	}
	g := start(t, true) // global shadow mode
	for i := 0; i < 3; i++ {
		if g.call(t, "test", 0, desc("pair", "tight")).OverallCode != ok {
			t.Fatal("global shadow mode denied")
		}
	}
}

func TestReplaces(t *testing.T) {
	f := start(t, false)
	for i := 0; i < 3; i++ {
		resp := f.call(t, "test", 0, desc("old", "x"), desc("new", "x"))
		if resp.OverallCode != ok {
			t.Fatalf("request %d denied: the replaced limit still applied", i)
		}
		if resp.Statuses[0].CurrentLimit != nil {
			t.Fatal("a replaced limit was reported")
		}
	}
	// Without the replacing descriptor the old limit applies.
	f.call(t, "test", 0, desc("old", "y"))
	if f.call(t, "test", 0, desc("old", "y")).OverallCode != over {
		t.Fatal("old-limit not enforced on its own")
	}
}

func TestLimitOverride(t *testing.T) {
	f := start(t, false)
	override := &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_MINUTE}
	// As envoyproxy/ratelimit in a domain it knows: the override's rate, enforced and
	// unnamed, whatever the descriptor matched: a named limit, an unlimited one, a
	// shadow-mode one, one that another descriptor's limit replaces, or nothing at all.
	for _, kv := range [][]string{{"burst", "ov"}, {"free", "ov"}, {"shadowed", "ov"}, {"old", "ov"}, {"unknown", "x"}} {
		d := desc(kv...)
		d.Limit = override
		for i := 0; i < 3; i++ {
			r := f.call(t, "test", 0, d, desc("new", "ov")) // new-limit replaces old-limit
			st := r.Statuses[0]
			want := ok
			if i == 2 {
				want = over
			}
			if st.Code != want || st.CurrentLimit.GetRequestsPerUnit() != 2 || st.CurrentLimit.GetName() != "" ||
				st.LimitRemaining != uint32(max(0, 1-i)) {
				t.Fatalf("%v with an override of 2 a minute, request %d: %v", kv, i+1, r)
			}
		}
	}
	// In a domain the rules do not know, nothing is limited, override or not.
	u := desc("unknown", "x")
	u.Limit = override
	if r := f.call(t, "nope", 0, u); r.OverallCode != ok || r.Statuses[0].CurrentLimit != nil {
		t.Fatalf("an override in an unknown domain: %v", r)
	}
	// A request_per_unit of 0 blocks, as in a rule.
	b := desc("burst", "zero")
	b.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 0, Unit: typev3.RateLimitUnit_MINUTE}
	if r := f.call(t, "test", 0, b); r.OverallCode != over {
		t.Fatalf("an override of 0: %v, want OVER_LIMIT", r)
	}
}

// Request overrides are counted under the path of the configured limit they replace
// (their own name is empty), or under one "#override" path per domain when the
// descriptor matched none: many distinct rates, units and values create no series
// beyond those of the first overrides (SPEC §6: bounded metrics cardinality).
func TestLimitOverrideCreatesNoSeries(t *testing.T) {
	m := metrics.New()
	f := startWith(t, false, m, ratelimitheaders.Options{RetryAfter: true})
	units := []typev3.RateLimitUnit{typev3.RateLimitUnit_SECOND, typev3.RateLimitUnit_MINUTE,
		typev3.RateLimitUnit_HOUR, typev3.RateLimitUnit_DAY, typev3.RateLimitUnit_MONTH, typev3.RateLimitUnit_YEAR}
	override := func(i int) {
		t.Helper()
		d := desc("burst", "ov")
		u := desc("unknown", strconv.Itoa(i)) // a descriptor no rule matches, a new value each time
		u.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 5000, Unit: typev3.RateLimitUnit_HOUR}
		if r := f.call(t, "test", 0, u); r.OverallCode != ok || r.Statuses[0].CurrentLimit.GetRequestsPerUnit() != 5000 {
			t.Fatalf("override %d of an unmatched descriptor: %v", i, r)
		}
		// Rates of 1000 and more: 61 requests leave every one OK, not near its limit.
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{
			RequestsPerUnit: uint32(1000 + i), Unit: units[i%len(units)], UnitMultiplier: wrapperspb.UInt32(uint32(1 + i%3)),
		}
		if r := f.call(t, "test", 0, d); r.OverallCode != ok || r.Statuses[0].CurrentLimit.GetRequestsPerUnit() != uint32(1000+i) {
			t.Fatalf("override %d: %v", i, r)
		}
	}
	override(0)
	first, _ := gatherSeries(t, m)
	for i := 1; i <= 60; i++ {
		override(i)
	}
	after, counts := gatherSeries(t, m)
	for s := range after {
		if !first[s] {
			t.Errorf("new series after 60 distinct overrides: %s", s)
		}
	}
	if len(after) != len(first) {
		t.Errorf("%d series after the first override, %d after 60 more", len(first), len(after))
	}
	// The overrides were counted, under the configured limit's path and "#override".
	for _, series := range []string{`ratelimit_ext_decisions_total{domain="test",limit="burst",result="ok"}`,
		`ratelimit_ext_decisions_total{domain="test",limit="#override",result="ok"}`} {
		if counts[series] != 61 {
			t.Errorf("%s = %v, want 61", series, counts[series])
		}
	}
}

// Every request answered INVALID_ARGUMENT counts as invalid.
func TestInvalidRequestsAreCounted(t *testing.T) {
	m := metrics.New()
	f := startWith(t, false, m, ratelimitheaders.Options{RetryAfter: true})
	for _, req := range []*rlsv3.RateLimitRequest{
		{Domain: "test", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("", "x")}}, // an empty key
		{Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("burst", "x")}},
	} {
		if _, err := f.client.ShouldRateLimit(context.Background(), req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("%v: %v, want InvalidArgument", req, err)
		}
	}
	_, counts := gatherSeries(t, m)
	if got := counts[`ratelimit_ext_requests_total{api="rls",outcome="invalid"}`]; got != 2 {
		t.Errorf("requests_total{outcome=invalid} = %v, want 2", got)
	}
}

// A descriptor with Envoy's is_negative_hits (a refund) is answered OK and changes no
// state; the request's other descriptors are decided as without it, so a refund beside a
// used-up limit cannot turn the request into an error that Envoy would let past.
func TestRefundsAreIgnored(t *testing.T) {
	m := metrics.New()
	f := startWith(t, false, m, ratelimitheaders.Options{RetryAfter: true})
	refund := func(hits uint64) *ratelimitv3.RateLimitDescriptor {
		d := desc("burst", "refund")
		d.IsNegativeHits, d.HitsAddend = true, wrapperspb.UInt64(hits)
		return d
	}
	f.call(t, "test", 0, desc("burst", "refund"))
	f.call(t, "test", 0, desc("burst", "refund"))
	// 2 of five-per-hour used: the refund neither gives them back nor takes one, even with
	// a cost no limit could take.
	r := f.call(t, "test", 0, refund(2), desc("burst", "refund"), refund(1<<40))
	if r.OverallCode != ok || r.Statuses[1].LimitRemaining != 2 {
		t.Fatalf("refund beside a fresh limit: %v, want OK with 2 left on the charged descriptor", r)
	}
	for _, i := range []int{0, 2} {
		if st := r.Statuses[i]; st.Code != ok || st.CurrentLimit != nil || st.LimitRemaining != 0 {
			t.Errorf("refund status %d: %v, want OK without a limit", i, st)
		}
	}
	f.call(t, "test", 0, desc("burst", "refund"))
	f.call(t, "test", 0, desc("burst", "refund"))
	if r := f.call(t, "test", 0, refund(5), desc("burst", "refund")); r.OverallCode != over || r.Statuses[0].Code != ok {
		t.Fatalf("refund beside a used-up limit: %v, want OVER_LIMIT overall, the refund's status OK", r)
	}
	// A refund matches nothing, so it replaces nothing either: old-limit (1/hour) still
	// applies beside a refund of new-limit, which replaces it.
	replacer := desc("new", "x")
	replacer.IsNegativeHits = true
	f.call(t, "test", 0, desc("old", "refund"))
	if r := f.call(t, "test", 0, replacer, desc("old", "refund")); r.OverallCode != over {
		t.Fatalf("refund of a replacing limit: %v, want old-limit to deny", r)
	}
	// A cost above --max-hits-addend counts as the bound (2^32-1 here: above any limit of
	// burst, so denied) and is counted.
	huge := desc("burst", "huge")
	huge.HitsAddend = wrapperspb.UInt64(1 << 40)
	if r := f.call(t, "test", 0, huge); r.OverallCode != over {
		t.Fatalf("a cost above the bound: %v, want OVER_LIMIT", r)
	}
	_, counts := gatherSeries(t, m)
	if got := counts[`ratelimit_ext_costs_clamped_total`]; got != 1 {
		t.Errorf("costs_clamped_total = %v, want 1", got)
	}
	if got := counts[`ratelimit_ext_refunds_ignored_total`]; got != 4 {
		t.Errorf("refunds_ignored_total = %v, want 4", got)
	}
}

// gatherSeries lists the service's series (metric name and label values) and the
// counters' values.
func gatherSeries(t *testing.T, m *metrics.Metrics) (series map[string]bool, counters map[string]float64) {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series, counters = map[string]bool{}, map[string]float64{}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "ratelimit_ext_") {
			continue // the Go runtime and process collectors
		}
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, lp := range mt.GetLabel() {
				labels = append(labels, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
			}
			s := mf.GetName()
			if len(labels) > 0 {
				s += "{" + strings.Join(labels, ",") + "}"
			}
			series[s] = true
			if c := mt.GetCounter(); c != nil {
				counters[s] = c.GetValue()
			}
		}
	}
	return series, counters
}

// An override the service cannot apply (Envoy's UNKNOWN unit; a multiplier whose
// window, 584942418 years of ms, would wrap int64 to about 235 days) is ignored and the
// configured limit applies: refusing the request would let Envoy pass it past every
// limit.
func TestUnusableOverridesAreIgnored(t *testing.T) {
	f := start(t, false)
	unknownUnit := desc("burst", "u")
	unknownUnit.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: typev3.RateLimitUnit_UNKNOWN}
	wrapping := desc("burst", "w")
	wrapping.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_YEAR,
		UnitMultiplier: wrapperspb.UInt32(584942418)}
	for _, d := range []*ratelimitv3.RateLimitDescriptor{unknownUnit, wrapping} {
		r := f.call(t, "test", 0, d)
		if st := r.Statuses[0]; r.OverallCode != ok || st.CurrentLimit.GetName() != "five-per-hour" || st.LimitRemaining != 4 {
			t.Errorf("override %v: %v, want the configured five-per-hour with 4 left", d.Limit, r)
		}
	}
}

func TestInvalidRequests(t *testing.T) {
	f := start(t, false)
	for _, tc := range []struct {
		name string
		req  *rlsv3.RateLimitRequest
		says string // in the error
	}{
		{"empty domain", &rlsv3.RateLimitRequest{Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("burst", "x")}}, "domain"},
		{"no descriptors", &rlsv3.RateLimitRequest{Domain: "test"}, "descriptor"},
	} {
		_, err := f.client.ShouldRateLimit(context.Background(), tc.req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: %v, want InvalidArgument saying %q", tc.name, err, tc.says)
		}
	}
}

// current_limit states the ceiling (SPEC §1) over the window it stands for: the rule's
// own unit for window algorithms and for a burst equal to the rate, else the time the
// burst or capacity takes to refill at the rule's rate, in seconds rounded up, so the
// quota per window a client reads is never above the rule's rate.
func TestReportedWindow(t *testing.T) {
	const (
		sec  = "second"
		min  = "minute"
		hour = "hour"
	)
	for _, c := range []struct {
		name  string
		rule  string
		want  descriptors.Window
		quota int64 // the ceiling requests_per_unit carries
	}{
		{"fixed_window: the rule's window", "{unit: minute, requests_per_unit: 100}", descriptors.Window{Unit: min, Multiplier: 1, Seconds: 60}, 100},
		{"a window of 2 seconds", "{unit: second, unit_multiplier: 2, requests_per_unit: 4, algorithm: sliding_window, buckets: 4}", descriptors.Window{Unit: sec, Multiplier: 2, Seconds: 2}, 4},
		{"gcra with burst = rate: the rule's unit", "{unit: minute, requests_per_unit: 600, algorithm: gcra}", descriptors.Window{Unit: min, Multiplier: 1, Seconds: 60}, 600},
		{"gcra 600/min, burst 20: 20 per 2 s", "{unit: minute, requests_per_unit: 600, algorithm: gcra, burst: 20}", descriptors.Window{Unit: sec, Multiplier: 2, Seconds: 2}, 20},
		{"token_bucket 1/s, capacity 3: 3 per 3 s", "{unit: second, requests_per_unit: 1, algorithm: token_bucket, burst: 3}", descriptors.Window{Unit: sec, Multiplier: 3, Seconds: 3}, 3},
		{"token_bucket 100/min, capacity 7: 4.2 s rounds up to 5", "{unit: minute, requests_per_unit: 100, algorithm: token_bucket, burst: 7}", descriptors.Window{Unit: sec, Multiplier: 5, Seconds: 5}, 7},
		{"gcra 1000/s, burst 20: 20 ms rounds up to 1 s", "{unit: second, requests_per_unit: 1000, algorithm: gcra, burst: 20}", descriptors.Window{Unit: sec, Multiplier: 1, Seconds: 1}, 20},
		{"gcra 10/hour, burst 30: 3 hours, in hours", "{unit: hour, requests_per_unit: 10, algorithm: gcra, burst: 30}", descriptors.Window{Unit: hour, Multiplier: 3, Seconds: 10800}, 30},
		{"token_bucket 1/s, capacity 120: 2 minutes, in minutes", "{unit: second, requests_per_unit: 1, algorithm: token_bucket, burst: 120}", descriptors.Window{Unit: min, Multiplier: 2, Seconds: 120}, 120},
		{"token_bucket 1/year, capacity 200: 200 years", "{unit: year, requests_per_unit: 1, algorithm: token_bucket, burst: 200}", descriptors.Window{Unit: "year", Multiplier: 200, Seconds: 200 * 31_536_000}, 200},
		{"token_bucket 3/year, capacity 1000: 333⅓ years, in hours", "{unit: year, requests_per_unit: 3, algorithm: token_bucket, burst: 1000}", descriptors.Window{Unit: hour, Multiplier: 2_920_000, Seconds: 10_512_000_000}, 1000},
		{"token_bucket 54/year, capacity 2^20: over 19,418 years, past 2^32 seconds, in years rounded up", "{unit: year, requests_per_unit: 54, algorithm: token_bucket, burst: 1048576}", descriptors.Window{Unit: "year", Multiplier: 19_419, Seconds: 19_419 * 31_536_000}, 1 << 20},
		{"gcra 2/hour over 2 hours, burst 2: the rule's unit", "{unit: hour, unit_multiplier: 2, requests_per_unit: 2, algorithm: gcra}", descriptors.Window{Unit: hour, Multiplier: 2, Seconds: 7200}, 2},
		{"a limit of 0 blocks: the rule's unit", "{unit: minute, requests_per_unit: 0, algorithm: gcra}", descriptors.Window{Unit: min, Multiplier: 1, Seconds: 60}, 0},
		{"a rule in days: DAY", "{unit: day, unit_multiplier: 2, requests_per_unit: 3}", descriptors.Window{Unit: "day", Multiplier: 2, Seconds: 172_800}, 3},
		{"a rule in weeks: WEEK, as written", "{unit: week, requests_per_unit: 3}", descriptors.Window{Unit: "week", Multiplier: 1, Seconds: 604_800}, 3},
		{"a rule in months: MONTH", "{unit: month, requests_per_unit: 3}", descriptors.Window{Unit: "month", Multiplier: 1, Seconds: 2_592_000}, 3},
		{"a rule in years: YEAR", "{unit: year, requests_per_unit: 3}", descriptors.Window{Unit: "year", Multiplier: 1, Seconds: 31_536_000}, 3},
		{"token_bucket 1/day, capacity 7: a derived week is DAY × 7", "{unit: day, requests_per_unit: 1, algorithm: token_bucket, burst: 7}", descriptors.Window{Unit: "day", Multiplier: 7, Seconds: 604_800}, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			rules := "domain: h\ndescriptors:\n  - key: k\n    rate_limit: " + c.rule + "\n"
			rs, err := descriptors.Parse("t.yaml", []byte(rules))
			if err != nil {
				t.Fatal(err)
			}
			if got := rs.Limits("h")[0].ReportedWindow(); got != c.want {
				t.Errorf("ReportedWindow = %+v, want %+v", got, c.want)
			}
			cl := startRules(t, rules, ratelimitheaders.Options{}).call(t, 0, desc("k", "v")).Statuses[0].GetCurrentLimit()
			mult := int64(1)
			if m := cl.GetUnitMultiplier(); m != nil {
				mult = int64(m.GetValue())
			}
			if !strings.EqualFold(cl.GetUnit().String(), c.want.Unit) || mult != c.want.Multiplier || int64(cl.GetRequestsPerUnit()) != c.quota {
				t.Errorf("current_limit %v, want %d per %s × %d", cl, c.quota, c.want.Unit, c.want.Multiplier)
			}
		})
	}
}

// Envoy reads UNKNOWN as an error (SPEC §6): every answer, whatever the request meets
// (an unknown domain, no match, unlimited, shadow mode, replaced limits, a zero limit,
// a limit used up, global shadow mode), says OK or OVER_LIMIT, overall and for each of
// its descriptors, one status per descriptor.
func TestNoAnswerIsUnknown(t *testing.T) {
	requests := []struct {
		domain string
		ds     []*ratelimitv3.RateLimitDescriptor
	}{
		{"nope", []*ratelimitv3.RateLimitDescriptor{desc("burst", "x")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("unknown", "x"), desc("nested", "a")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("free", "x"), desc("free-shadowed", "y"), desc("free-named", "z")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("shadowed", "x"), desc("old", "x"), desc("new", "x")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "50.0.0.5")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("pair", "tight"), desc("pair", "loose"), desc("huge", "h")}},
		{"test", []*ratelimitv3.RateLimitDescriptor{desc("nested", "a", "b", "c"), desc("twice", "t"), desc("tb", "b")}},
	}
	valid := map[rlsv3.RateLimitResponse_Code]bool{rlsv3.RateLimitResponse_OK: true, rlsv3.RateLimitResponse_OVER_LIMIT: true}
	for _, globalShadow := range []bool{false, true} {
		f := start(t, globalShadow)
		seen := map[rlsv3.RateLimitResponse_Code]bool{}
		for round := range 3 { // the second and third rounds meet used-up limits
			for _, r := range requests {
				resp := f.call(t, r.domain, 0, r.ds...)
				if !valid[resp.OverallCode] || len(resp.Statuses) != len(r.ds) {
					t.Fatalf("shadow %v, round %d, %s %v: overall %v with %d statuses", globalShadow, round, r.domain, r.ds, resp.OverallCode, len(resp.Statuses))
				}
				seen[resp.OverallCode] = true
				for i, st := range resp.Statuses {
					if !valid[st.Code] {
						t.Errorf("shadow %v, round %d, %s: status %d is %v", globalShadow, round, r.ds[i], i, st.Code)
					}
					seen[st.Code] = true
				}
			}
		}
		if !seen[rlsv3.RateLimitResponse_OVER_LIMIT] && !globalShadow {
			t.Error("no request was denied: the sweep does not cover OVER_LIMIT")
		}
	}
}
