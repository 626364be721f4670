package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
)

// newPKI is the gRPC tests' CA with a server certificate for 127.0.0.1 and a client
// certificate.
func newPKI(t *testing.T) (ca *testpki.CA, server, client testpki.Cert) {
	t.Helper()
	ca = testpki.New(t)
	server = ca.Issue(t, "server", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	client = ca.Issue(t, "client", []string{"127.0.0.1"}, x509.ExtKeyUsageClientAuth)
	return ca, server, client
}

// serveHealth starts a gRPC server with the given TLS settings and returns its address.
func serveHealth(t *testing.T, files tlsFiles) string {
	t.Helper()
	opt, err := files.serverOption(nil, nil)
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
	ca, server, _ := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: server.CertFile, key: server.KeyFile})
	if err := healthCheck(addr, &tls.Config{RootCAs: ca.Pool}); err != nil {
		t.Fatalf("TLS client trusting the CA: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: x509.NewCertPool()}); err == nil {
		t.Fatal("a client that does not trust the CA connected")
	}
}

func TestGRPCServerMutualTLS(t *testing.T) {
	ca, server, client := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: server.CertFile, key: server.KeyFile, clientCA: ca.File})
	if err := healthCheck(addr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: ca.Pool}); err == nil {
		t.Fatal("a client without a certificate passed mTLS")
	}
}

// --grpc-tls-client-san narrows mTLS to the clients whose certificate names it, as
// envoyproxy/ratelimit's GRPC_CLIENT_TLS_SAN does.
func TestGRPCServerClientSAN(t *testing.T) {
	ca, server, client := newPKI(t)
	addr := serveHealth(t, tlsFiles{cert: server.CertFile, key: server.KeyFile, clientCA: ca.File, clientSAN: "envoy.edge.internal"})
	named := ca.Issue(t, "envoy", []string{"envoy.edge.internal"}, x509.ExtKeyUsageClientAuth)
	if err := healthCheck(addr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{named.TLS}}); err != nil {
		t.Fatalf("client whose certificate names the SAN: %v", err)
	}
	if err := healthCheck(addr, &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}}); err == nil {
		t.Fatal("a client certificate signed by the CA but for another name passed")
	}
}

func TestTLSSettingsAreValidated(t *testing.T) {
	ca, server, _ := newPKI(t)
	// Each error names the flag to fix.
	for name, tc := range map[string]struct {
		f     tlsFiles
		names []string
	}{
		"cert without key":    {tlsFiles{cert: "x.pem"}, []string{"--grpc-tls-key"}},
		"missing files":       {tlsFiles{cert: "/nonexistent/c.pem", key: "/nonexistent/k.pem"}, []string{"--grpc-tls-cert: ", "--grpc-tls-key: "}},
		"missing key file":    {tlsFiles{cert: server.CertFile, key: "/nonexistent/k.pem"}, []string{"--grpc-tls-key: "}},
		"key of another pair": {tlsFiles{cert: server.CertFile, key: ca.File}, nil},
		"missing CA":          {tlsFiles{cert: server.CertFile, key: server.KeyFile, clientCA: "/nonexistent/ca.pem"}, []string{"--grpc-tls-client-ca"}},
		"SAN without a CA":    {tlsFiles{cert: server.CertFile, key: server.KeyFile, clientSAN: "envoy.edge.internal"}, []string{"--grpc-tls-client-ca"}},
		"client CA alone":     {tlsFiles{clientCA: ca.File}, []string{"server's own certificate", "--grpc-tls-cert"}},
	} {
		_, err := tc.f.serverOption(nil, nil)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		for _, n := range tc.names {
			if !strings.Contains(err.Error(), n) {
				t.Errorf("%s: %v, want it to name %q", name, err, n)
			}
		}
	}
	if opt, err := (tlsFiles{}).serverOption(nil, nil); opt != nil || err != nil {
		t.Fatalf("no TLS settings gave %v, %v", opt, err)
	}
}

// The server's certificate and the client CA are read again when their files change,
// as a rotated Kubernetes Secret changes them: the next connection gets the new
// certificate and is held to the new CA.
func TestGRPCServerTLSFilesAreReadAgain(t *testing.T) {
	oldCA, oldServer, oldClient := newPKI(t)
	newCA, newServer, newClient := newPKI(t)
	dir := t.TempDir()
	files := tlsFiles{cert: dir + "/tls.crt", key: dir + "/tls.key", clientCA: dir + "/ca.crt"}
	rotate := func(step int, cert testpki.Cert, ca *testpki.CA) {
		testpki.Rotate(t, step, map[string]string{files.cert: cert.CertFile, files.key: cert.KeyFile, files.clientCA: ca.File})
	}
	rotate(1, oldServer, oldCA)
	addr := serveHealth(t, files)
	client := func(ca *testpki.CA, c testpki.Cert) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{c.TLS}}
	}
	if err := healthCheck(addr, client(oldCA, oldClient)); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	rotate(2, newServer, newCA)
	if err := healthCheck(addr, client(newCA, newClient)); err != nil {
		t.Fatalf("after rotation, a client of the new CA: %v", err)
	}
	if err := healthCheck(addr, client(oldCA, newClient)); err == nil {
		t.Error("after rotation, the server still presented the old certificate")
	}
	if err := healthCheck(addr, client(newCA, oldClient)); err == nil {
		t.Error("after rotation, a client certificate of the old CA still passed")
	}
}

