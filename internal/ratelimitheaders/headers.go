// Package ratelimitheaders renders what a client is told about a decision, the same
// whichever door decided: Retry-After, the IETF RateLimit and RateLimit-Policy fields,
// the problem+json body of a denial, the remaining-quota header for the upstream, and
// the X-RateLimit-* fields (draft 03) as Envoy renders them from a ShouldRateLimit
// answer. The RLS door (internal/rls) sends them in response_headers_to_add, the
// ext_authz door (internal/extauthz) in its check response.
package ratelimitheaders

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

// Header names, lower case as HTTP/2 carries them.
const (
	HeaderRetryAfter      = "retry-after"
	HeaderRateLimit       = "ratelimit"
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderContentType     = "content-type"
	// ProblemContentType is the media type of the RFC 9457 body.
	ProblemContentType = "application/problem+json"
	// ProblemType is the problem type draft-ietf-httpapi-ratelimit-headers-11 §5.1
	// defines for a request that exceeds a quota policy.
	ProblemType = "https://iana.org/assignments/http-problem-types#quota-exceeded"
)

// MaxJitter bounds RetryAfterJitter (--retry-after-jitter): a larger spread would only
// be a longer wait.
const MaxJitter = time.Hour

// sfIntegerMax is the largest Integer a structured field can carry (RFC 9651 §3.3.1).
const sfIntegerMax = 999_999_999_999_999

// Options switches what a decision adds to Envoy's responses and requests (SPEC §6).
// The zero value adds nothing; the server's defaults turn on RetryAfter only.
type Options struct {
	// RetryAfter adds Retry-After = ⌈(retryAfterMs + jitter)/1000⌉ s to OVER_LIMIT answers.
	RetryAfter bool
	// RetryAfterJitter, when positive, adds a uniform random 0..RetryAfterJitter (whole
	// milliseconds) to the exact wait before rounding up, so a denied crowd does not come
	// back in the same second. It never makes Retry-After earlier than the exact wait.
	RetryAfterJitter time.Duration
	// RateLimitHeaders adds the IETF RateLimit and RateLimit-Policy fields
	// (draft-ietf-httpapi-ratelimit-headers-11) for the request's most restrictive limit,
	// on OK and OVER_LIMIT answers.
	RateLimitHeaders bool
	// ProblemDetails sets an RFC 9457 application/problem+json raw_body (and the
	// content-type response header) on OVER_LIMIT answers.
	ProblemDetails bool
	// UpstreamRemainingHeader, when not empty, names a request header added (on OK
	// answers) for the upstream with the remaining quota of the most restrictive limit.
	UpstreamRemainingHeader string
	// DynamicMetadata sets the dynamic_metadata of ShouldRateLimit's answers as
	// envoyproxy/ratelimit does with RESPONSE_DYNAMIC_METADATA=true (metadata.go): the
	// request's descriptors, quota_mode violations and the rules' metadata of the
	// descriptors within their limits. The ext_authz door ignores it.
	DynamicMetadata bool
	// Rand returns a uniform random integer in [0, n); nil uses math/rand/v2 (tests
	// inject a fixed source).
	Rand func(n int64) int64
}

// Validate checks the options and lower-cases the upstream header name.
func (o *Options) Validate() error {
	if o.RetryAfterJitter < 0 || o.RetryAfterJitter > MaxJitter {
		return fmt.Errorf("retry-after jitter %v: want 0 to %v", o.RetryAfterJitter, MaxJitter)
	}
	if h := o.UpstreamRemainingHeader; h != "" {
		if err := validHeaderName(h); err != nil {
			return fmt.Errorf("upstream header %q: %w", h, err)
		}
		o.UpstreamRemainingHeader = strings.ToLower(h)
	}
	return nil
}

// reservedHeaders may not be set on the upstream request: they frame or route it.
var reservedHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
	"upgrade": true, "te": true, "keep-alive": true, "proxy-connection": true,
}

