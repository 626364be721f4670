// Package xdsrules takes the rules from an xDS management server instead of a
// directory, as envoyproxy/ratelimit does with CONFIG_TYPE=GRPC_XDS_SOTW (Envoy
// Gateway runs it that way). It subscribes over ADS, state of the world, to every
// ratelimit.config.ratelimit.v3.RateLimitConfig for its node, compiles each response
// with the same compiler as rule files (Compile), and then:
//
//   - a response that compiles is handed to apply and ACKed (version_info and nonce of
//     that response);
//   - one that does not is NACKed, with the compile error in error_detail, and the
//     rules already in place keep serving. A server that answers a NACK by sending the
//     same version again (go-control-plane's snapshot cache does, at once) gets its
//     repeated NACKs paced by the backoff instead of a busy loop, the pause capped at
//     maxRenackWait: such a server sends its next version (the fix) only once it has
//     the NACK;
//   - when the stream breaks or cannot be opened, the rules in place keep serving and
//     a new stream is opened after a backoff (Backoff), which grows until a stream
//     delivers rules that are accepted; it asks with an empty version for whatever the
//     server has (a restarted server may count its versions from 1 again).
//
// One goroutine runs the subscription, so apply is never called concurrently; Close
// ends it and waits for it.
package xdsrules

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// DefaultMaxMessageBytes is the largest response accepted by default: gRPC's own
// default, which envoyproxy/ratelimit keeps unless XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES
// says otherwise.
const DefaultMaxMessageBytes = 4 << 20

// maxRenackWait caps the pause before a NACK of a version already NACKed: the server
// sends a fix only after it has the NACK, so the pause delays the fix by as much.
const maxRenackWait = 5 * time.Second

// renackBackoff paces repeated NACKs: the stream's backoff, capped at maxRenackWait
// (and each wait, jitter included, is cut to it).
func renackBackoff(b Backoff) Backoff {
	b.Initial = min(b.Initial, maxRenackWait)
	b.Max = min(b.Max, maxRenackWait)
	return b
}

// DefaultKeepalive is Options.Keepalive's recommended value: as often as grpc-go
// servers accept by default (one ping per 5 minutes; a client pinging more often gets
// GOAWAY too_many_pings), which go-control-plane's and Envoy Gateway's keep. With
// keepaliveTimeout, a dead link is found within about 5 minutes 20 s.
const DefaultKeepalive = 5 * time.Minute

// MinKeepalive is grpc-go's floor for a client's keepalive (it raises a shorter one).
const MinKeepalive = 10 * time.Second

// keepaliveTimeout is how long a keepalive ping may go unanswered (grpc-go's default).
const keepaliveTimeout = 20 * time.Second

// maxErrorDetail bounds the NACK's error message: a broken update can produce a
// thousand problems, and the server only needs enough to point at the cause.
const maxErrorDetail = 16 << 10

// Options configures a Subscriber.
type Options struct {
	// Server is the management server's gRPC target: host:port, or any target gRPC
	// resolves (dns:///host:port).
	Server string
	// NodeID identifies this client to the server, which picks the rules it sends by it.
	NodeID string
	// NodeMetadata is sent as the node's metadata (string values).
	NodeMetadata map[string]string
	// Headers are sent as gRPC metadata when each stream opens (e.g. authorization).
	Headers map[string]string
	// TLS, when set, secures the connection; nil means plaintext.
	TLS *tls.Config
	// MaxMessageBytes bounds one response (default DefaultMaxMessageBytes).
	MaxMessageBytes int
	// Backoff paces reconnection (default DefaultBackoff).
	Backoff Backoff
	// Keepalive is how long the connection may go without anything read from the
	// server before the client pings it (0: never; else at least MinKeepalive).
	Keepalive time.Duration
	// UserAgent names this client in the node (user_agent_name).
	UserAgent string
	// Log gets one line per applied or rejected update and per broken stream.
	Log *slog.Logger
	// Rules says how the resources compile, as it says how rule files load: with
	// MergeDomains, several resources may name one domain (CompileWith).
	Rules descriptors.Options
	// OnLoad, when set, is told the outcome of every update (for metrics), after apply.
	OnLoad func(rs *descriptors.RuleSet, err error)
	// OnStream, when set, is told when a stream comes up (its first response: the
	// server answers) and when it ends (for metrics: rules that stopped following the
	// server serve on, so the break must show somewhere).
	OnStream func(up bool)
}

// Subscriber keeps the served rules in step with an xDS server until Close.
type Subscriber struct {
	opts   Options
	node   *corev3.Node
	conn   *grpc.ClientConn
	apply  func(*descriptors.RuleSet)
	pause  func(context.Context, time.Duration) bool // sleep; tests record the backoff with it
	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the subscription goroutine.
	acked       string  // version_info of the last ACKed response
	appliedHash string  // hash of the rule set last handed to apply (for the log)
	nacked      nack    // the last response, when it was NACKed (logged and counted once), and its error
	streamNack  nack    // the same, on the current stream (its repeats are paced)
	renacks     retries // paces NACKs of the same version sent again
}

