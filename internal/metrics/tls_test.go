package metrics

import (
	"crypto/x509"
	"os"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// A scrape reports each certificate's expiry and sees a rotation that does not load,
// with no handshake to look at the files.
func TestTLSFilesMetrics(t *testing.T) {
	ca := testpki.New(t)
	c := ca.Issue(t, "server", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	kp, err := tlsfiles.LoadKeyPair(c.CertFile, c.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tlsfiles.LoadPool(ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reg tlsfiles.Registry
	reg.Add("grpc_server", kp)
	reg.Add("grpc_client_ca", pool)
	f := newFixture(t)
	f.m.TLSFiles(&reg)

	const (
		expiry  = `ratelimit_ext_tls_certificate_expiry_timestamp_seconds{files="grpc_server"}`
		failing = `ratelimit_ext_tls_reload_failing{files="grpc_server"}`
		caFail  = `ratelimit_ext_tls_reload_failing{files="grpc_client_ca"}`
	)
	got := f.scrape()
	if want := float64(c.TLS.Leaf.NotAfter.Unix()); got[expiry] != want {
		t.Errorf("%s = %v, want %v", expiry, got[expiry], want)
	}
	if v, ok := got[failing]; !ok || v != 0 {
		t.Errorf("%s = %v (present %v), want 0", failing, v, ok)
	}
	if v, ok := got[caFail]; !ok || v != 0 {
		t.Errorf("%s = %v (present %v), want 0", caFail, v, ok)
	}
	if _, ok := got[`ratelimit_ext_tls_certificate_expiry_timestamp_seconds{files="grpc_client_ca"}`]; ok {
		t.Error("a CA bundle reported an expiry")
	}

	// A rotation writes a certificate that does not load.
	if err := os.WriteFile(c.CertFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	if err := os.Chtimes(c.CertFile, later, later); err != nil {
		t.Fatal(err)
	}
	got = f.scrape()
	if got[failing] != 1 {
		t.Errorf("after a bad rotation %s = %v, want 1", failing, got[failing])
	}
	if want := float64(c.TLS.Leaf.NotAfter.Unix()); got[expiry] != want {
		t.Errorf("after a bad rotation %s = %v, want the certificate still in use's %v", expiry, got[expiry], want)
	}
}