// validHeaderName accepts an RFC 9110 token that is not a framing or routing header.
func validHeaderName(h string) error {
	if len(h) > 128 {
		return errors.New("longer than 128 bytes")
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return fmt.Errorf("byte %q is not allowed in a header name (want letters, digits and !#$%%&'*+-.^_`|~)", c)
		}
	}
	if reservedHeaders[strings.ToLower(h)] {
		return errors.New("a framing or routing header cannot be set")
	}
	return nil
}

// Header is one HTTP header to add.
type Header struct{ Name, Value string }

// Rendered is what one decision adds around Envoy's answer: response headers (to the
// client), request headers (to the upstream, on OK only) and, on OVER_LIMIT, a body.
type Rendered struct {
	Response []Header
	Request  []Header
	Body     []byte
}

// Render computes the headers and body Options ask for res (SPEC §6). Transport
// neutral: ShouldRateLimit maps it onto the RLS proto, other doors may reuse it.
func Render(res *decide.Result, o *Options) Rendered {
	var out Rendered
	var top *decide.Checked
	if o.RateLimitHeaders || o.ProblemDetails || o.UpstreamRemainingHeader != "" {
		top = mostRestrictive(res) // only these describe one limit; Retry-After does not
	}
	var retrySec int64
	if res.OverLimit {
		retrySec = o.retryAfterSeconds(res.RetryAfterMs())
		if o.RetryAfter {
			out.Response = append(out.Response, Header{HeaderRetryAfter, strconv.FormatInt(retrySec, 10)})
		}
	}
	if o.RateLimitHeaders && top != nil {
		policy, limit := rateLimitFields(top, res.Now)
		out.Response = append(out.Response, Header{HeaderRateLimitPolicy, policy}, Header{HeaderRateLimit, limit})
	}
	if o.ProblemDetails && res.OverLimit && top != nil {
		out.Body = problemBody(res, top, retrySec)
		out.Response = append(out.Response, Header{HeaderContentType, ProblemContentType})
	}
	if o.UpstreamRemainingHeader != "" && !res.OverLimit && top != nil {
		out.Request = append(out.Request, Header{o.UpstreamRemainingHeader, strconv.FormatInt(top.Decision.Remaining, 10)})
	}
	return out
}

// retryAfterSeconds is ⌈(ms + jitter)/1000⌉ with jitter uniform in [0, RetryAfterJitter]
// whole milliseconds: never earlier than the exact wait ⌈ms/1000⌉.
func (o *Options) retryAfterSeconds(ms int64) int64 {
	if j := o.RetryAfterJitter.Milliseconds(); j > 0 {
		rnd := o.Rand
		if rnd == nil {
			rnd = rand.Int64N
		}
		ms += rnd(j + 1)
	}
	return RetryAfterSeconds(ms)
}

// mostRestrictive picks the enforced limit a request's headers describe: on a denial,
// the limit whose wait Retry-After reports; on an allowed request, the one with the
// least remaining among the limits that constrain it. Ties go to the first in request
// order. Shadow-mode limits are never reported. nil when no enforced limit applied (no
// match, unlimited, or everything in shadow mode).
//
// quota_mode (decide/quota.go) shapes both: in an allowed request a quota descriptor
// over its limit did not limit it (its status says OVER_LIMIT, its limits were not in
// force), so none of its limits is reported, or the headers would show nothing left of
// a quota the request did not need. A denial describes the limit the request waits
// for (decide's WaitFor: the denying limit outside quota mode with the longest wait,
// and, when every quota descriptor is over, the later of that and the first quota
// descriptor to come back).
func mostRestrictive(res *decide.Result) *decide.Checked {
	if res.OverLimit {
		return res.WaitFor
	}
	var top *decide.Checked
	for i := range res.Statuses {
		if res.Statuses[i].OverLimit {
			continue // a quota descriptor over its limit, in an allowed request
		}
		for j := range res.Statuses[i].Checked {
			c := &res.Statuses[i].Checked[j]
			if !c.Shadow && (top == nil || c.Decision.Remaining < top.Decision.Remaining) {
				top = c
			}
		}
	}
	return top
}

