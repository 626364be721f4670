package storekey

import (
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

var fixed = &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000}

func entries(kv ...string) []descriptors.Entry {
	var out []descriptors.Entry
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, descriptors.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// Keys that differ in any part differ, whatever separators the parts contain.
func TestKeysAreInjective(t *testing.T) {
	b := New("rlx:", 0)
	gcra := &limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000}
	longer := &limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 60000}
	keys := []string{
		b.Key("d", "id", fixed, entries("a_b", "c")),
		b.Key("d", "id", fixed, entries("a", "b_c")),
		b.Key("d", "id", fixed, entries("a", "b", "c", "")),
		b.Key("d", "id", fixed, entries("a", "b:c")),
		b.Key("d", "id", fixed, entries("a:b", "c")),
		b.Key("d", "id", fixed, entries("1:a", "")),
		b.Key("d1:", "id", fixed, entries("a", "")),
		b.Key("d", "id2", fixed, entries("a", "")),
		b.Key("d", "id", gcra, entries("a", "")),
		b.Key("d", "id", longer, entries("a", "")),
		b.Key("d", "id", fixed, entries("a", "")),
	}
	seen := map[string]int{}
	for i, k := range keys {
		if j, dup := seen[k]; dup {
			t.Fatalf("keys %d and %d collide: %q", j, i, k)
		}
		seen[k] = i
	}
	// Two Builders made alike give one key: nothing but the inputs goes into it.
	if k1, k2 := New("rlx:", 0).Key("d", "id", fixed, entries("a", "x")), New("rlx:", 0).Key("d", "id", fixed, entries("a", "x")); k1 != k2 {
		t.Fatalf("two Builders gave %q and %q for the same inputs", k1, k2)
	}
}

