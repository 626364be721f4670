package tlsfiles_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
)

// place copies src over dst as a rotation does (testpki.Rotate).
func place(t *testing.T, dst, src string, step int) {
	t.Helper()
	testpki.Rotate(t, step, map[string]string{dst: src})
}

// writeAt writes b to path with a modification time step seconds ahead.
func writeAt(t *testing.T, path string, b []byte, step int) {
	t.Helper()
	writeWithTime(t, path, b, time.Now().Add(time.Duration(step)*time.Second))
}

func writeWithTime(t *testing.T, path string, b []byte, at time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

// logBuffer is a logger whose warnings the test reads.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

func commonName(c *tls.Certificate) string {
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		return "unparsable: " + err.Error()
	}
	return leaf.Subject.CommonName
}

// A rotated pair is served from the next call on; a half-written one is reported once
// and the previous pair kept; a vanished file keeps it too; a repaired one is used.
func TestKeyPairFollowsItsFiles(t *testing.T) {
	ca := testpki.New(t)
	first := ca.Issue(t, "first", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	second := ca.Issue(t, "second", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	place(t, cert, first.CertFile, 1)
	place(t, key, first.KeyFile, 1)
	log, logged := logBuffer()

	kp, err := tlsfiles.LoadKeyPair(cert, key, log)
	if err != nil {
		t.Fatal(err)
	}
	if got := commonName(kp.Certificate()); got != "first" {
		t.Fatalf("loaded %q, want first", got)
	}

	place(t, cert, second.CertFile, 2)
	place(t, key, second.KeyFile, 2)
	if got := commonName(kp.Certificate()); got != "second" {
		t.Fatalf("after rotation: %q, want second", got)
	}
	if !strings.Contains(logged.String(), "a changed TLS certificate was loaded") || !strings.Contains(logged.String(), "CN=second") ||
		!strings.Contains(logged.String(), "not_after=") {
		t.Errorf("no line saying which certificate a rotation loaded:\n%s", logged)
	}

	// Half a rotation: the new certificate beside the old key does not load.
	place(t, cert, first.CertFile, 3)
	for range 3 {
		if got := commonName(kp.Certificate()); got != "second" {
			t.Fatalf("after a mismatched pair: %q, want the previous pair (second)", got)
		}
	}
	if n := strings.Count(logged.String(), "did not load"); n != 1 {
		t.Fatalf("a failed change was reported %d times, want once:\n%s", n, logged)
	}

	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if got := commonName(kp.Certificate()); got != "second" {
		t.Fatalf("with the key gone: %q, want the previous pair (second)", got)
	}

	place(t, key, first.KeyFile, 4)
	if got := commonName(kp.Certificate()); got != "first" {
		t.Fatalf("after the rotation completed: %q, want first", got)
	}
}

func TestLoadRefusesWhatDoesNotLoad(t *testing.T) {
	ca := testpki.New(t)
	c := ca.Issue(t, "c", nil, x509.ExtKeyUsageServerAuth)
	if _, err := tlsfiles.LoadKeyPair(c.CertFile, filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Error("a missing key loaded")
	}
	if _, err := tlsfiles.LoadKeyPair(c.KeyFile, c.CertFile, nil); err == nil {
		t.Error("a pair with its files swapped loaded")
	}
	if _, err := tlsfiles.LoadPool(c.KeyFile, nil); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("a key file as a CA bundle: %v, want no PEM certificate", err)
	}
}

// handshake runs a TLS handshake between the two configurations over a loopback
// connection and returns the client's and the server's errors.
func handshake(t *testing.T, client, server *tls.Config) (clientErr, serverErr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		s := tls.Server(conn, server)
		s.SetDeadline(time.Now().Add(5 * time.Second))
		err = s.Handshake()
		if err == nil {
			// TLS 1.3 servers check client certificates after the client's handshake
			// returns; a read makes the client learn of a refusal.
			_, err = s.Write([]byte{1})
		}
		done <- err
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := tls.Client(conn, client)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = c.Read(make([]byte, 1))
	}
	c.Close()
	return clientErr, <-done
}

