// Package rls serves Envoy's envoy.service.ratelimit.v3.RateLimitService: it maps
// ShouldRateLimit requests onto decide.Decider and its results back onto the proto
// (SPEC §6).
package rls

import (
	"context"
	"errors"
	"math"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
)

// Server implements rlsv3.RateLimitServiceServer.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	decider *decide.Decider
	opts    ratelimitheaders.Options
	observe decide.Observer // may be nil
}

// New returns a Server deciding with d. obs, when not nil, sees every request. opts
// must have passed Validate (an invalid upstream header name is dropped here).
func New(d *decide.Decider, opts ratelimitheaders.Options, obs decide.Observer) *Server {
	if opts.Validate() != nil {
		opts.UpstreamRemainingHeader = ""
	}
	return &Server{decider: d, opts: opts, observe: obs}
}

// ShouldRateLimit implements the RLS. Errors are InvalidArgument for a bad request and
// Unavailable when the store cannot answer; never UNKNOWN.
func (s *Server) ShouldRateLimit(ctx context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	start := time.Now()
	req := fromProto(in)
	res, err := s.decider.Decide(ctx, req)
	if s.observe != nil {
		s.observe.Observe("rls", start, req, res, err)
	}
	if err != nil {
		return nil, grpcError(ctx, err)
	}
	return s.toProto(in, res), nil
}

// grpcError maps decide/engine errors onto gRPC codes. Canceled and DeadlineExceeded
// are the caller's own context ending; the store's time budget running out (also a
// context deadline, inside the engine) is the store failing: Unavailable.
func grpcError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, decide.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case ctx.Err() != nil:
		return status.Error(status.FromContextError(ctx.Err()).Code(), err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

// requestMemory holds a converted request of up to 2 descriptors and 4 entries in one
// allocation (docs/performance.md: allocation budgets).
type requestMemory struct {
	req     decide.Request
	descs   [2]decide.Descriptor
	entries [4]descriptors.Entry
	costs   [2]uint64
}

// fromProto converts the proto request. A descriptor with negative hits (a refund) is
// converted as such and matches nothing (decide.Descriptor.Refund).
func fromProto(in *rlsv3.RateLimitRequest) *decide.Request {
	mem := new(requestMemory)
	req := &mem.req
	req.Domain, req.HitsAddend = in.GetDomain(), uint64(in.GetHitsAddend())
	if n := len(in.GetDescriptors()); n <= len(mem.descs) {
		req.Descriptors = mem.descs[:n:n]
	} else {
		req.Descriptors = make([]decide.Descriptor, n)
	}
	entries := mem.entries[:0:len(mem.entries)] // carved up while it lasts
	for i, pd := range in.GetDescriptors() {
		d := &req.Descriptors[i]
		d.Refund = pd.GetIsNegativeHits()
		n := len(pd.GetEntries())
		if n <= cap(entries)-len(entries) {
			d.Entries = entries[len(entries) : len(entries)+n : len(entries)+n]
			entries = entries[:len(entries)+n]
		} else {
			d.Entries = make([]descriptors.Entry, n)
		}
		for j, e := range pd.GetEntries() {
			d.Entries[j] = descriptors.Entry{Key: e.GetKey(), Value: e.GetValue()}
		}
		if h := pd.GetHitsAddend(); h != nil {
			v := h.GetValue()
			if i < len(mem.costs) {
				mem.costs[i] = v
				d.Cost = &mem.costs[i]
			} else {
				d.Cost = &v
			}
		}
		if o := pd.GetLimit(); o != nil {
			d.Override = overrideFromProto(o)
		}
	}
	return req
}

// unitNames maps Envoy's override units onto rule units.
var unitNames = map[typev3.RateLimitUnit]string{
	typev3.RateLimitUnit_SECOND: "second", typev3.RateLimitUnit_MINUTE: "minute",
	typev3.RateLimitUnit_HOUR: "hour", typev3.RateLimitUnit_DAY: "day",
	typev3.RateLimitUnit_MONTH: "month", typev3.RateLimitUnit_YEAR: "year",
}

// overrideFromProto converts a limit override; a unit it has no name for (UNKNOWN, or
// a value newer than this build) keeps Envoy's name, for decide's error to quote.
func overrideFromProto(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride) *decide.Override {
	unit, ok := unitNames[o.GetUnit()]
	if !ok {
		unit = strings.ToLower(o.GetUnit().String())
	}
	return &decide.Override{
		RequestsPerUnit: int64(o.GetRequestsPerUnit()),
		Unit:            unit,
		UnitMultiplier:  int64(o.GetUnitMultiplier().GetValue()),
	}
}

var unitEnum = map[string]rlsv3.RateLimitResponse_RateLimit_Unit{
	"second": rlsv3.RateLimitResponse_RateLimit_SECOND,
	"minute": rlsv3.RateLimitResponse_RateLimit_MINUTE,
	"hour":   rlsv3.RateLimitResponse_RateLimit_HOUR,
	"day":    rlsv3.RateLimitResponse_RateLimit_DAY,
	"week":   rlsv3.RateLimitResponse_RateLimit_WEEK,
	"month":  rlsv3.RateLimitResponse_RateLimit_MONTH,
	"year":   rlsv3.RateLimitResponse_RateLimit_YEAR,
}

// responseMemory holds a response of up to 2 statuses in one allocation; statusMemory
// holds one status with its limit and reset duration.
type responseMemory struct {
	resp     rlsv3.RateLimitResponse
	ptrs     [2]*rlsv3.RateLimitResponse_DescriptorStatus
	statuses [2]statusMemory
}

type statusMemory struct {
	status rlsv3.RateLimitResponse_DescriptorStatus
	limit  rlsv3.RateLimitResponse_RateLimit
	reset  durationpb.Duration
}

func (s *Server) toProto(in *rlsv3.RateLimitRequest, res *decide.Result) *rlsv3.RateLimitResponse {
	mem := new(responseMemory)
	out := &mem.resp
	out.OverallCode = rlsv3.RateLimitResponse_OK
	n := len(res.Statuses)
	sm := mem.statuses[:]
	if n <= len(mem.ptrs) {
		out.Statuses = mem.ptrs[:n:n]
	} else {
		out.Statuses = make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)
		sm = make([]statusMemory, n)
	}
	if res.OverLimit {
		out.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	for i := range res.Statuses {
		out.Statuses[i] = statusInto(&sm[i], &res.Statuses[i], res.Now)
	}
	r := ratelimitheaders.Render(res, &s.opts)
	out.ResponseHeadersToAdd = headersToProto(r.Response)
	out.RequestHeadersToAdd = headersToProto(r.Request)
	out.RawBody = r.Body
	if s.opts.DynamicMetadata {
		out.DynamicMetadata = dynamicMetadata(in, res)
	}
	return out
}

func headersToProto(hs []ratelimitheaders.Header) []*corev3.HeaderValue {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValue, len(hs))
	for i, h := range hs {
		out[i] = &corev3.HeaderValue{Key: h.Name, Value: h.Value}
	}
	return out
}

