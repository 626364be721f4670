package main

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules"
)

// Where rules come from (--config-source).
const (
	sourceFile = "file"
	sourceXDS  = "xds"
)

// xdsSettings are the settings of rules from an xDS server (docs/configuration.md#xds).
type xdsSettings struct {
	source                                string
	server, nodeID, nodeMetadata, headers string
	tls                                   clientTLS
	maxMessageBytes                       int
	backoff                               xdsrules.Backoff
	keepalive                             time.Duration
	startWithoutRules                     bool
}

func xdsFlags(f *envFlags, x *xdsSettings) {
	f.StringVar(&x.source, "config-source", "", "where rules come from: file (--config-dir) or xds (an xDS server, --xds-server); default: xds when --xds-server is set, else file")
	f.StringVar(&x.server, "xds-server", "", "xDS management server (host:port) serving ratelimit.config.ratelimit.v3.RateLimitConfig over ADS")
	f.StringVar(&x.nodeID, "xds-node-id", "default", "node id sent to the xDS server, which picks the rules it sends by it")
	f.StringVar(&x.nodeMetadata, "xds-node-metadata", "", "node metadata sent to the xDS server: key=value,key=value")
	f.StringVar(&x.headers, "xds-headers", "", "gRPC metadata sent when the xDS stream opens: key=value,key=value (e.g. authorization=Bearer ...)")
	x.tls.prefix, x.tls.use = "--xds-", "xds"
	f.BoolVar(&x.tls.on, "xds-tls", false, "connect to the xDS server over TLS (any other --xds-tls-* setting implies it: false beside one is refused)")
	f.StringVar(&x.tls.ca, "xds-tls-ca", "", "PEM CA bundle that signs the xDS server's certificate (default: the system roots; reloaded when the file changes)")
	f.StringVar(&x.tls.cert, "xds-tls-cert", "", "PEM client certificate for the xDS server (mTLS; reloaded when the file changes)")
	f.StringVar(&x.tls.key, "xds-tls-key", "", "PEM private key of --xds-tls-cert")
	f.StringVar(&x.tls.serverName, "xds-tls-server-name", "", "name to verify in the xDS server's certificate (default: the host of --xds-server)")
	f.IntVar(&x.maxMessageBytes, "xds-max-message-bytes", xdsrules.DefaultMaxMessageBytes, "largest xDS response accepted, in bytes")
	f.DurationVar(&x.backoff.Initial, "xds-backoff-initial", xdsrules.DefaultBackoff.Initial, "wait before reconnecting to the xDS server; doubles after each failed attempt")
	f.DurationVar(&x.backoff.Max, "xds-backoff-max", xdsrules.DefaultBackoff.Max, "longest wait between attempts to reach the xDS server")
	f.Float64Var(&x.backoff.Jitter, "xds-backoff-jitter", xdsrules.DefaultBackoff.Jitter, "spread each wait at random by ± this fraction of it (0 to below 1)")
	f.DurationVar(&x.keepalive, "xds-keepalive-time", xdsrules.DefaultKeepalive, "ping the xDS server when nothing came from it for this long, and reconnect when a ping goes unanswered for 20 s (grpc-go servers refuse pings more often than every 5m unless told otherwise); at least 10s, 0: never")
	f.BoolVar(&x.startWithoutRules, "xds-start-without-rules", false, "until the xDS server sends rules, serve with none (every request OK) and report ready, instead of answering UNAVAILABLE and reporting not ready")
}

// resolve picks the rule source and checks the settings that only make sense with it.
func (x *xdsSettings) resolve() error {
	switch x.source {
	case "":
		x.source = sourceFile
		if x.server != "" {
			x.source = sourceXDS
		}
	case sourceFile:
		if x.server != "" {
			return errors.New("--xds-server is set but --config-source is file: set --config-source=xds, or unset --xds-server")
		}
	case sourceXDS:
		if x.server == "" {
			return errors.New("--config-source=xds needs --xds-server (env RATELIMIT_EXT_XDS_SERVER)")
		}
	default:
		return fmt.Errorf("--config-source %q: want file or xds", x.source)
	}
	// Out-of-range numbers are refused whatever the source, as every bad setting is;
	// the settings that only make sense with a server are checked with one.
	switch {
	case x.maxMessageBytes <= 0:
		return fmt.Errorf("--xds-max-message-bytes %d: want a positive size", x.maxMessageBytes)
	case x.backoff.Initial <= 0:
		return fmt.Errorf("--xds-backoff-initial %v: want a positive duration", x.backoff.Initial)
	case x.backoff.Max < x.backoff.Initial:
		return fmt.Errorf("--xds-backoff-max %v is below --xds-backoff-initial %v", x.backoff.Max, x.backoff.Initial)
	case !(x.backoff.Jitter >= 0 && x.backoff.Jitter < 1):
		return fmt.Errorf("--xds-backoff-jitter %v: want at least 0 and below 1", x.backoff.Jitter)
	case x.keepalive < 0 || x.keepalive > 0 && x.keepalive < xdsrules.MinKeepalive:
		return fmt.Errorf("--xds-keepalive-time %v: want 0 (never) or at least %v", x.keepalive, xdsrules.MinKeepalive)
	}
	// --xds-tls=false beside a TLS file is refused with rules from files too, where
	// neither has effect, as every contradiction of TLS settings is (TLS files beside a
	// redis:// URL, bench's --tls=false beside its files): refused when it is written,
	// not later, when the rules move to xDS.
	if err := x.tls.offContradicted(); err != nil {
		return err
	}
	if x.source == sourceFile {
		if x.startWithoutRules {
			return errors.New("--xds-start-without-rules needs --config-source=xds: rules from files are loaded before serving")
		}
		return nil
	}
	if x.nodeID == "" {
		return errors.New("--xds-node-id is empty: the xDS server picks a node's rules by it")
	}
	if _, err := pairs("--xds-node-metadata", x.nodeMetadata); err != nil {
		return err
	}
	if _, err := pairs("--xds-headers", x.headers); err != nil {
		return err
	}
	if err := grpcHeaders(x.headers); err != nil {
		return err
	}
	return x.tls.pairGiven() // the switch is checked above
}

