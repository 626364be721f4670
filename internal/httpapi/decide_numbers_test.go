package httpapi_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
)

// A hits_addend ShouldRateLimit's proto cannot carry is refused, with the field and its
// bound: the request's is a uint32, a descriptor's a UInt64Value. Negative numbers,
// fractions and strings are refused too, however they are written.
func TestDecideRefusesHitsAddendsShouldRateLimitCannotCarry(t *testing.T) {
	request := func(v string) string {
		return `{"domain":"web","hits_addend":` + v + `,"descriptors":[{"entries":[{"key":"ip","value":"x"}]}]}`
	}
	descriptor := func(v string) string {
		return `{"domain":"web","descriptors":[{"entries":[{"key":"ip","value":"y"}]},{"entries":[{"key":"ip","value":"x"}],"hits_addend":` + v + `}]}`
	}
	const u32, u64 = "from 0 to 4294967295", "from 0 to 18446744073709551615"
	refuses(t, map[string]struct{ body, want string }{
		"2^32":                   {request("4294967296"), "hits_addend 4294967296 is not a whole number " + u32},
		"2^64-1":                 {request("18446744073709551615"), "hits_addend 18446744073709551615 is not a whole number " + u32},
		"1e10":                   {request("1e10"), "hits_addend 1e10 is not a whole number " + u32},
		"1e400":                  {request("1e400"), "hits_addend 1e400 is not a whole number " + u32},
		"an exponent beyond int": {request("1e99999999999999999999"), "hits_addend 1e99999999999999999999 is not a whole number " + u32},
		"a tiny exponent":        {request("1e-99999999999999999999"), "hits_addend 1e-99999999999999999999 is not a whole number " + u32},
		"-1":                     {request("-1"), "hits_addend -1 is not a whole number " + u32},
		"-1e3":                   {request("-1e3"), "hits_addend -1e3 is not a whole number " + u32},
		"1.5":                    {request("1.5"), "hits_addend 1.5 is not a whole number " + u32},
		"1e-1":                   {request("1e-1"), "hits_addend 1e-1 is not a whole number " + u32},
		"a string":               {request(`"1"`), `hits_addend "1" is not a whole number ` + u32},
		"true":                   {request("true"), "hits_addend true is not a whole number " + u32},
		"a descriptor's 2^64":    {descriptor("18446744073709551616"), "descriptor 1: hits_addend 18446744073709551616 is not a whole number " + u64},
		"a descriptor's 1e20":    {descriptor("1e20"), "descriptor 1: hits_addend 1e20 is not a whole number " + u64},
		"a descriptor's -1":      {descriptor("-1"), "descriptor 1: hits_addend -1 is not a whole number " + u64},
		"a descriptor's 0.5":     {descriptor("0.5"), "descriptor 1: hits_addend 0.5 is not a whole number " + u64},
		"a descriptor's string":  {descriptor(`"2"`), `descriptor 1: hits_addend "2" is not a whole number ` + u64},
		"a descriptor's object":  {descriptor(`{}`), `descriptor 1: hits_addend {} is not a whole number ` + u64},
	})
}

// A hits_addend ShouldRateLimit can carry means what it means there, in any JSON
// notation of the number (1e3 and 1000.0 are 1000, as the proto's JSON mapping reads
// them): each request is decided as the same request to ShouldRateLimit, on a store of
// its own, is.
func TestDecideReadsHitsAddendAsShouldRateLimit(t *testing.T) {
	const thousand = `
domain: web
descriptors:
  - key: n
    rate_limit: {name: thousand, unit: hour, requests_per_unit: 1000}
`
	url := serveAPI(t, httpapi.New(newDeciderFor(t, thousand, decide.Options{}), quiet(), nil)) + "/v1/decide"
	server := rls.New(newDeciderFor(t, thousand, decide.Options{}), ratelimitheaders.Options{}, nil)
	u64 := wrapperspb.UInt64
	cases := []struct {
		request, descriptor string // JSON; "" leaves it out
		hits                uint32
		cost                *wrapperspb.UInt64Value
	}{
		{request: "1e3", hits: 1000},
		{request: "2.5e2", hits: 250},
		{request: "1000.000", hits: 1000},
		{request: "0.3e1", hits: 3},
		{request: "4294967295", hits: math.MaxUint32},
		{request: "0", hits: 0},
		{request: "-0", hits: 0},
		{request: "0e99999999999999999999", hits: 0},
		{request: "null", hits: 0},
		{request: "7", descriptor: "0.0", hits: 7, cost: u64(0)},
		{descriptor: "5E+1", cost: u64(50)},
		{descriptor: "1.8446744073709551615e19", cost: u64(math.MaxUint64)},
		{descriptor: "18446744073709551615", cost: u64(math.MaxUint64)},
		{request: "9", descriptor: "null", hits: 9},
	}
	for i, c := range cases {
		value := fmt.Sprint("v", i) // a counter of its own
		body := `{"domain":"web","descriptors":[{"entries":[{"key":"n","value":"` + value + `"}]`
		if c.descriptor != "" {
			body += `,"hits_addend":` + c.descriptor
		}
		body += `}]`
		if c.request != "" {
			body += `,"hits_addend":` + c.request
		}
		got := postDecide(t, url, body+`}`)
		want, err := server.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "web", HitsAddend: c.hits,
			Descriptors: []*ratelimitv3.RateLimitDescriptor{{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "n", Value: value}}, HitsAddend: c.cost}}})
		if err != nil {
			t.Fatal(err)
		}
		if got.OverallCode != want.GetOverallCode().String() || got.Statuses[0].LimitRemaining != int64(want.GetStatuses()[0].GetLimitRemaining()) {
			t.Errorf("%s: %s with %d left; ShouldRateLimit: %s with %d left", body, got.OverallCode, got.Statuses[0].LimitRemaining,
				want.GetOverallCode(), want.GetStatuses()[0].GetLimitRemaining())
		}
	}
}
