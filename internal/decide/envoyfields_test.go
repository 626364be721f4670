package decide

import (
	"context"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/overlimit"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// fieldsDecider serves one file at a fixed clock on the memory engine.
func fieldsDecider(t *testing.T, yaml string) *Decider {
	t.Helper()
	rs, err := descriptors.Parse("fields.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return 1_700_000_000_000 }})
	t.Cleanup(func() { mem.Close() })
	return New(rs, mem, Options{Keys: storekey.New("fields:", 0)})
}

// reconfigured is a Decider on d's rules, engine and state with d's options changed by
// set (options are fixed for a Decider's life). It copies Options field by field: a new
// field must be added here.
func reconfigured(d *Decider, set func(*Options)) *Decider {
	o := Options{Keys: d.keys, Shadow: d.shadow, Bounds: d.bounds, Failure: d.failure, OverLimit: d.cache}
	set(&o)
	return New(d.Rules(), d.engine, o)
}

// step is one request of a scenario: its descriptors as key/value lists, and what is
// expected of it.
type step struct {
	descs   [][]string
	denied  bool   // the request's overall answer
	overLim []bool // per descriptor status; nil = not checked
	comment string
}

func runSteps(t *testing.T, d *Decider, steps []step) []*Result {
	t.Helper()
	var out []*Result
	for i, s := range steps {
		req := &Request{Domain: "d"}
		for _, kv := range s.descs {
			var ds Descriptor
			for j := 0; j+1 < len(kv); j += 2 {
				ds.Entries = append(ds.Entries, descriptors.Entry{Key: kv[j], Value: kv[j+1]})
			}
			req.Descriptors = append(req.Descriptors, ds)
		}
		res, err := d.Decide(context.Background(), req)
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, s.comment, err)
		}
		if res.OverLimit != s.denied {
			t.Fatalf("step %d (%s) %v: denied = %v, want %v", i, s.comment, s.descs, res.OverLimit, s.denied)
		}
		for j, want := range s.overLim {
			if res.Statuses[j].OverLimit != want {
				t.Fatalf("step %d (%s) %v: descriptor %d over limit = %v, want %v", i, s.comment, s.descs, j, res.Statuses[j].OverLimit, want)
			}
		}
		out = append(out, res)
	}
	return out
}

func kv(pairs ...string) []string { return pairs }

// share_threshold: every value a shared pattern matches draws on one counter; the same
// pattern without it gives each value its own. Nested under a shared level, the levels
// below still count per value.
func TestShareThresholdSharesOneCounter(t *testing.T) {
	d := fieldsDecider(t, `
domain: d
descriptors:
  - key: files
    value: "files/*"
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: own
    value: "files/*"
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: tenant
    value: "t-*"
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 1}
`)
	runSteps(t, d, []step{
		{descs: [][]string{kv("files", "files/a.pdf")}, comment: "shared: 1st"},
		{descs: [][]string{kv("files", "files/b.csv")}, comment: "shared: 2nd, another value"},
		{descs: [][]string{kv("files", "files/c.txt")}, denied: true, comment: "shared: a third value finds the counter spent"},
		{descs: [][]string{kv("own", "files/a.pdf")}, comment: "unshared: a.pdf 1st"},
		{descs: [][]string{kv("own", "files/b.csv")}, comment: "unshared: b.csv has its own counter"},
		{descs: [][]string{kv("own", "files/c.txt")}, comment: "unshared: c.txt too"},
		{descs: [][]string{kv("own", "files/a.pdf")}, comment: "unshared: a.pdf 2nd"},
		{descs: [][]string{kv("own", "files/a.pdf")}, denied: true, comment: "unshared: a.pdf 3rd"},
		{descs: [][]string{kv("tenant", "t-1", "user", "u1")}, comment: "nested: t-1/u1"},
		{descs: [][]string{kv("tenant", "t-2", "user", "u1")}, denied: true, comment: "nested: t-2/u1 shares t-1/u1's counter"},
		{descs: [][]string{kv("tenant", "t-2", "user", "u2")}, comment: "nested: u2 has its own"},
	})
}

const quotaRules = `
domain: d
descriptors:
  - key: backend            # a soft quota per backend: 1 a minute
    quota_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: pool               # a soft quota per pool: 2 an hour
    quota_mode: true
    rate_limit: {unit: hour, requests_per_unit: 2}
  - key: user               # an ordinary limit
    rate_limit: {unit: minute, requests_per_unit: 2}
  - key: dry                # quota_mode in shadow mode: never denies
    quota_mode: true
    shadow_mode: true
    rate_limit: {unit: minute, requests_per_unit: 1}
`

