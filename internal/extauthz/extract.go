package extauthz

import (
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/utf8codec"
)

// Skipped says why one configured descriptor was not built for a request (for debug
// logs). Skipping is normal: it is how a descriptor applies to some requests only.
type Skipped struct {
	Field  string // e.g. "ext_authz.descriptors[1]"
	Reason string
}

// Extract builds the request descriptors of spec from a check's attributes, in spec
// order. A descriptor whose condition does not hold, or one of whose entries cannot be
// built (missing header, failed match, no usable address, malformed cost), is left out;
// it is never an error. With explain (debug logging on) it is reported in skipped;
// without, skipped is nil and no reason is built, since most checks skip most
// descriptors. attrs may be nil or partly empty. A cost above --max-hits-addend is
// passed on: the decider counts it as the bound (decide.Decider.cost).
func Extract(spec *descriptors.ExtAuthz, attrs *authv3.AttributeContext, explain bool) (out []decide.Descriptor, skipped []Skipped) {
	if spec == nil {
		return nil, nil
	}
	r := newRequest(attrs)
	r.explain = explain
	for i := range spec.Descriptors {
		d := &spec.Descriptors[i]
		desc, reason := r.build(d)
		if reason != "" {
			if explain {
				skipped = append(skipped, Skipped{Field: d.Field, Reason: reason})
			}
			continue
		}
		out = append(out, desc)
	}
	return out, skipped
}

// request is the read-only view of one CheckRequest that extraction works on.
type request struct {
	attrs   *authv3.AttributeContext
	http    *authv3.AttributeContext_HttpRequest
	headers map[string]string
	joined  map[string]string // header_map only: every line of a repeated header, joined
	path    string            // without query string and fragment
	explain bool              // build skip reasons (see why)
}

func newRequest(attrs *authv3.AttributeContext) *request {
	r := &request{attrs: attrs, http: attrs.GetRequest().GetHttp()}
	r.headers = r.http.GetHeaders()
	if len(r.headers) == 0 {
		// encode_raw_headers: true sends header_map instead, a repeated header once per
		// line. An entry's value is the first line, as in Envoy's request_headers
		// action: joining them as the headers map does would let a client that adds a
		// second x-api-key line count under a fresh value while the upstream reads the
		// first. Conditions see every line joined with ",", as Envoy's header matchers
		// do (allLines). Invalid UTF-8 becomes '!', as Envoy does for the headers map
		// (descriptor values must be UTF-8).
		// The lines of a repeated header are collected and joined once: appending each
		// to the joined value so far would copy it again for every line, quadratic in a
		// check of many lines.
		if hm := r.http.GetHeaderMap().GetHeaders(); len(hm) > 0 {
			r.headers = make(map[string]string, len(hm))
			var lines map[string][]string // of the repeated headers only
			for _, h := range hm {
				k := strings.ToLower(h.GetKey())
				v := string(h.GetRawValue())
				if v == "" {
					v = h.GetValue()
				}
				v = utf8codec.Sanitize(v)
				first, seen := r.headers[k]
				switch {
				case !seen:
					r.headers[k] = v
				case lines == nil:
					lines = map[string][]string{k: {first, v}}
				default:
					ls := lines[k]
					if ls == nil {
						ls = []string{first}
					}
					lines[k] = append(ls, v)
				}
			}
			if lines != nil {
				r.joined = make(map[string]string, len(lines))
				for k, ls := range lines {
					r.joined[k] = strings.Join(ls, ",")
				}
			}
		}
	}
	p, _ := r.header(":path")
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	r.path = p
	return r
}

// header returns a request header by lower-case name. The pseudo-headers fall back to
// the HttpRequest fields Envoy also fills (method, path, host, scheme), and "host" is
// ":authority" (Envoy turns an HTTP/1 Host header into :authority).
func (r *request) header(name string) (string, bool) {
	if v, ok := r.headers[name]; ok {
		return v, true
	}
	var v string
	switch name {
	case ":method":
		v = r.http.GetMethod()
	case ":path":
		v = r.http.GetPath()
	case ":authority", "host":
		if v, ok := r.headers[":authority"]; ok {
			return v, true
		}
		v = r.http.GetHost()
	case ":scheme":
		v = r.http.GetScheme()
	}
	return v, v != ""
}

