package conformance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

// The replay bases of SPEC §8: a small one, and an epoch-scale one where exactness is tested.
var bases = []int64{60_000, 1_700_000_040_000}

const throttlekit = "../../../shared/vectors/throttlekit/throttlekit-py.contract.golden-vectors.json"

// VectorFiles returns the throttlekit file and every project vector file. The external
// file is required under CI=true; elsewhere its absence skips it loudly.
func vectorFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no project vectors in testdata/: %v", err)
	}
	if _, err := os.Stat(throttlekit); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("throttlekit vectors missing at %s: %v", throttlekit, err)
		}
		fmt.Fprintf(os.Stderr, "!!! %s: THROTTLEKIT VECTORS NOT FOUND at %s: skipping them (CI fails here)\n", t.Name(), throttlekit)
		return files
	}
	return append([]string{throttlekit}, files...)
}

func TestMemoryEngineConformance(t *testing.T) {
	for _, path := range vectorFiles(t) {
		f, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, base := range bases {
			engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
			results, err := Replay(context.Background(), engine, f, base, "vectors")
			engine.Close()
			if err != nil {
				t.Fatalf("%s at base %d: %v", path, base, err)
			}
			replayed := 0
			for _, r := range results {
				if r.Mismatch != "" {
					t.Errorf("%s base %d: %s: %s", filepath.Base(path), base, r.Suite, r.Mismatch)
				}
				if !r.Skipped {
					replayed++
				}
			}
			if replayed == 0 {
				t.Errorf("%s: no suite replayed", path)
			}
			t.Logf("%s base %d: %d suites replayed", filepath.Base(path), base, replayed)
		}
	}
}

// A mismatch must be reported, not swallowed: replaying a vector with one field changed fails.
func TestReplayDetectsMismatch(t *testing.T) {
	f, err := Load("../../testdata/request-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	f.Suites = f.Suites[:1]
	f.Suites[0].Ops[0].Expect.Decisions[0].Remaining++
	results, err := Replay(context.Background(), limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1}), f, bases[0], "m")
	if err != nil {
		t.Fatal(err)
	}
	// It names the op, its time in the file and as replayed, the limit and each field
	// that differs, with the expectation as replayed (base added to resetAt).
	want := "op 0 (now 0, replayed at 60000) limit 0: remaining 2, want 3"
	if results[0].Mismatch != want {
		t.Fatalf("mismatch %q, want %q", results[0].Mismatch, want)
	}
	f.Suites[0].Ops[0].Expect.Decisions[0].Remaining--
	f.Suites[0].Ops[0].Expect.Decisions[1].Allowed = false
	f.Suites[0].Ops[0].Expect.Decisions[1].ResetAt++
	results, err = Replay(context.Background(), limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1}), f, bases[0], "m")
	if err != nil {
		t.Fatal(err)
	}
	want = "op 0 (now 0, replayed at 60000) limit 1: allowed true, want false; resetAt 61000, want 61001"
	if results[0].Mismatch != want {
		t.Fatalf("mismatch %q, want %q", results[0].Mismatch, want)
	}
}

func TestParamsReadsDecimalsExactly(t *testing.T) {
	p, err := Params("tokenBucket", Options{"capacity": "10", "refillPerSec": "2.5"})
	if err != nil {
		t.Fatal(err)
	}
	// 2.5 per second is 1 token per 400 ms.
	if p.Num() != 1 || p.Den() != 400 {
		t.Fatalf("refillPerSec 2.5 gave %d/%d tokens per ms, want 1/400", p.Num(), p.Den())
	}
	if _, err := Params("tokenBucket", Options{"capacity": "10", "refillPerSec": "-1"}); err == nil {
		t.Fatal("negative refill accepted")
	}
	if _, err := Params("nope", Options{}); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// A bad base is refused before anything replays, instead of being reported as the
// engine's mismatches: one that would move epoch-aligned windows (naming the window),
// and one that puts an op at now 0, the store-clock sentinel (the engine would decide
// at its own clock; most vector timelines start at 0).
func TestReplayRefusesABadBase(t *testing.T) {
	for _, tc := range []struct {
		base int64
		want string
	}{
		{1234, "base 1234 ms is not a multiple of the"},
		{0, "store-clock sentinel"},
	} {
		f, err := Load("../../testdata/request-vectors.json")
		if err != nil {
			t.Fatal(err)
		}
		// A suite that never reaches now 0 first: the refusal must come before it runs too.
		first := slices.IndexFunc(f.Suites, func(s Suite) bool {
			return !slices.ContainsFunc(s.Ops, func(op Op) bool { return op.Now == 0 })
		})
		if first < 0 {
			t.Fatal("every suite reaches now 0: the test needs one that does not")
		}
		f.Suites = []Suite{f.Suites[first], f.Suites[0]}
		engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
		defer engine.Close()
		_, err = Replay(context.Background(), engine, f, tc.base, "m")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("base %d: %v, want a refusal saying %q", tc.base, err, tc.want)
		}
		if n := engine.Keys(); n != 0 {
			t.Errorf("base %d: %d keys written before the refusal, want none", tc.base, n)
		}
	}
}
