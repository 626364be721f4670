package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// tlsFiles are the gRPC server's TLS settings.
type tlsFiles struct {
	cert, key, clientCA, clientSAN string
}

func tlsFlags(f *envFlags, t *tlsFiles) {
	f.StringVar(&t.cert, "grpc-tls-cert", "", "PEM certificate: serve gRPC over TLS (reloaded when the file changes)")
	f.StringVar(&t.key, "grpc-tls-key", "", "PEM private key of --grpc-tls-cert")
	f.StringVar(&t.clientCA, "grpc-tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mTLS; reloaded when the file changes)")
	f.StringVar(&t.clientSAN, "grpc-tls-client-san", "", "with --grpc-tls-client-ca: also require this DNS name (or IP address) among the client certificate's SANs")
}

// serverOption returns the gRPC credentials option, or nil for plaintext.
//
// The files are read again when they change (internal/tlsfiles); log hears of a change
// that does not load, and inUse (may be nil) lists them for metrics.
func (t tlsFiles) serverOption(log *slog.Logger, inUse *tlsfiles.Registry) (grpc.ServerOption, error) {
	if t.cert == "" && t.key == "" && t.clientCA == "" && t.clientSAN == "" {
		return nil, nil
	}
	if err := t.check(); err != nil {
		return nil, err
	}
	if err := readable(flagFile{"--grpc-tls-cert", t.cert}, flagFile{"--grpc-tls-key", t.key}); err != nil {
		return nil, fmt.Errorf("gRPC TLS: %w", err)
	}
	kp, err := tlsfiles.LoadKeyPair(t.cert, t.key, log)
	if err != nil {
		return nil, fmt.Errorf("gRPC TLS: --grpc-tls-cert/--grpc-tls-key: %w", err)
	}
	inUse.Add("grpc_server", kp)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.ForServer}
	if t.clientCA != "" {
		if t.clientSAN != "" {
			cfg.VerifyPeerCertificate = requireSAN(t.clientSAN)
		}
		pool, err := tlsfiles.LoadPool(t.clientCA, log)
		if err != nil {
			return nil, fmt.Errorf("--grpc-tls-client-ca: %w", err)
		}
		inUse.Add("grpc_client_ca", pool)
		tlsfiles.VerifyClients(cfg, pool)
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// check refuses settings that contradict each other; serveConfig.check calls it with
// the other settings, so that they stop the start as a usage error, before any file
// is read.
func (t tlsFiles) check() error {
	if t.cert == "" && t.key == "" && t.clientCA == "" && t.clientSAN == "" {
		return nil
	}
	if t.cert == "" || t.key == "" {
		if t.cert == "" && t.key == "" { // only client-certificate settings
			return errors.New("--grpc-tls-client-ca and --grpc-tls-client-san need the server's own certificate: --grpc-tls-cert and --grpc-tls-key")
		}
		return errors.New("--grpc-tls-cert and --grpc-tls-key go together")
	}
	if t.clientSAN != "" && t.clientCA == "" {
		// Without a CA no client certificate is asked for, so there is no name to check.
		return errors.New("--grpc-tls-client-san needs --grpc-tls-client-ca")
	}
	return nil
}

// requireSAN accepts a client whose verified certificate names san: any certificate
// the CA signed is not enough when several clients share the CA.
func requireSAN(san string) func([][]byte, [][]*x509.Certificate) error {
	return func(_ [][]byte, chains [][]*x509.Certificate) error {
		if len(chains) == 0 || len(chains[0]) == 0 {
			return errors.New("no verified client certificate")
		}
		if err := chains[0][0].VerifyHostname(san); err != nil {
			return fmt.Errorf("client certificate: %w (--grpc-tls-client-san)", err)
		}
		return nil
	}
}

// clientTLS are a client's TLS settings from the flags prefix+"tls", prefix+"tls-ca"
// and so on: the xDS subscription's ("--xds-") and the load generator's ("--").
type clientTLS struct {
	prefix string
	use    string // names the files for metrics: use+"_client", use+"_ca"
	on     bool
	// onSet says whether the switch (prefix+"tls") is set, flag or variable: set
	// false beside a file or name, it contradicts them (check).
	onSet                     bool
	ca, cert, key, serverName string
	// defaultName is the name gRPC verifies when serverName is empty, when the caller
	// knows it (the xDS server's host): with a name the CA bundle is read again when it
	// changes, as tlsfiles.VerifyServers needs one.
	defaultName string
}

// config returns the client TLS configuration, or nil for plaintext when no setting is
// given. The client certificate is read again at a handshake when its files changed,
// as for the gRPC server: a rotated certificate (a mounted Secret) is used without a
// restart; log hears of a change that does not load, and inUse (may be nil) lists the
// files for metrics. So is the CA bundle when the server's name is known (serverName
// or defaultName); else it is read here only.
func (c clientTLS) config(log *slog.Logger, inUse *tlsfiles.Registry) (*tls.Config, error) {
	if !c.on && c.ca == "" && c.cert == "" && c.key == "" && c.serverName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.cert != "" {
		if err := readable(flagFile{c.prefix + "tls-cert", c.cert}, flagFile{c.prefix + "tls-key", c.key}); err != nil {
			return nil, err
		}
		kp, err := tlsfiles.LoadKeyPair(c.cert, c.key, log)
		if err != nil {
			return nil, fmt.Errorf("%stls-cert/%stls-key: %w", c.prefix, c.prefix, err)
		}
		inUse.Add(c.use+"_client", kp)
		cfg.GetClientCertificate = kp.ForClient
	}
	if c.ca != "" {
		pool, err := tlsfiles.LoadPool(c.ca, log)
		if err != nil {
			return nil, fmt.Errorf("%stls-ca: %w", c.prefix, err)
		}
		if name := cmp.Or(c.serverName, c.defaultName); name != "" {
			// cfg.ServerName stays as given: set, it would also become gRPC's :authority.
			if tlsfiles.VerifyServers(cfg, pool, name) { // only a bundle that is followed has news to report
				inUse.Add(c.use+"_ca", pool)
			}
		} else {
			// Read once: gRPC names the server on its own copy of cfg (from the target),
			// which a check that re-reads the bundle (tlsfiles.VerifyServers) cannot see.
			cfg.RootCAs = pool.Current()
		}
	}
	return cfg, nil
}

// targetHost is the name gRPC verifies the server's certificate against for a target
// ("host:port", "dns:///host:port", "dns:host:port", "passthrough:///host:port"): the
// host of its endpoint, parsed as grpc-go parses it (a target without a scheme it has
// a resolver for is read as "dns:///" + target, and the endpoint is URL-decoded). ""
// for sockets and endpoints without a port.
func targetHost(target string) string {
	if u, err := url.Parse(target); err == nil {
		switch strings.ToLower(u.Scheme) {
		case "dns", "passthrough":
			return endpointHost(cmp.Or(strings.TrimPrefix(u.Path, "/"), u.Opaque))
		case "unix", "unix-abstract":
			return ""
		}
	}
	u, err := url.Parse("dns:///" + target)
	if err != nil {
		return ""
	}
	return endpointHost(strings.TrimPrefix(u.Path, "/"))
}

// endpointHost is the host of a host:port endpoint, or "" without a port.
func endpointHost(endpoint string) string {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return ""
	}
	return host
}

