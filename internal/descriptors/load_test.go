package descriptors

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func domainFile(name string) string {
	return "domain: " + name + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
}

func TestLoadDirRecursive(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "b.yaml"), domainFile("b"))
	writeFile(t, filepath.Join(dir, "a.yml"), domainFile("a"))
	writeFile(t, filepath.Join(dir, "sub", "deeper", "c.YAML"), domainFile("c"))
	writeFile(t, filepath.Join(dir, "notes.txt"), "not yaml")
	writeFile(t, filepath.Join(dir, ".hidden.yaml"), domainFile("hidden"))
	writeFile(t, filepath.Join(dir, ".git", "x.yaml"), domainFile("git"))

	rs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Domains(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
		t.Errorf("Domains = %v", got)
	}
	if f := rs.Limits("c")[0].File; f != "sub/deeper/c.YAML" {
		t.Errorf("File = %q, want the path relative to the dir", f)
	}
	// Files passed over for their names are named; dot-files and directories are not.
	if names, total := rs.SkippedFiles(); !reflect.DeepEqual(names, []string{"notes.txt"}) || total != 1 {
		t.Errorf("SkippedFiles = %v, %d; want [notes.txt], 1", names, total)
	}
	// The hash covers names and contents in sorted order, so it equals Compile's.
	want := mustCompile(t,
		File{Name: "a.yml", Data: []byte(domainFile("a"))},
		File{Name: "b.yaml", Data: []byte(domainFile("b"))},
		File{Name: "sub/deeper/c.YAML", Data: []byte(domainFile("c"))},
	)
	if rs.Hash() != want.Hash() {
		t.Error("LoadDir hash differs from Compile of the same files")
	}
}

// TestLoadDirConfigMap reproduces the layout of a Kubernetes ConfigMap volume:
//
//	..2024_01_01_00_00_00.000000001/{edge.yaml,api.yaml}
//	..data -> ..2024_01_01_00_00_00.000000001
//	edge.yaml -> ..data/edge.yaml
//	api.yaml -> ..data/api.yaml
func TestLoadDirConfigMap(t *testing.T) {
	dir := t.TempDir()
	ts := "..2024_01_01_00_00_00.000000001"
	writeFile(t, filepath.Join(dir, ts, "edge.yaml"), domainFile("edge"))
	writeFile(t, filepath.Join(dir, ts, "api.yaml"), domainFile("api"))
	symlink(t, ts, filepath.Join(dir, "..data"))
	symlink(t, filepath.Join("..data", "edge.yaml"), filepath.Join(dir, "edge.yaml"))
	symlink(t, filepath.Join("..data", "api.yaml"), filepath.Join(dir, "api.yaml"))

	rs, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("each file must load once: %v", err)
	}
	if got := rs.Domains(); !reflect.DeepEqual(got, []string{"api", "edge"}) {
		t.Errorf("Domains = %v", got)
	}
	if got := rs.Limits("edge")[0].File; got != "edge.yaml" {
		t.Errorf("File = %q, want the top-level name", got)
	}
}

func TestLoadDirSymlinks(t *testing.T) {
	dir := t.TempDir()
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "shared", "s.yaml"), domainFile("shared"))
	writeFile(t, filepath.Join(dir, "a.yaml"), domainFile("a"))
	symlink(t, filepath.Join(other, "shared"), filepath.Join(dir, "linked")) // directory symlink: followed
	symlink(t, filepath.Join(dir, "a.yaml"), filepath.Join(dir, "z.yaml"))   // second name of a.yaml: read once
	symlink(t, dir, filepath.Join(dir, "loop"))                              // cycle: not followed again
	symlink(t, "missing.txt", filepath.Join(dir, "dangling.txt"))            // not YAML: ignored

	rs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.Domains(); !reflect.DeepEqual(got, []string{"a", "shared"}) {
		t.Errorf("Domains = %v", got)
	}
	if got := rs.Limits("shared")[0].File; got != "linked/s.yaml" {
		t.Errorf("File = %q", got)
	}
}