// allLines returns a header with every line joined by ",", as Envoy's header matchers
// and the headers map read a repeated header; header returns its first line.
func (r *request) allLines(name string) (string, bool) {
	if v, ok := r.joined[name]; ok {
		return v, true
	}
	return r.header(name)
}

// why is a skip reason: f's text when the request explains its skips, else a
// placeholder that only says "skipped" (any non-empty reason skips), so that f's
// concatenations run only for debug logs.
func (r *request) why(f func() string) string {
	if r.explain {
		return f()
	}
	return "skipped"
}

// build returns the descriptor d builds for the request, or the reason it is skipped.
func (r *request) build(d *descriptors.ExtAuthzDescriptor) (decide.Descriptor, string) {
	var out decide.Descriptor
	if reason := r.holds(&d.When); reason != "" {
		return out, reason
	}
	for i := range d.Entries {
		s := &d.Entries[i]
		v, ok, reason := r.value(s)
		switch {
		case reason != "":
			return out, r.why(func() string { return string(s.Kind) + ": " + reason })
		case !ok:
			continue // skip_if_absent
		}
		if out.Entries == nil { // allocated at the first kept entry: most descriptors skip before
			out.Entries = make([]descriptors.Entry, 0, len(d.Entries)-i)
		}
		out.Entries = append(out.Entries, descriptors.Entry{Key: s.DescriptorKey, Value: v})
	}
	if len(out.Entries) == 0 {
		return out, "every entry was absent"
	}
	if d.Cost != nil {
		q, reason := r.cost(d.Cost)
		if reason != "" {
			return out, r.why(func() string { return "hits_addend: " + reason })
		}
		out.Cost = new(uint64) // not &q, which would put q on the heap before the check
		*out.Cost = q
	}
	return out, ""
}

// holds checks a descriptor's condition; "" when it holds.
func (r *request) holds(c *descriptors.Condition) string {
	if c.Path != nil && !c.Path.Match(r.path) {
		return r.why(func() string { return "when.path: " + c.Path.String() + " does not match" })
	}
	for i := range c.Headers {
		h := &c.Headers[i]
		if v, ok := r.allLines(h.Name); !h.Match(v, ok) {
			return r.why(func() string { return "when.headers: " + h.String() + " does not hold" })
		}
	}
	return ""
}

// value computes one entry's value. ok is false (with no reason) when a skip_if_absent
// header is missing; a non-empty reason drops the whole descriptor.
func (r *request) value(s *descriptors.Source) (v string, ok bool, reason string) {
	switch s.Kind {
	case descriptors.SourceRemoteAddress:
		a, reason := r.remoteAddress(s)
		if reason != "" {
			return "", false, reason
		}
		return a.String(), true, ""
	case descriptors.SourceMaskedRemoteAddress:
		return r.maskedRemoteAddress(s)
	case descriptors.SourceRequestHeaders:
		v, ok := r.header(s.Header)
		switch {
		case ok:
			return v, true, ""
		case s.SkipIfAbsent:
			return "", false, ""
		}
		return "", false, r.why(func() string { return "header " + s.Header + " is missing" })
	case descriptors.SourceGenericKey:
		return s.DescriptorValue, true, ""
	case descriptors.SourceHeaderValueMatch:
		return r.headerValueMatch(s)
	case descriptors.SourcePath:
		return r.pathValue(s)
	case descriptors.SourceMethod:
		return r.nonEmpty(":method", "no request method")
	case descriptors.SourceHost:
		return r.nonEmpty(":authority", "no host (:authority)")
	case descriptors.SourcePrincipal:
		if p := r.attrs.GetSource().GetPrincipal(); p != "" {
			return p, true, ""
		}
		return "", false, "no peer principal (the connection is not mTLS)"
	case descriptors.SourceContextExtension:
		if v, ok := r.attrs.GetContextExtensions()[s.Key]; ok {
			return v, true, ""
		}
		return "", false, r.why(func() string { return "context extension " + strconv.Quote(s.Key) + " is not set" })
	}
	return "", false, r.why(func() string { return "unknown source " + string(s.Kind) })
}

