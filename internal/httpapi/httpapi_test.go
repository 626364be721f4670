package httpapi_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

const rules = `
domain: web
descriptors:
  - key: ip
    rate_limit: {name: per-ip, unit: hour, requests_per_unit: 2}
  - key: internal
    rate_limit: {unlimited: true}
`

// now is 800 s into an hour, so the window resets in 2,800,000 ms.
const now = int64(1_700_000_000_000)

func newDecider(t *testing.T, o decide.Options) *decide.Decider {
	t.Helper()
	return newDeciderFor(t, rules, o)
}

// newDeciderFor decides the rules given on a memory engine whose clock stands at now.
func newDeciderFor(t *testing.T, rules string, o decide.Options) *decide.Decider {
	t.Helper()
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1, Clock: func() int64 { return now }})
	t.Cleanup(func() { engine.Close() })
	o.Keys = storekey.New("h:", 0)
	return decide.New(rs, engine, o)
}

func serveAPI(t *testing.T, a *httpapi.API) string {
	t.Helper()
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return doWith(t, method, url, body, nil)
}

// doWith is do with request headers.
func doWith(t *testing.T, method, url, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestHealthAndReadinessOnTheMemoryEngine(t *testing.T) {
	d := newDecider(t, decide.Options{})
	for _, withReadiness := range []bool{false, true} {
		a := httpapi.New(d, quiet(), nil)
		if withReadiness {
			a.UseReadiness(httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: quiet()}))
		}
		url := serveAPI(t, a)
		if code, body := do(t, "GET", url+"/healthz", ""); code != 200 || body != "ok\n" {
			t.Fatalf("/healthz %d %q", code, body)
		}
		if code, body := do(t, "GET", url+"/readyz", ""); code != 200 || body != "ready\n" {
			t.Fatalf("/readyz %d %q", code, body)
		}
		if code, _ := do(t, "POST", url+"/healthz", ""); code != http.StatusMethodNotAllowed {
			t.Fatalf("POST /healthz %d", code)
		}
	}
}

// /healthcheck answers as envoyproxy/ratelimit's does by default (200 "OK", else 500)
// for any method: not serving before any rules and once shutdown began, serving in
// between. /readyz fails in both states too.
func TestHealthcheckAnswersAsEnvoyproxyRatelimit(t *testing.T) {
	engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { engine.Close() })
	d := decide.New(nil, engine, decide.Options{Keys: storekey.New("h:", 0)})
	a := httpapi.New(d, quiet(), nil)
	a.UseReadiness(httpapi.NewReadiness(d, httpapi.ReadinessOptions{Log: quiet()}))
	url := serveAPI(t, a)

	code, body := do(t, "GET", url+"/healthcheck", "")
	if code != http.StatusInternalServerError || body != "not serving: no rules loaded\n" {
		t.Fatalf("/healthcheck without rules: %d %q, want 500 with the reason", code, body)
	}
	if code, _ := do(t, "GET", url+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz without rules: %d", code)
	}

	d.SetRules(newDecider(t, decide.Options{}).Rules())
	for _, method := range []string{"GET", "POST", "HEAD"} {
		code, body := do(t, method, url+"/healthcheck", "")
		want := "OK"
		if method == "HEAD" {
			want = ""
		}
		if code != http.StatusOK || body != want {
			t.Errorf("%s /healthcheck with rules: %d %q, want 200 %q", method, code, body, want)
		}
	}

	a.Shutdown()
	if code, body := do(t, "GET", url+"/healthcheck", ""); code != http.StatusInternalServerError || body != "not serving: shutting down\n" {
		t.Errorf("/healthcheck once shutdown began: %d %q, want 500", code, body)
	}
	if code, body := do(t, "GET", url+"/readyz", ""); code != http.StatusServiceUnavailable || body != "not ready: shutting down\n" {
		t.Errorf("/readyz once shutdown began: %d %q, want 503", code, body)
	}
	if code, _ := do(t, "GET", url+"/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz once shutdown began: %d, want 200 (the process still runs)", code)
	}
}

