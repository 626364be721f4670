package tlsfiles_test

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// VerifyServerChains skips the name check and nothing else: a certificate of the
// bundle's CA is accepted whatever it names, while one from another CA, an expired
// one and a client-only one are refused; the bundle is followed when it is rotated.
func TestVerifyServerChainsSkipsOnlyTheName(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	named := oldCA.Issue(t, "named", []string{"redis.internal"}, x509.ExtKeyUsageServerAuth)
	newNamed := newCA.Issue(t, "named", []string{"redis.internal"}, x509.ExtKeyUsageServerAuth)
	expired := oldCA.IssueExpired(t, "expired", []string{"redis.internal"}, x509.ExtKeyUsageServerAuth)
	clientOnly := oldCA.Issue(t, "client-only", []string{"redis.internal"}, x509.ExtKeyUsageClientAuth)
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	place(t, bundle, oldCA.File, 1)
	pool, err := tlsfiles.LoadPool(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The name dialled is not one the certificates carry; the configuration is made
	// once, before the rotation, as a connection pool's is.
	cfg := &tls.Config{ServerName: "10.0.0.7", MinVersion: tls.VersionTLS12}
	if !tlsfiles.VerifyServerChains(cfg, pool) {
		t.Fatal("VerifyServerChains says it did not take effect on a verifying configuration")
	}
	check := func(when string, ca *testpki.CA, server testpki.Cert, ok bool) {
		t.Helper()
		if err, _ := handshake(t, cfg, ca.ServerTLS(server, false)); (err == nil) != ok {
			t.Errorf("%s: client error %v, want ok=%v", when, err, ok)
		}
	}
	check("a certificate for another name", oldCA, named, true)
	check("a CA not in the bundle", newCA, newNamed, false)
	check("an expired certificate", oldCA, expired, false)
	check("a client-only certificate", oldCA, clientOnly, false)

	place(t, bundle, newCA.File, 2)
	check("after rotation, the new CA's server", newCA, newNamed, true)
	check("after rotation, the old CA's server", oldCA, named, false)
}

// Without a bundle the chain is verified against the system roots, which do not hold
// a test CA; a configuration that skips verification is left alone.
func TestVerifyServerChainsWithoutABundle(t *testing.T) {
	ca := testpki.New(t)
	srv := ca.Issue(t, "srv", []string{"redis.internal"}, x509.ExtKeyUsageServerAuth)
	cfg := &tls.Config{ServerName: "10.0.0.7"}
	tlsfiles.VerifyServerChains(cfg, nil)
	if err, _ := handshake(t, cfg, ca.ServerTLS(srv, false)); err == nil {
		t.Error("a test CA's certificate was accepted against the system roots")
	}
	insecure := &tls.Config{InsecureSkipVerify: true}
	if tlsfiles.VerifyServerChains(insecure, nil) || insecure.VerifyConnection != nil {
		t.Error("VerifyServerChains changed a skip-verify configuration")
	}
}