// nack is the version_info of a NACKed response, or none: a server may leave
// version_info empty, and such a response is still one that was NACKed.
type nack struct {
	version string
	set     bool
	err     string // the compile error: the same version with other content (a restarted server counting from 1 again) is another rejection
}

func (n nack) is(version string) bool { return n.set && n.version == version }

// Start validates o and begins subscribing in the background. apply receives each rule
// set that compiled, from one goroutine. Start does not wait for the server: until the
// first good response apply is not called (the caller decides what serves meanwhile).
func Start(ctx context.Context, o Options, apply func(*descriptors.RuleSet)) (*Subscriber, error) {
	s, err := newSubscriber(o, apply)
	if err != nil {
		return nil, err
	}
	s.start(ctx)
	return s, nil
}

// newSubscriber validates o and connects lazily (gRPC dials on the first stream); start
// begins the subscription.
func newSubscriber(o Options, apply func(*descriptors.RuleSet)) (*Subscriber, error) {
	if o.Server == "" {
		return nil, errors.New("xds: no server address")
	}
	if o.NodeID == "" {
		return nil, errors.New("xds: the node id is empty (the server picks a node's rules by it)")
	}
	if o.MaxMessageBytes == 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("xds: the largest message (%d bytes) must be positive", o.MaxMessageBytes)
	}
	if o.Backoff == (Backoff{}) {
		o.Backoff = DefaultBackoff
	}
	if err := o.Backoff.validate(); err != nil {
		return nil, fmt.Errorf("xds: %w", err)
	}
	if o.Keepalive < 0 || o.Keepalive > 0 && o.Keepalive < MinKeepalive {
		return nil, fmt.Errorf("xds: keepalive %v: want 0 (none) or at least %v", o.Keepalive, MinKeepalive)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	conn, err := grpc.NewClient(o.Server, dialOptions(o)...)
	if err != nil {
		return nil, fmt.Errorf("xds: server %q: %w", o.Server, err)
	}
	return &Subscriber{opts: o, node: node(o), conn: conn, apply: apply, pause: sleep,
		renacks: retries{b: renackBackoff(o.Backoff)}}, nil
}

// start runs the subscription's goroutine until Close.
func (s *Subscriber) start(ctx context.Context) {
	ctx, s.cancel = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go s.run(ctx)
}

// dialOptions are the connection's settings: TLS, the response bound, the connection
// backoff (the stream's) and keepalive.
//
// Keepalive pings the server once the connection has been silent for o.Keepalive, and
// closes it when the ping is not answered within keepaliveTimeout (which is also the
// socket's TCP_USER_TIMEOUT), so the stream breaks and is reopened. TCP alone finds a
// dead link late, and meanwhile rule updates stop without a word: grpc-go leaves TCP
// keepalive at the system's settings (Linux: a first probe after 2 hours), a TCP proxy
// in between answers those probes itself, and data left unacknowledged is
// retransmitted for about 15 minutes. No pings without a stream (grpc-go servers
// refuse those by default); the ADS stream is open whenever the connection is up.
func dialOptions(o Options) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.MaxMessageBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: o.Backoff.Initial, Multiplier: 2, Jitter: o.Backoff.Jitter, MaxDelay: o.Backoff.Max},
			MinConnectTimeout: 20 * time.Second,
		}),
	}
	if o.Keepalive > 0 {
		opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: o.Keepalive, Timeout: keepaliveTimeout}))
	}
	return opts
}

func node(o Options) *corev3.Node {
	n := &corev3.Node{Id: o.NodeID, UserAgentName: o.UserAgent}
	if len(o.NodeMetadata) > 0 {
		n.Metadata = &structpb.Struct{Fields: map[string]*structpb.Value{}}
		for k, v := range o.NodeMetadata {
			n.Metadata.Fields[k] = structpb.NewStringValue(v)
		}
	}
	return n
}

// Close ends the subscription and waits for its goroutine. The rules last applied stay
// wherever apply put them.
func (s *Subscriber) Close() error {
	s.cancel()
	<-s.done
	return s.conn.Close()
}

// run opens streams until ctx ends, waiting a backoff between them. A stream counts as
// a failed attempt unless it delivered rules that were accepted: a server that ends
// the stream after every NACK would otherwise be reconnected to every
// Backoff.Initial for as long as its config stays broken.
func (s *Subscriber) run(ctx context.Context) {
	defer close(s.done)
	r := retries{b: s.opts.Backoff}
	for {
		accepted, err := s.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if accepted {
			r.reset()
		}
		wait := r.next()
		// acked_version says what keeps serving meanwhile ("" before the first config).
		s.opts.Log.Warn("xDS stream ended; retrying", "server", s.opts.Server,
			"error", err, "retry_in", wait.Round(time.Millisecond), "acked_version", s.acked)
		if !s.pause(ctx, wait) {
			return
		}
	}
}

