package ratelimitheaders

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

const renderNow = 5_000_000

// checked is one evaluated fixed_window limit of requestsPerUnit per unit.
func checked(name string, requestsPerUnit, remaining, resetIn, retryAfterMs int64, shadow bool) decide.Checked {
	l := &descriptors.Limit{Name: name, Path: "k_" + name, Unit: "minute", UnitMultiplier: 1, RequestsPerUnit: requestsPerUnit,
		Params: limiter.Params{PeriodMs: 60_000}}
	return decide.Checked{Limit: l, Shadow: shadow, Decision: limiter.Decision{Allowed: retryAfterMs == 0,
		Limit: requestsPerUnit, Remaining: remaining, ResetAt: renderNow + resetIn, RetryAfterMs: retryAfterMs}}
}

// result is a request's answer with one status per group of checked limits; a denial
// waits for denied[0][1] (status, limit).
func result(over bool, wait [2]int, statuses ...[]decide.Checked) *decide.Result {
	res := &decide.Result{OverLimit: over, Now: renderNow}
	for _, cs := range statuses {
		res.Statuses = append(res.Statuses, decide.Status{Checked: cs})
	}
	if over {
		res.WaitFor = &res.Statuses[wait[0]].Checked[wait[1]]
	}
	return res
}

// show lists the rendered headers as name=value, response then request.
func show(r Rendered) string {
	var parts []string
	for _, h := range r.Response {
		parts = append(parts, h.Name+"="+h.Value)
	}
	for _, h := range r.Request {
		parts = append(parts, "upstream "+h.Name+"="+h.Value)
	}
	return strings.Join(parts, " | ")
}

