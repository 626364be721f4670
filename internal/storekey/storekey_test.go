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
	if b.Key("d", "id", fixed, entries("a", "x")) != b.Key("d", "id", fixed, entries("a", "x")) {
		t.Fatal("the same inputs gave different keys")
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