// quota_mode (envoyproxy/ratelimit #1045, #1059): a request is denied when an ordinary
// limit denies or when every quota descriptor is over; a quota descriptor over its limit
// alone shows OVER_LIMIT in an allowed answer. Denied requests consume nothing, and a
// quota descriptor that is over consumes nothing either.
func TestQuotaModeDecisions(t *testing.T) {
	t.Run("store", func(t *testing.T) { quotaModeDecisions(t, fieldsDecider(t, quotaRules)) })
	t.Run("over-limit cache", func(t *testing.T) {
		// The cache answers only requests whose every limit it holds denying, which for
		// quota descriptors means all of them are over: the same answers.
		d := fieldsDecider(t, quotaRules)
		d = reconfigured(d, func(o *Options) { o.OverLimit = overlimit.New(overlimit.Options{MaxAge: time.Hour}) })
		quotaModeDecisions(t, d)
		if d.OverLimitCache().Stats().Hits == 0 {
			t.Error("the cache answered nothing: the test does not cover it")
		}
	})
}

func quotaModeDecisions(t *testing.T, d *Decider) {
	runSteps(t, d, []step{
		{descs: [][]string{kv("backend", "a"), kv("backend", "b")}, overLim: []bool{false, false}, comment: "both within"},
		{descs: [][]string{kv("backend", "a"), kv("backend", "c")}, overLim: []bool{true, false}, comment: "a over, c within: allowed"},
		{descs: [][]string{kv("backend", "c")}, denied: true, overLim: []bool{true}, comment: "c was charged by the allowed request"},
		{descs: [][]string{kv("backend", "a"), kv("backend", "b")}, denied: true, overLim: []bool{true, true}, comment: "every quota descriptor over"},
		{descs: [][]string{kv("backend", "a")}, denied: true, overLim: []bool{true}, comment: "a single quota descriptor over is all of them"},

		// with an ordinary limit: it is charged only when the request is allowed
		{descs: [][]string{kv("user", "u1"), kv("backend", "a")}, denied: true, overLim: []bool{false, true}, comment: "the only quota descriptor is over"},
		{descs: [][]string{kv("user", "u1"), kv("backend", "a"), kv("backend", "d")}, overLim: []bool{false, true, false}, comment: "d within: allowed, u1 charged once"},
		{descs: [][]string{kv("user", "u1")}, comment: "u1's second (the denied request charged nothing)"},
		{descs: [][]string{kv("user", "u1"), kv("backend", "e")}, denied: true, overLim: []bool{true, false}, comment: "the ordinary limit denies"},
		{descs: [][]string{kv("backend", "e")}, comment: "e was not charged by the denied request"},

		// shadow_mode wins: the descriptor never counts as over
		{descs: [][]string{kv("dry", "x")}},
		{descs: [][]string{kv("dry", "x")}, overLim: []bool{false}, comment: "shadow quota over: OK, not reported"},
		{descs: [][]string{kv("dry", "x"), kv("backend", "a")}, denied: true, overLim: []bool{false, true}, comment: "the shadow one is not a quota descriptor"},
	})
}

// A denied quota request waits for the first quota descriptor to come back (the
// shortest wait), an allowed one reports no wait, and a denial by an ordinary limit
// waits for it.
func TestQuotaModeRetryAfter(t *testing.T) {
	d := fieldsDecider(t, quotaRules)
	res := runSteps(t, d, []step{
		{descs: [][]string{kv("backend", "a"), kv("pool", "p")}},
		{descs: [][]string{kv("pool", "p")}},
		{descs: [][]string{kv("backend", "a"), kv("pool", "p")}, denied: true, overLim: []bool{true, true}},
		{descs: [][]string{kv("backend", "a"), kv("pool", "q")}, overLim: []bool{true, false}},
	})
	denied := res[2]
	minute, hour := denied.Statuses[0].Decision.RetryAfterMs, denied.Statuses[1].Decision.RetryAfterMs
	if minute <= 0 || minute >= hour {
		t.Fatalf("test premise: waits %d (minute) and %d (hour)", minute, hour)
	}
	if denied.RetryAfterMs() != minute {
		t.Errorf("RetryAfterMs = %d, want the shorter wait %d", denied.RetryAfterMs(), minute)
	}
	if res[3].RetryAfterMs() != 0 || res[3].WaitFor != nil {
		t.Errorf("allowed request with a quota descriptor over: RetryAfterMs = %d, WaitFor %v; want 0, none", res[3].RetryAfterMs(), res[3].WaitFor)
	}
}

const quotaWaitRules = `
domain: d
descriptors:
  - key: minute-quota
    quota_mode: true
    rate_limit: {name: mq, unit: minute, requests_per_unit: 1}
  - key: hour-quota
    quota_mode: true
    rate_limit: {name: hq, unit: hour, requests_per_unit: 1}
  - key: twin-quota           # two quota limits on one descriptor
    quota_mode: true
    rate_limits:
      - {name: twin-minute, unit: minute, requests_per_unit: 1}
      - {name: twin-hour, unit: hour, requests_per_unit: 1}
  - key: minute
    rate_limit: {name: m, unit: minute, requests_per_unit: 1}
  - key: hour
    rate_limit: {name: h, unit: hour, requests_per_unit: 1}
`

