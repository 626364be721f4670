package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
)

// decideAnswer is /v1/decide's answer, as far as these tests read it.
type decideAnswer struct {
	OverallCode string `json:"overall_code"`
	Statuses    []struct {
		Code         string `json:"code"`
		CurrentLimit *struct {
			Name            string `json:"name"`
			RequestsPerUnit int64  `json:"requests_per_unit"`
			Unit            string `json:"unit"`
			UnitMultiplier  int64  `json:"unit_multiplier"`
		} `json:"current_limit"`
		LimitRemaining int64 `json:"limit_remaining"`
	} `json:"statuses"`
}

// postDecide posts body to url and decodes a 200 answer.
func postDecide(t *testing.T, url, body string) decideAnswer {
	t.Helper()
	code, resp := do(t, "POST", url, body)
	var out decideAnswer
	if err := json.Unmarshal([]byte(resp), &out); code != http.StatusOK || err != nil {
		t.Fatalf("POST %s: %d %s (%v)", body, code, resp, err)
	}
	return out
}

// Each status says whether its own descriptor is over its limit: the used-up one is
// OVER_LIMIT, the unlimited one beside it in the same request OK.
func TestDecideStatusCodesArePerDescriptor(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	req := `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.3"}]},{"entries":[{"key":"internal","value":"y"}]}]}`
	for i, want := range []string{"OK", "OK", "OVER_LIMIT"} { // per-ip allows 2 an hour
		out := postDecide(t, url, req)
		if len(out.Statuses) != 2 || out.OverallCode != want || out.Statuses[0].Code != want || out.Statuses[1].Code != "OK" {
			t.Fatalf("request %d: %+v, want overall and per-ip %s, the unlimited descriptor OK", i+1, out, want)
		}
	}
}

// The request's hits_addend is the cost of each descriptor without its own, as in
// ShouldRateLimit: 2 uses up per-ip's 2 an hour at once.
func TestDecideChargesTheRequestsHitsAddend(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	out := postDecide(t, url, `{"domain":"web","hits_addend":2,"descriptors":[{"entries":[{"key":"ip","value":"10.0.0.4"}]}]}`)
	if out.OverallCode != "OK" || out.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("hits_addend 2 of 2 an hour: %+v, want OK with 0 left", out)
	}
	out = postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.4"}]}]}`)
	if out.OverallCode != "OVER_LIMIT" {
		t.Fatalf("a request after hits_addend 2 of 2 an hour: %+v, want OVER_LIMIT", out)
	}
}

// current_limit states its ceiling over the window that ceiling stands for, as
// ShouldRateLimit does (descriptors.Limit.ReportedWindow): a gcra rule of 600 a minute
// with a burst of 20 is 20 per 2 seconds, not 20 per minute.
func TestDecideReportsTheCeilingsWindow(t *testing.T) {
	d := newDeciderFor(t, `
domain: web
descriptors:
  - key: api_key
    rate_limit: {name: cell, unit: minute, requests_per_unit: 600, algorithm: gcra, burst: 20}
`, decide.Options{})
	url := serveAPI(t, httpapi.New(d, quiet(), nil)) + "/v1/decide"
	out := postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"api_key","value":"k"}]}]}`)
	if cl := out.Statuses[0].CurrentLimit; cl == nil || cl.RequestsPerUnit != 20 || cl.Unit != "second" || cl.UnitMultiplier != 2 {
		t.Errorf("current_limit %+v, want 20 per second × 2", cl)
	}
}

// failingEngine is a store that never answers.
type failingEngine struct{}

var errNoStore = errors.New("store unreachable")

func (failingEngine) Evaluate(context.Context, int64, []limiter.LimitCheck, []limiter.Decision) (limiter.Outcome, error) {
	return limiter.Outcome{}, errNoStore
}

func (failingEngine) Close() error { return nil }

// A store that fails is 503 Service Unavailable with the error, not a server fault (500)
// nor the caller's (400).
func TestDecideStoreFailureIsServiceUnavailable(t *testing.T) {
	rs, err := descriptors.Parse("web.yaml", []byte(rules))
	if err != nil {
		t.Fatal(err)
	}
	url := serveAPI(t, httpapi.New(decide.New(rs, failingEngine{}, decide.Options{Keys: storekey.New("h:", 0)}), quiet(), nil)) + "/v1/decide"
	code, body := do(t, "POST", url, `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.5"}]}]}`)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, errNoStore.Error()) {
		t.Errorf("a failing store: %d %s, want 503 with %q", code, body, errNoStore)
	}
}

// A limit above 2^32−1 (rules allow it) is reported as ShouldRateLimit's uint32 fields
// carry it: requests_per_unit and limit_remaining at most 4294967295.
func TestDecideReportsNumbersAsShouldRateLimit(t *testing.T) {
	const big = `
domain: web
descriptors:
  - key: bulk
    rate_limit: {unit: hour, requests_per_unit: 4294967296}
`
	url := serveAPI(t, httpapi.New(newDeciderFor(t, big, decide.Options{}), quiet(), nil)) + "/v1/decide"
	out := postDecide(t, url, `{"domain":"web","descriptors":[{"entries":[{"key":"bulk","value":"x"}]}]}`)
	if len(out.Statuses) != 1 || out.Statuses[0].CurrentLimit == nil {
		t.Fatalf("answer %+v: want one status with a limit", out)
	}
	if s := out.Statuses[0]; s.CurrentLimit.RequestsPerUnit != 4294967295 || s.LimitRemaining != 4294967295 {
		t.Errorf("requests_per_unit %d, limit_remaining %d: want both 4294967295, as ShouldRateLimit reports",
			s.CurrentLimit.RequestsPerUnit, s.LimitRemaining)
	}
}

// A domain the rules do not define is answered OK, as ShouldRateLimit answers it, and
// says so: a misspelt domain must not look like a request within its limits.
func TestDecideSaysTheDomainIsUnknown(t *testing.T) {
	url := serveAPI(t, httpapi.New(newDecider(t, decide.Options{}), quiet(), nil)) + "/v1/decide"
	for _, tc := range []struct {
		domain  string
		unknown bool
	}{{"wbe", true}, {"web", false}} {
		code, body := do(t, "POST", url, `{"domain":"`+tc.domain+`","descriptors":[{"entries":[{"key":"ip","value":"10.0.0.9"}]}]}`)
		var out struct {
			OverallCode   string `json:"overall_code"`
			UnknownDomain bool   `json:"unknown_domain"`
		}
		if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %s (%v)", tc.domain, code, body, err)
		}
		if out.OverallCode != "OK" || out.UnknownDomain != tc.unknown {
			t.Errorf("domain %q: %s; want OK with unknown_domain %v", tc.domain, body, tc.unknown)
		}
	}
}
