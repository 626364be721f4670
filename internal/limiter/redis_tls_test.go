package limiter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testredis"
)

// A rediss:// URL with a CA file and a client certificate reaches a TLS-only server
// that requires client certificates; without the certificate or the CA it fails with
// ErrStore.
func TestRedisTLS(t *testing.T) {
	ca := testpki.New(t)
	server := ca.Issue(t, "redis", []string{"127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth)
	client := ca.Issue(t, "ratelimit-ext", nil, x509.ExtKeyUsageClientAuth)
	srv := testredis.StartTLS(t, testredis.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.File},
		&tls.Config{RootCAs: ca.Pool, Certificates: []tls.Certificate{client.TLS}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})

	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	ctx := context.Background()
	try := func(o limiter.RedisOptions) error {
		o.URL, o.ReadTimeout, o.WriteTimeout = srv.URL(), 5*time.Second, 5*time.Second
		e, err := limiter.NewRedisEngine(o)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		_, err = e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d)
		return err
	}
	if err := try(limiter.RedisOptions{TLSCAFile: ca.File, TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}); err != nil {
		t.Fatalf("mutual TLS: %v", err)
	}
	if !d[0].Allowed {
		t.Errorf("first request over TLS denied: %+v", d[0])
	}
	if err := try(limiter.RedisOptions{TLSCAFile: ca.File}); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("without a client certificate: %v, want ErrStore", err)
	}
	if err := try(limiter.RedisOptions{TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile}); !errors.Is(err, limiter.ErrStore) {
		t.Errorf("without the CA (system roots): %v, want ErrStore", err)
	}
	if err := try(limiter.RedisOptions{TLSCertFile: client.CertFile, TLSKeyFile: client.KeyFile, TLSInsecureSkipVerify: true}); err != nil {
		t.Errorf("skipping verification: %v", err)
	}
}

// A rediss:// URL pointed at a Redis without TLS times out in the handshake; the
// readiness error says that TLS may be why, instead of reading as a slow network. A
// plain URL whose server never answers times out too, without that note.
func TestRedisTLSAgainstAPlainPortIsExplained(t *testing.T) {
	srv := testredis.Start(t)
	silent := silentListener(t)
	for _, tc := range []struct {
		url  string
		hint bool
	}{
		{"rediss://" + strings.TrimPrefix(srv.URL(), "redis://"), true},
		{"redis://" + silent, false},
	} {
		e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: tc.url, DialTimeout: 200 * time.Millisecond,
			ReadTimeout: 200 * time.Millisecond, TLSInsecureSkipVerify: tc.hint})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err = e.Ping(ctx)
		cancel()
		e.Close()
		var ne net.Error
		timedOut := errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
		if !errors.Is(err, limiter.ErrStore) || !timedOut {
			t.Errorf("%s: %v; want ErrStore from a timeout", tc.url, err)
			continue
		}
		if strings.Contains(err.Error(), "does not speak TLS") != tc.hint {
			t.Errorf("%s: %v; want the TLS note: %v", tc.url, err, tc.hint)
		}
	}
}

// silentListener accepts connections on a loopback port and never answers: any
// command sent there times out.
func silentListener(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never read
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return lis.Addr().String()
}

