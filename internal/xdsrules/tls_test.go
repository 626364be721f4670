package xdsrules

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

// Over mutual TLS, the server's certificate is verified against the name given (not
// the dialled address) and the client presents its own certificate.
func TestMutualTLS(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Issue(t, "server", []string{"xds.internal"}, x509.ExtKeyUsageServerAuth)
	client := ca.Issue(t, "client", nil, x509.ExtKeyUsageClientAuth)
	cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(ca.ServerTLS(server, true))))
	svc := startService(t, cp.Addr, Options{TLS: &tls.Config{
		RootCAs: ca.Pool, ServerName: "xds.internal", Certificates: []tls.Certificate{client.TLS}}})
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	cp.ACK(t, cp.Response(t, "v1"))
	svc.decisions(t, "edge", "user", "alice", ok, ok, over)
}

// A server whose certificate the client does not trust gets no subscription: the
// stream fails on the handshake and is retried, and nothing is applied.
func TestUntrustedServerIsRefused(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Issue(t, "server", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(ca.ServerTLS(server, false))))
	cp.Set(t, nodeID, "v1", edgeConfig(2))
	svc := startService(t, cp.Addr, Options{TLS: &tls.Config{RootCAs: x509.NewCertPool()}})
	svc.log.WaitLine(t, xdstest.Wait, "xDS stream ended", "certificate")
	if good, rejected := svc.loads.counts(); good+rejected != 0 {
		t.Fatalf("an untrusted server delivered %d updates", good+rejected)
	}
}