// sleep waits d, or less when ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// stream runs one ADS stream until it breaks or ctx ends. accepted says whether a
// response on it compiled (and was applied and ACKed).
func (s *Subscriber) stream(ctx context.Context) (accepted bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	if len(s.opts.Headers) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(s.opts.Headers))
	}
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(s.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	// A NACK on a new stream goes at once, even of the version last NACKed.
	s.streamNack = nack{}
	// A new stream has no nonce yet, and asks with an empty version_info for whatever the
	// server has: a server that restarted may count its versions from 1 again, and one
	// that landed on the version we serve with other content would send nothing (a
	// resent identical rule set changes nothing here: same hash).
	if err := send(st, &discoveryv3.DiscoveryRequest{Node: s.node, TypeUrl: TypeURL}); err != nil {
		return false, err
	}
	responded := false
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return accepted, errors.New("the server closed the stream")
		}
		if err != nil {
			return accepted, err
		}
		if !responded {
			s.opts.Log.Info("xDS stream up", "server", s.opts.Server, "node", s.opts.NodeID)
			responded = true
			if s.opts.OnStream != nil {
				s.opts.OnStream(true)
				defer s.opts.OnStream(false)
			}
		}
		if resp.GetTypeUrl() != TypeURL {
			// Only one type is subscribed to; answering for another would confuse the
			// server's bookkeeping of that type.
			s.opts.Log.Warn("xDS response of a type not subscribed to; ignored", "type", resp.GetTypeUrl())
			continue
		}
		reply, delay := s.handle(resp)
		accepted = accepted || reply.GetErrorDetail() == nil
		if delay > 0 && !sleep(ctx, delay) {
			return accepted, ctx.Err()
		}
		if err := send(st, reply); err != nil {
			return accepted, err
		}
	}
}

// send sends req; when the stream is already broken, it returns the stream's status
// rather than the bare io.EOF Send reports then.
func send(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, req *discoveryv3.DiscoveryRequest) error {
	err := st.Send(req)
	if errors.Is(err, io.EOF) {
		if _, rerr := st.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
	}
	return err
}

// handle compiles one response, applies it when it compiles, and returns the ACK or
// NACK to send and how long to wait before sending it.
func (s *Subscriber) handle(resp *discoveryv3.DiscoveryResponse) (*discoveryv3.DiscoveryRequest, time.Duration) {
	reply := &discoveryv3.DiscoveryRequest{Node: s.node, TypeUrl: TypeURL, ResponseNonce: resp.GetNonce()}
	rs, err := CompileWith(s.opts.Rules, resp.GetResources())
	if err != nil {
		var delay time.Duration
		version := resp.GetVersionInfo()
		if s.streamNack.is(version) {
			delay = min(s.renacks.next(), maxRenackWait) // jitter included
		} else {
			s.renacks.reset()
			s.streamNack = nack{version: version, set: true}
		}
		if s.nacked.is(version) && s.nacked.err == err.Error() {
			s.opts.Log.Debug("xDS update rejected again (NACK)", "version", version, "nack_in", delay.Round(time.Millisecond))
		} else {
			if s.opts.OnLoad != nil { // once per version, not per copy sent again
				s.opts.OnLoad(nil, err)
			}
			s.nacked = nack{version, true, err.Error()}
			s.opts.Log.Error("xDS update rejected (NACK); the rules in place keep serving",
				"version", version, "acked_version", s.acked, "error", err)
		}
		reply.VersionInfo = s.acked
		reply.ErrorDetail = &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: truncate(err.Error(), maxErrorDetail)}
		return reply, delay
	}
	s.nacked, s.streamNack = nack{}, nack{}
	// A reconnect usually brings the same version again; the decider keeps what
	// depends on the rules (the local over-limit cache) when they did not change.
	changed := rs.Hash() != s.appliedHash
	s.apply(rs) // serve the new rules before anything reports them as loaded
	s.appliedHash = rs.Hash()
	if s.opts.OnLoad != nil {
		s.opts.OnLoad(rs, nil)
	}
	s.acked = resp.GetVersionInfo()
	s.opts.Log.Info("xDS rules applied (ACK)", "version", s.acked, "changed", changed,
		"resources", len(resp.GetResources()), "rules", rs.Summary(), "hash", rs.Hash())
	reply.VersionInfo = s.acked
	return reply, 0
}

// truncate cuts s to at most n bytes of valid UTF-8 (a proto string must be), saying so.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const more = "\n... (truncated)"
	return strings.ToValidUTF8(s[:n-len(more)], "") + more
}
