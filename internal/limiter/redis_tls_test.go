package limiter_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
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