// statusInto fills m with one descriptor's status and returns it.
func statusInto(m *statusMemory, st *decide.Status, now int64) *rlsv3.RateLimitResponse_DescriptorStatus {
	ps := &m.status
	ps.Code = rlsv3.RateLimitResponse_OK
	if st.OverLimit {
		ps.Code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if st.Limit == nil {
		if st.Unlimited {
			ps.LimitRemaining = math.MaxUint32 // nothing limits it, as envoyproxy/ratelimit answers
		}
		return ps
	}
	l := st.Limit
	ps.CurrentLimit = &m.limit
	ps.CurrentLimit.Name = l.Name
	ps.CurrentLimit.RequestsPerUnit = ratelimitheaders.ClampU32(st.Decision.Limit) // the ceiling clients see (SPEC §1)
	w := l.ReportedWindow()
	ps.CurrentLimit.Unit = unitEnum[w.Unit]
	if w.Multiplier > 1 {
		ps.CurrentLimit.UnitMultiplier = wrapperspb.UInt32(ratelimitheaders.ClampU32(w.Multiplier))
	}
	ps.LimitRemaining = ratelimitheaders.ClampU32(st.Decision.Remaining)
	ms := max(0, st.Decision.ResetAt-now) // what durationpb.New(ms × 1 ms) holds
	m.reset.Seconds, m.reset.Nanos = ms/1000, int32(ms%1000)*int32(time.Millisecond)
	ps.DurationUntilReset = &m.reset
	return ps
}
