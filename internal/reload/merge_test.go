package reload_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// teamRules is a second file of domain edge whose limit, on key t, is named name.
func teamRules(name string) string {
	return "domain: edge\ndescriptors:\n  - key: t\n    rate_limit: {name: " + name + ", unit: hour, requests_per_unit: 1000000}\n"
}

// With Options.Rules merging domains, a reload loads the domain's files as a whole: an
// edit to one file, its removal, and a file that would share an entry (refused, the
// rules in place serve on) each act on the merged domain.
func TestMergedDomainReloadsAsAWhole(t *testing.T) {
	dir := t.TempDir()
	team := filepath.Join(dir, "team.yaml")
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	write(t, team, teamRules("team1"))
	h := watch(t, dir, reload.Options{Watch: true, Rules: descriptors.Options{MergeDomains: true}})
	teamServing := func() string {
		ls := h.decider.Rules().Match("edge", []descriptors.Entry{{Key: "t", Value: "x"}})
		if len(ls) == 0 {
			return ""
		}
		return ls[0].Name
	}
	waitTeam := func(want string) {
		t.Helper()
		if !h.until(2*time.Second, func() bool { return teamServing() == want }) {
			t.Fatalf("team limit %q, want %q; log:\n%s", teamServing(), want, h.logs)
		}
	}
	if h.serving() != "v1" || teamServing() != "team1" {
		t.Fatalf("initial rules: %q and %q, want both files' limits", h.serving(), teamServing())
	}
	h.waitCatchUp(t)

	write(t, team, teamRules("team2"))
	waitTeam("team2")
	if h.serving() != "v1" {
		t.Errorf("the other file's limit is %q after an edit to team.yaml, want v1", h.serving())
	}

	if err := os.Remove(team); err != nil {
		t.Fatal(err)
	}
	waitTeam("")
	if h.serving() != "v1" {
		t.Errorf("the other file's limit is %q after team.yaml went, want v1", h.serving())
	}

	write(t, team, rules("clash")) // edge.yaml's entry again
	if !h.until(2*time.Second, func() bool { return h.failures.Load() > 0 }) {
		t.Fatalf("the shared entry was not refused; serving %q; log:\n%s", h.serving(), h.logs)
	}
	if err := *h.lastErr.Load(); !strings.Contains(err.Error(), "team.yaml:3: descriptors[0]: duplicate entry") || !strings.Contains(err.Error(), "already defined in edge.yaml:3") {
		t.Errorf("load error %v, want the duplicate entry naming both files", err)
	}
	if h.serving() != "v1" {
		t.Errorf("serving %q after a refused reload, want v1", h.serving())
	}
}