// rateLimitFields renders RateLimit-Policy and RateLimit for one limit decided at now
// (draft-ietf-httpapi-ratelimit-headers-11 §3 and §4):
//
//	RateLimit-Policy: "<name>";q=<limit>;w=<window s>
//	RateLimit:        "<name>";r=<remaining>;t=<s>
//
// q is the ceiling SPEC §1 reports (burst for gcra, capacity for token_bucket, the
// window quota otherwise), w the window it stands for in seconds
// (Limit.ReportedWindow), r the remaining units. t is ⌈(resetAt − now)/1000⌉ on an
// allowed decision; on a denied one it is capped by the wait,
// ⌈min(resetAt − now, retryAfterMs)/1000⌉, so Retry-After (which is at least the wait,
// rounded up) never points before the end of the effective window (draft §6).
func rateLimitFields(c *decide.Checked, now int64) (policy, limit string) {
	name := sfString(c.Limit.Label())
	d := c.Decision
	window := c.Limit.ReportedWindow().Seconds
	untilMs := max(0, d.ResetAt-now)
	if !d.Allowed {
		untilMs = min(untilMs, d.RetryAfterMs)
	}
	policy = name + ";q=" + sfInt(d.Limit) + ";w=" + sfInt(window)
	limit = name + ";r=" + sfInt(d.Remaining) + ";t=" + sfInt(ceilDiv(untilMs, 1000))
	return policy, limit
}

// problem is the RFC 9457 body of an OVER_LIMIT answer. violated-policies is the
// extension member draft-ietf-httpapi-ratelimit-headers-11 §5.1 defines for its
// quota-exceeded type; limit and retry_after are ours.
type problem struct {
	Type             string   `json:"type"`
	Title            string   `json:"title"`
	Status           int      `json:"status"`
	Detail           string   `json:"detail"`
	ViolatedPolicies []string `json:"violated-policies"`
	Limit            string   `json:"limit"`
	RetryAfter       int64    `json:"retry_after"`
}

func problemBody(res *decide.Result, top *decide.Checked, retrySec int64) []byte {
	p := problem{
		Type:       ProblemType,
		Title:      "Rate limit exceeded",
		Status:     429,
		Limit:      top.Limit.Label(),
		RetryAfter: retrySec,
	}
	seen := map[string]bool{}
	for i := range res.Statuses {
		for _, c := range res.Statuses[i].Checked {
			if name := c.Limit.Label(); !c.Shadow && !c.Decision.Allowed && !seen[name] {
				seen[name] = true
				p.ViolatedPolicies = append(p.ViolatedPolicies, name)
			}
		}
	}
	l := top.Limit
	p.Detail = fmt.Sprintf("Rate limit %q allows %s; retry after %s.",
		p.Limit, rateText(l.RequestsPerUnit, l.UnitMultiplier, l.Unit), plural(retrySec, "second"))
	b, err := json.Marshal(p)
	if err != nil { // cannot happen: strings and integers only
		return nil
	}
	return b
}

// rateText reads "5 requests per minute" or "10 requests per 5 minutes".
func rateText(n, mult int64, unit string) string {
	if mult <= 1 {
		return fmt.Sprintf("%s per %s", plural(n, "request"), unit)
	}
	return fmt.Sprintf("%s per %d %ss", plural(n, "request"), mult, unit)
}

func plural(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.FormatInt(n, 10) + " " + word + "s"
}

// sfString renders an RFC 9651 String: printable ASCII with `"` and `\` escaped;
// other bytes (control characters, UTF-8) become '?', which a String cannot carry.
func sfString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20 || c > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// sfInt renders an RFC 9651 Integer, clamped to its range [0, 10^15 − 1] here (every
// value we send is non-negative).
func sfInt(v int64) string { return strconv.FormatInt(min(max(v, 0), sfIntegerMax), 10) }

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// ClampU32 is v as Envoy's uint32 proto fields carry it: below 0 is 0, above is the max.
func ClampU32(v int64) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}

// RetryAfterSeconds rounds a wait up to whole seconds: a client that honours it is never early.
func RetryAfterSeconds(ms int64) int64 { return (ms + 999) / 1000 }
