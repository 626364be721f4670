package compat

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// pair is the two services under comparison.
type pair struct {
	ref, ours *server
	tally     tally
}

// attempts bounds how often a sequence is run again because a window rolled under it.
const attempts = 4

// localCacheMaxAge is --local-cache-max-age's default (docs/configuration.md): the
// longest this service trusts a denial it remembers without asking Redis again.
const localCacheMaxAge = time.Second

// sequence sends reqs one after the other to both services, starting from empty Redis
// on both, and compares each pair of answers (comparer). It returns "" when every
// answer matched, else a report of the sequence up to the first mismatch, and our
// overall codes.
//
// window is the shortest window (in seconds) a limit the requests can meet counts
// over. Both services align windows to the Unix epoch on the same host clock, but a
// window that ends mid-sequence would reset one service's counter before the other's;
// so when the clock crosses a window boundary between the start and some step's end
// (both services answered in between), the sequence is run again from empty Redis,
// once this service's local over-limit cache has stopped trusting the denials it
// remembers from the first attempt (in longer windows, which did not roll).
func (p *pair) sequence(t *testing.T, reqs []*rlsv3.RateLimitRequest, window int64) (string, []string) {
	t.Helper()
	p.tally.sequences++
	for range attempts {
		report, codes, rolled := p.try(t, reqs, window)
		if !rolled {
			return report, codes
		}
		p.tally.reruns++
		time.Sleep(localCacheMaxAge + 200*time.Millisecond)
	}
	t.Fatalf("a %d s window rolled during each of %d attempts of one sequence", window, attempts)
	return "", nil
}

func (p *pair) try(t *testing.T, reqs []*rlsv3.RateLimitRequest, window int64) (report string, codes []string, rolled bool) {
	t.Helper()
	start := windowStart(window)
	p.ref.flush(t)
	p.ours.flush(t)
	c := comparer{tally: &p.tally}
	var log []string
	for i, req := range reqs {
		ref, refErr := p.ref.shouldRateLimit(req)
		ours, oursErr := p.ours.shouldRateLimit(req)
		if window > 0 && time.Now().Unix()/window != start {
			return "", nil, true
		}
		if refErr != nil || oursErr != nil {
			t.Fatalf("step %d %s: envoyproxy/ratelimit: %v; ours: %v", i, formatRequest(req), refErr, oursErr)
		}
		log = append(log, fmt.Sprintf("  %2d %s\n     reference: %s\n     ours:      %s",
			i, formatRequest(req), formatResponse(ref), formatResponse(ours)))
		codes = append(codes, ours.GetOverallCode().String())
		if diffs := c.compare(req, ref, ours); len(diffs) > 0 {
			return fmt.Sprintf("step %d differs: %s\n%s", i, strings.Join(diffs, "; "), strings.Join(log, "\n")), codes, false
		}
	}
	return "", codes, false
}

// windowStart waits out the last 300 ms of the current window, so that a sequence
// rarely needs a second attempt, and returns the index of the window it starts in.
func windowStart(window int64) int64 {
	if window == 0 {
		return 0
	}
	now := time.Now()
	end := time.Unix((now.Unix()/window+1)*window, 0)
	if left := end.Sub(now); left < 300*time.Millisecond {
		time.Sleep(left)
	}
	return time.Now().Unix() / window
}

// comparer compares the answers of one sequence, within the differences
// docs/migrating.md documents ("Behaviours that differ"). Until the first denied
// request both services hold the same counts, and every field is compared but those
// below. From a denied request on:
//
//   - envoyproxy/ratelimit charges every descriptor of a denied request, this service
//     none (all or nothing). So in a denied request a descriptor within its limit
//     reports what is left after the charge there and before it here: its
//     limit_remaining is not compared, and the counters differ from then on. For the
//     rest of the sequence only which limit each descriptor met is compared
//     (current_limit, and unmatched versus unlimited), which no counter changes.
//   - envoyproxy/ratelimit also charges a descriptor over its limit. With a cost of 1
//     nothing shows: both report OVER_LIMIT with 0 remaining until the window ends (a
//     shadow_mode limit OK). Another cost does show: a cost of 3 denied there leaves the
//     counter past the limit, where here a cost of 1 still passes, and a check-only
//     descriptor (cost 0) on a key at its limit is OVER_LIMIT there once a denial was
//     charged, OK here. So in a denied request that costs other than 1, the codes are
//     compared up to the first descriptor over its limit (a later one may share its
//     key), and the counters differ from then on.
//
// Never compared: the limit_remaining of an OVER_LIMIT status (always 0 there, what
// could still be admitted here: 0 with a cost of 1), duration_until_reset (whole
// seconds there, milliseconds here) and the response headers.
type comparer struct {
	diverged bool // the counters differ from now on
	tally    *tally
}