// Which limit a denied request in quota mode waits for (Result.WaitFor, whose wait is
// RetryAfterMs): an ordinary limit's longest wait, and when every quota descriptor is
// over, the longer of that and the soonest a quota descriptor comes back; a quota
// descriptor comes back when its longest-waiting limit does. The clock is 20 s into a
// minute and 800 s into an hour: minute waits 40 s, hour waits 2800 s.
func TestQuotaModeWaitsFor(t *testing.T) {
	for _, c := range []struct {
		name  string
		descs [][]string
		want  string // the limit waited for
		ms    int64
	}{
		{"an ordinary limit waits longer than the quota", [][]string{kv("hour", "x"), kv("minute-quota", "x")}, "h", 2_800_000},
		{"the quota comes back later than the ordinary limit", [][]string{kv("minute", "x"), kv("hour-quota", "x")}, "hq", 2_800_000},
		{"the soonest of two quota descriptors", [][]string{kv("hour-quota", "x"), kv("minute-quota", "x")}, "mq", 40_000},
		{"a quota descriptor with two limits comes back with its later one", [][]string{kv("twin-quota", "x")}, "twin-hour", 2_800_000},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := fieldsDecider(t, quotaWaitRules)
			spend := step{descs: c.descs, comment: "spend every limit"}
			res := runSteps(t, d, []step{spend, {descs: c.descs, denied: true}})[1]
			if res.WaitFor == nil || res.WaitFor.Limit.Name != c.want || res.RetryAfterMs() != c.ms {
				t.Fatalf("waits for %+v, %d ms; want %s, %d ms", res.WaitFor, res.RetryAfterMs(), c.want, c.ms)
			}
		})
	}
}

// Each round is one engine call. A request without quota descriptors, one whose quota
// descriptors are all within, and one whose are all over take one round; a request
// where some are over and some within takes a second, which charges.
func TestQuotaModeRounds(t *testing.T) {
	rs, err := descriptors.Parse("fields.yaml", []byte(quotaRules))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return 1_700_000_000_000 }})
	defer mem.Close()
	calls := &countingEngine{Engine: mem}
	d := New(rs, calls, Options{Keys: storekey.New("fields:", 0)})
	for _, tc := range []struct {
		descs [][]string
		calls int
	}{
		{[][]string{kv("user", "u")}, 1},
		{[][]string{kv("backend", "a"), kv("backend", "b"), kv("backend", "c")}, 1},
		{[][]string{kv("backend", "a"), kv("backend", "b"), kv("backend", "d")}, 2}, // a, b over: one more round
		{[][]string{kv("backend", "a"), kv("backend", "b"), kv("backend", "d")}, 1}, // all over: the first round's denial stands
	} {
		calls.n = 0
		req := &Request{Domain: "d"}
		for _, kv := range tc.descs {
			req.Descriptors = append(req.Descriptors, Descriptor{Entries: []descriptors.Entry{{Key: kv[0], Value: kv[1]}}})
		}
		if _, err := d.Decide(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		if calls.n != tc.calls {
			t.Errorf("%v: %d engine calls, want %d", tc.descs, calls.n, tc.calls)
		}
	}
}

// countingEngine counts the store calls it passes on.
type countingEngine struct {
	limiter.Engine
	n int
}

func (c *countingEngine) Evaluate(ctx context.Context, now int64, checks []limiter.LimitCheck, out []limiter.Decision) (limiter.Outcome, error) {
	c.n++
	return c.Engine.Evaluate(ctx, now, checks, out)
}

const tieRules = `
domain: d
descriptors:
  - key: a
    rate_limit: {name: a1, unit: minute, requests_per_unit: 2}
  - key: b
    rate_limit: {name: b1, unit: minute, requests_per_unit: 2}
  - key: pair
    rate_limits:
      - {name: first, unit: minute, requests_per_unit: 3}
      - {name: second, unit: minute, requests_per_unit: 3}
  - key: quota
    quota_mode: true
    rate_limit: {name: soft, unit: minute, requests_per_unit: 1}
  - key: hard
    rate_limit: {name: hard, unit: minute, requests_per_unit: 1}
`