// POST /v1/decide gives ShouldRateLimit's decision and charges the same state.
func TestDecideEndpoint(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	req := `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.1"}]},{"entries":[{"key":"other","value":"x"}]},{"entries":[{"key":"internal","value":"y"}]}]}`
	type status struct {
		Code         string `json:"code"`
		CurrentLimit *struct {
			Name            string `json:"name"`
			RequestsPerUnit int64  `json:"requests_per_unit"`
			Unit            string `json:"unit"`
			Algorithm       string `json:"algorithm"`
		} `json:"current_limit"`
		LimitRemaining       int64 `json:"limit_remaining"`
		DurationUntilResetMs int64 `json:"duration_until_reset_ms"`
	}
	var out struct {
		OverallCode  string   `json:"overall_code"`
		Statuses     []status `json:"statuses"`
		RetryAfterMs int64    `json:"retry_after_ms"`
	}
	for i, want := range []struct {
		overall   string
		remaining int64
		retry     int64
	}{{"OK", 1, 0}, {"OK", 0, 0}, {"OVER_LIMIT", 0, 2_800_000}} {
		code, body := do(t, "POST", url, req)
		if code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		out.Statuses, out.RetryAfterMs = nil, 0
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		st := out.Statuses[0]
		if out.OverallCode != want.overall || st.LimitRemaining != want.remaining || out.RetryAfterMs != want.retry ||
			st.CurrentLimit == nil || st.CurrentLimit.Name != "per-ip" || st.CurrentLimit.Algorithm != "fixed_window" ||
			st.DurationUntilResetMs != 2_800_000 {
			t.Fatalf("request %d: %s", i, body)
		}
		if len(out.Statuses) != 3 || out.Statuses[1].Code != "OK" || out.Statuses[1].CurrentLimit != nil || out.Statuses[1].LimitRemaining != 0 {
			t.Fatalf("request %d: the unmatched descriptor: %s", i, body)
		}
		if un := out.Statuses[2]; un.Code != "OK" || un.CurrentLimit != nil || un.LimitRemaining != math.MaxUint32 {
			t.Fatalf("request %d: the unlimited descriptor (limit_remaining the uint32 maximum, as gRPC): %s", i, body)
		}
	}
}

