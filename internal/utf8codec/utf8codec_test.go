package utf8codec

import (
	"bytes"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// marshalWith marshals m, whose string fields hold "Ω" where the test wants two bytes
// that are not UTF-8, and puts two bad bytes there in the wire bytes (the lengths stay).
func marshalWith(t *testing.T, m proto.Message, bad byte) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("Ω"), []byte{bad, bad})
}

func TestInvalidStringsAreReadWithBangs(t *testing.T) {
	req := &rlsv3.RateLimitRequest{
		Domain: "edΩge",
		Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user", Value: "cafΩ"}, {Key: "kΩ", Value: "ok"}}},
		},
	}
	wire := marshalWith(t, req, 0xe9)
	if proto.Unmarshal(wire, &rlsv3.RateLimitRequest{}) == nil {
		t.Fatal("the test's request is valid UTF-8: it tests nothing")
	}
	var got rlsv3.RateLimitRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &got); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	e := got.Descriptors[0].Entries
	if got.Domain != "ed!!ge" || e[0].Value != "caf!!" || e[1].Key != "k!!" || e[1].Value != "ok" || e[0].Key != "user" {
		t.Errorf("read %v", &got)
	}

	// Maps (ext_authz's headers) are messages of their own: repaired too.
	check := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Headers: map[string]string{"x-user": "bΩd"}, Path: "/Ω"},
	}}}
	var gotCheck authv3.CheckRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshalWith(t, check, 0xff))}, &gotCheck); err != nil {
		t.Fatalf("Unmarshal CheckRequest: %v", err)
	}
	if h := gotCheck.Attributes.Request.Http; h.Headers["x-user"] != "b!!d" || h.Path != "/!!" {
		t.Errorf("read %v", h)
	}
}

// Valid messages read exactly as the proto codec reads them; broken wire bytes keep the
// proto codec's error.
func TestOnlyInvalidUTF8IsRepaired(t *testing.T) {
	req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: "é"}}}}}
	wire, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var got rlsv3.RateLimitRequest
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, &got); err != nil || !proto.Equal(&got, req) {
		t.Errorf("a valid request: %v, %v", &got, err)
	}
	if _, changed, ok := Repair(wire, req.ProtoReflect().Descriptor()); !ok || changed {
		t.Errorf("Repair of a valid request: changed %v ok %v", changed, ok)
	}
	bad := marshalWith(t, &rlsv3.RateLimitRequest{Domain: "Ω"}, 0xe9)
	for name, b := range map[string][]byte{
		"cut short":                append(bad[:len(bad):len(bad)], 0x12, 0x05, 'a'),
		"a length past the end":    {0x0a, 0x7f, 'a'},
		"a tag of an unknown type": {0x0f},
		"not UTF-8 and cut short":  append(append([]byte{}, bad...), 0x12),
	} {
		if (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &rlsv3.RateLimitRequest{}) == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}
