package testpki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An issued certificate verifies against the CA, read from its file, for exactly its
// names and usages, and its files hold the same pair as TLS.
func TestIssue(t *testing.T) {
	ca := New(t)
	c := ca.Issue(t, "server", []string{"svc.internal", "127.0.0.1"}, x509.ExtKeyUsageServerAuth)

	caPEM, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("%s holds no certificate", ca.File)
	}
	leaf := c.TLS.Leaf
	for _, name := range []string{"svc.internal", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("for %s: %v", name, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: name}); err != nil {
			t.Errorf("against Pool, for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.internal"}); err == nil {
		t.Error("verified for a name it was not issued for")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("a server certificate verified as a client's")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: New(t).Pool}); err == nil {
		t.Error("verified against another CA")
	}

	expired := ca.IssueExpired(t, "expired", []string{"svc.internal"}, x509.ExtKeyUsageServerAuth).TLS.Leaf
	if _, err := expired.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "svc.internal"}); err == nil {
		t.Error("an expired certificate verified")
	}
	if _, err := expired.Verify(x509.VerifyOptions{Roots: ca.Pool, DNSName: "svc.internal", CurrentTime: expired.NotAfter.Add(-time.Minute)}); err != nil {
		t.Errorf("the expired certificate, within its validity: %v", err)
	}

	loaded, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(loaded.Certificate[0], c.TLS.Certificate[0]) {
		t.Error("the certificate file and TLS differ")
	}
}

// ServerTLS serves c; with requireClient it admits only clients this CA certified.
func TestServerTLS(t *testing.T) {
	ca := New(t)
	server := ca.Issue(t, "server", []string{"svc.internal"}, x509.ExtKeyUsageServerAuth)
	client := ca.Issue(t, "client", nil, x509.ExtKeyUsageClientAuth)
	stranger := New(t).Issue(t, "client", nil, x509.ExtKeyUsageClientAuth)
	for _, tc := range []struct {
		name          string
		requireClient bool
		certs         []tls.Certificate
		ok            bool
	}{
		{"server TLS", false, nil, true},
		{"mutual TLS", true, []tls.Certificate{client.TLS}, true},
		{"mutual TLS without a client certificate", true, nil, false},
		{"mutual TLS with another CA's certificate", true, []tls.Certificate{stranger.TLS}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(ca.ServerTLS(server, tc.requireClient),
				&tls.Config{RootCAs: ca.Pool, ServerName: "svc.internal", Certificates: tc.certs})
			if (err == nil) != tc.ok {
				t.Fatalf("handshake: %v, want success %v", err, tc.ok)
			}
		})
	}
}

// handshake runs both sides over an in-memory connection and returns the server's
// error, or else the client's: either side may be the one to refuse.
func handshake(server, client *tls.Config) error {
	sc, cc := net.Pipe()
	// Closing the pipe, not the TLS connections: their close_notify writes would wait
	// on each other over an unbuffered pipe.
	defer cc.Close()
	done := make(chan error, 1)
	go func() {
		defer sc.Close()
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	// In TLS 1.3 the client's handshake ends before the server has checked the
	// client's certificate: the server's refusal arrives as the error of a read.
	c := tls.Client(cc, client)
	cerr := c.Handshake()
	if cerr == nil {
		_, cerr = c.Read(make([]byte, 1))
	}
	if cerr != nil {
		cc.Close() // a server still waiting to read the handshake gives up too
	}
	if serr := <-done; serr != nil {
		return serr
	}
	return cerr
}

// Rotate copies the files and dates them step seconds ahead.
func TestRotate(t *testing.T) {
	ca := New(t)
	c := ca.Issue(t, "c", nil, x509.ExtKeyUsageClientAuth)
	dst := filepath.Join(t.TempDir(), "tls.crt")
	Rotate(t, 5, map[string]string{dst: c.CertFile})
	got, err := os.ReadFile(dst)
	want, _ := os.ReadFile(c.CertFile)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copy: %v, equal %v", err, bytes.Equal(got, want))
	}
	st, err := os.Stat(dst)
	if err != nil {
		t.Fatal(err)
	}
	if ahead := time.Until(st.ModTime()); ahead < 4*time.Second || ahead > 6*time.Second {
		t.Errorf("modification time %v ahead, want about 5s", ahead)
	}
}

// A leaf of an intermediate carries the intermediate after it, in its file and in TLS,
// and verifies against the root only with it.
func TestIntermediate(t *testing.T) {
	root := New(t)
	mid := root.Intermediate(t, "mid")
	leaf := mid.Issue(t, "leaf", []string{"svc.internal"}, x509.ExtKeyUsageServerAuth)
	if len(leaf.TLS.Certificate) != 2 {
		t.Fatalf("TLS chain of %d certificates, want the leaf and the intermediate", len(leaf.TLS.Certificate))
	}
	cert, err := x509.ParseCertificate(leaf.TLS.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	inter, err := x509.ParseCertificate(leaf.TLS.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	opts := x509.VerifyOptions{Roots: mid.Pool, DNSName: "svc.internal"}
	if _, err := cert.Verify(opts); err == nil {
		t.Error("the leaf verified against the root without its intermediate")
	}
	opts.Intermediates = x509.NewCertPool()
	opts.Intermediates.AddCert(inter)
	if _, err := cert.Verify(opts); err != nil {
		t.Errorf("with the intermediate: %v", err)
	}
}