// The CA bundle and the client certificate are read again when their files change:
// after Redis moves to a certificate from a new CA and trusts only client certificates
// of that CA, an engine whose files were rotated the same way reconnects without a
// restart.
func TestRedisTLSFilesAreReadAgain(t *testing.T) {
	oldCA, newCA := testpki.New(t), testpki.New(t)
	oldSrv := oldCA.Issue(t, "redis", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	newSrv := newCA.Issue(t, "redis", []string{"127.0.0.1"}, x509.ExtKeyUsageServerAuth)
	oldClient := oldCA.Issue(t, "ratelimit-ext", nil, x509.ExtKeyUsageClientAuth)
	newClient := newCA.Issue(t, "ratelimit-ext", nil, x509.ExtKeyUsageClientAuth)
	admin := oldCA.Issue(t, "admin", nil, x509.ExtKeyUsageClientAuth)
	srv := testredis.StartTLS(t, testredis.TLSFiles{CertFile: oldSrv.CertFile, KeyFile: oldSrv.KeyFile, CAFile: oldCA.File},
		&tls.Config{RootCAs: oldCA.Pool, Certificates: []tls.Certificate{admin.TLS}, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})

	dir := t.TempDir()
	caFile, certFile, keyFile := dir+"/ca.crt", dir+"/tls.crt", dir+"/tls.key"
	testpki.Rotate(t, 1, map[string]string{caFile: oldCA.File, certFile: oldClient.CertFile, keyFile: oldClient.KeyFile})

	e, err := limiter.NewRedisEngine(limiter.RedisOptions{URL: srv.URL(), ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
		TLSCAFile: caFile, TLSCertFile: certFile, TLSKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
	d := make([]limiter.Decision, 1)
	ctx := context.Background()
	if _, err := e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	// Redis moves to the new CA for both sides; the connections made before are cut.
	rc := srv.Client()
	if err := rc.Do(ctx, "CONFIG", "SET", "tls-cert-file", newSrv.CertFile, "tls-key-file", newSrv.KeyFile,
		"tls-ca-cert-file", newCA.File).Err(); err != nil {
		t.Fatalf("CONFIG SET: %v", err)
	}
	if err := rc.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	testpki.Rotate(t, 2, map[string]string{caFile: newCA.File, certFile: newClient.CertFile, keyFile: newClient.KeyFile})

	// A call on a connection that was cut may fail once per pooled connection; a fresh
	// connection must succeed.
	var last error
	for range 20 {
		if _, last = e.Evaluate(ctx, 0, oneCheck(p, uniquePrefix(t), 1), d); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("after rotating the files the way Redis was rotated: %v", last)
	}
}

// The server's certificate is verified for its chain, usage and validity whether or not
// its name is. TLSSkipHostnameVerification accepts a certificate of the CA that does
// not name the URL's host (127.0.0.1), and never one from another CA or an expired
// one; TLSServerName verifies the certificate against that name instead of the host.
func TestRedisTLSServerNameOptions(t *testing.T) {
	ca, other := testpki.New(t), testpki.New(t)
	client := ca.Issue(t, "ratelimit-ext", nil, x509.ExtKeyUsageClientAuth)
	start := func(server testpki.Cert) *testredis.Server {
		// The helper's own client only waits for the server: it trusts any certificate.
		return testredis.StartTLS(t, testredis.TLSFiles{CertFile: server.CertFile, KeyFile: server.KeyFile, CAFile: ca.File},
			&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{client.TLS}, MinVersion: tls.VersionTLS12})
	}
	named := start(ca.Issue(t, "named", []string{"redis.internal"}, x509.ExtKeyUsageServerAuth))
	foreign := start(other.Issue(t, "foreign", []string{"127.0.0.1", "redis.internal"}, x509.ExtKeyUsageServerAuth))
	expired := start(ca.IssueExpired(t, "expired", []string{"127.0.0.1", "redis.internal"}, x509.ExtKeyUsageServerAuth))

	skip := limiter.RedisOptions{TLSCAFile: ca.File, TLSSkipHostnameVerification: true}
	for _, tc := range []struct {
		name string
		srv  *testredis.Server
		o    limiter.RedisOptions
		err  string // "": the call succeeds
	}{
		{"another name, verified", named, limiter.RedisOptions{TLSCAFile: ca.File}, "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"},
		{"another name, the name skipped", named, skip, ""},
		{"another name, against the name it carries", named, limiter.RedisOptions{TLSCAFile: ca.File, TLSServerName: "redis.internal"}, ""},
		{"another name, against a name it lacks", named, limiter.RedisOptions{TLSCAFile: ca.File, TLSServerName: "other.internal"},
			"x509: certificate is valid for redis.internal, not other.internal"},
		{"another name, the name skipped, the system roots", named, limiter.RedisOptions{TLSSkipHostnameVerification: true}, "x509: certificate signed by unknown authority"},
		{"another CA, the name skipped", foreign, skip, "x509: certificate signed by unknown authority"},
		{"expired, the name skipped", expired, skip, "x509: certificate has expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			o.URL, o.ReadTimeout, o.WriteTimeout = tc.srv.URL(), 5*time.Second, 5*time.Second
			o.TLSCertFile, o.TLSKeyFile = client.CertFile, client.KeyFile
			e, err := limiter.NewRedisEngine(o)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			p := params(t, limiter.Params{Algorithm: limiter.GCRA, Limit: 10, PeriodMs: 1000})
			_, err = e.Evaluate(context.Background(), 0, oneCheck(p, uniquePrefix(t), 1), make([]limiter.Decision, 1))
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.err != "" && (!errors.Is(err, limiter.ErrStore) || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("error %v, want ErrStore saying %q", err, tc.err)
			}
		})
	}
}

// The name options are for TLS, in every mode, and each contradicts the other and the
// URL's skip_verify (which verifies nothing): the engine refuses them.
func TestRedisTLSServerNameOptionsAreChecked(t *testing.T) {
	for _, tc := range []struct {
		o    limiter.RedisOptions
		want string
	}{
		{limiter.RedisOptions{URL: "redis://127.0.0.1:1", TLSSkipHostnameVerification: true}, "TLS options need a rediss:// URL"},
		{limiter.RedisOptions{URL: "redis://127.0.0.1:1", TLSServerName: "redis.internal"}, "TLS options need a rediss:// URL"},
		{limiter.RedisOptions{URL: "redis://127.0.0.1:1?addr=127.0.0.1:2", Mode: limiter.RedisCluster, TLSSkipHostnameVerification: true},
			"TLS options need a rediss:// URL"},
		{limiter.RedisOptions{URL: "redis://127.0.0.1:1?master_name=m", Mode: limiter.RedisSentinel, TLSServerName: "redis.internal"},
			"TLS options need a rediss:// URL"},
		{limiter.RedisOptions{URL: "rediss://127.0.0.1:1", TLSSkipHostnameVerification: true, TLSServerName: "redis.internal"},
			"a server name to verify against and skipping the name check"},
		{limiter.RedisOptions{URL: "rediss://127.0.0.1:1?skip_verify=true", TLSSkipHostnameVerification: true}, "skip_verify"},
		{limiter.RedisOptions{URL: "rediss://127.0.0.1:1?skip_verify=true", TLSServerName: "redis.internal"}, "skip_verify"},
	} {
		e, err := limiter.NewRedisEngine(tc.o)
		if err == nil {
			e.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error saying %q", tc.o, err, tc.want)
		}
	}
}
