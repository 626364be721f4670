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

// pki is a throwaway CA with a server and a client certificate, made at test time.
type pki struct {
	dir                   string
	caPool                *x509.CertPool
	caFile                string
	serverCert, serverKey string
	client                tls.Certificate
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	p := &pki{dir: dir, caPool: x509.NewCertPool(), caFile: filepath.Join(dir, "ca.pem")}
	p.caPool.AddCert(ca)
	writePEM(t, p.caFile, "CERTIFICATE", caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	sDER, sKey := leaf(2, x509.ExtKeyUsageServerAuth)
	p.serverCert, p.serverKey = filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEM(t, p.serverCert, "CERTIFICATE", sDER)
	skb, _ := x509.MarshalECPrivateKey(sKey)
	writePEM(t, p.serverKey, "EC PRIVATE KEY", skb)
	cDER, cKey := leaf(3, x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{cDER}, PrivateKey: cKey}
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
	if err := healthCheck(addr, &tls.Config{RootCAs: p.caPool}); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}
}

func TestGRPCServerMutualTLS(t *testing.T) {
	p := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: p.serverCert, key: p.serverKey, clientCA: p.caFile})
	if err := healthCheck(addr, &tls.Config{RootCAs: p.caPool, Certificates: []tls.Certificate{p.client}}); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: p.caPool}); err == nil {
		t.Fatal("a client without a certificate passed mTLS")
	}
}

func TestTLSSettingsAreValidated(t *testing.T) {
	p := newPKI(t)
	for name, f := range map[string]tlsFiles{
		"cert without key":    {cert: "x.pem"},
		"missing files":       {cert: "/nonexistent/c.pem", key: "/nonexistent/k.pem"},
		"key of another pair": {cert: p.serverCert, key: p.caFile},
		"missing CA":          {cert: p.serverCert, key: p.serverKey, clientCA: "/nonexistent/ca.pem"},
	} {
		if _, err := f.serverOption(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if opt, err := (tlsFiles{}).serverOption(); opt != nil || err != nil {
		t.Fatalf("no TLS settings gave %v, %v", opt, err)
	}
}
