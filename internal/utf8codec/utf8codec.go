// Package utf8codec is the gRPC server codec of the service: grpc-go's proto codec,
// except that a request whose string fields hold bytes that are not UTF-8 is read, not
// refused.
//
// Proto3 strings must be UTF-8 and the Go protobuf runtime refuses a message that breaks
// the rule, so grpc-go answers such a request with INTERNAL before any handler runs.
// Envoy does not check: a descriptor value taken from a request header with obs-text
// bytes (Latin-1, say) reaches us as is. Envoy's rate-limit filter treats the error as a
// failed call, which with its default failure_mode_deny: false lets the request through
// unlimited: a client could shed its limit by adding such a byte to the header a rule
// keys on. So each byte that is not part of valid UTF-8 is read as '!', as Envoy itself
// does for the ext_authz headers map (internal/extauthz reads raw_value the same way):
// the value keeps its own counter, shared only with values that differ in those bytes.
package utf8codec

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxDepth bounds the nesting the repair walks: a RateLimitRequest's strings are three
// levels deep, a CheckRequest's headers four, and its metadata_context (JSON values)
// three more per level of JSON. A deeper message keeps the original error; protobuf
// itself refuses nesting beyond 10,000.
const maxDepth = 100

// Codec is the codec; pass it to grpc.ForceServerCodecV2.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(proto.Name)

// Name is the proto codec's: clients see no difference.
func (Codec) Name() string { return protoCodec.Name() }

// Marshal is the proto codec's.
func (Codec) Marshal(v any) (mem.BufferSlice, error) { return protoCodec.Marshal(v) }

// Unmarshal is the proto codec's; only when it fails is the message read again with
// the bytes that are not UTF-8 in its string fields replaced by '!'. A message that
// fails for any other reason keeps the original error.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := protoCodec.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(protov2.Message)
	if !ok {
		return err
	}
	fixed, changed, ok := Repair(data.Materialize(), m.ProtoReflect().Descriptor())
	if !ok || !changed {
		return err
	}
	protov2.Reset(m) // the failed attempt may have filled part of it
	if protov2.Unmarshal(fixed, m) != nil {
		return err
	}
	return nil
}

// Repair returns the wire-format message b of type md with every byte that is not part
// of valid UTF-8 in a string field, at any depth, replaced by '!'; changed says whether
// there was any, ok is false when b is not a well-formed message.
func Repair(b []byte, md protoreflect.MessageDescriptor) (out []byte, changed, ok bool) {
	return repair(b, md, 0)
}

func repair(b []byte, md protoreflect.MessageDescriptor, depth int) ([]byte, bool, bool) {
	if depth > maxDepth {
		return nil, false, false
	}
	out := make([]byte, 0, len(b))
	changed := false
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, false
		}
		tag := b[:n]
		b = b[n:]
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, false, false
			}
			out = append(append(out, tag...), b[:m]...)
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return nil, false, false
		}
		b = b[m:]
		if fd := md.Fields().ByNumber(num); fd != nil {
			switch fd.Kind() {
			case protoreflect.StringKind:
				if !utf8.Valid(v) {
					v, changed = []byte(Sanitize(string(v))), true
				}
			case protoreflect.MessageKind: // map entries included
				inner, ch, ok := repair(v, fd.Message(), depth+1)
				if !ok {
					return nil, false, false
				}
				if ch {
					v, changed = inner, true
				}
			}
		}
		out = protowire.AppendBytes(append(out, tag...), v)
	}
	return out, changed, true
}

// Sanitize replaces each byte of s that is not part of valid UTF-8 with '!', as Envoy
// does for the header values of ext_authz's headers map. Distinct values stay distinct
// unless they differ only in such bytes.
func Sanitize(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteByte('!')
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