func TestLoadDirEmpty(t *testing.T) {
	rs, err := LoadDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.Domains()) != 0 || rs.LimitCount() != 0 || rs.Summary() != "0 domains, 0 limits" {
		t.Errorf("empty dir: %s", rs.Summary())
	}
}

func TestLoadDirCollectsAllErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "domain: edge\ndescriptors:\n  - key: k\n    value: \"*\"\n    share_threshold: 3\n")
	writeFile(t, filepath.Join(dir, "b", "b.yaml"), "domain: edge\n")
	writeFile(t, filepath.Join(dir, "c.yaml"), "domain: c\nalgorithm: nope\n")
	symlink(t, "gone.yaml", filepath.Join(dir, "d.yaml"))

	_, err := LoadDir(dir)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is not a *LoadError", err)
	}
	want := []string{
		"a.yaml:5: descriptors[0].share_threshold: want true or false, got 3",
		`b/b.yaml:1: domain: duplicate domain "edge" (already defined in a.yaml:1)`,
		`c.yaml:2: algorithm: unknown algorithm "nope" (want gcra|token_bucket|fixed_window|sliding_window|sliding_window_log|token_budget)`,
		"d.yaml: file: cannot read: no such file or directory",
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadDirMissing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	_, err := LoadDir(dir)
	var le *LoadError
	if !errors.As(err, &le) || err.Error() != dir+": dir: cannot read: no such file or directory" {
		t.Errorf("got %v", err)
	}
}

func TestLoadDirTooLarge(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "big.yaml"), "domain: d\n"+strings.Repeat("#", MaxFileSize))
	_, err := LoadDir(dir)
	if err == nil || err.Error() != "big.yaml: file: larger than 4 MiB (4194314 bytes)" {
		t.Errorf("got %v", err)
	}
}

// LoadFiles reads each real file once, however it is named (a relative and an absolute
// path, a ConfigMap's ..data link), and refuses what LoadDir refuses: a file that is not
// regular, a directory named as a file, a file that cannot be read.
func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	edge := filepath.Join(dir, "..2026", "edge.yaml")
	writeFile(t, edge, "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n")
	symlink(t, "..2026", filepath.Join(dir, "..data"))
	rs, err := LoadFiles(edge, filepath.Join(dir, "..data", "edge.yaml"), filepath.Join(dir, "..2026", ".", "edge.yaml"))
	if err != nil || rs.LimitCount() != 1 {
		t.Fatalf("one file named three ways: %v, %s", err, rs.Summary())
	}
	_, err = LoadFiles(edge, "/dev/null", dir, filepath.Join(dir, "gone.yaml"))
	want := []string{
		"/dev/null: file: not a regular file",
		dir + ": file: is a directory",
		filepath.Join(dir, "gone.yaml") + ": file: cannot read: no such file or directory",
	}
	if err == nil || !reflect.DeepEqual(strings.Split(err.Error(), "\n"), want) {
		t.Fatalf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// SkippedFiles names at most ten files and counts all of them, so that a directory of
// thousands of other files costs a bounded warning.
func TestLoadDirSkippedFilesAreBounded(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "rules.yaml"), domainFile("a"))
	for i := range 25 {
		writeFile(t, filepath.Join(dir, "cm", fmt.Sprintf("key%02d", i)), domainFile(fmt.Sprint("d", i)))
	}
	rs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names, total := rs.SkippedFiles()
	if total != 25 || len(names) != 10 || names[0] != "cm/key00" || names[9] != "cm/key09" {
		t.Errorf("SkippedFiles = %v, %d; want cm/key00..cm/key09 and 25", names, total)
	}
	if _, total := mustCompile(t, File{Name: "a.yaml", Data: []byte(domainFile("a"))}).SkippedFiles(); total != 0 {
		t.Errorf("Compile skipped %d files", total)
	}
}
