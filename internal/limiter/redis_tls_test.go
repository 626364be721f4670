package limiter_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// writeCert issues a certificate signed by parent (self-signed when parent is nil) and
// writes cert and key as PEM files named base.crt and base.key in dir.
func writeCert(t *testing.T, dir, base string, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(base+".crt", "CERTIFICATE", der)
	write(base+".key", "EC PRIVATE KEY", kder)
	return cert, key
}

// A rediss:// URL with a CA file and a client certificate reaches a TLS-only server
// that requires client certificates; without the certificate or the CA it fails with
// ErrStore.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := writeCert(t, dir, "ca", &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	writeCert(t, dir, "server", &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	writeCert(t, dir, "client", &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "ratelimit-ext"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, caKey)
	path := func(name string) string { return filepath.Join(dir, name) }

	clientCert, err := tls.LoadX509KeyPair(path("client.crt"), path("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	srv := testredis.StartTLS(t, testredis.TLSFiles{CertFile: path("server.crt"), KeyFile: path("server.key"), CAFile: path("ca.crt")},
		&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})

	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	ctx := context.Background()
	try := func(o limiter.RedisOptions) error {
		o.URL, o.ReadTimeout, o.WriteTimeout = srv.URL(), 5*time.Second, 5*time.Second
		e, err := limiter.NewRedisEngine(o)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		_, err = e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d)
		return err
	}
	if err := try(limiter.RedisOptions{TLSCAFile: path("ca.crt"), TLSCertFile: path("client.crt"), TLSKeyFile: path("client.key")}); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if !d[0].Allowed {
		t.Errorf("first request over TLS denied: %+v", d[0])
	}
	if err := try(limiter.RedisOptions{TLSCAFile: path("ca.crt")}); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("without a client certificate: %v, want ErrStore", err)
	}
	if err := try(limiter.RedisOptions{TLSCertFile: path("client.crt"), TLSKeyFile: path("client.key")}); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("without the CA (system roots): %v, want ErrStore", err)
	}
	if err := try(limiter.RedisOptions{TLSCertFile: path("client.crt"), TLSKeyFile: path("client.key"), TLSInsecureSkipVerify: true}); err != nil {
		t.Errorf("skipping verification: %v", err)
	}
}
