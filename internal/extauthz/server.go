// Package extauthz serves Envoy's external authorization API
// (envoy.service.auth.v3.Authorization/Check) as a second door into the rate limiter:
// a CheckRequest becomes a domain and descriptors (the domain's `ext_authz` section of
// the rules, see descriptors.ExtAuthz), which are decided by the same decide.Decider,
// rules, storage keys and state as ShouldRateLimit. The answer is rendered as HTTP:
// allowed checks carry the rate-limit response headers, denied ones become a 429 with
// Retry-After. Istio reaches it through an AuthorizationPolicy with action CUSTOM and an
// envoyExtAuthzGrpc extension provider (docs/istio.md); any Envoy through its
// envoy.filters.http.ext_authz filter (docs/ext_authz.md).
package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
)

// DomainExtension is the context extension that names the domain of a check. Envoy sets
// context extensions per route or virtual host (ExtAuthzPerRoute.check_settings); a
// check without it uses Options.DefaultDomain. Clients cannot set it.
const DomainExtension = "domain"

// FailureMode says how a check surfaces a store failure that the store failure policy
// (decide.FailurePolicy, --store-failure-policy) leaves an error, i.e. under fail_closed.
// Under fail_open the policy itself allows the check, and under local it is decided by
// the replica's memory engine: neither reaches the failure mode.
type FailureMode int

const (
	// ModeEnvoy answers gRPC UNAVAILABLE, like ShouldRateLimit: Envoy's
	// failure_mode_allow and status_on_error (Istio: failOpen, statusOnError) decide.
	ModeEnvoy FailureMode = iota
	// ModeAllow allows the request, with no rate-limit headers.
	ModeAllow
	// ModeDeny denies it with HTTP 503 (and a problem+json body when enabled).
	ModeDeny
)

var failureModeNames = [...]string{ModeEnvoy: "envoy", ModeAllow: "allow", ModeDeny: "deny"}

// ParseFailureMode reads --ext-authz-failure-mode: envoy, allow or deny.
func ParseFailureMode(s string) (FailureMode, error) {
	for i, n := range failureModeNames {
		if n == s {
			return FailureMode(i), nil
		}
	}
	return 0, errors.New("want envoy, allow or deny")
}

func (m FailureMode) String() string { return failureModeNames[m] }

// Options configures the Authorization server.
type Options struct {
	DefaultDomain string      // domain of checks without the domain context extension
	FailureMode   FailureMode // how a store failure under fail_closed is answered
	// XRateLimitHeaders adds X-RateLimit-Limit/-Remaining/-Reset (draft 03) to allowed
	// and denied answers, as Envoy's rate-limit filter does for the RLS door.
	XRateLimitHeaders bool
	// Headers are the switches the RLS door renders with too (shared flags): Retry-After
	// (and its jitter), the IETF RateLimit fields, problem+json bodies (also on a 503),
	// and the upstream request header with the remaining quota.
	Headers ratelimitheaders.Options
	Log     *slog.Logger
}

// Server implements authv3.AuthorizationServer.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	decider *decide.Decider
	opts    Options
	observe decide.Observer // may be nil
	log     *slog.Logger

	mu            sync.Mutex
	warned        map[string]bool // configuration warnings already logged
	warnedUnknown map[string]bool // unknown domains already warned of (at most maxWarned)
	warnedFull    bool            // that set is full, and that was logged
}

// New returns a Server deciding with d. obs, when not nil, sees every decided check.
func New(d *decide.Decider, opts Options, obs decide.Observer) *Server {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{decider: d, opts: opts, observe: obs, log: log,
		warned: map[string]bool{}, warnedUnknown: map[string]bool{}}
}

// Register adds the server to a gRPC server.
func (s *Server) Register(gs *grpc.Server) { authv3.RegisterAuthorizationServer(gs, s) }

// ServiceName is the Authorization service's name as grpc.health.v1 clients ask for it
// (an Envoy cluster's gRPC health check with service_name set, say).
var ServiceName = authv3.Authorization_ServiceDesc.ServiceName

// APIName labels ext_authz checks in metrics.
const APIName = "ext_authz"