// A client verifying with VerifyServers trusts the CA the file holds at each
// handshake, and still checks the server's name.
func TestVerifyServersFollowsTheBundle(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	oldSrv := oldCA.Issue(t, "old", []string{"127.0.0.1", "redis.internal"}, x509.ExtKeyUsageServerAuth)
	newSrv := newCA.Issue(t, "new", []string{"127.0.0.1", "redis.internal"}, x509.ExtKeyUsageServerAuth)
	clientOnly := oldCA.Issue(t, "client-only", []string{"127.0.0.1"}, x509.ExtKeyUsageClientAuth)
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	place(t, bundle, oldCA.File, 1)
	pool, err := tlsfiles.LoadPool(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := func(name string) *tls.Config {
		cfg := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
		tlsfiles.VerifyServers(cfg, pool, cfg.ServerName)
		return cfg
	}

	cases := []struct {
		when   string
		server testpki.Cert
		name   string
		ok     bool
	}{
		{"before rotation", oldSrv, "127.0.0.1", true},
		{"before rotation, a CA not in the bundle", newSrv, "127.0.0.1", false},
		{"before rotation, by DNS name", oldSrv, "redis.internal", true},
		{"before rotation, a name the certificate lacks", oldSrv, "other.internal", false},
		{"before rotation, a client-only certificate", clientOnly, "127.0.0.1", false},
		{"before rotation, no name to check", oldSrv, "", false},
	}
	for _, c := range cases {
		err, _ := handshake(t, client(c.name), oldCA.ServerTLS(c.server, false))
		if (err == nil) != c.ok {
			t.Errorf("%s: client error %v, want ok=%v", c.when, err, c.ok)
		}
	}

	cfg := client("127.0.0.1") // made before the rotation, as a connection pool's is
	place(t, bundle, newCA.File, 2)
	if err, _ := handshake(t, cfg, newCA.ServerTLS(newSrv, false)); err != nil {
		t.Errorf("after rotation, the new CA's server: %v", err)
	}
	if err, _ := handshake(t, cfg, oldCA.ServerTLS(oldSrv, false)); err == nil {
		t.Error("after rotation, the old CA's server was still trusted")
	}
}

// A configuration that skips verification is left alone.
func TestVerifyServersLeavesInsecureAlone(t *testing.T) {
	ca := testpki.New(t)
	srv := ca.Issue(t, "srv", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	other := testpki.New(t)
	pool, err := tlsfiles.LoadPool(other.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{InsecureSkipVerify: true}
	if tlsfiles.VerifyServers(cfg, pool, cfg.ServerName) {
		t.Error("VerifyServers says it took effect on a skip-verify configuration")
	}
	if !tlsfiles.VerifyServers(&tls.Config{}, pool, "127.0.0.1") {
		t.Error("VerifyServers says it did not take effect on a verifying configuration")
	}
	if err, _ := handshake(t, cfg, ca.ServerTLS(srv, false)); err != nil {
		t.Errorf("skip-verify client: %v", err)
	}
}

// A server using VerifyClients accepts the client certificates that the bundle's CAs
// signed as the file holds them at each handshake.
func TestVerifyClientsFollowsTheBundle(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	srv := oldCA.Issue(t, "srv", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	oldClient := oldCA.Issue(t, "old-client", nil, x509.ExtKeyUsageClientAuth)
	newClient := newCA.Issue(t, "new-client", nil, x509.ExtKeyUsageClientAuth)
	bundle := filepath.Join(t.TempDir(), "client-ca.crt")
	place(t, bundle, oldCA.File, 1)
	pool, err := tlsfiles.LoadPool(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	server := oldCA.ServerTLS(srv, false)
	tlsfiles.VerifyClients(server, pool)
	client := func(c *testpki.Cert) *tls.Config {
		cfg := &tls.Config{RootCAs: oldCA.Pool, ServerName: "127.0.0.1"}
		if c != nil {
			cfg.Certificates = []tls.Certificate{c.TLS}
		}
		return cfg
	}
	check := func(when string, c *testpki.Cert, ok bool) {
		t.Helper()
		_, err := handshake(t, client(c), server)
		if (err == nil) != ok {
			t.Errorf("%s: server error %v, want ok=%v", when, err, ok)
		}
	}
	check("before rotation, the old CA's client", &oldClient, true)
	check("before rotation, the new CA's client", &newClient, false)
	check("before rotation, no certificate", nil, false)

	place(t, bundle, newCA.File, 2)
	check("after rotation, the new CA's client", &newClient, true)
	check("after rotation, the old CA's client", &oldClient, false)

	writeAt(t, bundle, []byte("not PEM"), 3)
	check("after a broken rotation, the last bundle's client", &newClient, true)
}

// A server whose certificate an intermediate signed is verified through the chain it
// sends, as crypto/tls does; the bundle holds the root only.
func TestVerifyServersFollowsAnIntermediate(t *testing.T) {
	root := testpki.New(t)
	srv := root.Intermediate(t, "issuer").Issue(t, "srv", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	pool, err := tlsfiles.LoadPool(root.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{ServerName: "127.0.0.1"}
	tlsfiles.VerifyServers(cfg, pool, cfg.ServerName)
	if err, _ := handshake(t, cfg, root.ServerTLS(srv, false)); err != nil {
		t.Errorf("a chain through an intermediate: %v", err)
	}
}

// Without a name in the configuration, the name the handshake sent (tls.Dial fills it
// in from the address) is checked.
func TestVerifyServersChecksTheDialledName(t *testing.T) {
	ca := testpki.New(t)
	named := ca.Issue(t, "named", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	other := ca.Issue(t, "other", []string{"other.internal"}, x509.ExtKeyUsageServerAuth)
	pool, err := tlsfiles.LoadPool(ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cert testpki.Cert
		ok   bool
	}{{named, true}, {other, false}} {
		lis, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(tc.cert, false))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := lis.Accept(); err == nil {
				c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		cfg := &tls.Config{}
		tlsfiles.VerifyServers(cfg, pool, cfg.ServerName)
		_, port, _ := net.SplitHostPort(lis.Addr().String())
		conn, err := tls.Dial("tcp", net.JoinHostPort("localhost", port), cfg)
		if conn != nil {
			conn.Close()
		}
		lis.Close()
		if (err == nil) != tc.ok {
			t.Errorf("a certificate for %v dialled as localhost: %v, want ok=%v", tc.cert.TLS.Leaf.DNSNames, err, tc.ok)
		}
	}
}

// A version that failed to load is tried again after a while, so that a repair that
// the file's version does not show is seen; it is reported once however often it
// fails. (The repair here keeps size and time, and content is not read again for the
// test's duration: that is how a repair looks that changes none of the three, such as
// a read that failed only while loading, on a mount's error. A chmod that makes a file
// readable is not one: the file's digest goes from unread to read.)
func TestFailedVersionIsTriedAgain(t *testing.T) {
	defer tlsfiles.SetRehashEvery(time.Hour)()
	ca := testpki.New(t)
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	place(t, bundle, ca.File, 1)
	log, logged := logBuffer()
	pool, err := tlsfiles.LoadPool(bundle, log)
	if err != nil {
		t.Fatal(err)
	}
	first := pool.Current()

	// The next CA bundle arrives damaged, then is repaired in place with the same size
	// and time.
	other := testpki.New(t)
	next, err := os.ReadFile(other.File)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, bundle, bytes.Repeat([]byte("x"), len(next)), 2)
	st, err := os.Stat(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if pool.Current() != first {
		t.Fatal("a damaged bundle replaced the loaded one")
	}
	restore := tlsfiles.SetRetryFailed(0)
	for range 3 {
		if pool.Current() != first {
			t.Fatal("a damaged bundle replaced the loaded one when tried again")
		}
	}
	restore()
	if err := os.WriteFile(bundle, next, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(bundle, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if pool.Current() != first {
		t.Fatal("a version that failed was tried again at once")
	}
	defer tlsfiles.SetRetryFailed(0)()
	if pool.Current() == first {
		t.Fatal("the repaired bundle was never tried again")
	}
	if n := strings.Count(logged.String(), "did not load"); n != 1 {
		t.Errorf("the failure was reported %d times, want once:\n%s", n, logged)
	}
}

// Status reports the certificate in use and whether the files on disk fail to load;
// undoing a bad change ends the failure, as a good one does.
func TestStatusReportsTheFilesInUse(t *testing.T) {
	ca := testpki.New(t)
	first := ca.Issue(t, "first", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	second := ca.Issue(t, "second", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	dir := t.TempDir()
	cert, key, bundle := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	place(t, cert, first.CertFile, 1)
	place(t, key, first.KeyFile, 1)
	place(t, bundle, ca.File, 1)
	certAt, bundleAt := modTime(t, cert), modTime(t, bundle)
	kp, err := tlsfiles.LoadKeyPair(cert, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := tlsfiles.LoadPool(bundle, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := new(tlsfiles.Registry)
	reg.Add("server", kp)
	reg.Add("ca", pool)
	status := func() map[string]tlsfiles.Status {
		got := map[string]tlsfiles.Status{}
		reg.Each(func(use string, s tlsfiles.Status) { got[use] = s })
		return got
	}
	want := func(step string, server, ca tlsfiles.Status) {
		t.Helper()
		if got := status(); len(got) != 2 || got["server"] != server || got["ca"] != ca {
			t.Fatalf("%s: %+v, want server %+v and ca %+v", step, got, server, ca)
		}
	}
	ok := tlsfiles.Status{NotAfter: first.TLS.Leaf.NotAfter}
	want("loaded", ok, tlsfiles.Status{})

	// Half a rotation (the next certificate beside the old key) and a damaged bundle:
	// both fail, and what was loaded stays in use.
	place(t, cert, second.CertFile, 2)
	writeAt(t, bundle, []byte("not PEM"), 2)
	want("a change that does not load", tlsfiles.Status{Failing: true, NotAfter: first.TLS.Leaf.NotAfter}, tlsfiles.Status{Failing: true})

	// Undone: the files are back at the version in use, times included (a backup
	// moved back into place).
	restore(t, cert, first.CertFile, certAt)
	restore(t, bundle, ca.File, bundleAt)
	want("the change undone", ok, tlsfiles.Status{})

	place(t, cert, second.CertFile, 3)
	place(t, key, second.KeyFile, 3)
	want("rotated", tlsfiles.Status{NotAfter: second.TLS.Leaf.NotAfter}, tlsfiles.Status{})
	if got := commonName(kp.Certificate()); got != "second" {
		t.Fatalf("after rotation: %q, want second", got)
	}
}

func modTime(t *testing.T, path string) time.Time {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.ModTime()
}

// restore writes src's bytes to dst with the modification time at.
func restore(t *testing.T, dst, src string, at time.Time) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeWithTime(t, dst, b, at)
}

// A use added again names the new files; a nil registry takes nothing.
func TestRegistryKeepsOneEntryPerUse(t *testing.T) {
	ca := testpki.New(t)
	a, err := tlsfiles.LoadPool(ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tlsfiles.LoadPool(ca.File, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Issue(t, "c", nil, x509.ExtKeyUsageClientAuth)
	kp, err := tlsfiles.LoadKeyPair(c.CertFile, c.KeyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	var reg tlsfiles.Registry
	reg.Add("ca", a)
	reg.Add("client", kp)
	reg.Add("ca", b)
	var uses []string
	reg.Each(func(use string, s tlsfiles.Status) {
		uses = append(uses, use)
		if use == "client" && s.NotAfter.IsZero() {
			t.Error("the key pair reported no expiry")
		}
	})
	if strings.Join(uses, ",") != "ca,client" {
		t.Errorf("uses %v, want [ca client]", uses)
	}
	var none *tlsfiles.Registry
	none.Add("ca", a) // must not panic
}
