package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	grpccodes "google.golang.org/grpc/codes"
)

// Reliability under failure (docs/reliability.md): a Redis restart under load, and a
// chaos run (Redis restart, a replica SIGKILLed, 100 config reloads, all under load).
//
// Both tests give the replicas a generous Redis timeout (1 s instead of the 8 ms default,
// which is meant to answer before Envoy's 20 ms filter timeout): on a loaded machine the
// default turns slow replies into UNAVAILABLE, and these tests must tell an outage's
// failures from a busy CPU's. Answering quickly while Redis is unreachable is another
// test's subject.

// TestRedisRestartUnderLoad: two replicas on one Redis under steady load on limits that
// never deny; redis-server is stopped and started again on the same port (no
// persistence: it comes back empty, without the script in its cache).
//
//   - Calls fail only while Redis is down, as UNAVAILABLE (the default fail_closed).
//   - For each replica, no call sent after its first success following the restart fails:
//     the first EVALSHA meets NOSCRIPT and the engine sends the script with EVAL, in the
//     same call; the connections to the old Redis are not reused. (Per replica, because
//     each replica's circuit breaker finds Redis again on its own probe, up to
//     --store-probe-interval apart.)
func TestRedisRestartUnderLoad(t *testing.T) {
	const (
		replicas = 2
		clients  = 8
		pace     = 5 * time.Millisecond
		domain   = "restart"
	)
	needBinary(t)
	rd := startRestartableRedis(t)
	configDir := t.TempDir()
	rules := `domain: restart
descriptors:
  - key: algo
    value: fixed_window
    rate_limit:
      name: restart-fixed_window
      algorithm: fixed_window
      unit: hour
      requests_per_unit: 1000000000
  - key: algo
    value: token_bucket
    rate_limit:
      name: restart-token_bucket
      algorithm: token_bucket
      unit: second
      requests_per_unit: 1000000
      burst: 1000000
`
	if err := os.WriteFile(filepath.Join(configDir, "restart.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	reps := startReplicas(t, replicas, "--redis-url", rd.url(), "--config-dir", configDir,
		"--redis-read-timeout", "1s", "--redis-write-timeout", "1s")
	conns := dialReplicas(t, reps, domain)

	begin := time.Now()
	ld := startLoad(conns, clients, pace, domain, "fixed_window", "token_bucket")
	var once sync.Once
	var calls []call
	finish := func() { once.Do(func() { calls = ld.finish() }) }
	t.Cleanup(finish)

	time.Sleep(1500 * time.Millisecond)
	stopAt := time.Now()
	if err := rd.stop(); err != nil {
		t.Fatal(err)
	}
	goneAt := time.Now()
	time.Sleep(time.Second)
	if err := rd.start(); err != nil {
		t.Fatal(err)
	}
	upAt := time.Now()
	time.Sleep(2500 * time.Millisecond)
	finish()
	elapsed := time.Since(begin)

	t.Logf("%d calls from %d clients over %d replicas in %v (%.0f/s); Redis stopped at +%d ms (gone +%d ms), answering again at +%d ms",
		len(calls), clients, replicas, elapsed.Round(time.Millisecond), float64(len(calls))/elapsed.Seconds(),
		msSince(begin, stopAt), msSince(begin, goneAt), msSince(begin, upAt))
	for i := range calls {
		c := &calls[i]
		if c.malformed != "" {
			t.Fatalf("replica %d answered %s: %s", c.replica+1, c.value, c.malformed)
		}
		if c.denied() || (c.ok() && c.limitName != "restart-"+c.value) {
			t.Fatalf("replica %d answered %s with %v, limit %q: these limits never deny", c.replica+1, c.value, c.overall, c.limitName)
		}
	}
	var earliest time.Time
	for r := range replicas {
		rec := outageFailures(calls, r, stopAt, goneAt, nil)
		var ok, okAfter int
		for i := range calls {
			if c := &calls[i]; c.replica == r && c.ok() {
				ok++
				if !rec.firstOK.IsZero() && c.sent.After(rec.firstOK) {
					okAfter++
				}
			}
		}
		if rec.firstOK.IsZero() {
			t.Errorf("replica %d: no success after the restart", r+1)
			continue
		}
		if earliest.IsZero() || rec.firstOK.Before(earliest) {
			earliest = rec.firstOK
		}
		t.Logf("replica %d: %d succeeded, %d failed (all while Redis was down); first success after the restart received %d ms after Redis answered PING again, then %d successes and no failure; circuit opened %d time(s)",
			r+1, ok, rec.failed, rec.firstOK.Sub(upAt).Milliseconds(), okAfter, countLines(reps[r].proc, "store circuit opened"))
		if rec.failed == 0 {
			t.Errorf("replica %d: no call failed while Redis was down: the outage was not exercised", r+1)
		}
		for k, c := range rec.notUnavail {
			if k < 5 {
				t.Errorf("replica %d: a call failed with %v, want UNAVAILABLE (fail_closed): %v", r+1, c.code, c.err)
			}
		}
		for k, c := range rec.outside {
			if k < 5 {
				t.Errorf("replica %d: a call sent at +%d ms, received +%d ms failed outside the outage (Redis stopped +%d ms, this replica's first success after the restart +%d ms): %v",
					r+1, msSince(begin, c.sent), msSince(begin, c.recv), msSince(begin, stopAt), msSince(begin, rec.firstOK), c.err)
			}
		}
		if n := len(rec.outside); n > 5 {
			t.Errorf("replica %d: %d calls failed outside the outage in all", r+1, n)
		}
		if okAfter == 0 {
			t.Errorf("replica %d: no call was sent after its first success following the restart", r+1)
		}
	}
	// Fleet-wide view, for the log: failures after the first replica recovered are the
	// other replica's, whose breaker had not probed yet.
	late := 0
	for i := range calls {
		if c := &calls[i]; c.err != nil && !earliest.IsZero() && c.sent.After(earliest) {
			late++
		}
	}
	t.Logf("fleet: %d failures were sent after the first replica's first success (the other replica still probing)", late)

	// The new Redis started with an empty script cache: EVALSHA met NOSCRIPT and the
	// engine sent the script with EVAL.
	errStats, err1 := rd.info("errorstats")
	cmdStats, err2 := rd.info("commandstats")
	if err1 != nil || err2 != nil {
		t.Fatalf("INFO: %v %v", err1, err2)
	}
	noscript := statField(errStats["errorstat_NOSCRIPT"], "count")
	t.Logf("new Redis: NOSCRIPT replies %d, EVAL calls %d, EVALSHA calls %d (failed %d)", noscript,
		statField(cmdStats["cmdstat_eval"], "calls"), statField(cmdStats["cmdstat_evalsha"], "calls"),
		statField(cmdStats["cmdstat_evalsha"], "failed_calls"))
	if noscript == 0 {
		t.Errorf("the restarted Redis never answered NOSCRIPT: the script-cache loss was not exercised")
	}
}

// TestChaos: three replicas on one Redis under steady concurrent load (16 clients,
// round robin, four descriptors) while, overlapping: Redis is restarted once, one replica
// is SIGKILLed (the clients then use the survivors; calls the dead one could not answer
// are counted), and the rules file is rewritten 100 times (95 harmless edits of an
// unrelated limit, 5 broken edits that must be rejected while the old rules keep
// serving). Each rewrite is waited for: every live replica has loaded it.
//
// What may be admitted. Redis runs without persistence (as in docker-compose.yml), so a
// restart forgets every counter (docs/docker-compose.md: "a Redis restart starts every
// counter from zero"): within one window an exact limit of L admits at most L per Redis
// lifetime, i.e. at most L × (Redis lifetimes during the window) in all; here one restart,
// so 2 × L (docs/reliability.md's "Redis restarted" row says the same). Nothing else
// may add admissions: the failure policy is fail_closed (no local decisions), a reload
// that keeps a limit's algorithm and period keeps its key and count (docs/redis.md,
// Keys), and a killed replica holds no state. Per lifetime: admissions received before the stop was
// signalled were decided by the first Redis; admissions sent after it had exited, by
// the second; each group holds at most L, with distinct `remaining` values. (Calls that
// ran in Redis but whose answer was lost, e.g. in flight on the killed replica, are not
// seen by the clients: they can only make the count lower.)
//
// At the end: no process panicked, the survivors answer /healthz and /readyz, and a fresh
// descriptor admits exactly its limit.
func TestChaos(t *testing.T) {
	const (
		replicas    = 3
		killed      = 2 // the replica SIGKILLed
		clients     = 16
		pace        = 10 * time.Millisecond
		domain      = "chaos"
		exact       = 300
		freshLimit  = 20
		reloads     = 100
		harmless0   = 1_000_000 // the unrelated limit's value; reload i sets harmless0 + i
		poison      = 4_242_000 // broken edits set it to poison + k: never seen if rejected
		reloadWait  = 5 * time.Second
		redisDownAt = 2 * time.Second
		killAfter   = 3 * time.Second // after Redis is back
		noticeAfter = 200 * time.Millisecond
	)
	exactValues := []string{"fixed_window", "sliding_window_log"}
	needBinary(t)
	windowRoom(t, time.Hour, 30*time.Second) // the fixed window is an epoch-aligned hour
	rd := startRestartableRedis(t)
	configDir, scratch := t.TempDir(), t.TempDir()
	rulesFile := filepath.Join(configDir, "chaos.yaml")
	write := func(content string) error { // atomically, as editors and ConfigMaps do
		tmp := filepath.Join(scratch, "chaos.yaml")
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, rulesFile)
	}
	if err := write(chaosRules(exact, freshLimit, harmless0)); err != nil {
		t.Fatal(err)
	}
	breakages := []struct{ what, from, to string }{
		{"a YAML syntax error", "burst: 50", "burst: [50"},
		{"an unknown algorithm", "algorithm: sliding_window_log", "algorithm: sliding_window_logx"},
		{"an unknown unit", "unit: second", "unit: fortnight"},
		{"the exact limit set negative", "requests_per_unit: " + strconv.Itoa(exact), "requests_per_unit: -1"},
		{"the exact limit not a number", "requests_per_unit: " + strconv.Itoa(exact), "requests_per_unit: three hundred"},
	}

	reps := startReplicas(t, replicas, "--redis-url", rd.url(), "--config-dir", configDir, "--watch=true",
		"--redis-read-timeout", "1s", "--redis-write-timeout", "1s")
	conns := dialReplicas(t, reps, domain)
	pids := make([]int, replicas)
	for i, r := range reps {
		pids[i] = r.proc.Pid()
	}

	begin := time.Now()
	ld := startLoad(conns, clients, pace, domain, "fixed_window", "sliding_window_log", "token_bucket", "harmless")

	// The chaos driver: Redis restart, then the SIGKILL, while the reloads below run.
	var stopAt, goneAt, upAt, killAt, deadAt, noticedAt time.Time
	var chaosErr error
	var killSent atomic.Bool
	// gone: a replica the reloads need not wait for any more (killed, or being killed).
	gone := func(r int) bool { return !alive(ld, r) || (r == killed && killSent.Load()) }
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		time.Sleep(redisDownAt)
		stopAt = time.Now()
		if chaosErr = rd.stop(); chaosErr != nil {
			return
		}
		goneAt = time.Now()
		time.Sleep(time.Second)
		if chaosErr = rd.start(); chaosErr != nil {
			return
		}
		upAt = time.Now()
		time.Sleep(killAfter)
		killAt = time.Now()
		killSent.Store(true)
		if chaosErr = reps[killed].proc.Signal(syscall.SIGKILL); chaosErr != nil {
			return
		}
		select {
		case <-reps[killed].proc.Exited():
			deadAt = time.Now()
		case <-time.After(5 * time.Second):
			chaosErr = fmt.Errorf("ratelimit-%d still running 5 s after SIGKILL", killed+1)
		}
		// The clients notice a while later (as a load balancer's health checks would)
		// and use the survivors; meanwhile their calls to the dead replica fail.
		time.Sleep(noticeAfter)
		ld.setLive(0, 1)
		noticedAt = time.Now()
	}()
	var once sync.Once
	var calls []call
	finish := func() {
		once.Do(func() {
			<-chaosDone
			calls = ld.finish()
		})
	}
	t.Cleanup(finish)

	// 100 reloads: rewrite, then wait until every live replica has loaded the new file.
	valid := map[uint32]bool{harmless0: true}
	var reloadTimes []time.Duration
	brokenRejected := 0
	reloadsBegin := time.Now()
	for i := 1; i <= reloads; i++ {
		broken := i%20 == 10 // reloads 10, 30, 50, 70, 90
		var content, what string
		if broken {
			b := breakages[i/20]
			good := chaosRules(exact, freshLimit, poison+i)
			content, what = strings.Replace(good, b.from, b.to, 1), b.what
			if content == good {
				t.Fatalf("breakage %q does not apply to the rules", b.what)
			}
		} else {
			v := harmless0 + i
			content, what = chaosRules(exact, freshLimit, v), "harmless limit "+strconv.Itoa(v)
			valid[uint32(v)] = true
		}
		before := map[int]configState{}
		for _, r := range ld.liveReplicas() {
			if s, err := readConfigState(reps[r]); err == nil {
				before[r] = s
			} else if !gone(r) {
				t.Errorf("reload %d: ratelimit-%d /metrics: %v", i, r+1, err)
			}
		}
		start := time.Now()
		if err := write(content); err != nil {
			t.Fatal(err)
		}
		pending := sortedReplicaKeys(before)
		for len(pending) > 0 {
			if time.Since(start) > reloadWait {
				t.Errorf("reload %d (%s): ratelimit %v did not load it within %v", i, what, plusOne(pending), reloadWait)
				break
			}
			time.Sleep(10 * time.Millisecond)
			var still []int
			for _, r := range pending {
				if gone(r) {
					continue // killed meanwhile
				}
				s, err := readConfigState(reps[r])
				b := before[r]
				switch {
				case err != nil:
					if !gone(r) {
						t.Errorf("reload %d: ratelimit-%d /metrics: %v", i, r+1, err)
					}
				case broken && (s.loadsOK != b.loadsOK || s.hash != b.hash):
					t.Errorf("reload %d: ratelimit-%d accepted a broken file (%s): %+v → %+v", i, r+1, what, b, s)
				case !broken && s.loadsFailed != b.loadsFailed:
					t.Errorf("reload %d: ratelimit-%d rejected a valid file (%s): %+v → %+v", i, r+1, what, b, s)
				case broken && (s.loadsFailed == b.loadsFailed || s.lastOK != 0),
					!broken && (s.loadsOK == b.loadsOK || s.lastOK != 1 || s.hash == b.hash):
					// Not loaded yet, or loaded and its metrics half updated (a scrape is
					// not atomic across metrics): look again.
					still = append(still, r)
				}
			}
			pending = still
		}
		if broken {
			brokenRejected++
		}
		reloadTimes = append(reloadTimes, time.Since(start))
	}
	reloadsTook := time.Since(reloadsBegin)
	<-chaosDone
	if chaosErr != nil {
		t.Fatal(chaosErr)
	}
	time.Sleep(500 * time.Millisecond) // a little steady load after the chaos
	finish()
	elapsed := time.Since(begin)
	sort.Slice(reloadTimes, func(i, j int) bool { return reloadTimes[i] < reloadTimes[j] })
	t.Logf("%d calls from %d clients in %v (%.0f/s); Redis stopped +%d ms (gone +%d ms), back +%d ms; ratelimit-%d SIGKILLed +%d ms (dead +%d ms, clients moved to the survivors +%d ms); %d reloads (%d broken) in %v, each loaded by every live replica within %v (median %v)",
		len(calls), clients, elapsed.Round(time.Millisecond), float64(len(calls))/elapsed.Seconds(),
		msSince(begin, stopAt), msSince(begin, goneAt), msSince(begin, upAt), killed+1, msSince(begin, killAt), msSince(begin, deadAt), msSince(begin, noticedAt),
		reloads, brokenRejected, reloadsTook.Round(time.Millisecond), reloadTimes[len(reloadTimes)-1].Round(time.Millisecond),
		reloadTimes[len(reloadTimes)/2].Round(time.Millisecond))

	// Every answer has the expected shape, and only rules that were accepted ever served.
	bad := 0
	for i := range calls {
		c := &calls[i]
		var problem string
		switch {
		case c.malformed != "":
			problem = c.malformed
		case c.err != nil:
			continue
		case c.limitName != "chaos-"+c.value:
			problem = fmt.Sprintf("current_limit %q", c.limitName)
		case c.value == "harmless" && !valid[c.perUnit]:
			problem = fmt.Sprintf("harmless limit %d: not a value of an accepted file", c.perUnit)
		case c.value == "harmless" && c.overall != rlsv3.RateLimitResponse_OK:
			problem = "the harmless limit denied"
		case (c.value == "fixed_window" || c.value == "sliding_window_log") && c.perUnit != exact:
			problem = fmt.Sprintf("exact limit %d, want %d", c.perUnit, exact)
		}
		if problem != "" {
			if bad < 5 {
				t.Errorf("ratelimit-%d answered %s at +%d ms: %s", c.replica+1, c.value, msSince(begin, c.sent), problem)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%d answers were wrong", bad)
	}

	// Failures: all UNAVAILABLE, only while Redis was down, or from the killed replica
	// once it was killed.
	toDead := 0
	deadCall := func(c *call) bool {
		if c.replica == killed && !c.recv.Before(killAt) {
			toDead++
			return true
		}
		return false
	}
	for r := range replicas {
		rec := outageFailures(calls, r, stopAt, goneAt, deadCall)
		var n, ok int
		for i := range calls {
			if c := &calls[i]; c.replica == r {
				n++
				if c.ok() {
					ok++
				}
			}
		}
		t.Logf("ratelimit-%d: %d calls, %d OK, %d failed during the Redis outage (first success after it %d ms after Redis was back); circuit opened %d time(s); %d config reloads logged, %d rejected",
			r+1, n, ok, rec.failed, rec.firstOK.Sub(upAt).Milliseconds(), countLines(reps[r].proc, "store circuit opened"),
			countLines(reps[r].proc, "config reloaded"), countLines(reps[r].proc, "config reload failed"))
		for k, c := range rec.notUnavail {
			if k < 5 {
				t.Errorf("ratelimit-%d: a call failed with %v, want UNAVAILABLE: %v", r+1, c.code, c.err)
			}
		}
		for k, c := range rec.outside {
			if k < 5 {
				t.Errorf("ratelimit-%d: a call sent +%d ms, received +%d ms failed outside the Redis outage (stopped +%d ms, this replica's first success after it +%d ms): %v",
					r+1, msSince(begin, c.sent), msSince(begin, c.recv), msSince(begin, stopAt), msSince(begin, rec.firstOK), c.err)
			}
		}
		if len(rec.outside) > 5 {
			t.Errorf("ratelimit-%d: %d calls failed outside the outage in all", r+1, len(rec.outside))
		}
	}
	deadNotUnavailable := 0
	for i := range calls {
		if c := &calls[i]; c.replica == killed && c.err != nil && !c.recv.Before(killAt) && c.code != grpccodes.Unavailable {
			deadNotUnavailable++
		}
	}
	t.Logf("calls to ratelimit-%d that failed once it was killed (expected): %d", killed+1, toDead)
	if deadNotUnavailable > 0 {
		t.Errorf("%d calls to the killed replica failed with another code than UNAVAILABLE", deadNotUnavailable)
	}

	// No over-admission: at most `exact` per Redis lifetime.
	lifetimes := rd.starts
	for _, v := range exactValues {
		var all, first, second, denied, deniedSecond int
		seen := [2]map[uint32]int{{}, {}}
		for i := range calls {
			c := &calls[i]
			if c.value != v {
				continue
			}
			if c.denied() {
				denied++
				if c.sent.After(goneAt) {
					deniedSecond++
				}
			}
			if !c.ok() {
				continue
			}
			all++
			life := -1
			switch {
			case c.recv.Before(stopAt):
				first++
				life = 0
			case c.sent.After(goneAt):
				second++
				life = 1
			}
			if life >= 0 {
				seen[life][c.remaining]++
			}
		}
		t.Logf("%-18s (%d per hour): %d admitted in all (bound %d × %d Redis lifetimes = %d): %d decided by the first Redis, %d by the second, %d in between; %d denied",
			v, exact, all, exact, lifetimes, exact*lifetimes, first, second, all-first-second, denied)
		if all > exact*lifetimes {
			t.Errorf("%s: over-admission: %d admitted, more than %d per Redis lifetime × %d lifetimes", v, all, exact, lifetimes)
		}
		if first > exact || second > exact {
			t.Errorf("%s: over-admission within one Redis lifetime: %d then %d admitted, limit %d", v, first, second, exact)
		}
		for life, m := range seen {
			for rem, n := range m {
				if n > 1 {
					t.Errorf("%s: Redis lifetime %d: %d admissions reported remaining %d: two admissions saw the same state", v, life+1, n, rem)
				}
			}
		}
		if deniedSecond == 0 {
			t.Errorf("%s: nothing was denied after the restart: the load never reached the limit", v)
		}
	}

	// No panic anywhere; the survivors are the same processes and healthy.
	for i, r := range reps {
		lines, err := crashLines(r.proc)
		if err != nil {
			t.Error(err)
		}
		for k, l := range lines {
			if k < 10 {
				t.Errorf("ratelimit-%d log: %s", i+1, l)
			}
		}
		if i == killed {
			continue
		}
		if !r.proc.Running() || r.proc.Pid() != pids[i] {
			t.Errorf("ratelimit-%d: running %v, pid %d → %d", i+1, r.proc.Running(), pids[i], r.proc.Pid())
			continue
		}
		if err := httpOK(fmt.Sprintf("http://127.0.0.1:%d/healthz", r.httpPort)); err != nil {
			t.Errorf("ratelimit-%d: %v", i+1, err)
		}
		if err := waitUntil(r.proc, 5*time.Second, func() error {
			return httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", r.httpPort))
		}); err != nil {
			t.Errorf("ratelimit-%d: /readyz: %v", i+1, err)
		}
	}

	// Limiting still works: the exact limits are still used up, and a fresh descriptor
	// admits exactly its limit, over the survivors.
	survivors := []int{0, 1}
	for _, r := range survivors {
		for _, v := range exactValues {
			resp, err := oneCall(conns[r], domain, "algo", v)
			if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
				t.Errorf("ratelimit-%d, %s after the chaos: %v %v, want OVER_LIMIT (the limit was used up)", r+1, v, resp.GetOverallCode(), err)
			}
		}
	}
	fresh := "after-chaos-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var got []string
	for j := range freshLimit + 10 {
		r := survivors[j%len(survivors)]
		resp, err := oneCall(conns[r], domain, "fresh", fresh)
		want, wantRem := rlsv3.RateLimitResponse_OK, uint32(freshLimit-1-j)
		if j >= freshLimit {
			want, wantRem = rlsv3.RateLimitResponse_OVER_LIMIT, 0
		}
		switch {
		case err != nil:
			t.Errorf("fresh descriptor, request %d (ratelimit-%d): %v", j+1, r+1, err)
		case resp.GetOverallCode() != want || len(resp.GetStatuses()) != 1 || resp.GetStatuses()[0].GetLimitRemaining() != wantRem:
			t.Errorf("fresh descriptor, request %d (ratelimit-%d): %v, want %v with remaining %d", j+1, r+1, resp, want, wantRem)
		}
		got = append(got, resp.GetOverallCode().String())
	}
	t.Logf("a fresh descriptor (limit %d) over the survivors: %d requests → %d OK then %d OVER_LIMIT",
		freshLimit, len(got), strings.Count(strings.Join(got, ","), "OK"), strings.Count(strings.Join(got, ","), "OVER_LIMIT"))
}