// Check decides one request. It answers OK (allowed, with rate-limit headers),
// PERMISSION_DENIED with HTTP 429 (over a limit), or, when the store fails, what the
// failure mode says. A check that yields no descriptor (no domain, no ext_authz section,
// or nothing applies to this request) is allowed without touching the store; one for a
// domain the rules do not define (or with none) is observed as an unknown domain. A check the
// store failure policy answers with fail_open is allowed without rate-limit headers.
func (s *Server) Check(ctx context.Context, in *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	attrs := in.GetAttributes()
	domain := attrs.GetContextExtensions()[DomainExtension]
	if domain == "" {
		domain = s.opts.DefaultDomain
	}
	if domain == "" {
		s.warnOnce("", false, "ext_authz check without a domain: set the context extension \"domain\" in Envoy or --ext-authz-default-domain; allowing")
		s.observeUnknown(start, domain)
		return allowed(nil), nil
	}
	rules := s.decider.Rules()
	spec := rules.ExtAuthz(domain)
	if spec == nil {
		if !rules.HasDomain(domain) {
			s.warnOnce(logged(domain), true, "ext_authz check for an unknown domain; allowing", "domain", logged(domain))
			s.observeUnknown(start, domain)
		} else {
			s.warnOnce(domain, false, "ext_authz check for a domain without an ext_authz section; allowing", "domain", domain)
		}
		return allowed(nil), nil
	}
	descs, skipped := Extract(spec, attrs, s.log.Enabled(ctx, slog.LevelDebug))
	for _, sk := range skipped {
		s.log.Debug("ext_authz descriptor skipped", "domain", domain, "descriptor", sk.Field, "reason", sk.Reason)
	}
	if len(descs) == 0 {
		return allowed(nil), nil
	}
	req := &decide.Request{Domain: domain, Descriptors: descs}
	res, err := s.decider.Decide(ctx, req)
	if s.observe != nil {
		s.observe.Observe(APIName, start, req, res, err)
	}
	if err != nil {
		return s.failure(ctx, err)
	}
	return s.respond(res, attrs), nil
}

// observeUnknown reports a check allowed because the rules do not define its domain (or
// it has none) as the decider reports such a ShouldRateLimit: one request, OK, for an
// unknown domain (ratelimit_ext_unknown_domain_requests_total), since nothing limits
// those checks.
func (s *Server) observeUnknown(start time.Time, domain string) {
	if s.observe != nil {
		s.observe.Observe(APIName, start, &decide.Request{Domain: domain}, &decide.Result{UnknownDomain: true}, nil)
	}
}

// respond renders a decision on the request attrs as a CheckResponse: the same fields
// the RLS door asks Envoy to add (ratelimitheaders.Render), plus draft-03 headers, which
// Envoy renders itself for the rate-limit filter but not for ext_authz, and for a denied
// gRPC request its gRPC status (grpcStatusHeader).
func (s *Server) respond(res *decide.Result, attrs *authv3.AttributeContext) *authv3.CheckResponse {
	var hs []ratelimitheaders.Header
	if s.opts.XRateLimitHeaders {
		hs = ratelimitheaders.Draft03Headers(res)
	}
	r := ratelimitheaders.Render(res, &s.opts.Headers)
	hs = append(hs, r.Response...)
	if !res.OverLimit {
		resp := allowed(hs)
		for _, h := range r.Request { // to the upstream, e.g. the remaining quota
			resp.GetOkResponse().Headers = append(resp.GetOkResponse().Headers, headerOption(h))
		}
		return resp
	}
	if isGRPC(attrs) {
		hs = append(hs, grpcStatusHeader)
	}
	return denied(codes.PermissionDenied, "over the rate limit", typev3.StatusCode_TooManyRequests, hs, string(r.Body))
}

// grpcStatusHeader makes a denied gRPC request fail with RESOURCE_EXHAUSTED (8), the
// status gRPC gives to rate limits. Envoy answers a denied gRPC request with a
// trailers-only gRPC response and, unless the denied headers carry a grpc-status,
// maps the HTTP status to one: 429 becomes UNAVAILABLE (14), which gRPC clients and
// retry policies retry at once. It ignores CheckResponse.status for this. Only gRPC
// requests get it: to an HTTP client it would be a stray header.
var grpcStatusHeader = ratelimitheaders.Header{Name: "grpc-status", Value: strconv.Itoa(int(codes.ResourceExhausted))}

