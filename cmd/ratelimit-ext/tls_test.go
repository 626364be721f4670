package main

import (
	"context"
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
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testCA is a throwaway CA, made at test time, that issues certificates as PEM files.
type testCA struct {
	dir, file string // its directory and its certificate
	pool      *x509.CertPool
	cert      *x509.Certificate
	key       *ecdsa.PrivateKey
	serial    int64
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: t.TempDir(), pool: x509.NewCertPool(), cert: cert, key: key, serial: 1}
	ca.pool.AddCert(cert)
	ca.file = filepath.Join(ca.dir, "ca.pem")
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes NAME.pem and NAME-key.pem: a certificate for names (DNS names or IP
// addresses) with the given uses.
func (ca *testCA) issue(t *testing.T, name string, names []string, usages ...x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca.serial++
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(ca.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: usages}
	for _, n := range names {
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
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kb)
	return certFile, keyFile
}

// clientCert issues a client certificate for names and loads it for a tls.Config.
func (ca *testCA) clientCert(t *testing.T, name string, names ...string) tls.Certificate {
	t.Helper()
	cf, kf := ca.issue(t, name, names, x509.ExtKeyUsageClientAuth)
	c, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// pki is a CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	*testCA
	serverCert, serverKey string
	client                tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{testCA: newTestCA(t)}
	p.serverCert, p.serverKey = p.issue(t, "server", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	p.client = p.clientCert(t, "client", "127.0.0.1")
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveHealth starts a gRPC server with the given TLS settings and returns its address.
func serveHealth(t *testing.T, files tlsFiles) string {
	t.Helper()
	opt, err := files.serverOption()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opt)
	healthpb.RegisterHealthServer(gs, grpchealth.NewServer())
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

func healthCheck(addr string, cfg *tls.Config) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestGRPCServerTLS(t *testing.T) {
	p := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: p.serverCert, key: p.serverKey})
	if err := healthCheck(addr, &tls.Config{RootCAs: p.pool}); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}
}

func TestGRPCServerMutualTLS(t *testing.T) {
	p := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: p.serverCert, key: p.serverKey, clientCA: p.file})
	if err := healthCheck(addr, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}}); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: p.pool}); err == nil {
		t.Fatal("a client without a certificate passed mTLS")
	}
}

// --grpc-tls-client-san narrows mTLS to the clients whose certificate names it, as
// envoyproxy/ratelimit's GRPC_CLIENT_TLS_SAN does.
func TestGRPCServerClientSAN(t *testing.T) {
	p := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: p.serverCert, key: p.serverKey, clientCA: p.file, clientSAN: "envoy.edge.internal"})
	named := p.clientCert(t, "envoy", "envoy.edge.internal")
	if err := healthCheck(addr, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{named}}); err != nil {
		t.Fatalf("client whose certificate names the SAN: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{p.client}}); err == nil {
		t.Fatal("a client certificate signed by the CA but for another name passed")
	}
}

func TestTLSSettingsAreValidated(t *testing.T) {
	p := newPKI(t)
	for name, f := range map[string]tlsFiles{
		"cert without key":    {cert: "x.pem"},
		"missing files":       {cert: "/nonexistent/c.pem", key: "/nonexistent/k.pem"},
		"key of another pair": {cert: p.serverCert, key: p.file},
		"missing CA":          {cert: p.serverCert, key: p.serverKey, clientCA: "/nonexistent/ca.pem"},
		"SAN without a CA":    {cert: p.serverCert, key: p.serverKey, clientSAN: "envoy.edge.internal"},
	} {
		if _, err := f.serverOption(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if opt, err := (tlsFiles{}).serverOption(); opt != nil || err != nil {
		t.Fatalf("no TLS settings gave %v, %v", opt, err)
	}
}
