package ratelimitheaders

import (
	"strconv"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
)

// Draft-03 header names, lower case as HTTP/2 carries them.
const (
	HeaderXRateLimitLimit     = "x-ratelimit-limit"
	HeaderXRateLimitRemaining = "x-ratelimit-remaining"
	HeaderXRateLimitReset     = "x-ratelimit-reset"
)

// Draft03Headers renders X-RateLimit-Limit, -Remaining and -Reset
// (draft-polli-ratelimit-headers-03) exactly as Envoy's rate-limit filter renders them
// from a ShouldRateLimit answer with enable_x_ratelimit_headers: DRAFT_VERSION_03, so a
// client sees the same fields whichever door decided:
//
//   - the reported status is the first descriptor status with the lowest
//     limit_remaining among those that carry a limit;
//   - X-RateLimit-Limit is its requests_per_unit followed by one quota policy
//     "<requests_per_unit>;w=<window s>[;name="<name>"]" per status with a limit, in
//     request order;
//   - X-RateLimit-Remaining is its limit_remaining, X-RateLimit-Reset the whole
//     seconds of its duration_until_reset (rounded down, as Envoy does).
//
// The numbers are the ones the RLS door sends (SPEC §6): requests_per_unit is the
// ceiling SPEC §1 reports, clamped to 32 bits like the proto field. nil when no limit
// applied.
func Draft03Headers(res *decide.Result) []Header {
	var top *decide.Status
	for i := range res.Statuses {
		st := &res.Statuses[i]
		if st.Limit == nil {
			continue
		}
		if top == nil || ClampU32(st.Decision.Remaining) < ClampU32(top.Decision.Remaining) {
			top = st
		}
	}
	if top == nil {
		return nil
	}
	var b strings.Builder
	b.WriteString(strconv.FormatUint(uint64(ClampU32(top.Decision.Limit)), 10))
	for i := range res.Statuses {
		st := &res.Statuses[i]
		if st.Limit == nil {
			continue
		}
		w := st.Limit.ReportedWindow().Seconds // the unit times the multiplier, as Envoy 1.40 writes w=
		b.WriteString(", ")
		b.WriteString(strconv.FormatUint(uint64(ClampU32(st.Decision.Limit)), 10))
		b.WriteString(";w=")
		b.WriteString(strconv.FormatInt(w, 10))
		if st.Limit.Name != "" {
			b.WriteString(`;name="`)
			b.WriteString(quotedText(st.Limit.Name))
			b.WriteByte('"')
		}
	}
	reset := max(0, top.Decision.ResetAt-res.Now) / 1000
	return []Header{
		{Name: HeaderXRateLimitLimit, Value: b.String()},
		{Name: HeaderXRateLimitRemaining, Value: strconv.FormatUint(uint64(ClampU32(top.Decision.Remaining)), 10)},
		{Name: HeaderXRateLimitReset, Value: strconv.FormatInt(reset, 10)},
	}
}

// quotedText makes a limit name safe inside a quoted-string: `"` and `\` escaped, and
// control characters (which no header value may carry) replaced by '?'.
func quotedText(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 || r == 0x7f }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