// compare returns what differs between the answers to req, ref's and ours, as the
// comparer's doc says.
func (c *comparer) compare(req *rlsv3.RateLimitRequest, ref, ours *rlsv3.RateLimitResponse) []string {
	if len(ref.GetStatuses()) != len(ours.GetStatuses()) {
		return []string{fmt.Sprintf("%d statuses, ours %d", len(ref.GetStatuses()), len(ours.GetStatuses()))}
	}
	var diffs []string
	for i, r := range ref.GetStatuses() {
		diffs = append(diffs, compareMatch(i, r, ours.GetStatuses()[i])...)
	}
	c.tally.count(ref, c.diverged)
	if c.diverged {
		return diffs
	}
	if ref.GetOverallCode() != ours.GetOverallCode() {
		diffs = append(diffs, fmt.Sprintf("overall_code %v, ours %v", ref.GetOverallCode(), ours.GetOverallCode()))
	}
	if ref.GetOverallCode() == rlsv3.RateLimitResponse_OK && ours.GetOverallCode() == rlsv3.RateLimitResponse_OK {
		return append(diffs, c.compareRemaining(ref, ours)...)
	}
	// A denied request where every descriptor costs 1 and is over its limit (or has
	// none) leaves the counters alike: the charges there change nothing visible.
	c.diverged = !costsOne(req) || slices.ContainsFunc(ref.GetStatuses(), func(s *rlsv3.RateLimitResponse_DescriptorStatus) bool {
		return s.GetCurrentLimit() != nil && s.GetCode() == rlsv3.RateLimitResponse_OK
	})
	return append(diffs, compareDeniedCodes(req, ref, ours)...)
}

// compareRemaining compares the limit_remaining of an allowed request's statuses.
func (c *comparer) compareRemaining(ref, ours *rlsv3.RateLimitResponse) []string {
	var diffs []string
	for i, r := range ref.GetStatuses() {
		o := ours.GetStatuses()[i]
		if r.GetCurrentLimit() == nil || isShadow(r) {
			continue // compared by compareMatch
		}
		c.tally.remaining++
		if r.GetCode() != o.GetCode() || r.GetLimitRemaining() != o.GetLimitRemaining() {
			diffs = append(diffs, fmt.Sprintf("status %d: %s, ours %s", i, formatStatus(r), formatStatus(o)))
		}
	}
	return diffs
}

// compareDeniedCodes compares the codes of a denied request's statuses: all of them
// when every descriptor costs 1, else up to the first one over its limit there.
func compareDeniedCodes(req *rlsv3.RateLimitRequest, ref, ours *rlsv3.RateLimitResponse) []string {
	var diffs []string
	for i, r := range ref.GetStatuses() {
		if r.GetCurrentLimit() == nil {
			continue // compared by compareMatch
		}
		if o := ours.GetStatuses()[i]; r.GetCode() != o.GetCode() {
			diffs = append(diffs, fmt.Sprintf("status %d: code %v, ours %v", i, r.GetCode(), o.GetCode()))
		}
		if r.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT && !costsOne(req) {
			break
		}
	}
	return diffs
}

// tally counts what was compared, so that a run shows it met what it is about (limits
// crossed, unlimited and shadow_mode limits, ...) and a generator that stopped
// producing them shows up in the log.
type tally struct {
	requests, reruns                        int
	limited, over, remaining, matchOnly     int // statuses with a limit there: all, OVER_LIMIT, limit_remaining compared, compared only by match
	unlimited, unmatched, shadow, sequences int
}

func (t *tally) String() string {
	return fmt.Sprintf("%d sequences (%d run again after a window roll), %d requests; statuses with a limit: %d "+
		"(%d OVER_LIMIT, %d with limit_remaining compared, %d compared by the limit only after a denial), "+
		"shadow_mode %d, unlimited %d, without a limit %d",
		t.sequences, t.reruns, t.requests, t.limited, t.over, t.remaining, t.matchOnly, t.shadow, t.unlimited, t.unmatched)
}

// count adds one answer of envoyproxy/ratelimit's to the tally.
func (t *tally) count(ref *rlsv3.RateLimitResponse, diverged bool) {
	t.requests++
	for _, s := range ref.GetStatuses() {
		switch {
		case isShadow(s):
			t.shadow++
		case s.GetCurrentLimit() == nil && s.GetLimitRemaining() == math.MaxUint32:
			t.unlimited++
		case s.GetCurrentLimit() == nil:
			t.unmatched++
		case diverged:
			t.limited++
			t.matchOnly++
		default:
			t.limited++
			if s.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
				t.over++
			}
		}
	}
}