// maskedRemoteAddress is the client address masked to the source's prefix length for
// its family.
func (r *request) maskedRemoteAddress(s *descriptors.Source) (string, bool, string) {
	a, reason := r.remoteAddress(s)
	if reason != "" {
		return "", false, reason
	}
	bits := s.V4Prefix
	if a.Is6() {
		bits = s.V6Prefix
	}
	p, err := a.Prefix(bits)
	if err != nil { // cannot happen: bits are validated against the family
		return "", false, err.Error()
	}
	return p.String(), true, ""
}

// headerValueMatch is the source's value when every header matcher matches (or, with
// expect_match false, when not all do).
func (r *request) headerValueMatch(s *descriptors.Source) (string, bool, string) {
	matched := true
	for i := range s.Headers {
		h := &s.Headers[i]
		if v, ok := r.allLines(h.Name); !h.Match(v, ok) {
			matched = false
			break
		}
	}
	if matched != s.ExpectMatch {
		return "", false, "headers do not match as expected"
	}
	return s.DescriptorValue, true, ""
}

// pathValue is the request path (or the source's value), if the path matches.
func (r *request) pathValue(s *descriptors.Source) (string, bool, string) {
	switch {
	case r.path == "":
		return "", false, "no request path"
	case s.Match != nil && !s.Match.Match(r.path):
		return "", false, r.why(func() string { return s.Match.String() + " does not match" })
	case s.DescriptorValue != "":
		return s.DescriptorValue, true, ""
	}
	return r.path, true, ""
}

func (r *request) nonEmpty(header, reason string) (string, bool, string) {
	if v, ok := r.header(header); ok && v != "" {
		return v, true, ""
	}
	return "", false, reason
}

// remoteAddress is the client address as Envoy's remote_address rate-limit action
// would see it. Without xff_num_trusted_hops it is the connection's source address,
// which is what Envoy puts into the check. With it, the address is taken from
// X-Forwarded-For: by the time Envoy calls the authorization service its connection
// manager has already appended the peer (use_remote_address: true), or trusts the
// header as is (false), so in both cases the client Envoy's own action would use is
// the entry N from the right (N = the connection manager's xff_num_trusted_hops, 0 =
// the last entry). When that entry is missing or is not an IP address, Envoy falls
// back to the connection's address, and so does this.
func (r *request) remoteAddress(s *descriptors.Source) (netip.Addr, string) {
	if s.UseXFF {
		if xff, ok := r.allLines("x-forwarded-for"); ok { // a list: every line counts
			parts := strings.Split(xff, ",")
			if i := len(parts) - 1 - s.XFFTrustedHops; i >= 0 {
				if a, err := netip.ParseAddr(strings.TrimSpace(parts[i])); err == nil {
					return a.WithZone(""), ""
				}
			}
		}
	}
	sa := r.attrs.GetSource().GetAddress().GetSocketAddress()
	if sa == nil {
		return netip.Addr{}, "no source IP address"
	}
	a, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.Addr{}, r.why(func() string { return "source address " + strconv.Quote(sa.GetAddress()) + " is not an IP address" })
	}
	return a.WithZone(""), ""
}

// cost reads a descriptor's hits_addend.
func (r *request) cost(c *descriptors.Cost) (uint64, string) {
	if c.Header == "" {
		return uint64(c.Number), "" // validated at load: 0 to 2^32-1
	}
	v, ok := r.header(c.Header)
	if !ok {
		return 0, r.why(func() string { return "header " + c.Header + " is missing" })
	}
	q, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if errors.Is(err, strconv.ErrRange) && allDigits(strings.TrimSpace(v)) {
		q, err = math.MaxUint64, nil // digits past 2^64-1: a cost above any bound, not a malformed one
	}
	if err != nil {
		return 0, r.why(func() string { return "header " + c.Header + " is not a non-negative integer" })
	}
	return q, ""
}

func allDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