// A descriptor whose cost is above --max-hits-addend is charged the bound, and the
// answer says so.
func TestDecideSaysACostWasClamped(t *testing.T) {
	b := decide.DefaultBounds
	b.MaxCost = 10
	d := newDecider(t, decide.Options{Bounds: b})
	url := serveAPI(t, httpapi.New(d, quiet(), nil)) + "/v1/decide"
	code, body := do(t, "POST", url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.9"}],"hits_addend":11},{"entries":[{"key":"ip","value":"10.0.0.8"}]}]}`)
	var out struct {
		Statuses []struct {
			CostClamped bool `json:"cost_clamped"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || code != 200 || len(out.Statuses) != 2 {
		t.Fatalf("%d %s (%v)", code, body, err)
	}
	if !out.Statuses[0].CostClamped || out.Statuses[1].CostClamped || strings.Count(body, "cost_clamped") != 1 {
		t.Errorf("want the first status marked cost_clamped, the second not: %s", body)
	}
}

// A browser's cross-origin POST (a form on another site) is refused before it charges
// anything; a same-origin one and a client that is not a browser are decided.
func TestDecideRefusesCrossOriginBrowsers(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	body := `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.9"}]}]}`
	post := func(headers map[string]string) (int, string) {
		t.Helper()
		h := map[string]string{"Content-Type": "text/plain"} // a "simple" request: no preflight
		maps.Copy(h, headers)
		return doWith(t, "POST", url, body, h)
	}
	for _, h := range []map[string]string{{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}} {
		if code, _ := post(h); code != http.StatusForbidden {
			t.Errorf("cross-origin %v: %d, want 403", h, code)
		}
	}
	// per-ip allows 2 per hour: the refused posts charged nothing, so two are OK now.
	for _, h := range []map[string]string{nil, {"Sec-Fetch-Site": "same-origin"}} {
		if code, body := post(h); code != http.StatusOK || !strings.Contains(body, `"overall_code": "OK"`) {
			t.Errorf("%v: %d %s, want 200 and OK", h, code, body)
		}
	}
}

// Every bad request is answered with an error and counted as invalid, whether the JSON
// or the request it holds is wrong; a body above the bound is 413.
func TestDecideRefusesBadRequests(t *testing.T) {
	obs := &invalidCounter{}
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), obs)) + "/v1/decide"
	cases := []struct {
		name, body string
		code       int
	}{
		{"bad JSON", `{"domain":`, http.StatusBadRequest},
		{"unknown field", `{"domain":"web","descriptors":[],"extra":1}`, http.StatusBadRequest},
		{"camelCase field", `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}],"hitsAddend":2}]}`, http.StatusBadRequest},
		{"data after the object", `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}]}]} trailing`, http.StatusBadRequest},
		{"two objects", `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}{}`, http.StatusBadRequest},
		{"empty domain", `{"descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}`, http.StatusBadRequest},
		{"no descriptor", `{"domain":"web","descriptors":[]}`, http.StatusBadRequest},
		{"body too large", `{"domain":"` + strings.Repeat("x", 1<<20) + `"}`, http.StatusRequestEntityTooLarge},
		{"body too large after the object", `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}` + strings.Repeat(" ", 1<<20) + "{}", http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		if code, resp := do(t, "POST", url, c.body); code != c.code || !strings.Contains(resp, `"error"`) {
			t.Errorf("%s: %d %.200s, want %d with an error", c.name, code, resp, c.code)
		}
	}
	if obs.invalid != len(cases) || obs.other != 0 {
		t.Errorf("observed %d invalid and %d other requests, want %d invalid", obs.invalid, obs.other, len(cases))
	}
}

// invalidCounter counts the requests it observes that failed as invalid, and the others.
type invalidCounter struct{ invalid, other int }

func (c *invalidCounter) Observe(_ string, _ time.Time, _ *decide.Request, _ *decide.Result, err error) {
	if errors.Is(err, decide.ErrInvalid) {
		c.invalid++
	} else {
		c.other++
	}
}

// current_limit reports the limit ShouldRateLimit reports: the decision's ceiling (a
// token_bucket's capacity, a gcra's burst), not the rule's refill rate.
func TestDecideReportsTheCeiling(t *testing.T) {
	d := newDeciderFor(t, `
domain: web
descriptors:
  - key: api_key
    rate_limits:
      - {name: bucket, unit: second, requests_per_unit: 1, algorithm: token_bucket, burst: 3}
      - {name: cell, unit: minute, requests_per_unit: 600, algorithm: gcra, burst: 20}
`, decide.Options{})
	url := serveAPI(t, httpapi.New(d, quiet(), nil)) + "/v1/decide"
	code, body := do(t, "POST", url, `{"domain":"web","descriptors":[{"entries":[{"key":"api_key","value":"k"}]}]}`)
	var out struct {
		Statuses []struct {
			CurrentLimit struct {
				Name            string `json:"name"`
				RequestsPerUnit int64  `json:"requests_per_unit"`
			} `json:"current_limit"`
			LimitRemaining int64 `json:"limit_remaining"`
		} `json:"statuses"`
	}
	if err := json.Unmarshal([]byte(body), &out); code != 200 || err != nil || len(out.Statuses) != 1 {
		t.Fatalf("%d %s (%v)", code, body, err)
	}
	// The status is the limit with the least remaining: the bucket, 2 of 3 left.
	if got := out.Statuses[0]; got.CurrentLimit.Name != "bucket" || got.CurrentLimit.RequestsPerUnit != 3 || got.LimitRemaining != 2 {
		t.Errorf("got %s, want the bucket's capacity 3 with 2 remaining", body)
	}
}

func TestDebugConfig(t *testing.T) {
	d := newDecider(t, decide.Options{})
	code, body := do(t, "GET", serveAPI(t, httpapi.New(d, quiet(), nil))+"/debug/config", "")
	var dump struct {
		Hash    string `json:"hash"`
		Domains []struct {
			Domain string `json:"domain"`
			Limits []struct {
				Name string `json:"name"`
			} `json:"limits"`
		} `json:"domains"`
	}
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil {
		t.Fatalf("%d %v %s", code, err, body)
	}
	if dump.Hash != d.Rules().Hash() || len(dump.Domains) != 1 || dump.Domains[0].Domain != "web" ||
		len(dump.Domains[0].Limits) != 2 || dump.Domains[0].Limits[0].Name != "per-ip" {
		t.Fatalf("dump %s", body)
	}
}
