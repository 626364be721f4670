package descriptors

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
)

var mergeOn = Options{MergeDomains: true}

// Two teams' files in one domain: each keeps its own file-level algorithm and its own
// file:line, and a request matches either team's top-level entries.
var (
	teamA = File{Name: "team-a.yaml", Data: []byte(lines(
		"domain: edge",
		"algorithm: gcra",
		"descriptors:",
		"  - key: tenant",
		"    value: a",
		"    rate_limit: {name: a-tenant, unit: second, requests_per_unit: 10}",
		"  - key: path",
		`    value: "/a/*"`,
		"    rate_limit: {unit: minute, requests_per_unit: 5}",
	))}
	teamB = File{Name: "team-b.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: tenant",
		"    value: b",
		"    descriptors:",
		"      - key: user",
		"        rate_limit: {unit: hour, requests_per_unit: 100, replaces: [{name: a-tenant}]}",
		"  - key: tenant",
		"    rate_limit: {unit: second, requests_per_unit: 1}",
	))}
)

func TestMergeDomainsOffRefusesASecondFile(t *testing.T) {
	_, err := Compile(teamA, teamB)
	if err == nil || !strings.Contains(err.Error(), `team-b.yaml:1: domain: duplicate domain "edge" (already defined in team-a.yaml:1)`) {
		t.Fatalf("without MergeDomains: %v, want the duplicate domain error", err)
	}
}

func TestMergeDomainsJoinsTopLevelEntries(t *testing.T) {
	rs, err := mergeOn.Compile(teamA, teamB)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		entries []Entry
		file    string
		line    int
		algo    limiter.Algorithm
	}{
		{[]Entry{{"tenant", "a"}}, "team-a.yaml", 6, limiter.GCRA},
		{[]Entry{{"path", "/a/x"}}, "team-a.yaml", 9, limiter.GCRA},
		{[]Entry{{"tenant", "b"}, {"user", "u"}}, "team-b.yaml", 7, limiter.FixedWindow},
		{[]Entry{{"tenant", "c"}}, "team-b.yaml", 9, limiter.FixedWindow},
	}
	for _, tt := range tests {
		ls := rs.Match("edge", tt.entries)
		if len(ls) != 1 {
			t.Errorf("%v: %d limits, want 1", tt.entries, len(ls))
			continue
		}
		if l := ls[0]; l.File != tt.file || l.Line != tt.line || l.Params.Algorithm != tt.algo {
			t.Errorf("%v: %s:%d %s, want %s:%d %s", tt.entries, l.File, l.Line, l.Params.Algorithm, tt.file, tt.line, tt.algo)
		}
	}
	if got, want := rs.Domains(), []string{"edge"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Domains = %v, want %v", got, want)
	}
	if n := rs.LimitCount(); n != 4 {
		t.Errorf("LimitCount = %d, want 4", n)
	}
	if got := rs.Summary(); got != "1 domain, 4 limits (edge: 4)" {
		t.Errorf("Summary = %q", got)
	}
	// team-b's replaces names team-a's limit: no "replaces nothing" warning.
	if ws, total := rs.Warnings(); total != 0 {
		t.Errorf("warnings: %v", ws)
	}
}

// The merged domain has the limit IDs (and so the storage keys, which are built from
// the domain and the ID) that one file holding both files' descriptors would have:
// distinct, since no two files may share a top-level entry.
func TestMergeDomainsKeepsLimitIDsDistinct(t *testing.T) {
	rs, err := mergeOn.Compile(teamA, teamB)
	if err != nil {
		t.Fatal(err)
	}
	got := ids(rs.Limits("edge"))
	one := mustParse(t, lines(
		"domain: edge",
		"descriptors:",
		"  - {key: tenant, value: a, rate_limit: {unit: second, requests_per_unit: 10}}",
		`  - {key: path, value: "/a/*", rate_limit: {unit: minute, requests_per_unit: 5}}`,
		"  - {key: tenant, value: b, descriptors: [{key: user, rate_limit: {unit: hour, requests_per_unit: 100}}]}",
		"  - {key: tenant, rate_limit: {unit: second, requests_per_unit: 1}}",
	))
	if want := ids(one.Limits("edge")); !reflect.DeepEqual(got, want) {
		t.Errorf("IDs = %v, want %v (as from one file)", got, want)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("ID %q twice", id)
		}
		seen[id] = true
	}
}

