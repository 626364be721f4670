package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

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
	f.StringVar(&t.clientCA, "grpc-tls-client-ca", "", "PEM CA bundle: require client certificates signed by it (mTLS)")
	f.StringVar(&t.clientSAN, "grpc-tls-client-san", "", "with --grpc-tls-client-ca: also require this DNS name (or IP address) among the client certificate's SANs")
}

// serverOption returns the gRPC credentials option, or nil for plaintext.
func (t tlsFiles) serverOption() (grpc.ServerOption, error) {
	if t.cert == "" && t.key == "" && t.clientCA == "" && t.clientSAN == "" {
		return nil, nil
	}
	if t.cert == "" || t.key == "" {
		if t.cert == "" && t.key == "" { // only client-certificate settings
			return nil, errors.New("--grpc-tls-client-ca and --grpc-tls-client-san need the server's own certificate: --grpc-tls-cert and --grpc-tls-key")
		}
		return nil, errors.New("--grpc-tls-cert and --grpc-tls-key go together")
	}
	if t.clientSAN != "" && t.clientCA == "" {
		// Without a CA no client certificate is asked for, so there is no name to check.
		return nil, errors.New("--grpc-tls-client-san needs --grpc-tls-client-ca")
	}
	kp := &keyPair{certFile: t.cert, keyFile: t.key}
	if _, err := kp.get(nil); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
	if t.clientCA != "" {
		pool, err := loadCertPool("--grpc-tls-client-ca", t.clientCA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		if t.clientSAN != "" {
			cfg.VerifyPeerCertificate = requireSAN(t.clientSAN)
		}
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
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

// keyPair serves the certificate from its files and reloads it when they change, so a
// rotated certificate (cert-manager, a mounted Secret) is used without a restart.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cs, err1 := os.Stat(k.certFile)
	ks, err2 := os.Stat(k.keyFile)
	if err1 != nil {
		err1 = fmt.Errorf("--grpc-tls-cert: %w", err1)
	}
	if err2 != nil {
		err2 = fmt.Errorf("--grpc-tls-key: %w", err2)
	}
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("gRPC TLS: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && cs.ModTime().Equal(k.certMod) && ks.ModTime().Equal(k.keyMod) {
		return k.cert, nil
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil // a half-written rotation: keep serving the previous pair
		}
		return nil, fmt.Errorf("gRPC TLS: %w", err)
	}
	k.cert, k.certMod, k.keyMod = &c, cs.ModTime(), ks.ModTime()
	return k.cert, nil
}

// loadCertPool reads the PEM certificates of path, which flag names, into a pool.
func loadCertPool(flag, path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate found", flag, path)
	}
	return pool, nil
}

// clientTLS are a client's TLS settings from the flags prefix+"tls", prefix+"tls-ca"
// and so on: the xDS subscription's ("--xds-") and the load generator's ("--").
type clientTLS struct {
	prefix                    string
	on                        bool
	ca, cert, key, serverName string
}

// config returns the client TLS configuration, or nil for plaintext when no setting is
// given. The client certificate is read again at a handshake when its files changed,
// as for the gRPC server: a rotated certificate (a mounted Secret) is used without a
// restart.
func (c clientTLS) config() (*tls.Config, error) {
	if !c.on && c.ca == "" && c.cert == "" && c.key == "" && c.serverName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.serverName}
	if c.ca != "" {
		pool, err := loadCertPool(c.prefix+"tls-ca", c.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if err := c.pairGiven(); err != nil {
		return nil, err
	}
	if c.cert != "" {
		kp := &keyPair{certFile: c.cert, keyFile: c.key}
		if _, err := kp.get(nil); err != nil {
			return nil, fmt.Errorf("%stls-cert/%stls-key: %w", c.prefix, c.prefix, err)
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get(nil) }
	}
	return cfg, nil
}

// pairGiven refuses a client certificate without its key, or a key without it.
func (c clientTLS) pairGiven() error {
	if (c.cert == "") != (c.key == "") {
		return fmt.Errorf("%stls-cert and %stls-key go together", c.prefix, c.prefix)
	}
	return nil
}
