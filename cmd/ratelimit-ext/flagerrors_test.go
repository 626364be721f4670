package main

import (
	"regexp"
	"strings"
	"testing"
)

// flagToken is a flag's name in an error: --name.
var flagToken = regexp.MustCompile(`--[a-z0-9-]+`)

// A flag's error names its subject once, as "--flag value: what is wrong", in the words
// of the other settings errors: not "--retry-after-jitter: retry-after jitter 2h0m0s:
// ...", where the check a flag hands its value to adds a name of its own.
func TestFlagErrorsNameTheirSubjectOnce(t *testing.T) {
	isolateEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--retry-after-jitter", "2h"}, "--retry-after-jitter 2h0m0s: want 0 to 1h0m0s"},
		{[]string{"--retry-after-jitter", "-1s"}, "--retry-after-jitter -1s: want 0 to 1h0m0s"},
		{[]string{"--upstream-remaining-header", "two words"}, `--upstream-remaining-header "two words": byte ' ' is not allowed in a header name (want letters, digits and !#$%&'*+-.^_` + "`|~)"},
		{[]string{"--upstream-remaining-header", "host"}, `--upstream-remaining-header "host": a framing or routing header cannot be set`},
		{[]string{"--store-failure-policy", "open"}, `--store-failure-policy "open": want fail_closed, fail_open or local`},
		{[]string{"--store-failure-policy-domains", "edge=bogus"}, `--store-failure-policy-domains: edge=bogus: want fail_closed, fail_open or local`},
		{[]string{"--redis-url", "redis://127.0.0.1:1", "--redis-mode", "ring"}, `--redis-mode "ring": want single, cluster or sentinel`},
		{[]string{"--ext-authz-failure-mode", "open"}, `--ext-authz-failure-mode "open": want envoy, allow or deny`},
		{[]string{"--engine", "disk"}, `--engine "disk": want memory or redis`},
		{[]string{"--config-source", "git"}, `--config-source "git": want file or xds`},
		{[]string{"--log-level", "loud"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"--max-entries", "0"}, "--max-entries 0: want at least 1"},
		{[]string{"--memory-max-mib", "-1"}, "--memory-max-mib -1: want 0 (automatic) to 8796093022207"},
		{[]string{"--gc-floor-mib", "-1"}, "--gc-floor-mib -1: want 0 (off) to 1048576"},
		{[]string{"--redis-pool-size", "-1"}, "--redis-pool-size -1: want 0 (10 per CPU) or more"},
		{[]string{"--redis-read-timeout", "0s"}, "--redis-read-timeout 0s: want a positive duration"},
		{[]string{"--store-probe-interval", "0s"}, "--store-probe-interval 0s: want a positive duration"},
		{[]string{"--xds-backoff-initial", "0s"}, "--xds-backoff-initial 0s: want a positive duration"},
		{[]string{"--xds-backoff-jitter", "1"}, "--xds-backoff-jitter 1: want at least 0 and below 1"},
		{[]string{"--grpc-addr", "nowhere"}, `--grpc-addr "nowhere": want host:port, e.g. 127.0.0.1:8081 (missing port in address)`},
		{[]string{"--shutdown-timeout=soon"}, `--shutdown-timeout "soon": want a duration such as 10ms`},
	} {
		_, err := loadServeConfig(tc.args)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: %v\nwant %s", tc.args, err, tc.want)
			continue
		}
		subject := flagToken.FindString(tc.want)
		if repeatsSubject(subject, strings.TrimPrefix(err.Error(), subject)) {
			t.Errorf("%q: %v names its subject twice", tc.args, err)
		}
	}
}

// repeatsSubject says whether text, with every --flag taken out, still has flag's words
// ("retry after jitter" for --retry-after-jitter, dashes or not).
func repeatsSubject(flag, text string) bool {
	words := strings.ReplaceAll(strings.TrimPrefix(flag, "--"), "-", " ")
	text = strings.ToLower(flagToken.ReplaceAllString(text, ""))
	return strings.Contains(strings.ReplaceAll(text, "-", " "), words)
}
