//go:build unix

package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// The binary, started as envoyproxy/ratelimit's environment would start it, serves the
// merged domain and shows its files on /debug/config.
func TestServeBinaryMergesDomainsWithTheirVariable(t *testing.T) {
	dir := twoTeams(t)
	env := []string{"MERGE_DOMAIN_CONFIG=true", "PATH=" + os.Getenv("PATH")}
	s := startProcess(t, buildBinary(t), env, "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--config-dir", dir, "--watch=false")
	resp, err := http.Get("http://" + s.httpAddr + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var dump struct {
		Domains []struct {
			Domain string
			Files  []string
		}
	}
	if err := json.Unmarshal(body, &dump); err != nil || len(dump.Domains) != 1 || !slices.Equal(dump.Domains[0].Files, []string{"a.yaml", "b.yaml"}) {
		t.Errorf("/debug/config does not show the merged domain (%v):\n%s", err, body)
	}
	if !strings.Contains(s.log(), "MERGE_DOMAIN_CONFIG") || !strings.Contains(s.log(), "mapped to RATELIMIT_EXT_MERGE_DOMAINS=true") {
		t.Errorf("the start does not say MERGE_DOMAIN_CONFIG was mapped:\n%s", s.log())
	}

	// A reload (SIGHUP, as --watch=false) merges the files again.
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("domain: edge\ndescriptors:\n  - key: other\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.log(), `"msg":"config reloaded"`); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(s.log(), "config reload failed") || time.Now().After(deadline) {
			t.Fatalf("the reload did not merge the files:\n%s", s.log())
		}
	}

	// b.yaml deleted: the domain stays, b.yaml's limits go, and the reload says so.
	if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := `"msg":"a rule file's limits are gone from its domain: the requests they limited are no longer limited by them","domain":"edge","file":"b.yaml"`
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.log(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no warning that b.yaml's limits are gone:\n%s", s.log())
		}
	}
}

// Over xDS, --merge-domains merges two RateLimitConfig resources of one domain: the
// update is ACKed and both resources' limits decide.
func TestServeMergesXDSResourcesWhenAsked(t *testing.T) {
	cp := xdstest.Start(t, "127.0.0.1:0")
	s := startBinary(t, buildBinary(t), "--config-source", "xds", "--xds-server", cp.Addr, "--xds-node-id", "rl-test",
		"--xds-backoff-initial", "20ms", "--xds-backoff-max", "200ms", "--merge-domains")
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := rlsv3.NewRateLimitServiceClient(conn)
	team := func(name, key string) *rlsconfv3.RateLimitConfig {
		return &rlsconfv3.RateLimitConfig{Name: name, Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: key, RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 1}}}}
	}
	cp.Set(t, "rl-test", "v1", team("team-a", "user"), team("team-b", "key"))
	cp.ACK(t, cp.Response(t, "v1"))
	for _, key := range []string{"user", "key"} {
		for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
			ctx, cancel := context.WithTimeout(context.Background(), xdstest.Wait)
			resp, err := client.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
				{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: "v"}}}}})
			cancel()
			if err != nil || resp.GetOverallCode() != want {
				t.Errorf("%s call %d: %v (%v), want %v", key, i+1, resp.GetOverallCode(), err, want)
			}
		}
	}
}
