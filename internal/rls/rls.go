// Package rls serves Envoy's envoy.service.ratelimit.v3.RateLimitService: it maps
// ShouldRateLimit requests onto decide.Decider and its results back onto the proto
// (SPEC §6).
package rls

import (
	"context"
	"errors"
	"math"
	"strconv"
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
)

// Options switches the response headers of SPEC §6.
type Options struct {
	RetryAfter bool // Retry-After on OVER_LIMIT (on by default)
}

// Observer sees every request's outcome (metrics).
type Observer interface {
	Observe(api string, start time.Time, req *decide.Request, res *decide.Result, err error)
}

// Server implements rlsv3.RateLimitServiceServer.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer
	decider *decide.Decider
	opts    Options
	observe Observer // may be nil
}

// New returns a Server deciding with d. obs, when not nil, sees every request.
func New(d *decide.Decider, opts Options, obs Observer) *Server {
	return &Server{decider: d, opts: opts, observe: obs}
}

// ShouldRateLimit implements the RLS. Errors are InvalidArgument for a bad request and
// Unavailable when the store cannot answer; never UNKNOWN.
func (s *Server) ShouldRateLimit(ctx context.Context, in *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	start := time.Now()
	req, err := fromProto(in)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	res, err := s.decider.Decide(ctx, req)
	if s.observe != nil {
		s.observe.Observe("rls", start, req, res, err)
	}
	if err != nil {
		return nil, grpcError(err)
	}
	return s.toProto(res), nil
}

// grpcError maps decide/engine errors onto gRPC codes.
func grpcError(err error) error {
	switch {
	case errors.Is(err, decide.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

// fromProto converts the proto request. Negative hits (refunds) are not supported.
func fromProto(in *rlsv3.RateLimitRequest) (*decide.Request, error) {
	req := &decide.Request{
		Domain:      in.GetDomain(),
		HitsAddend:  uint64(in.GetHitsAddend()),
		Descriptors: make([]decide.Descriptor, len(in.GetDescriptors())),
	}
	for i, pd := range in.GetDescriptors() {
		if pd.GetIsNegativeHits() {
			return nil, errors.New("descriptor " + strconv.Itoa(i) + ": is_negative_hits is not supported")
		}
		d := &req.Descriptors[i]
		d.Entries = make([]descriptors.Entry, len(pd.GetEntries()))
		for j, e := range pd.GetEntries() {
			d.Entries[j] = descriptors.Entry{Key: e.GetKey(), Value: e.GetValue()}
		}
		if h := pd.GetHitsAddend(); h != nil {
			v := h.GetValue()
			d.Cost = &v
		}
		if o := pd.GetLimit(); o != nil {
			d.Override = overrideFromProto(o)
		}
	}
	return req, nil
}

// unitNames maps Envoy's override units onto rule units.
var unitNames = map[typev3.RateLimitUnit]string{
	typev3.RateLimitUnit_SECOND: "second", typev3.RateLimitUnit_MINUTE: "minute",
	typev3.RateLimitUnit_HOUR: "hour", typev3.RateLimitUnit_DAY: "day",
	typev3.RateLimitUnit_MONTH: "month", typev3.RateLimitUnit_YEAR: "year",
}

func overrideFromProto(o *ratelimitv3.RateLimitDescriptor_RateLimitOverride) *decide.Override {
	return &decide.Override{
		RequestsPerUnit: int64(o.GetRequestsPerUnit()),
		Unit:            unitNames[o.GetUnit()],
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

func (s *Server) toProto(res *decide.Result) *rlsv3.RateLimitResponse {
	out := &rlsv3.RateLimitResponse{
		OverallCode: rlsv3.RateLimitResponse_OK,
		Statuses:    make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(res.Statuses)),
	}
	if res.OverLimit {
		out.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		if s.opts.RetryAfter {
			out.ResponseHeadersToAdd = append(out.ResponseHeadersToAdd, &corev3.HeaderValue{
				Key: "retry-after", Value: strconv.FormatInt(RetryAfterSeconds(res.RetryAfterMs), 10),
			})
		}
	}
	for i := range res.Statuses {
		out.Statuses[i] = statusToProto(&res.Statuses[i], res.Now)
	}
	return out
}

// RetryAfterSeconds rounds a wait up to whole seconds: a client that honours it is never early.
func RetryAfterSeconds(ms int64) int64 { return (ms + 999) / 1000 }

func statusToProto(st *decide.Status, now int64) *rlsv3.RateLimitResponse_DescriptorStatus {
	ps := &rlsv3.RateLimitResponse_DescriptorStatus{Code: rlsv3.RateLimitResponse_OK}
	if st.OverLimit {
		ps.Code = rlsv3.RateLimitResponse_OVER_LIMIT
	}
	if st.Limit == nil {
		return ps
	}
	l := st.Limit
	ps.CurrentLimit = &rlsv3.RateLimitResponse_RateLimit{
		Name:            l.Name,
		RequestsPerUnit: clampU32(st.Decision.Limit), // the ceiling clients see (SPEC §1)
		Unit:            unitEnum[l.Unit],
	}
	if l.UnitMultiplier > 1 {
		ps.CurrentLimit.UnitMultiplier = wrapperspb.UInt32(clampU32(l.UnitMultiplier))
	}
	ps.LimitRemaining = clampU32(st.Decision.Remaining)
	ps.DurationUntilReset = durationpb.New(time.Duration(max(0, st.Decision.ResetAt-now)) * time.Millisecond)
	return ps
}

func clampU32(v int64) uint32 {
	return uint32(min(max(v, 0), math.MaxUint32))
}