// reservedHeaders are the headers gRPC sets itself: it drops them from the metadata
// given without a word.
var reservedHeaders = []string{"content-type", "user-agent", "te", "grpc-encoding", "grpc-message",
	"grpc-message-type", "grpc-status", "grpc-status-details-bin", "grpc-timeout"}

// grpcHeaders refuses --xds-headers (already checked by pairs) that gRPC would not
// send: a key or value it refuses would fail every stream to open (retried forever,
// the replica without rules), and a pseudo-header or one gRPC sets itself would be
// dropped. Keys are sent in lower case. Errors name the item by its place, as pairs
// does, and never show a value (it may be a token).
func grpcHeaders(s string) error {
	for n, item := range listItems(s) {
		k, v, _ := strings.Cut(item, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		switch {
		case strings.HasPrefix(k, ":") || slices.Contains(reservedHeaders, k):
			return fmt.Errorf("--xds-headers: item %d: %q is a header gRPC sets itself; it would not be sent", n, k)
		case strings.IndexFunc(k, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
		}) >= 0:
			return fmt.Errorf("--xds-headers: item %d: the key has a character other than letters, digits, '-', '_' and '.', which gRPC refuses (its text is not shown: it may hold a secret)", n)
		case strings.HasSuffix(k, "-bin"): // a binary value: any bytes
		case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r > 0x7e }) >= 0:
			return fmt.Errorf("--xds-headers: item %d (%q): the value has a character other than printable ASCII, which gRPC refuses (a binary value needs a key ending in -bin)", n, k)
		}
	}
	return nil
}

// listItems yields the items of a comma-separated list with their places (from 1),
// skipping empty ones (a trailing comma): errors name an item by its place.
func listItems(s string) iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		n := 0
		for item := range strings.SplitSeq(s, ",") {
			if strings.TrimSpace(item) == "" {
				continue
			}
			if n++; !yield(n, item) {
				return
			}
		}
	}
}

// pairs parses "key=value,key=value"; empty items (a trailing comma) are skipped. The
// error names a malformed item by its place, not its text: --xds-headers carries
// tokens ("authorization:Bearer ..." with a colon for the '=').
func pairs(flag, s string) (map[string]string, error) {
	out := map[string]string{}
	for n, item := range listItems(s) {
		k, v, found := strings.Cut(item, "=")
		k = strings.TrimSpace(k)
		if !found || k == "" {
			return nil, fmt.Errorf("%s: item %d is not key=value (its text is not shown: it may hold a secret)", flag, n)
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

// options turns the settings into the subscriber's options; it reads the TLS files.
func (x *xdsSettings) options(log *slog.Logger, inUse *tlsfiles.Registry, onLoad func(*descriptors.RuleSet, error)) (xdsrules.Options, error) {
	meta, err := pairs("--xds-node-metadata", x.nodeMetadata)
	if err != nil {
		return xdsrules.Options{}, err
	}
	headers, err := pairs("--xds-headers", x.headers)
	if err != nil {
		return xdsrules.Options{}, err
	}
	x.tls.defaultName = targetHost(x.server)
	tc, err := x.tls.config(log, inUse)
	if err != nil {
		return xdsrules.Options{}, err
	}
	if tc == nil && len(headers) > 0 {
		log.Warn("--xds-headers are sent to the xDS server in plaintext (no --xds-tls): a token among them can be read on the network, and so can the rules, which nothing authenticates", "server", x.server)
	}
	return xdsrules.Options{
		Server: x.server, NodeID: x.nodeID, NodeMetadata: meta, Headers: headers, TLS: tc,
		MaxMessageBytes: x.maxMessageBytes, Backoff: x.backoff, Keepalive: x.keepalive, UserAgent: "ratelimit-ext",
		Log: log.With("component", "xds"), OnLoad: onLoad,
	}, nil
}

// logSIGHUP says why SIGHUP (hup), which reloads rule files, does nothing when rules
// come from xDS; serve asked for it, so that it does not end the process.
func logSIGHUP(ctx context.Context, hup <-chan os.Signal, log *slog.Logger) {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP ignored: rules come from the xDS server, which pushes every change")
			}
		}
	}()
}