func TestTargetHost(t *testing.T) {
	for target, want := range map[string]string{
		"xds.internal:18000":                   "xds.internal",
		"10.0.0.7:18000":                       "10.0.0.7",
		"[::1]:18000":                          "::1",
		"dns:///eg.envoy-gateway-system:18000": "eg.envoy-gateway-system",
		"dns://8.8.8.8:53/xds.internal:18000":  "xds.internal",
		"passthrough:///10.0.0.7:18000":        "10.0.0.7",
		"unix:///var/run/xds.sock":             "",
		"xds.internal":                         "",
		"dns:///local%68ost:18000":             "localhost",
		"DNS:///xds.internal:18000":            "xds.internal",
		"dns:xds.internal:18000":               "xds.internal",
		"[fe80::1%25eth0]:18000":               "fe80::1%eth0",
		"xds:18000":                            "xds",
	} {
		if got := targetHost(target); got != want {
			t.Errorf("targetHost(%q) = %q, want %q", target, got, want)
		}
	}
}

// With the xDS server's name known (here the host of --xds-server, an IP address), the
// client's CA bundle is read again when it changes; without one it is read once.
func TestClientTLSFollowsTheCABundle(t *testing.T) {
	oldCA, oldServer, _ := newPKI(t)
	newCA, newServer, _ := newPKI(t)
	bundle := t.TempDir() + "/ca.crt"
	testpki.Rotate(t, 1, map[string]string{bundle: oldCA.File})
	x := &xdsSettings{server: "127.0.0.1:18000", tls: clientTLS{prefix: "--xds-", ca: bundle}}
	opts, err := x.options(slog.New(slog.DiscardHandler), nil, nil) // the name comes from --xds-server
	if err != nil {
		t.Fatal(err)
	}
	followed := opts.TLS
	readOnce, err := clientTLS{prefix: "--xds-", ca: bundle}.config(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	readOnce.ServerName = "127.0.0.1" // as gRPC sets it on its copy
	testpki.Rotate(t, 2, map[string]string{bundle: newCA.File})

	serve := func(c testpki.Cert, ca *testpki.CA) string {
		lis, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(c, false))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		go func() {
			for {
				conn, err := lis.Accept()
				if err != nil {
					return
				}
				conn.(*tls.Conn).Handshake()
				conn.Close()
			}
		}()
		return lis.Addr().String()
	}
	dial := func(addr string, cfg *tls.Config) error {
		conn, err := tls.Dial("tcp", addr, cfg)
		if err == nil {
			conn.Close()
		}
		return err
	}
	newAddr, oldAddr := serve(newServer, newCA), serve(oldServer, oldCA)
	if err := dial(newAddr, followed); err != nil {
		t.Errorf("with a name, after rotation, the new CA's server: %v", err)
	}
	if err := dial(oldAddr, followed); err == nil {
		t.Error("with a name, after rotation, the old CA's server was still trusted")
	}
	if err := dial(oldAddr, readOnce); err != nil {
		t.Errorf("without a name, the bundle read at start: %v", err)
	}
}

// The gRPC server's TLS settings that contradict each other are refused with the other
// settings (one line, exit 2), as the xDS and Redis TLS settings are; they used to be
// found only when the server was built, logged as "exiting", exit 1.
func TestGRPCTLSSettingsAreCheckedAtStart(t *testing.T) {
	isolateEnv(t)
	none := t.TempDir() + "/none" // without the check, the missing rules stop the start first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--grpc-tls-cert", "c.pem"}, "ratelimit-ext: --grpc-tls-cert and --grpc-tls-key go together"},
		{[]string{"--grpc-tls-key", "k.pem"}, "ratelimit-ext: --grpc-tls-cert and --grpc-tls-key go together"},
		{[]string{"--grpc-tls-client-ca", "ca.pem"}, "ratelimit-ext: --grpc-tls-client-ca and --grpc-tls-client-san need the server's own certificate: --grpc-tls-cert and --grpc-tls-key"},
		{[]string{"--grpc-tls-cert", "c.pem", "--grpc-tls-key", "k.pem", "--grpc-tls-client-san", "envoy"}, "ratelimit-ext: --grpc-tls-client-san needs --grpc-tls-client-ca"},
	} {
		code, out := runStderr(t, append([]string{"serve", "--config-dir", none}, tc.args...)...)
		if code != 2 || out != tc.want+"\n" {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit 2 and the one line:\n%s", tc.args, code, out, tc.want)
		}
	}
	os.Setenv("RATELIMIT_EXT_GRPC_TLS_CERT", "c.pem")
	defer os.Unsetenv("RATELIMIT_EXT_GRPC_TLS_CERT")
	want := "ratelimit-ext: --grpc-tls-cert and --grpc-tls-key go together (--grpc-tls-cert is set by RATELIMIT_EXT_GRPC_TLS_CERT)\n"
	if code, out := runStderr(t, "serve", "--config-dir", none); code != 2 || out != want {
		t.Errorf("RATELIMIT_EXT_GRPC_TLS_CERT alone: exit %d, stderr:\n%s\nwant exit 2 and:\n%s", code, out, want)
	}
}
