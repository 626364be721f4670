package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The header flags through a real Envoy's rate-limit filter (docs/operations.md,
// Headers): the IETF RateLimit fields reach the client on allowed and denied answers
// beside Envoy's own X-RateLimit-*; the upstream gets the remaining quota in its
// request header (appended after a value the client sent); Envoy's access log sees the
// answers' dynamic metadata; a denial is Envoy's 429 with Retry-After and the
// problem+json body and content type the service supplied.
func TestHeaderFlagsThroughEnvoy(t *testing.T) {
	needTopology(t)
	rules := t.TempDir()
	// An hour's window: three requests never straddle a window's end.
	rule := "domain: hdr\ndescriptors:\n  - key: generic_key\n    value: headers\n    metadata: {team: e2e}\n    rate_limit: {name: hdr, unit: hour, requests_per_unit: 2}\n"
	if err := os.WriteFile(filepath.Join(rules, "hdr.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := startReplicas(t, 1, "--config-dir", rules, "--ratelimit-headers", "--problem-details",
		"--upstream-remaining-header", "x-quota-left", "--response-dynamic-metadata")[0]
	accessLog := filepath.Join(t.TempDir(), "access.log")

	var mu sync.Mutex
	var seen [][]string // the x-quota-left values of each request the upstream got
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Values("x-quota-left"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(upstream.Close)
	upPort, err := strconv.Atoi(upstream.URL[strings.LastIndex(upstream.URL, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}
	url := startEnvoyOn(t, "envoy-headers", func(admin, listen int) string {
		// Envoy renders the draft-03 X-RateLimit-* headers itself, beside the service's,
		// and logs the answer's dynamic metadata.
		return rlsEnvoy{UpPort: upPort, RLSPort: svc.grpcPort, Domain: "hdr", Value: "headers",
			FilterExtra:  "              enable_x_ratelimit_headers: DRAFT_VERSION_03\n",
			ManagerExtra: fmt.Sprintf(metadataLog, accessLog)}.config(admin, listen)
	})

	get := func(hdr ...string) reply { t.Helper(); return sendTo(t, url, http.MethodGet, "", hdr...) }
	want := func(r reply, name, pattern string) {
		t.Helper()
		if v := r.h.Values(name); len(v) != 1 || !regexp.MustCompile("^"+pattern+"$").MatchString(v[0]) {
			t.Errorf("%s: %q, want one value matching %s", name, v, pattern)
		}
	}

	for i, forged := range []string{"", "999"} {
		var hdr []string
		if forged != "" {
			hdr = []string{"x-quota-left", forged} // Envoy appends the service's value
		}
		resp := get(hdr...)
		if resp.code != http.StatusOK {
			t.Fatalf("request %d: %d, want 200", i+1, resp.code)
		}
		left := strconv.Itoa(1 - i)
		want(resp, "ratelimit-policy", regexp.QuoteMeta(`"hdr";q=2;w=3600`))
		want(resp, "ratelimit", regexp.QuoteMeta(`"hdr";r=`+left+`;t=`)+`[0-9]+`)
		want(resp, "x-ratelimit-limit", regexp.QuoteMeta(`2, 2;w=3600;name="hdr"`))
		want(resp, "x-ratelimit-remaining", left)
		mu.Lock()
		got := seen[len(seen)-1]
		mu.Unlock()
		if wantSeen := slices.DeleteFunc([]string{forged, left}, func(s string) bool { return s == "" }); !slices.Equal(got, wantSeen) {
			t.Errorf("request %d: the upstream got x-quota-left %q, want %q", i+1, got, wantSeen)
		}
	}

	resp := get()
	if resp.code != http.StatusTooManyRequests {
		t.Fatalf("request 3: %d, want 429", resp.code)
	}
	want(resp, "retry-after", `[1-9][0-9]*`)
	want(resp, "x-envoy-ratelimited", "true")
	want(resp, "content-type", regexp.QuoteMeta("application/problem+json"))
	want(resp, "ratelimit-policy", regexp.QuoteMeta(`"hdr";q=2;w=3600`))
	want(resp, "ratelimit", regexp.QuoteMeta(`"hdr";r=0;t=`)+`[0-9]+`)
	var problem struct {
		Status           int      `json:"status"`
		ViolatedPolicies []string `json:"violated-policies"`
		RetryAfter       int64    `json:"retry_after"`
	}
	if err := json.Unmarshal([]byte(resp.body), &problem); err != nil {
		t.Fatalf("the 429's body is not the problem JSON: %v: %q", err, resp.body)
	}
	if problem.Status != 429 || !slices.Equal(problem.ViolatedPolicies, []string{"hdr"}) ||
		strconv.FormatInt(problem.RetryAfter, 10) != resp.h.Get("retry-after") {
		t.Errorf("problem %+v beside Retry-After %q", problem, resp.h.Get("retry-after"))
	}
	mu.Lock()
	if len(seen) != 2 {
		t.Errorf("the upstream got %d requests, want the 2 allowed", len(seen))
	}
	mu.Unlock()

	// --response-dynamic-metadata: Envoy keeps the answer's dynamic_metadata under the
	// filter's namespace, where its access log reads it. The rule's metadata is there
	// for the descriptors within their limits only (docs/operations.md).
	allowed := `{"descriptors":[{"entries":["generic_key=headers"]}],"domain":"hdr","metadata":{"team":"e2e"},"quotaModeEnabled":false}`
	denied := `{"descriptors":[{"entries":["generic_key=headers"]}],"domain":"hdr","quotaModeEnabled":false}`
	var lines []string
	for deadline := time.Now().Add(10 * time.Second); len(lines) < 3 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		data, _ := os.ReadFile(accessLog)
		lines = strings.Fields(string(data))
	}
	if want := []string{allowed, allowed, denied}; !slices.Equal(lines, want) {
		t.Errorf("access log of the dynamic metadata:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// metadataLog is an access log of the rate-limit filter's dynamic metadata, one JSON
// object per request, written to the file it is given.
const metadataLog = `          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %q
              log_format: {text_format_source: {inline_string: "%%DYNAMIC_METADATA(envoy.filters.http.ratelimit)%%\n"}}
`