// A top-level entry in two files is a load error naming both places, whichever order
// the files come in; that includes a second file adding nested entries under another
// file's entry, and patterns that differ only in runs of '*'.
func TestMergeDomainsRefusesSharedTopLevelEntries(t *testing.T) {
	tests := []struct {
		name string
		b    string
		want string
	}{
		{"same value", lines(
			"domain: edge",
			"descriptors:",
			"  - key: tenant",
			"    value: a",
			"    rate_limit: {unit: second, requests_per_unit: 1}",
		), `z.yaml:3: descriptors[0]: duplicate entry key "tenant" value "a": files merged into one domain may not share a top-level entry, nor add entries under another file's (already defined in team-a.yaml:4)`},
		{"nested under another file's entry", lines(
			"domain: edge",
			"descriptors:",
			"  - key: other",
			"  - key: tenant",
			"    value: a",
			"    descriptors:",
			"      - key: user",
			"        rate_limit: {unit: second, requests_per_unit: 1}",
		), `z.yaml:4: descriptors[1]: duplicate entry key "tenant" value "a": files merged into one domain may not share a top-level entry, nor add entries under another file's (already defined in team-a.yaml:4)`},
		{"same pattern", lines(
			"domain: edge",
			"descriptors:",
			"  - key: path",
			`    value: "/a/**"`,
			"    rate_limit: {unit: second, requests_per_unit: 1}",
		), `z.yaml:3: descriptors[0]: duplicate entry key "path" value "/a/**": it matches the same values as "/a/*": files merged into one domain may not share a top-level entry, nor add entries under another file's (already defined in team-a.yaml:7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := File{Name: "z.yaml", Data: []byte(tt.b)}
			for _, files := range [][]File{{teamA, b}, {b, teamA}} {
				_, err := mergeOn.Compile(files...)
				if err == nil || err.Error() != tt.want {
					t.Errorf("files %s, %s:\n%v\nwant:\n%s", files[0].Name, files[1].Name, err, tt.want)
				}
			}
		})
	}
}

// The order files are given in changes nothing: not the limits' order, not which
// pattern a value meets first, not the /debug/config view.
func TestMergeDomainsIgnoresFileOrder(t *testing.T) {
	c := File{Name: "z.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: path",
		`    value: "/*"`,
		"    rate_limit: {unit: second, requests_per_unit: 3}",
	))}
	dump := func(files ...File) (string, *RuleSet) {
		rs, err := mergeOn.Compile(files...)
		if err != nil {
			t.Fatal(err)
		}
		out := rs.Dump().(dumpRuleSet)
		out.Hash = "" // the hash covers the files in load order
		b, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b), rs
	}
	first, rs := dump(teamA, teamB, c)
	for _, files := range [][]File{{c, teamB, teamA}, {teamB, c, teamA}} {
		if got, _ := dump(files...); got != first {
			t.Errorf("another order gives another rule set:\n%s\nwant:\n%s", got, first)
		}
	}
	// Patterns of different files are tried in the files' name order: team-a's "/a/*"
	// before z's "/*" for any order of loading.
	if ls := rs.Match("edge", []Entry{{"path", "/a/x"}}); len(ls) != 1 || ls[0].File != "team-a.yaml" {
		t.Errorf("/a/x matched %v, want team-a.yaml's limit", ids(ls))
	}
	if !strings.Contains(first, `"files":["team-a.yaml","team-b.yaml","z.yaml"]`) {
		t.Errorf("the dump does not name the merged files: %s", first)
	}
}

// Checks that need the whole domain see the merged one: replaces across files (and a
// warning for a name no file has), ext_authz descriptors reaching another file's
// limits, and one ext_authz section per domain.
func TestMergeDomainsChecksTheWholeDomain(t *testing.T) {
	authz := File{Name: "authz.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: ghost",
		"    rate_limit: {unit: second, requests_per_unit: 1, replaces: [{name: nobody}]}",
		"ext_authz:",
		"  descriptors:",
		"    - entries: [{generic_key: {descriptor_key: tenant, descriptor_value: a}}]",
	))}
	rs, err := mergeOn.Compile(teamA, teamB, authz)
	if err != nil {
		t.Fatal(err)
	}
	if x := rs.ExtAuthz("edge"); x == nil || x.File != "authz.yaml" {
		t.Errorf("ExtAuthz = %+v, want authz.yaml's", x)
	}
	ws, total := rs.Warnings()
	if total != 1 || ws[0].Error() != `authz.yaml:4: descriptors[0].rate_limit.replaces[0].name: no limit named "nobody" in domain "edge": this replaces nothing` {
		t.Errorf("warnings (%d): %v", total, ws)
	}

	// Alone, authz.yaml's ext_authz reaches no limit.
	if _, err := mergeOn.Compile(authz); err == nil || !strings.Contains(err.Error(), `authz.yaml:7: ext_authz.descriptors[0]: the descriptor [tenant=a] matches no limit of domain "edge"`) {
		t.Errorf("ext_authz alone: %v", err)
	}

	second := File{Name: "second.yaml", Data: []byte(lines(
		"domain: edge",
		"ext_authz:",
		"  descriptors:",
		"    - entries: [{generic_key: {descriptor_key: tenant, descriptor_value: b}}]",
	))}
	want := `second.yaml:3: ext_authz: domain "edge" has an ext_authz section in another file; of the files merged into one domain, one at most may have one (already defined in authz.yaml:6)`
	if _, err := mergeOn.Compile(teamA, teamB, authz, second); err == nil || err.Error() != want {
		t.Errorf("two ext_authz sections:\n%v\nwant:\n%s", err, want)
	}
}

// A file with errors still takes part in the merge, so a shared entry is reported with
// its other problems; files of other domains are unaffected by the option.
func TestMergeDomainsReportsEveryProblem(t *testing.T) {
	broken := File{Name: "z.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: tenant",
		"    value: a",
		"    rate_limit: {unit: sec, requests_per_unit: 1}",
	))}
	_, err := mergeOn.Compile(teamA, broken)
	want := []string{
		`z.yaml:5: descriptors[0].rate_limit.unit: unknown unit "sec" (want second|minute|hour|day|week|month|year)`,
		`z.yaml:3: descriptors[0]: duplicate entry key "tenant" value "a": files merged into one domain may not share a top-level entry, nor add entries under another file's (already defined in team-a.yaml:4)`,
	}
	if err == nil || !reflect.DeepEqual(strings.Split(err.Error(), "\n"), want) {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	rs, err := mergeOn.Compile(File{Name: "x.yaml", Data: []byte(domainFile("x"))}, File{Name: "y.yaml", Data: []byte(domainFile("y"))})
	if err != nil || !slices.Equal(rs.Domains(), []string{"x", "y"}) {
		t.Errorf("two domains: %v, %v", rs.Domains(), err)
	}
}

func TestMergeDomainsLoadDirAndLoadFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "team-a.yaml"), string(teamA.Data))
	writeFile(t, filepath.Join(dir, "sub", "team-b.yaml"), string(teamB.Data))
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "duplicate domain") {
		t.Errorf("LoadDir without the option: %v", err)
	}
	rs, err := mergeOn.LoadDir(dir)
	if err != nil || rs.LimitCount() != 4 {
		t.Fatalf("LoadDir: %v, %v", rs.Summary(), err)
	}
	if ls := rs.Match("edge", []Entry{{"tenant", "b"}, {"user", "u"}}); len(ls) != 1 || ls[0].File != "sub/team-b.yaml" {
		t.Errorf("the nested file's limit: %v", ids(ls))
	}
	a, b := filepath.Join(dir, "team-a.yaml"), filepath.Join(dir, "sub", "team-b.yaml")
	if _, err := LoadFiles(a, b); err == nil {
		t.Error("LoadFiles without the option loaded both files")
	}
	if rs, err := mergeOn.LoadFiles(b, a); err != nil || rs.LimitCount() != 4 {
		t.Errorf("LoadFiles: %v, %v", rs.Summary(), err)
	}
}