// Keys persist in Redis across releases: a change to the encoding resets every counter
// (or, worse, merges some). These are written out by hand from docs/redis.md#keys:
// <prefix>, then each part as <byte length>:<bytes> (domain, limit id,
// algorithm/period[/sub-buckets or reduced rate], then each entry's key and value), the
// domain part in {} with ClusterTag, and a key over the length bound replaced by
// <prefix><domain part>h:<sha256 hex of the whole key>. The hashes were computed apart
// from this code (Python's hashlib over the key spelled out in each case's comment).
func TestGoldenKeys(t *testing.T) {
	mk := func(p limiter.Params) *limiter.Params {
		t.Helper()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	swLog := mk(limiter.Params{Algorithm: limiter.SlidingWindowLog, Limit: 100, PeriodMs: 60_000})
	gcra := mk(limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})         // 10 per 1000 ms: 1/100
	bucket := mk(limiter.Params{Algorithm: limiter.TokenBucket, Limit: 5, PeriodMs: 2000}) // 5 per 2000 ms: 1/400
	sw := mk(limiter.Params{Algorithm: limiter.SlidingWindow, Limit: 100, PeriodMs: 60_000, Buckets: 6})
	fw := mk(limiter.Params{Algorithm: limiter.FixedWindow, Limit: 10, PeriodMs: 1000})
	for _, tc := range []struct {
		name    string
		prefix  string
		maxLen  int
		cluster bool
		domain  string
		id      string
		p       *limiter.Params
		entries []descriptors.Entry
		want    string
	}{
		{name: "docs/redis.md's example", prefix: "rlx:", domain: "edge", id: "remote_address#0", p: swLog,
			entries: entries("remote_address", "10.0.0.1"),
			want:    "rlx:4:edge16:remote_address#024:sliding_window_log/6000014:remote_address8:10.0.0.1"},
		{name: "the example with a cluster tag", prefix: "rlx:", cluster: true, domain: "edge", id: "remote_address#0", p: swLog,
			entries: entries("remote_address", "10.0.0.1"),
			want:    "rlx:{4:edge}16:remote_address#024:sliding_window_log/6000014:remote_address8:10.0.0.1"},
		{name: "separators, digits and an empty value inside parts; lengths in bytes", prefix: "rlx:", domain: "d", id: "a#1", p: fw,
			entries: entries("a:b", "", "1:x", "é", "{t}", "x_y"),
			want:    "rlx:1:d3:a#117:fixed_window/10003:a:b0:3:1:x2:é3:{t}3:x_y"},
		{name: "gcra carries its reduced rate", prefix: "rlx:", domain: "edge", id: "g#0", p: gcra,
			entries: entries("k", "v"),
			want:    "rlx:4:edge3:g#015:gcra/1000/1/1001:k1:v"},
		{name: "token_bucket carries its reduced rate", prefix: "rlx:", domain: "edge", id: "t#0", p: bucket,
			entries: entries("k", "v"),
			want:    "rlx:4:edge3:t#023:token_bucket/2000/1/4001:k1:v"},
		{name: "sliding_window carries its sub-buckets", prefix: "rlx:", domain: "edge", id: "s#0", p: sw,
			entries: entries("ip", "10.0.0.1"),
			want:    "rlx:4:edge3:s#022:sliding_window/60000/62:ip8:10.0.0.1"},
		{name: "another prefix, no entries", prefix: "prod:", domain: "api", id: "x#2", p: fw,
			want: "prod:3:api3:x#217:fixed_window/1000"},
		// rlx:1:d2:id17:fixed_window/10001:k27:vvv…: 64 bytes, the bound.
		{name: "a key at the bound is kept", prefix: "rlx:", maxLen: 64, domain: "d", id: "id", p: fw,
			entries: entries("k", strings.Repeat("v", 27)),
			want:    "rlx:1:d2:id17:fixed_window/10001:k27:" + strings.Repeat("v", 27)},
		// sha256("rlx:1:d2:id17:fixed_window/10001:k28:" + 28 × "v"): 65 bytes.
		{name: "a byte over the bound is hashed", prefix: "rlx:", maxLen: 64, domain: "d", id: "id", p: fw,
			entries: entries("k", strings.Repeat("v", 28)),
			want:    "rlx:1:dh:31388fb71231fe1ba311fbf8237b40737a7cef3132390261da1b692414837bb3"},
		// sha256("rlx:4:edge2:id17:fixed_window/10001:k600:" + 600 × "v").
		{name: "an over-long value is hashed", prefix: "rlx:", maxLen: 128, domain: "edge", id: "id", p: fw,
			entries: entries("k", strings.Repeat("v", 600)),
			want:    "rlx:4:edgeh:abfbc0f6fd1032aa22e8fd0c31eaddce3ff14cbcf7ce9d7cb6f35b3959427f8e"},
		// sha256("rlx:{4:edge}2:id17:fixed_window/10001:k600:" + 600 × "v"): the tag is hashed too.
		{name: "a hashed key keeps its cluster tag", prefix: "rlx:", maxLen: 128, cluster: true, domain: "edge", id: "id", p: fw,
			entries: entries("k", strings.Repeat("v", 600)),
			want:    "rlx:{4:edge}h:72c2cc57729d2c6271c363341cede5e1f006278f8af6e51f63b122aaba4a8920"},
	} {
		b := New(tc.prefix, tc.maxLen)
		b.ClusterTag = tc.cluster
		if got := b.Key(tc.domain, tc.id, tc.p, tc.entries); got != tc.want {
			t.Errorf("%s:\n got  %q\n want %q", tc.name, got, tc.want)
		}
	}
}

func TestLongKeysAreHashedAndBounded(t *testing.T) {
	b := New("rlx:", 128)
	long := strings.Repeat("v", 10_000)
	k1 := b.Key("d", "id", fixed, entries("k", long))
	k2 := b.Key("d", "id", fixed, entries("k", long+"w"))
	if len(k1) > 128 || len(k2) > 128 {
		t.Fatalf("key lengths %d, %d exceed 128", len(k1), len(k2))
	}
	if k1 == k2 {
		t.Fatal("distinct long values share a key")
	}
	if !strings.HasPrefix(k1, "rlx:") {
		t.Fatalf("hashed key lost its prefix: %q", k1)
	}
}

// With ClusterTag every key of a domain carries the same {hash tag}.
func TestClusterTag(t *testing.T) {
	b := New("rlx:", 64)
	b.ClusterTag = true
	tag := func(k string) string { return k[strings.IndexByte(k, '{') : strings.IndexByte(k, '}')+1] }
	k1 := b.Key("edge", "a#0", fixed, entries("remote_address", "10.0.0.1"))
	k2 := b.Key("edge", "b#0", fixed, entries("api_key", strings.Repeat("x", 500)))
	if tag(k1) != tag(k2) || tag(k1) != "{4:edge}" {
		t.Fatalf("tags %q and %q", tag(k1), tag(k2))
	}
}