// isGRPC says whether Envoy treats the checked request as gRPC, by its content type
// as Envoy's Grpc::Common::hasGrpcContentType does: "application/grpc" or
// "application/grpc+<codec>". gRPC-Web ("application/grpc-web") is not: Envoy answers it
// as HTTP, unless its grpc_web filter, ahead of ext_authz, has turned the request into
// gRPC. Envoy must send content-type (allowed_headers).
func isGRPC(attrs *authv3.AttributeContext) bool {
	ct, _ := newRequest(attrs).header("content-type")
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+')
}

// failure answers a check the decider could not decide.
func (s *Server) failure(ctx context.Context, err error) (*authv3.CheckResponse, error) {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return nil, status.FromContextError(ctxErr).Err() // Envoy has given up already
	}
	if errors.Is(err, decide.ErrInvalid) {
		// A request over the bounds (too many descriptors or entries): the same
		// InvalidArgument ShouldRateLimit answers, and Envoy's failure_mode_allow
		// decides. Values have no bound (decide.Bounds).
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.log.Debug("ext_authz check failed", "error", err, "failure_mode", s.opts.FailureMode)
	switch s.opts.FailureMode {
	case ModeEnvoy:
		return nil, status.Error(codes.Unavailable, err.Error())
	case ModeAllow:
		return allowed(nil), nil
	}
	var hs []ratelimitheaders.Header
	var body string
	if s.opts.Headers.ProblemDetails {
		hs = append(hs, ratelimitheaders.Header{Name: ratelimitheaders.HeaderContentType, Value: ratelimitheaders.ProblemContentType})
		body = unavailableBody
	}
	return denied(codes.Unavailable, "rate limit store unavailable", typev3.StatusCode_ServiceUnavailable, hs, body), nil
}

// unavailableBody is the RFC 9457 body of a fail-closed answer.
var unavailableBody = func() string {
	b, _ := json.Marshal(map[string]any{
		"type":   "about:blank",
		"title":  "Service Unavailable",
		"status": 503,
		"detail": "The rate limit cannot be checked right now; retry later.",
	})
	return string(b)
}()

// maxWarned bounds the unknown domains warnOnce remembers: past it, one more line says
// that further ones are left out, so a flood of distinct domains (a context extension
// a client can set) neither grows the set nor the log without end. Other keys (no
// domain, the rules' own domains) are bounded by the rules and always warned of.
const maxWarned = 256

// warnOnce logs a configuration problem once per key; capped keys count toward
// maxWarned.
func (s *Server) warnOnce(key string, capped bool, msg string, args ...any) {
	s.mu.Lock()
	set := s.warned
	if capped {
		set = s.warnedUnknown
	}
	seen, full := set[key], capped && len(set) >= maxWarned
	if !seen && !full {
		set[key] = true
	}
	announce := full && !s.warnedFull
	s.warnedFull = s.warnedFull || full
	s.mu.Unlock()
	switch {
	case announce:
		s.log.Warn("ext_authz: further unknown domains are left out of the log until restart", "warned", maxWarned)
	case !seen && !full:
		s.log.Warn(msg, args...)
	}
}

// loggedDomainBytes bounds a domain named in a log line: one the rules do not define
// comes from the check as it is, up to the request's size.
const loggedDomainBytes = 256

// logged is domain as a log shows it: bytes that are not UTF-8 as U+FFFD, cut at a
// character boundary to at most loggedDomainBytes, marked when cut.
func logged(domain string) string {
	if len(domain) > loggedDomainBytes {
		cut := loggedDomainBytes
		for i := 1; i < utf8.UTFMax && !utf8.RuneStart(domain[cut]); i++ {
			cut-- // not inside a character
		}
		return strings.ToValidUTF8(domain[:cut], "\uFFFD") + "…"
	}
	return strings.ToValidUTF8(domain, "\uFFFD")
}

func allowed(hs []ratelimitheaders.Header) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: status.New(codes.OK, "").Proto(),
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: headerOptions(hs),
		}},
	}
}

func denied(code codes.Code, msg string, httpCode typev3.StatusCode, hs []ratelimitheaders.Header, body string) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: status.New(code, msg).Proto(),
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: httpCode},
			Headers: headerOptions(hs),
			Body:    body,
		}},
	}
}

// headerOptions sets each header, replacing any value the upstream response (or Envoy)
// already has, so a client never sees two X-RateLimit-Remaining values.
func headerOptions(hs []ratelimitheaders.Header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		out[i] = headerOption(h)
	}
	return out
}

func headerOption(h ratelimitheaders.Header) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}