// A value pattern "*" hides the bare key and later patterns of the same key in other
// files too, with a warning at the hidden entry that names the pattern's file.
func TestMergeDomainsWarnsOfEntriesHiddenAcrossFiles(t *testing.T) {
	star := File{Name: "y.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: tenant",
		`    value: "*"`,
		"    rate_limit: {unit: second, requests_per_unit: 2}",
	))}
	later := File{Name: "z.yaml", Data: []byte(lines(
		"domain: edge",
		"descriptors:",
		"  - key: tenant",
		`    value: "x*"`,
		"    rate_limit: {unit: second, requests_per_unit: 3}",
	))}
	rs, err := mergeOn.Compile(later, star, teamB, teamA)
	if err != nil {
		t.Fatal(err)
	}
	ws, _ := rs.Warnings()
	var got []string
	for _, w := range ws {
		got = append(got, w.Error())
	}
	want := []string{
		`team-b.yaml:8: descriptors[1]: key "tenant" without value never matches: the value pattern "*" at y.yaml:3 matches every value first (files merged into one domain are tried in name order)`,
		`z.yaml:3: descriptors[0]: key "tenant" value "x*" never matches: the value pattern "*" at y.yaml:3 matches every value first (files merged into one domain are tried in name order)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if ls := rs.Match("edge", []Entry{{"tenant", "xy"}}); len(ls) != 1 || ls[0].File != "y.yaml" {
		t.Errorf("tenant=xy matched %v, want y.yaml's limit", ids(ls))
	}
}

// validate FILE... (LoadFiles) merges a domain's files in the order serve's LoadDir
// does, however the names are spelled: by the files' absolute paths, not by the names
// as given ("d/./b.yaml" sorts before "d/a.yaml" as text), so overlapping value patterns
// of two files resolve the same way in both.
func TestLoadFilesMergesInTheDirectorysOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, value, limit string) {
		t.Helper()
		yaml := lines("domain: edge", "descriptors:", "  - key: k",
			`    value: "`+value+`"`, "    rate_limit: {name: "+limit+", unit: hour, requests_per_unit: 1}")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yaml", "1*", "from-a")
	write("b.yaml", "12*", "from-b")
	served, err := mergeOn.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	validated, err := mergeOn.LoadFiles(dir+"/./b.yaml", filepath.Join(dir, "a.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, rs := range map[string]*RuleSet{"LoadDir": served, "LoadFiles": validated} {
		if ls := rs.Match("edge", []Entry{{"k", "123"}}); len(ls) != 1 || ls[0].Name != "from-a" {
			t.Errorf("%s: k=123 matches %d limits (the first %q), want a.yaml's limit alone (a.yaml's patterns are tried first)", name, len(ls), firstName(ls))
		}
	}
}

func firstName(ls []*Limit) string {
	if len(ls) == 0 {
		return ""
	}
	return ls[0].Name
}