// A gcra or token_bucket rule whose rate changes gets a new key (its stored fractions are
// in units of the rate); a fixed window whose quota changes keeps its counts.
func TestIdentityFollowsStateUnits(t *testing.T) {
	b := New("rlx:", 0)
	mk := func(a limiter.Algorithm, limit, burst int64) *limiter.Params {
		p := &limiter.Params{Algorithm: a, Limit: limit, PeriodMs: 1000, Burst: burst}
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	e := entries("k", "v")
	if b.Key("d", "id", mk(limiter.GCRA, 10, 5), e) == b.Key("d", "id", mk(limiter.GCRA, 3, 5), e) {
		t.Fatal("gcra rate change kept the key")
	}
	if b.Key("d", "id", mk(limiter.TokenBucket, 10, 5), e) != b.Key("d", "id", mk(limiter.TokenBucket, 10, 50), e) {
		t.Fatal("token_bucket capacity change moved the key")
	}
	if b.Key("d", "id", mk(limiter.FixedWindow, 10, 0), e) != b.Key("d", "id", mk(limiter.FixedWindow, 20, 0), e) {
		t.Fatal("fixed_window quota change moved the key")
	}
}

// share_threshold: values under a shared pattern level get one key per limit; other
// levels, other limits and limits without the flag keep their keys apart, and a limit
// without shared levels keeps exactly the key Key gives (existing counters survive).
func TestLimitKeySharedLevels(t *testing.T) {
	rs, err := descriptors.Parse("t.yaml", []byte(`
domain: d
descriptors:
  - key: files
    value: "files/*"
    share_threshold: true
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: own
    value: "files/*"
    rate_limit: {unit: minute, requests_per_unit: 1}
  - key: tenant
    value: "t-*"
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	b := New("rlx:", 0)
	key := func(e []descriptors.Entry) string {
		ls := rs.Match("d", e)
		if len(ls) != 1 {
			t.Fatalf("%v matched %d limits", e, len(ls))
		}
		return b.LimitKey("d", ls[0], e)
	}
	if key(entries("files", "files/a.pdf")) != key(entries("files", "files/b.csv")) {
		t.Error("two values under a shared pattern got different keys")
	}
	if key(entries("own", "files/a.pdf")) == key(entries("own", "files/b.csv")) {
		t.Error("a pattern without share_threshold shares one key")
	}
	if key(entries("files", "files/a.pdf")) == key(entries("own", "files/a.pdf")) {
		t.Error("the shared and the unshared limit share a key")
	}
	if key(entries("tenant", "t-1", "user", "u")) != key(entries("tenant", "t-2", "user", "u")) {
		t.Error("a shared level above the limit does not share")
	}
	if key(entries("tenant", "t-1", "user", "u")) == key(entries("tenant", "t-1", "user", "v")) {
		t.Error("the unshared level below a shared one shares")
	}
	own := rs.Match("d", entries("own", "files/a.pdf"))[0]
	if got, want := b.LimitKey("d", own, entries("own", "files/a.pdf")), b.Key("d", own.ID, &own.Params, entries("own", "files/a.pdf")); got != want {
		t.Errorf("LimitKey %q, Key %q: a limit without shared levels changed its key", got, want)
	}
}

// A shared level's part is the configured pattern, spelled out here from docs/redis.md
// ("the key holds the pattern instead of the value"): keys persist across releases, so
// writing anything else there (the level's key, an empty part) would reset, on upgrade,
// every counter of every share_threshold limit. The limit id is the configured path.
func TestGoldenLimitKeySharedLevel(t *testing.T) {
	rs, err := descriptors.Parse("t.yaml", []byte(`
domain: d
descriptors:
  - key: tenant
    value: "t-*"
    share_threshold: true
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: 1}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := entries("tenant", "t-1", "user", "u")
	ls := rs.Match("d", e)
	if len(ls) != 1 || ls[0].ID != "tenant=t-*/user#0" {
		t.Fatalf("matched %d limits (want the one with id tenant=t-*/user#0)", len(ls))
	}
	const want = "rlx:1:d17:tenant=t-*/user#018:fixed_window/600006:tenant3:t-*4:user1:u"
	if got := New("rlx:", 0).LimitKey("d", ls[0], e); got != want {
		t.Errorf("LimitKey\n got  %q\n want %q", got, want)
	}
}
