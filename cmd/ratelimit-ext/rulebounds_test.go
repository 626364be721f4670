package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// Rules that only a request over a bound could reach are named, once per domain and
// per key, with the bound's flag; rules within every bound are not.
func TestRulesOverBound(t *testing.T) {
	long := strings.Repeat("k", 20)
	rs, err := descriptors.Parse("edge.yaml", []byte(fmt.Sprintf(`domain: edge-domain
descriptors:
  - key: %[1]s
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: %[1]s
    value: v
    rate_limit: {unit: second, requests_per_unit: 1}
  - key: a
    descriptors:
      - key: b
        descriptors:
          - key: c
            rate_limit: {unit: second, requests_per_unit: 1}
`, long)))
	if err != nil {
		t.Fatal(err)
	}
	if got, total := rulesOverBound(rs, decide.DefaultBounds); len(got) != 0 || total != 0 {
		t.Errorf("within the default bounds: %v (%d)", got, total)
	}
	got, total := rulesOverBound(rs, decide.Bounds{MaxDescriptors: 1, MaxEntries: 2, MaxKeyLen: 19, MaxDomainLen: 10})
	var lines []string
	for _, e := range got {
		lines = append(lines, e.Error())
	}
	const tail = ": requests that would match are refused and Envoy's failure mode decides them, so these limits are never enforced"
	want := []string{
		"edge.yaml: domain: the domain is 11 bytes, above --max-domain-bytes (10)" + tail,
		`edge.yaml:4: key: the key "` + long + `" is 20 bytes, above --max-entry-key-bytes (19)` + tail,
		"edge.yaml:13: descriptors: the limit is 3 levels deep, above --max-entries (2)" + tail,
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") || total != 3 {
		t.Errorf("over the bounds (%d in all):\n%s\nwant 3:\n%s", total, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

// Many over-long keys are listed up to maxOverBound, and counted in full.
func TestRulesOverBoundIsCapped(t *testing.T) {
	var rules strings.Builder
	rules.WriteString("domain: edge\ndescriptors:\n")
	for i := range 15 {
		fmt.Fprintf(&rules, "  - {key: %s%02d, rate_limit: {unit: second, requests_per_unit: 1}}\n", strings.Repeat("k", 300), i)
	}
	rs, err := descriptors.Parse("edge.yaml", []byte(rules.String()))
	if err != nil {
		t.Fatal(err)
	}
	got, total := rulesOverBound(rs, decide.DefaultBounds)
	if len(got) != maxOverBound || total != 15 {
		t.Errorf("%d listed of %d, want %d of 15", len(got), total, maxOverBound)
	}
	if !strings.Contains(got[0].Error(), `the key "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"… is 302 bytes`) {
		t.Errorf("a long key is not abbreviated: %s", got[0].Error())
	}
}

// validate and serve both warn of a domain longer than the (default) bound; the rules
// still load.
func TestValidateAndServeWarnOfRulesOverABound(t *testing.T) {
	dir := t.TempDir()
	domain := strings.Repeat("d", 300)
	rule := "domain: " + domain + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
	if err := os.WriteFile(filepath.Join(dir, "long.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	want := "long.yaml: domain: the domain is 300 bytes, above --max-domain-bytes (256)"
	if code, out := runStderr(t, "validate", dir); code != 0 || !strings.Contains(out, "warning: "+filepath.Join(dir, want)) {
		t.Errorf("validate: exit %d, stderr %q; want 0 and the warning %q", code, out, want)
	}
	s := startBinary(t, buildBinary(t), "--config-dir", dir, "--max-domain-bytes", "400")
	if log := s.log(); strings.Contains(log, "above --max-domain-bytes") {
		t.Errorf("a warning although --max-domain-bytes 400 admits the domain:\n%s", log)
	}
	s = startBinary(t, buildBinary(t), "--config-dir", dir)
	if log := s.log(); !strings.Contains(log, `"msg":"the rules load, but most likely not as meant","warning":"`+want) {
		t.Errorf("no warning in the service's log:\n%s", log)
	}
}

// A long key is cut between characters, never inside one.
func TestAbbrevKeepsCharactersWhole(t *testing.T) {
	if got, want := abbrev(strings.Repeat("€", 50)), `"`+strings.Repeat("€", 32)+`"…`; got != want {
		t.Errorf("abbrev = %s, want %s", got, want)
	}
}
