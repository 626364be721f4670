package loadgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/encoding/protowire"
)

// Method is the full gRPC method name of Envoy's rate-limit call.
const Method = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

// Field numbers of envoy.service.ratelimit.v3 and envoy.extensions.common.ratelimit.v3
// that the generator writes and reads. Requests are encoded by hand into a reused
// buffer so that the generator spends its CPU on the wire, not on building messages;
// wire_test.go checks the bytes against the generated proto types.
const (
	fieldRequestDomain      = 1 // RateLimitRequest.domain
	fieldRequestDescriptors = 2 // RateLimitRequest.descriptors
	fieldRequestHitsAddend  = 3 // RateLimitRequest.hits_addend (uint32)
	fieldDescriptorEntries  = 1 // RateLimitDescriptor.entries
	fieldEntryKey           = 1 // Entry.key
	fieldEntryValue         = 2 // Entry.value
	fieldResponseCode       = 1 // RateLimitResponse.overall_code
	fieldResponseStatuses   = 2 // RateLimitResponse.statuses
	fieldStatusCurrentLimit = 2 // RateLimitResponse.DescriptorStatus.current_limit
)

// Overall codes of RateLimitResponse.
const (
	codeUnknown   = 0
	codeOK        = 1
	codeOverLimit = 2
)

// Template is one descriptor of a generated request: its entries in order. A value may
// hold the placeholders {key}, replaced by the request's key number (0..Keys-1, drawn
// per descriptor), and {d}, replaced by the descriptor's position in the request.
type Template struct {
	Entries []TemplateEntry
}

// TemplateEntry is one key=value entry of a Template.
type TemplateEntry struct {
	Key   string
	parts []valuePart // the value split around its placeholders
}

type valuePart struct {
	lit string
	ph  byte // 0: literal only; 'k': {key}; 'd': {d}
}

// ParseTemplate parses "k1=v1,k2=v2" (values may use {key} and {d}).
func ParseTemplate(s string) (Template, error) {
	var t Template
	if strings.TrimSpace(s) == "" {
		return t, errors.New("empty descriptor template")
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return t, fmt.Errorf("descriptor entry %q: want key=value", kv)
		}
		e := TemplateEntry{Key: k}
		for v != "" {
			i := strings.IndexByte(v, '{')
			if i < 0 {
				e.parts = append(e.parts, valuePart{lit: v})
				break
			}
			var ph byte
			switch {
			case strings.HasPrefix(v[i:], "{key}"):
				ph = 'k'
			case strings.HasPrefix(v[i:], "{d}"):
				ph = 'd'
			default:
				e.parts = append(e.parts, valuePart{lit: v[:i+1]})
				v = v[i+1:]
				continue
			}
			e.parts = append(e.parts, valuePart{lit: v[:i], ph: ph})
			if ph == 'k' {
				v = v[i+len("{key}"):]
			} else {
				v = v[i+len("{d}"):]
			}
		}
		t.Entries = append(t.Entries, e)
	}
	return t, nil
}

// String renders the template back as k=v,... .
func (t Template) String() string {
	var b strings.Builder
	for i, e := range t.Entries {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.Key)
		b.WriteByte('=')
		for _, p := range e.parts {
			b.WriteString(p.lit)
			switch p.ph {
			case 'k':
				b.WriteString("{key}")
			case 'd':
				b.WriteString("{d}")
			}
		}
	}
	return b.String()
}

// usesKey reports whether any value holds {key}.
func (t Template) usesKey() bool {
	for _, e := range t.Entries {
		for _, p := range e.parts {
			if p.ph == 'k' {
				return true
			}
		}
	}
	return false
}

// appendValue writes the entry's value for key number key and descriptor position d.
func (e *TemplateEntry) appendValue(b []byte, key, d int) []byte {
	for _, p := range e.parts {
		b = append(b, p.lit...)
		switch p.ph {
		case 'k':
			b = strconv.AppendInt(b, int64(key), 10)
		case 'd':
			b = strconv.AppendInt(b, int64(d), 10)
		}
	}
	return b
}

