package extauthz

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// rules are limits for every descriptor shape the sections below build; the loader
// rejects an ext_authz descriptor that could match no limit.
const rules = `domain: d
descriptors:
  - {key: remote_address, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: masked_remote_address, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: api_key, rate_limit: {unit: minute, requests_per_unit: 5}}
  - key: generic_key
    value: llm
    rate_limit: {unit: minute, requests_per_unit: 5}
    descriptors:
      - {key: tenant, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: header_match, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: path, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: route, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: method, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: host, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: principal, rate_limit: {unit: minute, requests_per_unit: 5}}
  - {key: tenant, rate_limit: {unit: minute, requests_per_unit: 5}}
`

// spec compiles one ext_authz section (its descriptors given as YAML flow items).
func spec(t *testing.T, items ...string) *descriptors.ExtAuthz {
	t.Helper()
	src := rules + "ext_authz:\n  descriptors:\n"
	for _, it := range items {
		src += "    - " + it + "\n"
	}
	rs, err := descriptors.Parse("t.yaml", []byte(src))
	if err != nil {
		t.Fatalf("rules: %v", err)
	}
	return rs.ExtAuthz("d")
}

// check builds attributes: headers as name/value pairs, a source address.
type check struct {
	source     string // IP; "" = none
	principal  string
	method     string
	path       string
	host       string
	headers    map[string]string
	raw        [][2]string // header_map instead of headers
	extensions map[string]string
}

func (c check) attrs() *authv3.AttributeContext {
	a := &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: c.principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: c.method, Path: c.path, Host: c.host, Headers: c.headers,
		}},
		ContextExtensions: c.extensions,
	}
	if c.source != "" {
		a.Source.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: c.source, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}
	}
	if c.raw != nil {
		hm := &corev3.HeaderMap{}
		for _, kv := range c.raw {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[0], RawValue: []byte(kv[1])})
		}
		a.Request.Http.HeaderMap = hm
	}
	return a
}

// show renders extracted descriptors as "k=v,k=v[;cost]" joined by " | ". Extraction
// without explanations must build the same descriptors and report no skips.
func show(t *testing.T, x *descriptors.ExtAuthz, a *authv3.AttributeContext) string {
	t.Helper()
	ds, skipped := Extract(x, a, true)
	if len(ds)+len(skipped) != len(x.Descriptors) {
		t.Fatalf("%d descriptors + %d skipped != %d configured", len(ds), len(skipped), len(x.Descriptors))
	}
	quiet, none := Extract(x, a, false)
	if got, want := render(quiet), render(ds); got != want || none != nil {
		t.Fatalf("without explain: %q and skipped %+v, with: %q", got, none, want)
	}
	return render(ds)
}

func render(ds []decide.Descriptor) string {
	var parts []string
	for _, d := range ds {
		var es []string
		for _, e := range d.Entries {
			es = append(es, e.Key+"="+e.Value)
		}
		s := strings.Join(es, ",")
		if d.Cost != nil {
			s += fmt.Sprintf(";cost=%d", *d.Cost)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " | ")
}

func TestRemoteAddress(t *testing.T) {
	x := spec(t, "entries: [{remote_address: {}}]")
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"ipv4", check{source: "203.0.113.7"}, "remote_address=203.0.113.7"},
		{"ipv6 compressed", check{source: "2001:DB8:0:0:0:0:0:1"}, "remote_address=2001:db8::1"},
		{"ipv6 with zone", check{source: "fe80::1%eth0"}, "remote_address=fe80::1"},
		{"ipv4-mapped ipv6", check{source: "::ffff:10.0.0.1"}, "remote_address=::ffff:10.0.0.1"},
		{"no source address", check{}, ""},
		{"not an IP", check{source: "not-an-ip"}, ""},
		{"host name", check{source: "client.example"}, ""},
		{"empty address", check{source: " "}, ""},
		{"XFF ignored without xff_num_trusted_hops", check{source: "10.0.0.1", headers: map[string]string{"x-forwarded-for": "203.0.113.9"}}, "remote_address=10.0.0.1"},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A pipe (unix socket) peer has no IP: no descriptor, no crash.
	a := check{}.attrs()
	a.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock"}}}
	if got := show(t, x, a); got != "" {
		t.Errorf("pipe: %q", got)
	}
	// Nil and empty attributes never crash.
	if got := show(t, x, nil); got != "" {
		t.Errorf("nil attributes: %q", got)
	}
	if _, skipped := Extract(x, &authv3.AttributeContext{}, true); len(skipped) != 1 || !strings.Contains(skipped[0].Reason, "no source IP address") {
		t.Errorf("skipped: %+v", skipped)
	}
	if ds, sk := Extract(nil, check{source: "10.0.0.1"}.attrs(), true); ds != nil || sk != nil {
		t.Error("a nil spec builds nothing")
	}
}