// Ties go to the first: of a descriptor's limits with equal remaining, the first is
// reported; of denials with equal waits, the first (a descriptor's reported denial and
// the request's WaitFor); in quota mode an ordinary limit's wait equal to the soonest
// quota descriptor's is the one waited for.
func TestTiesGoToTheFirst(t *testing.T) {
	d := fieldsDecider(t, tieRules)
	res := runSteps(t, d, []step{{descs: [][]string{kv("pair", "x")}}})[0]
	if got := res.Statuses[0].Limit.Name; got != "first" {
		t.Errorf("equal remaining: reported %s, want first", got)
	}
	res = runSteps(t, d, []step{
		{descs: [][]string{kv("pair", "x")}}, {descs: [][]string{kv("pair", "x")}},
		{descs: [][]string{kv("pair", "x")}, denied: true},
	})[2]
	if got := res.Statuses[0].Limit.Name; got != "first" || res.WaitFor.Limit.Name != "first" {
		t.Errorf("equal waits on one descriptor: reported %s, waits for %s; want first for both", got, res.WaitFor.Limit.Name)
	}
	both := [][]string{kv("a", "x"), kv("b", "x")}
	res = runSteps(t, d, []step{{descs: both}, {descs: both}, {descs: both, denied: true}})[2]
	if got := res.WaitFor.Limit.Name; got != "a1" {
		t.Errorf("equal waits on two descriptors: waits for %s, want a1", got)
	}
	mixed := [][]string{kv("quota", "x"), kv("hard", "x")}
	res = runSteps(t, d, []step{{descs: mixed}, {descs: mixed, denied: true}})[1]
	if got := res.WaitFor.Limit.Name; got != "hard" {
		t.Errorf("quota mode, an ordinary wait equal to the quota's: waits for %s, want hard", got)
	}
}

// A request override is enforced: the entry's quota_mode does not soften it (beside
// another quota descriptor still within its quota, a quota descriptor over its limit
// would be allowed), while --shadow-mode, which covers every limit, still applies.
func TestOverrideIsEnforced(t *testing.T) {
	override := func(d *Decider, want bool) {
		t.Helper()
		for i, w := range []bool{false, want} {
			res, err := d.Decide(context.Background(), &Request{Domain: "d", Descriptors: []Descriptor{
				{Entries: []descriptors.Entry{{Key: "backend", Value: "b"}}, Override: &Override{RequestsPerUnit: 1, Unit: "minute"}},
				{Entries: []descriptors.Entry{{Key: "pool", Value: "p"}}}, // quota 2 an hour: within twice
			}})
			if err != nil {
				t.Fatal(err)
			}
			if res.OverLimit != w {
				t.Fatalf("request %d with an override of 1 a minute: denied = %v, want %v", i+1, res.OverLimit, w)
			}
		}
	}
	override(fieldsDecider(t, quotaRules), true)
	rs, err := descriptors.Parse("fields.yaml", []byte(quotaRules))
	if err != nil {
		t.Fatal(err)
	}
	mem := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { mem.Close() })
	override(New(rs, mem, Options{Keys: storekey.New("shadow:", 0), Shadow: true}), false) // --shadow-mode
}

// An override that the matched limit's algorithm cannot take exactly runs as
// fixed_window, envoyproxy/ratelimit's algorithm, and the request is decided: a
// refused request would let Envoy pass it past every limit, the other descriptor's
// used-up one included.
func TestOverrideOutsideTheAlgorithmsBoundsRunsAsFixedWindow(t *testing.T) {
	d := fieldsDecider(t, `
domain: d
descriptors:
  - key: log
    rate_limit: {unit: minute, requests_per_unit: 10, algorithm: sliding_window_log}
  - key: smooth
    rate_limit: {unit: second, requests_per_unit: 10, algorithm: gcra}
  - key: user
    rate_limit: {unit: minute, requests_per_unit: 1}
`)
	for _, c := range []struct {
		key string
		o   Override
	}{
		{"log", Override{RequestsPerUnit: 2000, Unit: "minute"}},       // over the log's cap of 1,000
		{"smooth", Override{RequestsPerUnit: 1048583, Unit: "second"}}, // a gcra denominator above 2^20
	} {
		req := func() *Request {
			return &Request{Domain: "d", Descriptors: []Descriptor{
				{Entries: []descriptors.Entry{{Key: c.key, Value: "x"}}, Override: &c.o},
				{Entries: []descriptors.Entry{{Key: "user", Value: c.key}}},
			}}
		}
		for i, denied := range []bool{false, true} { // user allows one a minute
			res, err := d.Decide(context.Background(), req())
			if err != nil {
				t.Fatalf("%s, request %d: %v", c.key, i+1, err)
			}
			st := res.Statuses[0]
			if res.OverLimit != denied || st.Limit == nil || st.Limit.Params.Algorithm != limiter.FixedWindow || st.Decision.Limit != c.o.RequestsPerUnit {
				t.Fatalf("%s, request %d: denied %v, override limit %+v %+v", c.key, i+1, res.OverLimit, st.Limit, st.Decision)
			}
		}
	}
}