// costsOne reports whether every descriptor of req costs 1: a request hits_addend of 0
// or 1, and no descriptor hits_addend other than 1 (0 is a check-only cost).
func costsOne(req *rlsv3.RateLimitRequest) bool {
	if req.GetHitsAddend() > 1 {
		return false
	}
	for _, d := range req.GetDescriptors() {
		if h := d.GetHitsAddend(); h != nil && h.GetValue() != 1 {
			return false
		}
	}
	return true
}

// compareMatch compares what no counter changes: which limit a descriptor met (its
// current_limit), and for one without a limit, whether it was unmatched (OK, 0
// remaining) or unlimited (OK, 2^32-1 remaining). A shadow_mode limit is reported
// there and never here (docs/migrating.md): here its status is the unmatched one.
func compareMatch(i int, r, o *rlsv3.RateLimitResponse_DescriptorStatus) []string {
	rl, ol := r.GetCurrentLimit(), o.GetCurrentLimit()
	switch {
	case isShadow(r):
		if r.GetCode() != rlsv3.RateLimitResponse_OK || ol != nil || o.GetCode() != rlsv3.RateLimitResponse_OK || o.GetLimitRemaining() != 0 {
			return []string{fmt.Sprintf("status %d (shadow_mode): %s, ours %s; want OK from both, with no limit here", i, formatStatus(r), formatStatus(o))}
		}
	case rl == nil && ol == nil:
		if r.GetCode() != o.GetCode() || r.GetLimitRemaining() != o.GetLimitRemaining() {
			return []string{fmt.Sprintf("status %d (no limit): %s, ours %s", i, formatStatus(r), formatStatus(o))}
		}
	case rl == nil || ol == nil:
		return []string{fmt.Sprintf("status %d: current_limit %s, ours %s", i, formatLimit(rl), formatLimit(ol))}
	case rl.GetRequestsPerUnit() != ol.GetRequestsPerUnit() || rl.GetUnit() != ol.GetUnit() || rl.GetName() != ol.GetName():
		return []string{fmt.Sprintf("status %d: current_limit %s, ours %s", i, formatLimit(rl), formatLimit(ol))}
	}
	return nil
}

// isShadow reports whether envoyproxy/ratelimit's status is of a shadow_mode limit:
// the generated ones are named shadowN, the table's shadow-NAME.
func isShadow(s *rlsv3.RateLimitResponse_DescriptorStatus) bool {
	return strings.HasPrefix(s.GetCurrentLimit().GetName(), "shadow")
}

func formatRequest(req *rlsv3.RateLimitRequest) string {
	var b strings.Builder
	b.WriteString(req.GetDomain())
	if h := req.GetHitsAddend(); h != 0 {
		fmt.Fprintf(&b, " hits_addend=%d", h)
	}
	for _, d := range req.GetDescriptors() {
		b.WriteString(" [")
		b.WriteString(formatDescriptor(d))
		b.WriteString("]")
	}
	return b.String()
}

func formatDescriptor(d *ratelimitv3.RateLimitDescriptor) string {
	var parts []string
	for _, e := range d.GetEntries() {
		parts = append(parts, fmt.Sprintf("%s=%q", e.GetKey(), e.GetValue()))
	}
	s := strings.Join(parts, " ")
	if h := d.GetHitsAddend(); h != nil {
		s += fmt.Sprintf(" hits_addend=%d", h.GetValue())
	}
	if l := d.GetLimit(); l != nil {
		s += fmt.Sprintf(" override=%d/%v", l.GetRequestsPerUnit(), l.GetUnit())
	}
	return s
}

func formatResponse(r *rlsv3.RateLimitResponse) string {
	var parts []string
	for _, s := range r.GetStatuses() {
		parts = append(parts, formatStatus(s))
	}
	return fmt.Sprintf("%v %s", r.GetOverallCode(), strings.Join(parts, " "))
}

func formatStatus(s *rlsv3.RateLimitResponse_DescriptorStatus) string {
	rem := fmt.Sprint(s.GetLimitRemaining())
	if s.GetLimitRemaining() == math.MaxUint32 {
		rem = "max"
	}
	return fmt.Sprintf("{%v %s rem=%s}", s.GetCode(), formatLimit(s.GetCurrentLimit()), rem)
}

func formatLimit(l *rlsv3.RateLimitResponse_RateLimit) string {
	if l == nil {
		return "no-limit"
	}
	s := fmt.Sprintf("%d/%v", l.GetRequestsPerUnit(), l.GetUnit())
	if l.GetName() != "" {
		s += " name=" + l.GetName()
	}
	return s
}