// With xff_num_trusted_hops: N the client is the entry N from the right of the
// X-Forwarded-For Envoy forwards (it already appended the peer when
// use_remote_address is true), falling back to the peer like Envoy.
func TestRemoteAddressFromXFF(t *testing.T) {
	x1 := spec(t, "entries: [{remote_address: {xff_num_trusted_hops: 1}}]")
	x0 := spec(t, "entries: [{remote_address: {xff_num_trusted_hops: 0}}]")
	xff := func(v string) check {
		return check{source: "127.0.0.1", headers: map[string]string{"x-forwarded-for": v}}
	}
	cases := []struct {
		name string
		x    *descriptors.ExtAuthz
		c    check
		want string
	}{
		{"load balancer + envoy", x1, xff("203.0.113.5,127.0.0.1"), "remote_address=203.0.113.5"},
		{"spaces", x1, xff(" 198.51.100.1 , 203.0.113.5 ,  127.0.0.1 "), "remote_address=203.0.113.5"},
		{"forged prefix ignored", x1, xff("1.2.3.4, 203.0.113.5, 127.0.0.1"), "remote_address=203.0.113.5"},
		{"ipv6 entry", x1, xff("2001:db8::7, 127.0.0.1"), "remote_address=2001:db8::7"},
		{"too few entries: the peer", x1, xff("127.0.0.2"), "remote_address=127.0.0.1"},
		{"not an IP: the peer", x1, xff("unknown, 127.0.0.1"), "remote_address=127.0.0.1"},
		{"with a port: the peer (Envoy parses IPs only)", x1, xff("203.0.113.5:4000, 127.0.0.1"), "remote_address=127.0.0.1"},
		{"empty entry: the peer", x1, xff(", 127.0.0.1"), "remote_address=127.0.0.1"},
		{"no header: the peer", x1, check{source: "127.0.0.1"}, "remote_address=127.0.0.1"},
		{"no header, no peer", x1, check{}, ""},
		{"zero hops: the last entry", x0, xff("203.0.113.5, 198.51.100.2"), "remote_address=198.51.100.2"},
		// A zone would make one client address count under as many values as zones.
		{"ipv6 entry with a zone: the address without it", x1, xff("fe80::7%eth0, 127.0.0.1"), "remote_address=fe80::7"},
	}
	for _, tc := range cases {
		if got := show(t, tc.x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMaskedRemoteAddress(t *testing.T) {
	masked := spec(t, "entries: [{masked_remote_address: {v4_prefix_mask_len: 24, v6_prefix_mask_len: 64}}]")
	def := spec(t, "entries: [{masked_remote_address: {}}]")
	zero := spec(t, "entries: [{masked_remote_address: {v4_prefix_mask_len: 0, v6_prefix_mask_len: 0}}]")
	cases := []struct {
		x      *descriptors.ExtAuthz
		source string
		want   string
	}{
		{masked, "10.1.2.3", "masked_remote_address=10.1.2.0/24"},
		{masked, "2001:db8:1:2:3:4:5:6", "masked_remote_address=2001:db8:1:2::/64"},
		{def, "10.1.2.3", "masked_remote_address=10.1.2.3/32"},
		{def, "2001:db8::1", "masked_remote_address=2001:db8::1/128"},
		{zero, "10.1.2.3", "masked_remote_address=0.0.0.0/0"},
		{zero, "2001:db8::1", "masked_remote_address=::/0"},
		{masked, "bogus", ""},
	}
	for _, tc := range cases {
		if got := show(t, tc.x, check{source: tc.source}.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.source, got, tc.want)
		}
	}
}

func TestRequestHeaders(t *testing.T) {
	x := spec(t,
		"entries: [{request_headers: {header_name: X-API-Key, descriptor_key: api_key}}]",
		"entries: [{generic_key: {descriptor_value: llm}}, {request_headers: {header_name: x-tenant, descriptor_key: tenant, skip_if_absent: true}}]",
		"entries: [{request_headers: {header_name: x-tenant, descriptor_key: tenant, skip_if_absent: true}}]",
	)
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"present", check{headers: map[string]string{"x-api-key": "k1", "x-tenant": "acme"}},
			"api_key=k1 | generic_key=llm,tenant=acme | tenant=acme"},
		// Envoy: a missing header drops the descriptor; with skip_if_absent only the
		// entry; a descriptor left with no entry is dropped.
		{"missing", check{headers: map[string]string{}}, "generic_key=llm"},
		{"no headers at all", check{}, "generic_key=llm"},
		{"empty value is a value", check{headers: map[string]string{"x-api-key": ""}}, "api_key= | generic_key=llm"},
		{"unicode", check{headers: map[string]string{"x-api-key": "clé-ünï-🔑"}}, "api_key=clé-ünï-🔑 | generic_key=llm"},
		{"merged repeats", check{headers: map[string]string{"x-api-key": "a,b"}}, "api_key=a,b | generic_key=llm"},
		// encode_raw_headers: true sends header_map, a repeated header once per line:
		// the first line counts, as in Envoy's rate-limit filter, so a second line added
		// by the client does not make a fresh counter.
		{"raw header map", check{raw: [][2]string{{"X-Api-Key", "a"}, {"x-api-key", "b"}, {"x-tenant", "t"}}},
			"api_key=a | generic_key=llm,tenant=t | tenant=t"},
		// Raw values are not sanitized by Envoy: invalid UTF-8 becomes '!' as in headers.
		{"raw invalid UTF-8", check{raw: [][2]string{{"x-api-key", "k\xff\xfe-é"}}}, "api_key=k!!-é | generic_key=llm"},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	_, skipped := Extract(x, check{}.attrs(), true)
	if len(skipped) != 2 || skipped[0].Field != "ext_authz.descriptors[0]" || skipped[0].Reason != "request_headers: header x-api-key is missing" ||
		skipped[1].Reason != "every entry was absent" {
		t.Errorf("skipped: %+v", skipped)
	}
}

func TestGenericKeyAndHeaderValueMatch(t *testing.T) {
	x := spec(t,
		"entries: [{generic_key: {descriptor_value: llm}}]",
		"entries: [{header_value_match: {descriptor_value: write, headers: [{name: ':method', one_of: [POST, PUT, DELETE]}]}}]",
		"entries: [{header_value_match: {descriptor_value: anon, expect_match: false, headers: [{name: authorization, present: true}]}}]",
		"entries: [{header_value_match: {descriptor_value: both, headers: [{name: ':method', exact: POST}, {name: x-beta, exact: '1'}]}}]",
	)
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"GET, anonymous", check{method: "GET"}, "generic_key=llm | header_match=anon"},
		// :method falls back to the HttpRequest field when headers lack it.
		{"POST from the method field", check{method: "POST", headers: map[string]string{"authorization": "Bearer x"}}, "generic_key=llm | header_match=write"},
		{"POST from the pseudo-header", check{headers: map[string]string{":method": "POST", "x-beta": "1"}}, "generic_key=llm | header_match=write | header_match=anon | header_match=both"},
		{"one of two conditions", check{method: "POST", headers: map[string]string{"x-beta": "2"}}, "generic_key=llm | header_match=write | header_match=anon"},
		{"no method at all", check{}, "generic_key=llm | header_match=anon"},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestPath(t *testing.T) {
	x := spec(t,
		"entries: [{path: {}}]",
		"entries: [{path: {prefix: /api/}}]",
		"entries: [{path: {descriptor_key: route, descriptor_value: v1, regex: '/api/v1(/.*)?'}}]",
		"entries: [{path: {descriptor_key: route, pattern: '/files/*.png', ignore_case: true}}]",
	)
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"query and fragment removed", check{path: "/api/v1/items?page=2#top"}, "path=/api/v1/items | path=/api/v1/items | route=v1"},
		{"from :path", check{headers: map[string]string{":path": "/api/v1?x"}}, "path=/api/v1 | path=/api/v1 | route=v1"},
		{"other path", check{path: "/health"}, "path=/health"},
		{"empty path", check{}, ""},
		{"only a query", check{path: "?x=1"}, ""},
		{"fragment without a query", check{path: "/api/v1#top"}, "path=/api/v1 | path=/api/v1 | route=v1"},
		{"pattern, any case", check{path: "/FILES/a/b.PNG"}, "path=/FILES/a/b.PNG | route=/FILES/a/b.PNG"},
		{"unicode", check{path: "/api/ünï/☃"}, "path=/api/ünï/☃ | path=/api/ünï/☃"},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMethodHostPrincipalContextExtension(t *testing.T) {
	x := spec(t,
		"entries: [{method: {}}]",
		"entries: [{host: {}}]",
		"entries: [{principal: {}}]",
		"entries: [{context_extension: {key: tenant}}]",
		"entries: [{context_extension: {key: team, descriptor_key: tenant}}]",
	)
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"fields", check{method: "GET", host: "api.example.com", principal: "spiffe://cluster.local/ns/foo/sa/curl",
			extensions: map[string]string{"tenant": "acme", "team": "blue"}},
			"method=GET | host=api.example.com | principal=spiffe://cluster.local/ns/foo/sa/curl | tenant=acme | tenant=blue"},
		{"pseudo-headers", check{headers: map[string]string{":method": "PUT", ":authority": "h:8080"}}, "method=PUT | host=h:8080"},
		{"nothing", check{}, ""},
		{"empty extension is a value", check{extensions: map[string]string{"tenant": ""}}, "tenant="},
		// Unlike a request header, an empty method or host is no value: no descriptor.
		{"empty pseudo-headers", check{headers: map[string]string{":method": "", ":authority": ""}}, ""},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	_, skipped := Extract(x, check{}.attrs(), true)
	reasons := make([]string, len(skipped))
	for i, s := range skipped {
		reasons[i] = s.Reason
	}
	want := []string{
		"method: no request method",
		"host: no host (:authority)",
		"principal: no peer principal (the connection is not mTLS)",
		`context_extension: context extension "tenant" is not set`,
		`context_extension: context extension "team" is not set`,
	}
	if strings.Join(reasons, "\n") != strings.Join(want, "\n") {
		t.Errorf("reasons:\n%s", strings.Join(reasons, "\n"))
	}
}

