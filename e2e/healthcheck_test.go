package e2e

import (
	"bufio"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hostFlags matches a rate-limit replica's health flags in Envoy's admin /clusters:
// "healthy", or flags such as "/failed_active_hc/failed_outlier_check".
var hostFlags = regexp.MustCompile(`^ratelimit::([0-9.]+:\d+)::health_flags::(.*)$`)

// rlsHealth reads the health flags of the rate-limit replica at addr from the admin
// interface of the topology's Envoy.
func rlsHealth(t *testing.T, addr string) string {
	t.Helper()
	return rlsHealthAt(t, topo.AdminURL(), addr)
}

// rlsHealthAt reads them from the Envoy whose admin interface is at admin.
func rlsHealthAt(t *testing.T, admin, addr string) string {
	t.Helper()
	resp, err := client.Get(admin + "/clusters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := hostFlags.FindStringSubmatch(sc.Text()); m != nil && m[1] == addr {
			return m[2]
		}
	}
	t.Fatalf("Envoy's /clusters lists no ratelimit host %s", addr)
	return ""
}

// overLimitClient returns a client address that has used up per-ip (5 per minute).
func overLimitClient(t *testing.T) []string {
	t.Helper()
	hdr := xff(newIP())
	var rs []reply
	for range 6 {
		rs = append(rs, get(t, "/ip", hdr...))
	}
	wantCodes(t, "using up per-ip", rs, 200, 200, 200, 200, 200, 429)
	return hdr
}

// replicaOutage is a way for a replica to stop deciding, and to come back.
type replicaOutage struct {
	name     string
	down, up func(*Process) error
}

var replicaOutages = []replicaOutage{
	// SIGTERM: the replica says NOT_SERVING, drains and exits; its port refuses.
	{"stopped",
		func(p *Process) error { return p.Stop(10 * time.Second) },
		func(p *Process) error { return p.Start() }},
	// SIGSTOP: connections stay open and nothing answers.
	{"hung",
		func(p *Process) error { return p.Signal(syscall.SIGSTOP) },
		func(p *Process) error { return p.Signal(syscall.SIGCONT) }},
}

// Envoy health-checks the replicas (envoy/envoy.yaml, cluster ratelimit): a replica that
// stops answering is taken out of the rotation and the other one decides every request,
// so a client over its limit keeps getting 429 instead of passing unchecked on every
// other request (failure_mode_deny: false). Outlier detection takes it out after at
// most three failed decisions, before the active check has failed twice. Once back,
// the replica gets its share of decisions again.
func TestUnhealthyReplicaGetsNoDecisions(t *testing.T) {
	needTopology(t)
	replicas := topo.Services(kindRatelimit)
	if len(replicas) < 2 {
		t.Fatalf("%d rate-limit replicas in the compose file, want two", len(replicas))
	}
	sp := replicas[len(replicas)-1]
	p, addr := topo.Proc(sp.Name), "127.0.0.1:"+strconv.Itoa(sp.Ports[sp.GRPC])
	for _, o := range replicaOutages {
		t.Run(o.name, func(t *testing.T) {
			// An earlier test may have stopped Redis, and Envoy may still have a replica
			// ejected for it: at most one of the two can be ejected (max_ejection_percent),
			// so with the other one out, the one stopped here could not be.
			for _, r := range replicas {
				waitEnvoyHealthy(t, r.Name, "127.0.0.1:"+strconv.Itoa(r.Ports[r.GRPC]))
			}
			hdr := overLimitClient(t)
			if err := o.down(p); err != nil {
				t.Fatal(err)
			}
			restored := false
			t.Cleanup(func() { // the tests after this one need the replica
				if !restored && o.up(p) == nil {
					_ = topo.WaitReady(sp.Name, 15*time.Second)
				}
			})
			deniedWhileDown(t, sp.Name, addr, hdr)
			if err := o.up(p); err != nil {
				t.Fatal(err)
			}
			restored = true
			if err := topo.WaitReady(sp.Name, 15*time.Second); err != nil {
				t.Fatal(err)
			}
			waitEnvoyHealthy(t, sp.Name, addr)
			decidesAgain(t, sp.Name, addr)
		})
	}
}

// deniedWhileDown sends requests from a client over its limit while the replica at addr
// is down: until Envoy's active health check marks it, and 20 more after. At most three
// may pass, unchecked (outlier detection ejects a replica after three failed decisions
// in a row, before the active check has marked it); all the others are 429.
func deniedWhileDown(t *testing.T, name, addr string, hdr []string) {
	t.Helper()
	var passed []int // the requests that got no 429
	i := 0
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(rlsHealth(t, addr), "failed_active_hc"); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("Envoy still has %s as %q 10 s after it went down: is the ratelimit cluster health-checked?", name, rlsHealth(t, addr))
		}
		if r := get(t, "/ip", hdr...); r.code != 429 {
			passed = append(passed, i)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(passed) > 3 {
		t.Errorf("requests %v of %d from a client over its limit passed before Envoy marked %s unhealthy; want at most 3%s", passed, i, name, undecided())
	}
	for range 20 {
		if r := get(t, "/ip", hdr...); r.code != 429 {
			t.Errorf("request %d, after Envoy marked %s unhealthy: %d, want 429%s", i, name, r.code, undecided())
		}
		i++
	}
}

// waitEnvoyHealthy waits until Envoy has the replica at addr healthy: passing its
// health checks and not ejected.
func waitEnvoyHealthy(t *testing.T, name, addr string) {
	t.Helper()
	flags := rlsHealth(t, addr)
	for deadline := time.Now().Add(20 * time.Second); flags != "healthy"; flags = rlsHealth(t, addr) {
		if time.Now().After(deadline) {
			t.Fatalf("Envoy still has %s as %q after 20 s", name, flags)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// decidesAgain checks that Envoy sends the replica at addr its share of decisions
// again, and that they are right.
func decidesAgain(t *testing.T, name, addr string) {
	t.Helper()
	before := rlsRequests(t)[addr]
	hdr := xff(newIP())
	var rs []reply
	for range 6 {
		rs = append(rs, get(t, "/ip", hdr...))
	}
	wantCodes(t, "after "+name+" came back", rs, 200, 200, 200, 200, 200, 429)
	if n := rlsRequests(t)[addr] - before; n == 0 {
		t.Errorf("%s got none of 6 checks once Envoy had it healthy again", name)
	}
}
