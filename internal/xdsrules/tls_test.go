package xdsrules

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// Over mutual TLS, the server's certificate is verified against the name given (not
// the dialled address) and the client presents its own certificate.
func TestMutualTLS(t *testing.T) {
	p := xdstest.NewPKI(t, "xds.internal")
	cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.ServerTLS(t, true))))
	client, err := tls.LoadX509KeyPair(p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	svc := startService(t, cp.Addr, Options{TLS: &tls.Config{
		RootCAs: p.Pool, ServerName: "xds.internal", Certificates: []tls.Certificate{client}}})
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	cp.ACK(t, cp.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "alice", ok, ok, over)
}

// A server whose certificate the client does not trust gets no subscription: the
// stream fails on the handshake and is retried, and nothing is applied.
func TestUntrustedServerIsRefused(t *testing.T) {
	p := xdstest.NewPKI(t, "127.0.0.1")
	cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(p.ServerTLS(t, false))))
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	svc := startService(t, cp.Addr, Options{TLS: &tls.Config{RootCAs: x509.NewCertPool()}})
	svc.log.waitLog(t, "xDS stream ended", "certificate")
	if good, rejected := svc.loads.counts(); good+rejected != 0 {
		t.Fatalf("an untrusted server delivered %d updates", good+rejected)
	}
}
