package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
	"github.com/ratelimit-ext/ratelimit-ext/internal/tlsfiles"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules"
	"github.com/ratelimit-ext/ratelimit-ext/internal/xdsrules/xdstest"
)

func TestConfigSource(t *testing.T) {
	c, err := loadServeConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.xds.source != sourceFile {
		t.Errorf("default source %q, want file", c.xds.source)
	}
	c, err = loadServeConfig([]string{"--xds-server", "xds.svc:18000"})
	if err != nil {
		t.Fatal(err)
	}
	if c.xds.source != sourceXDS || c.xds.nodeID != "default" || c.xds.backoff != xdsrules.DefaultBackoff ||
		c.xds.maxMessageBytes != xdsrules.DefaultMaxMessageBytes || c.xds.keepalive != xdsrules.DefaultKeepalive {
		t.Errorf("--xds-server alone: %+v; want xds with the defaults", c.xds)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config-source", "xds"}, "needs --xds-server"},
		{[]string{"--config-source", "file", "--xds-server", "x:1"}, "--config-source is file"},
		{[]string{"--config-source", "consul"}, `"consul": want file or xds`},
		{[]string{"--xds-start-without-rules"}, "needs --config-source=xds"},
		{[]string{"--xds-server", "x:1", "--xds-node-metadata", "zone=eu, team"}, "--xds-node-metadata: item 2 is not key=value"},
		{[]string{"--xds-server", "x:1", "--xds-headers", "=v"}, "--xds-headers"},
		{[]string{"--xds-server", "x:1", "--xds-backoff-jitter", "1"}, "--xds-backoff-jitter"},
		{[]string{"--xds-backoff-jitter", "5"}, "--xds-backoff-jitter"}, // refused with file rules too
		{[]string{"--xds-server", "x:1", "--xds-backoff-initial", "0s"}, "--xds-backoff-initial"},
		{[]string{"--xds-server", "x:1", "--xds-backoff-initial", "2m", "--xds-backoff-max", "1m"}, "--xds-backoff-max 1m0s is below"},
		{[]string{"--xds-server", "x:1", "--xds-max-message-bytes", "0"}, "--xds-max-message-bytes"},
		{[]string{"--xds-server", "x:1", "--xds-keepalive-time", "-1s"}, "--xds-keepalive-time -1s: want 0"},
		{[]string{"--xds-server", "x:1", "--xds-keepalive-time", "5s"}, "--xds-keepalive-time 5s: want 0"},
		{[]string{"--xds-server", "x:1", "--xds-tls-cert", "c.pem"}, "go together"},
	} {
		if _, err := loadServeConfig(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	// A malformed header item is not repeated: it may be a token.
	if _, err := loadServeConfig([]string{"--xds-server", "x:1", "--xds-headers", "authorization:Bearer SECRET"}); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("a malformed --xds-headers item: %v, want an error without its text", err)
	}
	// Headers gRPC refuses to send (every stream would fail to open, retried forever
	// while the replica stays without rules) or drops without a word are refused at
	// start, naming the key and never the value.
	for _, h := range []string{"x auth=SECRET", "X-Tenant/ID=SECRET", "authorization=Bearer SECRET\u00e9", "te=SECRET", "grpc-timeout=SECRET", ":authority=SECRET", "user-agent=SECRET"} {
		_, err := loadServeConfig([]string{"--xds-server", "x:1", "--xds-headers", h})
		if err == nil || !strings.Contains(err.Error(), "--xds-headers") {
			t.Errorf("--xds-headers %q: error %v, want one naming --xds-headers", h, err)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("--xds-headers %q: error %q shows the value", h, err)
		}
	}
	if _, err := loadServeConfig([]string{"--xds-server", "x:1", "--xds-headers", "Authorization=Bearer a.b-c_d~e+f/g=, x-token-bin=\u00ff"}); err != nil {
		t.Errorf("valid headers refused: %v", err)
	}
	t.Setenv("RATELIMIT_EXT_XDS_BACKOFF_JITTER", "lots")
	if _, err := loadServeConfig(nil); err == nil || !strings.Contains(err.Error(), "RATELIMIT_EXT_XDS_BACKOFF_JITTER") {
		t.Errorf("a malformed jitter in the environment: %v", err)
	}
}

func TestXDSOptions(t *testing.T) {
	c, err := loadServeConfig([]string{"--xds-server", "xds.svc:18000", "--xds-node-id", "rl-1",
		"--xds-node-metadata", "zone=eu-1, team = edge,", "--xds-headers", "authorization=Bearer abc=",
		"--xds-backoff-initial", "2s", "--xds-backoff-max", "30s", "--xds-backoff-jitter", "0.2",
		"--xds-max-message-bytes", "8388608", "--xds-keepalive-time", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.xds.options(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.Server != "xds.svc:18000" || o.NodeID != "rl-1" || o.TLS != nil || o.MaxMessageBytes != 8<<20 ||
		o.Backoff != (xdsrules.Backoff{Initial: 2 * time.Second, Max: 30 * time.Second, Jitter: 0.2}) || o.Keepalive != 30*time.Second {
		t.Errorf("options %+v", o)
	}
	if len(o.NodeMetadata) != 2 || o.NodeMetadata["zone"] != "eu-1" || o.NodeMetadata["team"] != "edge" {
		t.Errorf("node metadata %v", o.NodeMetadata)
	}
	if len(o.Headers) != 1 || o.Headers["authorization"] != "Bearer abc=" {
		t.Errorf("headers %v", o.Headers)
	}
	// Headers over a plaintext connection are worth a warning: a token in them travels
	// in the clear; with TLS there is none.
	for _, tc := range []struct {
		tls  []string
		warn bool
	}{{nil, true}, {[]string{"--xds-tls"}, false}} {
		c, err := loadServeConfig(append([]string{"--xds-server", "x:1", "--xds-headers", "authorization=Bearer abc"}, tc.tls...))
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if _, err := c.xds.options(slog.New(slog.NewTextHandler(&logs, nil)), nil, nil); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "plaintext"); got != tc.warn || strings.Contains(logs.String(), "abc") {
			t.Errorf("headers with %v: log %q, want a warning: %v (and never the value)", tc.tls, logs.String(), tc.warn)
		}
	}

	c, err = loadServeConfig([]string{"--xds-server", "x:1", "--xds-tls-ca", "/nonexistent/ca.pem"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.xds.options(slog.Default(), nil, nil); err == nil || !strings.Contains(err.Error(), "--xds-tls-ca") {
		t.Errorf("an unreadable CA: %v", err)
	}
}

// The TLS files given as flags secure the subscription: server TLS verified against
// the CA, and mutual TLS with the server's name given explicitly.
func TestXDSTLSFromFiles(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutual bool
		certIn string // the name the server's certificate is for
		args   func(ca *testpki.CA, client testpki.Cert) []string
	}{
		{"server TLS", false, "127.0.0.1", func(ca *testpki.CA, _ testpki.Cert) []string {
			return []string{"--xds-tls-ca", ca.File}
		}},
		{"mutual TLS and a server name", true, "xds.internal", func(ca *testpki.CA, client testpki.Cert) []string {
			return []string{"--xds-tls", "--xds-tls-ca", ca.File, "--xds-tls-cert", client.CertFile, "--xds-tls-key", client.KeyFile,
				"--xds-tls-server-name", "xds.internal"}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := testpki.New(t)
			server := ca.Issue(t, "server", []string{tc.certIn}, x509.ExtKeyUsageServerAuth)
			client := ca.Issue(t, "client", nil, x509.ExtKeyUsageClientAuth)
			cp := xdstest.Start(t, "127.0.0.1:0", grpc.Creds(credentials.NewTLS(ca.ServerTLS(server, tc.mutual))))
			cp.Set(t, "default", "v1", &rlsconfv3.RateLimitConfig{Name: "edge", Domain: "edge"})
			c, err := loadServeConfig(append([]string{"--xds-server", cp.Addr, "--xds-backoff-initial", "20ms"}, tc.args(ca, client)...))
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.xds.options(slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			applied := make(chan *descriptors.RuleSet, 1)
			sub, err := xdsrules.Start(context.Background(), o, func(rs *descriptors.RuleSet) { applied <- rs })
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			cp.ACK(t, cp.Response(t, "v1"))
			if rs := <-applied; len(rs.Domains()) != 1 {
				t.Fatalf("applied %s", rs.Summary())
			}
		})
	}
}

// The xDS client's TLS files are listed for metrics as xds_client and xds_ca.
func TestXDSTLSFilesAreListed(t *testing.T) {
	ca, _, client := newPKI(t)
	c, err := loadServeConfig([]string{"--xds-server", "127.0.0.1:18000", "--xds-tls-ca", ca.File,
		"--xds-tls-cert", client.CertFile, "--xds-tls-key", client.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	var inUse tlsfiles.Registry
	if _, err := c.xds.options(slog.New(slog.DiscardHandler), &inUse, nil); err != nil {
		t.Fatal(err)
	}
	got := map[string]tlsfiles.Status{}
	inUse.Each(func(use string, s tlsfiles.Status) { got[use] = s })
	if len(got) != 2 || got["xds_client"].NotAfter != client.TLS.Leaf.NotAfter || got["xds_ca"] != (tlsfiles.Status{}) {
		t.Errorf("listed %+v, want xds_client (expiring %v) and xds_ca", got, client.TLS.Leaf.NotAfter)
	}
}

// An explicit "no TLS" to the xDS server (--xds-tls=false, or RATELIMIT_EXT_XDS_TLS=false)
// beside a TLS file or name of ours contradicts itself: it is refused at start, naming
// both, instead of the files quietly turning TLS on. The files alone still imply TLS.
// So it is with rules from files, where neither has effect: as TLS files beside a
// redis:// URL, and bench's --tls=false beside its files, the contradiction is refused
// when it is written, not when the rules move to xDS.
func TestXDSTLSOffBesideOurFilesIsRefused(t *testing.T) {
	for name, source := range map[string][]string{"xds": {"--xds-server", "xds.svc:18000"},
		"config-source file": {"--config-source=file"}, "no xds-server": nil} {
		t.Run(name, func(t *testing.T) { testXDSTLSOffBesideOurFiles(t, source) })
	}
}

// testXDSTLSOffBesideOurFiles is TestXDSTLSOffBesideOurFilesIsRefused with the rules
// from source (serve's flags that choose it).
func testXDSTLSOffBesideOurFiles(t *testing.T, source []string) {
	ca := testpki.New(t)
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want []string // "" for no error; else what the error names
	}{
		{nil, []string{"--xds-tls=false", "--xds-tls-ca", ca.File}, []string{"--xds-tls=false", "--xds-tls-ca"}},
		{nil, []string{"--xds-tls=false", "--xds-tls-cert", "c.pem", "--xds-tls-key", "k.pem"}, []string{"--xds-tls=false", "--xds-tls-cert", "--xds-tls-key"}},
		{nil, []string{"--xds-tls=0", "--xds-tls-server-name", "xds.internal"}, []string{"--xds-tls=false", "--xds-tls-server-name"}},
		{map[string]string{"RATELIMIT_EXT_XDS_TLS": "false"}, []string{"--xds-tls-ca", ca.File},
			[]string{"--xds-tls=false", "--xds-tls-ca", "--xds-tls is set by RATELIMIT_EXT_XDS_TLS"}},
		{map[string]string{"RATELIMIT_EXT_XDS_TLS_CA": ca.File}, []string{"--xds-tls=false"},
			[]string{"--xds-tls=false", "--xds-tls-ca", "--xds-tls-ca is set by RATELIMIT_EXT_XDS_TLS_CA"}},
		{nil, []string{"--xds-tls-ca", ca.File}, nil},                                             // the file implies TLS
		{nil, []string{"--xds-tls=true", "--xds-tls-ca", ca.File}, nil},                           // no contradiction
		{map[string]string{"RATELIMIT_EXT_XDS_TLS": " "}, []string{"--xds-tls-ca", ca.File}, nil}, // set empty: unset
		{nil, []string{"--xds-tls=false"}, nil},
	} {
		isolateEnv(t)
		for k, v := range tc.env {
			t.Setenv(k, v)
		}
		c, err := loadServeConfig(append(slices.Clone(source), tc.args...))
		if tc.want == nil {
			if err != nil {
				t.Errorf("%v %v: %v", tc.env, tc.args, err)
				continue
			}
			if c.xds.tls.ca != "" {
				cfg, err := c.xds.tls.config(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
				if err != nil || cfg == nil {
					t.Errorf("%v %v: TLS config %v, %v; want TLS", tc.env, tc.args, cfg, err)
				}
			}
			continue
		}
		for _, w := range tc.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v %v: error %v, want one naming %q", tc.env, tc.args, err, w)
			}
		}
	}
}
