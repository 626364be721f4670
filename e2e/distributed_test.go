package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestDistributedExactness: three replicas share one Redis and are hammered concurrently;
// the Redis engine decides each request in one atomic script call, so the replicas
// together must behave exactly like one limiter (SPEC §4, §5.1).
//
// Time: every replica takes `now` from Redis (TIME, as sec·1000 + ⌊µs/1000⌋), and Redis
// runs on this host's clock, so a request's server time e lies between the moment its
// client sent it and the moment the answer arrived. In whole milliseconds, with ms(t) the
// floor of a wall-clock reading: ms(sent) ≤ e ≤ ms(recv). Every bound below is derived
// from these real timestamps, so it holds however slowly a loaded machine runs.
//
// Counts, per limit, over 2,000 requests of cost 1 on one descriptor:
//
//   - fixed_window, sliding_window_log, token_budget (500 per hour): exactly 500 allowed,
//     and their `remaining` values are 499, 498, …, 0, each once: no two admissions saw
//     the same state. (The run stays inside one hourly window: windowRoom.)
//
//   - gcra (L = 100 per P = 1000 ms, burst B = 50) and token_bucket (capacity C = 50,
//     refilled R = 100 per P = 1000 ms): with B standing for the burst or the capacity,
//     N allowed satisfies lower ≤ N ≤ upper, where
//
//     upper = B + ⌊(ms(recv of the last allowed) − ms(first send)) · R / P⌋
//
//     gcra: each admission advances tat by T = P/L from tat₀ = t₀ (the key's first now),
//     so tat ≥ t₀ + N·T, and the N-th admission at eₙ needs eₙ ≥ tat − τ (τ = T·B), i.e.
//     N ≤ B + (eₙ − t₀)/T. token_bucket: the tokens taken, N, never exceed the C the key
//     started with plus the refill (eₙ − t₀)·R/P. N is an integer, so floor; and
//     t₀ ≥ ms(first send), eₙ ≤ ms(recv of the last allowed). R = L for gcra.
//
//     lower = B + ⌊max(0, ms(send of the last denied) − ms(r*)) · R / P⌋
//
//     i.e. N > B + refill − 1 over that span. An admission that finds the limiter full
//     (gcra tat ≤ now, token_bucket tokens capped at C) is exactly one that reports
//     remaining = B − 1; refill is only ever lost at such an admission. r* is the latest
//     reception of one (normally the very first request's). From the last full admission
//     k (e_k ≤ ms(r*)) nothing is lost, so a denial at e_X ≥ ms(send of X) needs gcra
//     e_X < e_k + M·T + T − τ, token_bucket C + (e_X − e_k)·R/P − M < 1, with M the
//     admissions since k: both give M > B − 1 + (e_X − e_k)·R/P. The lower bound is thus
//     exact whatever stalls the run suffers, and above B whenever the run lasts more than
//     P/R: the test proves that refill happened, not just that the limit held.
func TestDistributedExactness(t *testing.T) {
	const (
		replicas   = 3
		clients    = 16
		perLimit   = 2000
		rpcTimeout = 10 * time.Second
		domain     = "dist"
	)
	type limitCase struct {
		algo     string // also the descriptor value
		yaml     string
		exact    int64 // exact algorithms: the quota
		burst    int64 // refill algorithms: B (gcra) or C (token_bucket)
		perUnit  int64 // refill algorithms: requests_per_unit
		periodMs int64
	}
	cases := []*limitCase{
		{algo: "fixed_window", exact: 500, yaml: "unit: hour\n      requests_per_unit: 500"},
		{algo: "sliding_window_log", exact: 500, yaml: "unit: hour\n      requests_per_unit: 500"},
		{algo: "token_budget", exact: 500, yaml: "unit: hour\n      requests_per_unit: 500"},
		{algo: "gcra", burst: 50, perUnit: 100, periodMs: 1000, yaml: "unit: second\n      requests_per_unit: 100\n      burst: 50"},
		{algo: "token_bucket", burst: 50, perUnit: 100, periodMs: 1000, yaml: "unit: second\n      requests_per_unit: 100\n      burst: 50"},
	}

	needBinary(t) // before anything starts: skips under -short
	redisURL := startRedis(t)
	configDir := t.TempDir()
	var y strings.Builder
	y.WriteString("domain: " + domain + "\ndescriptors:\n")
	for _, c := range cases {
		fmt.Fprintf(&y, "  - key: algo\n    value: %s\n    rate_limit:\n      name: dist-%s\n      algorithm: %s\n      %s\n",
			c.algo, c.algo, c.algo, c.yaml)
	}
	if err := os.WriteFile(filepath.Join(configDir, "dist.yaml"), []byte(y.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	// A generous Redis timeout: this test is about exactness, and the 8 ms default (meant
	// to answer before Envoy's 20 ms filter timeout) would turn a loaded machine's slow
	// replies into UNAVAILABLE, whose charge is then unknown to the client.
	reps := startReplicas(t, replicas, "--redis-url", redisURL, "--config-dir", configDir,
		"--redis-read-timeout", "5s", "--redis-write-timeout", "5s")

	conns := make([]rlsv3.RateLimitServiceClient, replicas)
	for i, r := range reps {
		cc, err := grpc.NewClient(r.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cc.Close() })
		conns[i] = rlsv3.NewRateLimitServiceClient(cc)
		// Connect before the clock starts: a descriptor no rule matches touches no state.
		ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
		resp, err := conns[i].ShouldRateLimit(ctx, request(domain, "algo", "warm-up"))
		cancel()
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("replica %d warm-up: %v %v", i+1, resp, err)
		}
	}

	// The fixed windows (fixed_window, token_budget) are epoch-aligned hours: stay in one.
	windowRoom(t, time.Hour, 20*time.Second)

	type record struct {
		sent, recv time.Time
		replica    int
		ok         bool
		remaining  uint32
		err        error
	}
	// Job i is request i/len(cases) of limit i%len(cases); a limit's requests go round
	// robin over the replicas. The limits are interleaved, so each one's requests span the
	// whole run.
	total := perLimit * len(cases)
	recs := make([]record, total)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total {
					return
				}
				c := cases[i%len(cases)]
				rep := (i / len(cases)) % replicas
				req := request(domain, "algo", c.algo)
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				r := &recs[i]
				r.replica, r.sent = rep, time.Now()
				resp, err := conns[rep].ShouldRateLimit(ctx, req)
				r.recv = time.Now()
				cancel()
				switch {
				case err != nil:
					r.err = err
				case len(resp.GetStatuses()) != 1:
					r.err = fmt.Errorf("%d statuses, want 1: %v", len(resp.GetStatuses()), resp)
				case resp.GetOverallCode() != resp.GetStatuses()[0].GetCode():
					r.err = fmt.Errorf("overall code %v but descriptor code %v", resp.GetOverallCode(), resp.GetStatuses()[0].GetCode())
				case resp.GetStatuses()[0].GetCurrentLimit().GetName() != "dist-"+c.algo:
					r.err = fmt.Errorf("current_limit %v, want dist-%s", resp.GetStatuses()[0].GetCurrentLimit(), c.algo)
				default:
					r.ok = resp.GetOverallCode() == rlsv3.RateLimitResponse_OK
					r.remaining = resp.GetStatuses()[0].GetLimitRemaining()
					if !r.ok && resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
						r.err = fmt.Errorf("overall code %v", resp.GetOverallCode())
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d requests (%d per limit) from %d clients over %d replicas in %v (%.0f/s)",
		total, perLimit, clients, replicas, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())

	ms := func(t time.Time) int64 { return t.UnixMilli() }
	errs := 0
	for i := range recs {
		if recs[i].err != nil {
			if errs < 10 {
				t.Errorf("request %d (%s, replica %d): %v", i, cases[i%len(cases)].algo, recs[i].replica+1, recs[i].err)
			}
			errs++
		}
	}
	if errs > 0 {
		t.Fatalf("%d of %d RPCs failed; the counts below would not be meaningful", errs, total)
	}
	// The replicas run with the local over-limit cache on (the serving default), and it
	// answered part of the denials: the bounds below hold with it answering.
	var hits float64
	for _, r := range reps {
		m, err := metricsOn(r.httpPort)
		if err != nil {
			t.Fatal(err)
		}
		hits += m["ratelimit_ext_local_cache_hits_total"]
	}
	if hits == 0 {
		t.Error("no replica's local over-limit cache answered a request: the test does not exercise it")
	}
	t.Logf("%.0f requests answered from the replicas' local over-limit caches", hits)

	for ci, c := range cases {
		var (
			allowed, denied        int64
			perReplica             [replicas]int64
			firstSent              = int64(1 << 62)
			lastAllowedRecv        = int64(-1)
			lastDeniedSent         = int64(-1)
			rStar                  = int64(-1) // latest reception of a "full" admission
			fullAdmissions         int64
			remainingOfAllowed     []int
			deniedWithRemainingNot int64
		)
		for i := ci; i < total; i += len(cases) {
			r := recs[i]
			firstSent = min(firstSent, ms(r.sent))
			if r.ok {
				allowed++
				perReplica[r.replica]++
				lastAllowedRecv = max(lastAllowedRecv, ms(r.recv))
				remainingOfAllowed = append(remainingOfAllowed, int(r.remaining))
				if c.burst > 0 && int64(r.remaining) == c.burst-1 {
					fullAdmissions++
					rStar = max(rStar, ms(r.recv))
				}
			} else {
				denied++
				lastDeniedSent = max(lastDeniedSent, ms(r.sent))
				if r.remaining != 0 {
					deniedWithRemainingNot++
				}
			}
		}
		if c.exact > 0 {
			t.Logf("%-18s allowed %d, denied %d (want exactly %d allowed); allowed per replica %v",
				c.algo, allowed, denied, c.exact, perReplica)
			if allowed != c.exact || denied != perLimit-c.exact {
				t.Errorf("%s: allowed %d, denied %d; want exactly %d and %d", c.algo, allowed, denied, c.exact, perLimit-c.exact)
			}
			// remaining after each admission is L − (admissions so far): 499 … 0, each once.
			sort.Ints(remainingOfAllowed)
			for k, v := range remainingOfAllowed {
				if v != k {
					t.Errorf("%s: the remaining values of allowed requests are not 0…%d each once: sorted, position %d holds %d",
						c.algo, c.exact-1, k, v)
					break
				}
			}
			if deniedWithRemainingNot > 0 {
				t.Errorf("%s: %d denied requests report remaining ≠ 0", c.algo, deniedWithRemainingNot)
			}
			continue
		}
		refill := func(spanMs int64) int64 { return max(0, spanMs) * c.perUnit / c.periodMs }
		upper := c.burst + refill(lastAllowedRecv-firstSent)
		lower := c.burst
		if denied > 0 {
			lower = c.burst + refill(lastDeniedSent-rStar)
		}
		t.Logf("%-18s allowed %d, denied %d; bounds %d ≤ allowed ≤ %d "+
			"(upper: %d + refill over %d ms from the first send to the last allowed reception; "+
			"lower: %d + refill over %d ms from r* to the last denied send; %d admission(s) found it full, r* = first send + %d ms); allowed per replica %v",
			c.algo, allowed, denied, lower, upper,
			c.burst, lastAllowedRecv-firstSent, c.burst, max(0, lastDeniedSent-rStar), fullAdmissions, rStar-firstSent, perReplica)
		if allowed > upper {
			t.Errorf("%s: %d allowed, more than the burst plus everything that could have refilled: %d", c.algo, allowed, upper)
		}
		if allowed < lower {
			t.Errorf("%s: %d allowed, fewer than the burst plus what refilled while the limiter stayed drained: %d", c.algo, allowed, lower)
		}
		if denied == 0 {
			t.Errorf("%s: nothing was denied; the run did not drain the limiter", c.algo)
		}
		if lower <= c.burst {
			t.Errorf("%s: the lower bound %d does not exceed the burst %d: the run (%v) was too short to prove refill",
				c.algo, lower, c.burst, elapsed)
		}
		if fullAdmissions > 1 {
			t.Logf("%s: NOTE %d admissions found the limiter full: besides the first request's, demand paused long enough to refill it (a stall?); the lower bound starts at the last of them",
				c.algo, fullAdmissions)
		}
	}
}

// request is a ShouldRateLimit request with one descriptor of one entry, cost 1.
func request(domain, key, value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{
		Domain:     domain,
		HitsAddend: 1,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}},
		}},
	}
}