// flagFile is a file and the flag that named it.
type flagFile struct{ flag, path string }

// readable names each flag whose file cannot be read, so that an error says which
// setting to fix.
func readable(files ...flagFile) error {
	var errs []error
	for _, f := range files {
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.flag, err))
		}
	}
	return errors.Join(errs...)
}

// check refuses settings that contradict each other: the switch set off beside a file
// or name (offContradicted), and a certificate without its key.
func (c clientTLS) check() error {
	if err := c.offContradicted(); err != nil {
		return err
	}
	return c.pairGiven()
}

// offContradicted refuses the switch set off beside a file or name, which imply TLS
// (each alone turns it on, so the "off" would go unheard).
func (c clientTLS) offContradicted() error {
	if c.onSet && !c.on {
		var tlsSettings []string
		for _, f := range []flagFile{{"tls-ca", c.ca}, {"tls-cert", c.cert}, {"tls-key", c.key}, {"tls-server-name", c.serverName}} {
			if f.path != "" {
				tlsSettings = append(tlsSettings, c.prefix+f.flag)
			}
		}
		if n := len(tlsSettings); n > 0 {
			them, turn := strings.Join(tlsSettings, " and "), "turns"
			if n > 1 {
				turn = "turn"
			}
			return fmt.Errorf("%stls=false contradicts %s, which %s TLS on: unset %[1]stls (or set it true) for TLS, or unset %[2]s for plaintext",
				c.prefix, them, turn)
		}
	}
	return nil
}

// pairGiven refuses a client certificate without its key, or a key without it.
func (c clientTLS) pairGiven() error {
	if (c.cert == "") != (c.key == "") {
		return fmt.Errorf("%stls-cert and %stls-key go together", c.prefix, c.prefix)
	}
	return nil
}
