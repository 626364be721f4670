package e2e

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/testpki"
)

// tlsEnvoyConfig has an Envoy's rate-limit filter reach the service over mutual TLS, as
// an Istio or Envoy Gateway deployment may: the service cluster's UpstreamTlsContext
// presents a client certificate and verifies the service's, with no ALPN setting of
// its own (Envoy offers h2 to an HTTP/2 cluster; gRPC servers refuse a TLS client that
// negotiates none). Certificate, key and CA files fill it in.
const tlsEnvoyConfig = `    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: ratelimit.internal
        common_tls_context:
          tls_certificates: [{certificate_chain: {filename: %[1]q}, private_key: {filename: %[2]q}}]
          validation_context:
            trusted_ca: {filename: %[3]q}
            match_typed_subject_alt_names: [{san_type: DNS, matcher: {exact: ratelimit.internal}}]
`

// rlsEnvoy describes an Envoy whose rate-limit filter sends every request as the
// descriptor [generic_key=Value] of Domain to the service on 127.0.0.1:RLSPort, and
// passes allowed requests to 127.0.0.1:UpPort. failure_mode_deny turns a failed call
// into a 500, so a broken path to the service cannot pass as "allowed".
type rlsEnvoy struct {
	UpPort, RLSPort int
	Domain, Value   string
	// Added, indented to match, to the connection manager's settings, the filter's
	// settings and the service's cluster.
	ManagerExtra, FilterExtra, ClusterExtra string
}

// config is the Envoy configuration with its admin and listener ports.
func (e rlsEnvoy) config(admin, listen int) string {
	return fmt.Sprintf(`admin: {address: {socket_address: {address: 127.0.0.1, port_value: %[1]d}}}
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 127.0.0.1, port_value: %[2]d}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_%[5]s
%[9]s          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route:
                  cluster: upstream
                  rate_limits:
                  - actions: [{generic_key: {descriptor_value: %[6]s}}]
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: %[5]s
              failure_mode_deny: true
              timeout: 2s
%[7]s              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: ratelimit}}
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
  clusters:
  - name: upstream
    type: STATIC
    load_assignment: {cluster_name: upstream, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[3]d}}}}]}]}
  - name: ratelimit
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment: {cluster_name: ratelimit, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: %[4]d}}}}]}]}
%[8]s`, admin, listen, e.UpPort, e.RLSPort, e.Domain, e.Value, e.FilterExtra, e.ClusterExtra, e.ManagerExtra)
}

// Envoy's rate-limit filter reaches the service over mutual TLS: the service presents
// its certificate and requires Envoy's, narrowed to Envoy's name (--grpc-tls-client-san),
// and decisions come back (two allowed, then 429). An Envoy whose certificate another
// CA signed, or the same CA for another name, gets no decision (500 with
// failure_mode_deny) while the trusted Envoy still gets its answers.
func TestEnvoyOverMutualTLS(t *testing.T) {
	needTopology(t)
	ca := testpki.New(t)
	server := ca.Issue(t, "ratelimit", []string{"ratelimit.internal"}, x509.ExtKeyUsageServerAuth)
	envoyCert := ca.Issue(t, "envoy", []string{"envoy.internal"}, x509.ExtKeyUsageClientAuth)
	otherName := ca.Issue(t, "other", []string{"other.internal"}, x509.ExtKeyUsageClientAuth)
	stranger := testpki.New(t).Issue(t, "stranger", []string{"envoy.internal"}, x509.ExtKeyUsageClientAuth)

	rules := t.TempDir()
	// An hour's window: three requests never straddle a window's end.
	rule := "domain: tls\ndescriptors:\n  - key: generic_key\n    value: over-tls\n    rate_limit: {unit: hour, requests_per_unit: 2}\n"
	if err := os.WriteFile(filepath.Join(rules, "tls.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	svc := startReplicas(t, 1, "--config-dir", rules, "--grpc-tls-cert", server.CertFile, "--grpc-tls-key", server.KeyFile,
		"--grpc-tls-client-ca", ca.File, "--grpc-tls-client-san", "envoy.internal")[0]
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(upstream.Close)
	upPort, err := strconv.Atoi(upstream.URL[strings.LastIndex(upstream.URL, ":")+1:])
	if err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Timeout: 10 * time.Second}
	get := func(url string) int {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	trusted := startTLSEnvoy(t, "trusted", svc.grpcPort, upPort, envoyCert, ca)
	var codes []int
	for range 3 {
		codes = append(codes, get(trusted))
	}
	if fmt.Sprint(codes) != "[200 200 429]" {
		t.Fatalf("3 requests on a limit of 2 per hour over mTLS: %v, want [200 200 429]", codes)
	}
	for _, tc := range []struct {
		name string
		cert testpki.Cert
	}{{"another CA", stranger}, {"another name", otherName}} {
		url := startTLSEnvoy(t, strings.ReplaceAll(tc.name, " ", "-"), svc.grpcPort, upPort, tc.cert, ca)
		if code := get(url); code != http.StatusInternalServerError {
			t.Errorf("an Envoy with a certificate of %s: %d, want 500 (no decision, failure_mode_deny)", tc.name, code)
		}
		if code := get(trusted); code != http.StatusTooManyRequests {
			t.Errorf("the trusted Envoy after the %s one: %d, want 429 (the service still deciding)", tc.name, code)
		}
	}
}

// startTLSEnvoy starts an Envoy on tlsEnvoyConfig presenting cert and trusting ca, and
// returns its listener's URL once it is ready.
func startTLSEnvoy(t *testing.T, name string, rlsPort, upPort int, cert testpki.Cert, ca *testpki.CA) string {
	t.Helper()
	return startEnvoyOn(t, "envoy-tls-"+name, func(admin, listen int) string {
		return rlsEnvoy{UpPort: upPort, RLSPort: rlsPort, Domain: "tls", Value: "over-tls",
			ClusterExtra: fmt.Sprintf(tlsEnvoyConfig, cert.CertFile, cert.KeyFile, ca.File)}.config(admin, listen)
	})
}

// startEnvoyOn starts an Envoy on the configuration config writes for its admin and
// listener ports, and returns the listener's URL once it is ready.
func startEnvoyOn(t *testing.T, name string, config func(admin, listen int) string) string {
	t.Helper()
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		admin, err1 := freePort()
		listen, err2 := freePort()
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		path := filepath.Join(dir, fmt.Sprintf("envoy-%d.yaml", attempt))
		if err := os.WriteFile(path, []byte(config(admin, listen)), 0o644); err != nil {
			t.Fatal(err)
		}
		p := &Process{Name: name, Path: inputs.Binaries[kindEnvoy],
			// Access logs reach their files within 100 ms, not Envoy's default 10 s.
			Args:    []string{"-c", path, "--use-dynamic-base-id", "--log-level", "info", "--file-flush-interval-msec", "100"},
			LogPath: filepath.Join(dir, fmt.Sprintf("envoy-%d.log", attempt))}
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		adminURL := "http://127.0.0.1:" + strconv.Itoa(admin)
		err := waitUntil(p, 30*time.Second, func() error { return httpOK(adminURL + "/ready") })
		if err == nil {
			t.Cleanup(func() { stopLogged(t, p) })
			return "http://127.0.0.1:" + strconv.Itoa(listen) + "/"
		}
		stopLogged(t, p)
		if attempt == 3 || !portTaken(err, p.LogPath) {
			t.Fatal(err)
		}
	}
}
