// Package testpki is a throwaway certificate authority for TLS tests: made at test
// time, so no certificate is checked in and none can expire between runs. It issues
// server and client certificates, writes them as PEM files into the test's temporary
// directory for code that takes file names, and hands out the same pairs loaded as
// tls.Certificate for code that takes a tls.Config.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// validity is how long before and after its making a certificate is valid: backdated
// so that it holds at once whatever the rounding of its times, and short so that no
// certificate stays good for long; no fixed date, so nothing expires between runs.
const validity = time.Hour

// CA is a certificate authority whose certificate and issued pairs live in one
// temporary directory of the test that made it.
type CA struct {
	File string         // the CA certificate, PEM
	Pool *x509.CertPool // holds only the CA certificate

	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	serial atomic.Int64 // the last serial issued; the CA's own is 1
	chain  [][]byte     // DER of the intermediates above an issued leaf, nearest first
}

// Cert is an issued certificate and its key, as files and loaded.
type Cert struct {
	CertFile, KeyFile string // PEM: the certificate and its EC private key
	TLS               tls.Certificate
}

// New makes a CA with an ECDSA P-256 key in a new temporary directory of t.
func New(t testing.TB) *CA {
	t.Helper()
	der, cert, key := caCert(t, 1, "testpki CA", nil)
	ca := &CA{dir: t.TempDir(), Pool: x509.NewCertPool(), cert: cert, key: key}
	ca.serial.Store(1)
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(ca.dir, "ca.pem")
	writeFile(t, ca.File, pemBlock("CERTIFICATE", der))
	return ca
}

// Issue signs a certificate for sans (each a DNS name or an IP address) with the
// extended key usages given (x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth or
// both) and writes it as NAME.pem and NAME-key.pem; name is also its common name. A
// name is issued once per CA: files already written are never replaced.
func (ca *CA) Issue(t testing.TB, name string, sans []string, usages ...x509.ExtKeyUsage) Cert {
	t.Helper()
	now := time.Now()
	return ca.issue(t, name, sans, now.Add(-validity), now.Add(validity), usages)
}

// IssueExpired is Issue for a certificate whose validity began with the CA's and ended
// a minute ago, for tests that an expired certificate is refused.
func (ca *CA) IssueExpired(t testing.TB, name string, sans []string, usages ...x509.ExtKeyUsage) Cert {
	t.Helper()
	return ca.issue(t, name, sans, ca.cert.NotBefore, time.Now().Add(-time.Minute), usages)
}

func (ca *CA) issue(t testing.TB, name string, sans []string, notBefore, notAfter time.Time, usages []x509.ExtKeyUsage) Cert {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter,
		// Signing the handshake is the one use an ECDSA leaf key has in TLS. Go does not
		// check KeyUsage; OpenSSL (redis-server) does, so it must not name less.
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usages}
	for _, n := range sans {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := pemBlock("CERTIFICATE", der), pemBlock("EC PRIVATE KEY", kder)
	for _, ic := range ca.chain { // a server sends its chain up to the root
		certPEM = append(certPEM, pemBlock("CERTIFICATE", ic)...)
	}
	c := Cert{CertFile: filepath.Join(ca.dir, name+".pem"), KeyFile: filepath.Join(ca.dir, name+"-key.pem")}
	writeFile(t, c.CertFile, certPEM)
	writeFile(t, c.KeyFile, keyPEM)
	// Loaded from the very bytes written, so the files and TLS are one pair.
	if c.TLS, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	return c
}

// Intermediate makes a CA whose certificate this CA signs. Its File and Pool hold the
// root (this CA), as a client's trust bundle would, and the pairs it issues carry the
// intermediate's certificate after their own, as a server sends its chain.
func (ca *CA) Intermediate(t testing.TB, name string) *CA {
	t.Helper()
	der, cert, key := caCert(t, ca.serial.Add(1), name, ca)
	sub := &CA{File: ca.File, Pool: ca.Pool, dir: t.TempDir(), cert: cert, key: key,
		chain: append([][]byte{der}, ca.chain...)}
	sub.serial.Store(1)
	return sub
}

// ServerTLS is a server's configuration presenting c; with requireClient, clients must
// present a certificate this CA signed (mutual TLS).
func (ca *CA) ServerTLS(c Cert, requireClient bool) *tls.Config {
	cfg := &tls.Config{Certificates: []tls.Certificate{c.TLS}, MinVersion: tls.VersionTLS12}
	if requireClient {
		cfg.ClientCAs, cfg.ClientAuth = ca.Pool, tls.RequireAndVerifyClientCert
	}
	return cfg
}

// caCert makes a CA certificate and its key, signed by parent, or self-signed when
// parent is nil.
func caCert(t testing.TB, serial int64, name string, parent *CA) (der []byte, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key = newKey(t)
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-validity), NotAfter: now.Add(validity),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return der, cert, key
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile creates path, failing if it exists: a second Issue of a name would
// otherwise swap the files under a Cert handed out earlier.
func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// Rotate copies each source file over its destination (dst → src in files), as a
// certificate rotation rewrites a mounted Secret, and sets the copies' modification
// time step seconds ahead: a later step is seen as a change whatever the
// filesystem's timestamp granularity.
func Rotate(t testing.TB, step int, files map[string]string) {
	t.Helper()
	at := time.Now().Add(time.Duration(step) * time.Second)
	for dst, src := range files {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(dst, at, at); err != nil {
			t.Fatal(err)
		}
	}
}