// A "host" header condition reads :authority, as Envoy turns Host into :authority.
func TestWhen(t *testing.T) {
	x := spec(t,
		"{when: {path: {exact: /ip}}, entries: [{generic_key: {descriptor_value: llm}}]}",
		"{when: {headers: [{name: host, suffix: .example.com}, {name: x-debug, present: false}]}, entries: [{generic_key: {descriptor_value: llm}}]}",
		"{when: {path: {prefix: /a}, headers: [{name: x-env, exact: prod, invert: true}]}, entries: [{generic_key: {descriptor_value: llm}}]}",
	)
	cases := []struct {
		name string
		c    check
		want int
	}{
		{"ip path with a query", check{path: "/ip?x=1"}, 1},
		{"other path", check{path: "/ipv6"}, 0},
		{"host from the field", check{host: "api.example.com", path: "/"}, 1},
		{"host from :authority", check{path: "/", headers: map[string]string{":authority": "www.example.com"}}, 1},
		{"debug header set", check{host: "api.example.com", path: "/", headers: map[string]string{"x-debug": ""}}, 0},
		{"inverted, header missing: no match (Envoy)", check{path: "/a"}, 0},
		{"inverted, other value", check{path: "/a", headers: map[string]string{"x-env": "dev"}}, 1},
		{"inverted, same value", check{path: "/a", headers: map[string]string{"x-env": "prod"}}, 0},
	}
	for _, tc := range cases {
		ds, _ := Extract(x, tc.c.attrs(), false)
		if len(ds) != tc.want {
			t.Errorf("%s: %d descriptors, want %d", tc.name, len(ds), tc.want)
		}
	}
}