// chaosRules is TestChaos's rule file: two exact limits, a token bucket, the harmless
// limit the reloads change, and a per-value limit for the final check.
func chaosRules(exact, fresh, harmless int) string {
	return fmt.Sprintf(`domain: chaos
descriptors:
  - key: algo
    value: fixed_window
    rate_limit:
      name: chaos-fixed_window
      algorithm: fixed_window
      unit: hour
      requests_per_unit: %[1]d
  - key: algo
    value: sliding_window_log
    rate_limit:
      name: chaos-sliding_window_log
      algorithm: sliding_window_log
      unit: hour
      requests_per_unit: %[1]d
  - key: algo
    value: token_bucket
    rate_limit:
      name: chaos-token_bucket
      algorithm: token_bucket
      unit: second
      requests_per_unit: 100
      burst: 50
  - key: algo
    value: harmless
    rate_limit:
      name: chaos-harmless
      algorithm: fixed_window
      unit: hour
      requests_per_unit: %[3]d
  - key: fresh
    rate_limit:
      name: chaos-fresh
      algorithm: fixed_window
      unit: hour
      requests_per_unit: %[2]d
`, exact, fresh, harmless)
}

func alive(ld *load, r int) bool {
	for _, x := range ld.liveReplicas() {
		if x == r {
			return true
		}
	}
	return false
}

func sortedReplicaKeys(m map[int]configState) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// plusOne names replicas as their logs do (ratelimit-1, …).
func plusOne(rs []int) []int {
	out := make([]int, len(rs))
	for i, r := range rs {
		out[i] = r + 1
	}
	return out
}