// encoder builds RateLimitRequest messages into reused buffers. Not safe for
// concurrent use: each worker owns one.
type encoder struct {
	domain    string
	templates []Template
	perReq    int
	cost      uint32
	entry     []byte // scratch: one encoded Entry
	desc      []byte // scratch: one encoded RateLimitDescriptor
	val       []byte // scratch: one value
}

// encode appends the request whose descriptor i uses key number keys[i] and template
// first+i (cycling through the templates).
func (e *encoder) encode(buf []byte, keys []int, first int) []byte {
	buf = protowire.AppendTag(buf, fieldRequestDomain, protowire.BytesType)
	buf = protowire.AppendString(buf, e.domain)
	for d := 0; d < e.perReq; d++ {
		t := &e.templates[(first+d)%len(e.templates)]
		e.desc = e.desc[:0]
		for j := range t.Entries {
			te := &t.Entries[j]
			e.val = te.appendValue(e.val[:0], keys[d], d)
			e.entry = e.entry[:0]
			e.entry = protowire.AppendTag(e.entry, fieldEntryKey, protowire.BytesType)
			e.entry = protowire.AppendString(e.entry, te.Key)
			e.entry = protowire.AppendTag(e.entry, fieldEntryValue, protowire.BytesType)
			e.entry = protowire.AppendBytes(e.entry, e.val)
			e.desc = protowire.AppendTag(e.desc, fieldDescriptorEntries, protowire.BytesType)
			e.desc = protowire.AppendBytes(e.desc, e.entry)
		}
		buf = protowire.AppendTag(buf, fieldRequestDescriptors, protowire.BytesType)
		buf = protowire.AppendBytes(buf, e.desc)
	}
	if e.cost > 0 {
		buf = protowire.AppendTag(buf, fieldRequestHitsAddend, protowire.VarintType)
		buf = protowire.AppendVarint(buf, uint64(e.cost))
	}
	return buf
}

// readResponse reads RateLimitResponse.overall_code from an encoded response, and
// whether any descriptor status names a limit (current_limit), without decoding the
// rest. A server answers OK, naming no limit, for descriptors no rule matches: a load
// run whose answers never name one is not exercising any limit.
func readResponse(b []byte) (code int, limited bool, err error) {
	code = codeUnknown
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldResponseCode && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, false, protowire.ParseError(n)
			}
			code, b = int(v), b[n:]
			continue
		case num == fieldResponseStatuses && typ == protowire.BytesType && !limited:
			st, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return 0, false, protowire.ParseError(n)
			}
			if limited, err = hasField(st, fieldStatusCurrentLimit); err != nil {
				return 0, false, err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, false, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return code, limited, nil
}

// hasField reports whether the encoded message b holds field num.
func hasField(b []byte, num protowire.Number) (bool, error) {
	for len(b) > 0 {
		got, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false, protowire.ParseError(n)
		}
		if got == num {
			return true, nil
		}
		b = b[n:]
		if n = protowire.ConsumeFieldValue(got, typ, b); n < 0 {
			return false, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return false, nil
}

// rawRequest is an encoded request; rawResponse receives the overall code of a reply
// and whether it named a limit.
type rawRequest struct{ b []byte }
type rawResponse struct {
	code    int
	limited bool
}

// rawCodec passes encoded requests through and reads only the overall code of replies.
// It is named "proto": the bytes on the wire are protobuf.
type rawCodec struct{}

var _ encoding.Codec = rawCodec{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	r, ok := v.(*rawRequest)
	if !ok {
		return nil, fmt.Errorf("loadgen codec: cannot marshal %T", v)
	}
	return r.b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	r, ok := v.(*rawResponse)
	if !ok {
		return fmt.Errorf("loadgen codec: cannot unmarshal into %T", v)
	}
	var err error
	r.code, r.limited, err = readResponse(data)
	return err
}

func (rawCodec) Name() string { return "proto" }
