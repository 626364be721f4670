package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/ratelimit-ext/ratelimit-ext/internal/loadgen"
	"github.com/ratelimit-ext/ratelimit-ext/internal/reference"
)

// referenceRules are benchRules in envoyproxy/ratelimit's own format: it refuses keys it
// does not know (such as `algorithm`), and fixed windows are all it has.
const referenceRules = `domain: bench
descriptors:
  - key: fw
    rate_limit: {unit: hour, requests_per_unit: 1000000000}
  - key: hot
    rate_limit: {unit: hour, requests_per_unit: 10}
`

// referenceProc prepares envoyproxy/ratelimit (its service_cmd binary) on the bench's
// Redis, on free loopback ports, with its rules under dir. Everything else stays at its
// defaults (a pool of 10 connections, no explicit pipelining, no local cache), the way
// it runs unless tuned, with its stats kept in the process instead of sent to statsd.
func referenceProc(bin, dir, redisAddr string) (*proc, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("envoyproxy/ratelimit binary: %w", err)
	}
	root := filepath.Join(dir, "reference")
	cfg := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cfg, "bench.yaml"), []byte(referenceRules), 0o644); err != nil {
		return nil, err
	}
	var addrs [3]string
	for i := range addrs {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	listen := reference.Addrs{GRPC: addrs[0], HTTP: addrs[1], Debug: addrs[2]}
	cmd := exec.Command(bin)
	// Only these settings: a variable of its own left in the caller's shell (REDIS_AUTH,
	// LOCAL_CACHE_SIZE_IN_BYTES, ...) would change the defaults it is measured with.
	cmd.Env = reference.Env(redisAddr, root, listen)
	// Its stats, logged every 10 s, go to a file.
	log, err := os.Create(filepath.Join(dir, "reference.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	return &proc{name: srvReference, cmd: cmd, grpc: listen.GRPC, redis: true, ready: listen.ReadyURL()}, nil
}

// printAgainstReference prints, for each scenario envoyproxy/ratelimit ran in, every
// server's requests per second as a multiple of its, and both p99s: the issue's "twice
// the throughput" measured in the same run instead of against a number from another day.
// (Open loop, every server answers the same rate, so there only the latencies differ.)
func printAgainstReference(w io.Writer, rows []row) {
	ref := map[string]*loadgen.Report{}
	for _, r := range rows {
		if r.Server == srvReference && r.Report.RPS > 0 {
			ref[r.Scenario] = r.Report
		}
	}
	if len(ref) == 0 {
		return
	}
	fmt.Fprintf(w, "\n| scenario | server | requests/s × %[1]s | p99 ms | %[1]s p99 ms |\n|---|---|---:|---:|---:|\n", srvReference)
	for _, r := range rows {
		base, ok := ref[r.Scenario]
		if !ok || r.Server == srvReference || r.Server == srvRoundTrip || r.Server == srvBatchedTrip {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.2f | %.3f | %.3f |\n", r.Scenario, r.Server,
			r.Report.RPS/base.RPS, r.Report.Latency.P99, base.Latency.P99)
	}
}