func TestHitsAddend(t *testing.T) {
	x := spec(t,
		"{entries: [{generic_key: {descriptor_value: llm}}], hits_addend: {request_header: x-cost}}",
		"{entries: [{generic_key: {descriptor_value: llm}}], hits_addend: {number: 7}}",
		"{entries: [{generic_key: {descriptor_value: llm}}], hits_addend: {number: 0}}",
	)
	cases := []struct {
		cost string // "-" = no header
		want string
	}{
		{"600", "generic_key=llm;cost=600 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"0", "generic_key=llm;cost=0 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{" 12 ", "generic_key=llm;cost=12 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"4294967295", "generic_key=llm;cost=4294967295 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		// Envoy drops a descriptor whose hits_addend does not yield a number.
		{"-", "generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"", "generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"-1", "generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"1.5", "generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"ten", "generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		// A cost above any bound is passed on (the decider counts it as the bound).
		{"4294967296", "generic_key=llm;cost=4294967296 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"99999999999999999999999", "generic_key=llm;cost=18446744073709551615 | generic_key=llm;cost=7 | generic_key=llm;cost=0"},
		{"99999999999999999999999abc", "generic_key=llm;cost=7 | generic_key=llm;cost=0"}, // malformed, however long
	}
	for _, tc := range cases {
		c := check{headers: map[string]string{}}
		if tc.cost != "-" {
			c.headers["x-cost"] = tc.cost
		}
		if got := show(t, x, c.attrs()); got != tc.want {
			t.Errorf("x-cost %q: %q, want %q", tc.cost, got, tc.want)
		}
	}
}

// Descriptors come out in configuration order, each independently skipped.
func TestExtractOrderAndIndependence(t *testing.T) {
	x := spec(t,
		"entries: [{remote_address: {}}]",
		"entries: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}]",
		"entries: [{generic_key: {descriptor_value: llm}}, {request_headers: {header_name: x-tenant, descriptor_key: tenant}}]",
	)
	got := show(t, x, check{source: "10.0.0.1", headers: map[string]string{"x-tenant": "acme"}}.attrs())
	if got != "remote_address=10.0.0.1 | generic_key=llm,tenant=acme" {
		t.Errorf("%q", got)
	}
}

// Without explain, skipping builds no reason: a check that skips a descriptor for each
// kind of reason below allocates no more than against a section without descriptors,
// plus what building the descriptors takes before they fail.
func TestExtractWithoutExplainBuildsNoReasons(t *testing.T) {
	x := spec(t,
		"{when: {path: {exact: /ip}}, entries: [{generic_key: {descriptor_value: llm}}]}",
		"{when: {headers: [{name: x-env, exact: prod}]}, entries: [{generic_key: {descriptor_value: llm}}]}",
		"entries: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}]",
		"entries: [{path: {prefix: /api/}}]",
		"entries: [{context_extension: {key: tenant}}]",
		"{entries: [{generic_key: {descriptor_value: llm}}], hits_addend: {request_header: x-cost}}",
	)
	const building = 1 // the entries of the last one, kept until its cost fails
	a := check{path: "/other"}.attrs()
	ds, skipped := Extract(x, a, true)
	if len(ds) != 0 || len(skipped) != len(x.Descriptors) {
		t.Fatalf("%d descriptors built, %d skipped: every one should skip", len(ds), len(skipped))
	}
	empty := &descriptors.ExtAuthz{}
	base := testing.AllocsPerRun(100, func() { Extract(empty, a, false) })
	if allocs := testing.AllocsPerRun(100, func() { Extract(x, a, false) }); allocs > base+building {
		t.Errorf("%v allocations to skip %d descriptors without explain, want at most %v", allocs, len(x.Descriptors), base+building)
	}
}

// With header_map (encode_raw_headers: true) a repeated header keeps its lines apart,
// and each reader takes them as Envoy's own would: an entry's value is the first line
// (the request_headers action), a condition sees every line joined with "," (Envoy's
// header matchers), and so does X-Forwarded-For, a list whose right-hand entries are the
// trusted ones.
func TestRepeatedHeaderLines(t *testing.T) {
	x := spec(t,
		"entries: [{request_headers: {header_name: x-plan, descriptor_key: tenant}}]",
		"{when: {headers: [{name: x-plan, exact: free}]}, entries: [{generic_key: {descriptor_value: llm}}]}",
		"entries: [{header_value_match: {descriptor_value: free-match, headers: [{name: x-plan, exact: free}]}}]",
		"entries: [{remote_address: {xff_num_trusted_hops: 1}}]",
	)
	lines := func(kv ...string) check {
		c := check{source: "127.0.0.1"}
		for i := 0; i+1 < len(kv); i += 2 {
			c.raw = append(c.raw, [2]string{kv[i], kv[i+1]})
		}
		return c
	}
	cases := []struct {
		name string
		c    check
		want string
	}{
		{"one line", lines("x-plan", "free"),
			"tenant=free | generic_key=llm | header_match=free-match | remote_address=127.0.0.1"},
		{"two lines: the entry takes the first, conditions see both", lines("x-plan", "free", "X-Plan", "premium"),
			"tenant=free | remote_address=127.0.0.1"},
		{"three lines", lines("x-plan", "free", "x-plan", "a", "x-plan", "b"),
			"tenant=free | remote_address=127.0.0.1"},
		{"X-Forwarded-For over two lines", lines("x-forwarded-for", "198.51.100.9, 203.0.113.5", "x-forwarded-for", "127.0.0.1"),
			"remote_address=203.0.113.5"},
		// Every line counts, not the first and the last: the second from the right here is
		// the middle line.
		{"X-Forwarded-For over three lines", lines("x-forwarded-for", "198.51.100.9", "x-forwarded-for", "203.0.113.5", "x-forwarded-for", "127.0.0.1"),
			"remote_address=203.0.113.5"},
	}
	for _, tc := range cases {
		if got := show(t, x, tc.c.attrs()); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A header_map line may carry its value in value instead of raw_value; either is read.
// Pseudo-headers follow the first-line rule too: the host entry is the first
// :authority line.
func TestHeaderMapValueFields(t *testing.T) {
	x := spec(t,
		"entries: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}]",
		"entries: [{host: {}}]",
	)
	a := check{}.attrs()
	a.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-api-key", Value: "k1"},
		{Key: ":authority", RawValue: []byte("a.example")},
		{Key: ":authority", RawValue: []byte("b.example")},
	}}
	if got, want := show(t, x, a), "api_key=k1 | host=a.example"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}

// A header repeated on many header_map lines is joined once: appending each line to the
// joined value so far copied it again for every line, so a check of 20,000 one-byte
// lines (160 KB) allocated about 400 MB, and one at --max-request-bytes (4 MiB, half
// a million lines) hundreds of gigabytes and a minute of CPU, from any client that
// reaches the gRPC port. The work must stay in proportion to the check.
func TestRepeatedHeaderLinesJoinedInLinearTime(t *testing.T) {
	x := spec(t, "{when: {headers: [{name: x-plan, exact: free}]}, entries: [{generic_key: {descriptor_value: llm}}]}")
	const n = 20_000
	a := check{}.attrs()
	a.Request.Http.HeaderMap = &corev3.HeaderMap{}
	for range n {
		a.Request.Http.HeaderMap.Headers = append(a.Request.Http.HeaderMap.Headers, &corev3.HeaderValue{Key: "x-plan", RawValue: []byte("b")})
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ds, _ := Extract(x, a, false)
	runtime.ReadMemStats(&after)
	if len(ds) != 0 {
		t.Errorf("the joined lines matched exact free: %v", render(ds))
	}
	if got, most := after.TotalAlloc-before.TotalAlloc, uint64(8<<20); got > most {
		t.Errorf("Extract allocated %d bytes for %d lines of one header, want at most %d", got, n, most)
	}
}