func TestRender(t *testing.T) {
	all := Options{RetryAfter: true, RateLimitHeaders: true, UpstreamRemainingHeader: "x-left"}
	cases := []struct {
		name string
		res  *decide.Result
		o    Options
		want string
	}{
		{"nothing asked", result(true, [2]int{}, []decide.Checked{checked("a", 5, 0, 30_000, 1500, false)}), Options{}, ""},
		{"allowed: no Retry-After, the least remaining, upstream header",
			result(false, [2]int{}, []decide.Checked{checked("a", 10, 7, 30_000, 0, false), checked("b", 5, 2, 59_001, 0, false)}), all,
			`ratelimit-policy="b";q=5;w=60 | ratelimit="b";r=2;t=60 | upstream x-left=2`},
		{"ties go to the first in request order",
			result(false, [2]int{}, []decide.Checked{checked("a", 10, 2, 1, 0, false)}, []decide.Checked{checked("b", 5, 2, 1, 0, false)}), all,
			`ratelimit-policy="a";q=10;w=60 | ratelimit="a";r=2;t=1 | upstream x-left=2`},
		{"shadow limits are never reported",
			result(false, [2]int{}, []decide.Checked{checked("s", 10, 0, 1000, 0, true), checked("e", 10, 9, 1000, 0, false)}), all,
			`ratelimit-policy="e";q=10;w=60 | ratelimit="e";r=9;t=1 | upstream x-left=9`},
		{"only shadow limits: nothing described", result(false, [2]int{}, []decide.Checked{checked("s", 10, 0, 1000, 0, true)}), all, ""},
		{"denied: Retry-After rounds the wait up, t is capped by the wait, no upstream header",
			result(true, [2]int{0, 1}, []decide.Checked{checked("a", 10, 9, 30_000, 0, false), checked("b", 5, 0, 40_000, 1001, false)}), all,
			`retry-after=2 | ratelimit-policy="b";q=5;w=60 | ratelimit="b";r=0;t=2`},
		{"denied: a wait of exactly a second is 1", result(true, [2]int{}, []decide.Checked{checked("a", 5, 0, 1000, 1000, false)}),
			Options{RetryAfter: true}, `retry-after=1`},
		{"denied: a wait of 1 ms is 1", result(true, [2]int{}, []decide.Checked{checked("a", 5, 0, 1, 1, false)}),
			Options{RetryAfter: true}, `retry-after=1`},
		{"a reset in the past reads 0", result(false, [2]int{}, []decide.Checked{checked("a", 5, 4, -500, 0, false)}),
			Options{RateLimitHeaders: true}, `ratelimit-policy="a";q=5;w=60 | ratelimit="a";r=4;t=0`},
		{"an unnamed limit is named by its path", result(false, [2]int{}, []decide.Checked{checked("", 5, 4, 1000, 0, false)}),
			Options{RateLimitHeaders: true}, `ratelimit-policy="k_";q=5;w=60 | ratelimit="k_";r=4;t=1`},
	}
	for _, tc := range cases {
		if got := show(Render(tc.res, &tc.o)); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

// A quota descriptor over its limit in an allowed request did not limit it: none of
// its limits is described, though it has the least remaining.
func TestRenderSkipsQuotaDescriptorsOverTheirLimit(t *testing.T) {
	res := result(false, [2]int{}, []decide.Checked{checked("quota", 5, 0, 1000, 0, false)}, []decide.Checked{checked("ip", 10, 6, 1000, 0, false)})
	res.Statuses[0].OverLimit = true
	if got := show(Render(res, &Options{RateLimitHeaders: true})); got != `ratelimit-policy="ip";q=10;w=60 | ratelimit="ip";r=6;t=1` {
		t.Errorf("got %s, want the ip limit described", got)
	}
}

// Jitter is added to the exact wait before rounding up: never earlier than the wait,
// at most the jitter later.
func TestRetryAfterJitter(t *testing.T) {
	res := result(true, [2]int{}, []decide.Checked{checked("a", 5, 0, 60_000, 1500, false)})
	for _, c := range []struct {
		draw int64
		want string
	}{{0, "2"}, {500, "2"}, {501, "3"}, {2000, "4"}} {
		var asked int64
		o := Options{RetryAfter: true, RetryAfterJitter: 2 * time.Second, Rand: func(n int64) int64 { asked = n; return c.draw }}
		if got := show(Render(res, &o)); got != "retry-after="+c.want {
			t.Errorf("a wait of 1500 ms, jitter draw %d: %s, want retry-after=%s", c.draw, got, c.want)
		}
		if asked != 2001 {
			t.Errorf("jitter drawn from [0, %d), want [0, 2001): 0 to 2000 ms inclusive", asked)
		}
	}
}

// The problem+json body names the limit waited for and every enforced limit that
// denied, once each, and says how long to wait.
func TestProblemBody(t *testing.T) {
	res := result(true, [2]int{1, 0},
		[]decide.Checked{checked("a", 5, 0, 30_000, 1000, false), checked("s", 5, 0, 30_000, 9000, true)},
		[]decide.Checked{checked("b", 1, 0, 30_000, 2500, false)},
		[]decide.Checked{checked("a", 5, 0, 30_000, 1000, false)})
	r := Render(res, &Options{ProblemDetails: true})
	if show(r) != "content-type=application/problem+json" {
		t.Fatalf("headers %s", show(r))
	}
	var p map[string]any
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(p["type"], "|", p["status"], "|", p["limit"], "|", p["retry_after"], "|", p["violated-policies"], "|", p["detail"])
	want := ProblemType + `|429|b|3|[a b]|Rate limit "b" allows 1 request per minute; retry after 3 seconds.`
	if got != want {
		t.Errorf("body %s\n got %s\nwant %s", r.Body, got, want)
	}
	if r := Render(result(false, [2]int{}, []decide.Checked{checked("a", 5, 1, 1, 0, false)}), &Options{ProblemDetails: true}); r.Body != nil || len(r.Response) != 0 {
		t.Errorf("an allowed request got a problem body: %s %s", r.Body, show(r))
	}
}

func TestStructuredFieldValues(t *testing.T) {
	for in, want := range map[string]string{`plain`: `"plain"`, `a"b\c`: `"a\"b\\c"`, "tab\there": `"tab?here"`, "é": `"??"`} {
		if got := sfString(in); got != want {
			t.Errorf("sfString(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[int64]string{-5: "0", 0: "0", 42: "42", 1 << 62: "999999999999999"} {
		if got := sfInt(in); got != want {
			t.Errorf("sfInt(%d) = %s, want %s", in, got, want)
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string // substring of the error; "" = valid
	}{
		{Options{RetryAfterJitter: time.Hour, UpstreamRemainingHeader: "X-RateLimit-Left"}, ""},
		{Options{RetryAfterJitter: -time.Millisecond}, "jitter"},
		{Options{RetryAfterJitter: time.Hour + time.Millisecond}, "jitter"},
		{Options{UpstreamRemainingHeader: "Host"}, "framing or routing"},
		{Options{UpstreamRemainingHeader: "x left"}, "not allowed"},
		{Options{UpstreamRemainingHeader: strings.Repeat("x", 129)}, "128 bytes"},
	} {
		err := c.o.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.o, err, c.want)
		}
		if c.want == "" && c.o.UpstreamRemainingHeader != "x-ratelimit-left" {
			t.Errorf("the upstream header kept as %q, want it lower-cased", c.o.UpstreamRemainingHeader)
		}
	}
}
