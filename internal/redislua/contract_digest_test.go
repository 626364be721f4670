package redislua_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// contractDigest is the sha256 of the contract's content without its version label:
// manifest.json less contractVersion, contractDigests and each script's sha256 (which
// moves with any edit of a script, its header's version included), then each project
// vector file less its contractVersion, in file-name order. Every file counts as
// canonical JSON (keys sorted, no spacing) after its base name, so reformatting a file
// changes nothing, and bumping a version label alone changes nothing either.
func contractDigest(manifest []byte, vectors map[string][]byte) (string, error) {
	h := sha256.New()
	m, err := canonical(manifest, func(f map[string]any) {
		delete(f, "contractDigests")
		scripts, _ := f["scripts"].([]any)
		for _, s := range scripts {
			if s, ok := s.(map[string]any); ok {
				delete(s, "sha256")
			}
		}
	})
	if err != nil {
		return "", fmt.Errorf("manifest.json: %w", err)
	}
	fmt.Fprintf(h, "manifest.json\n%s\n", m)
	names := make([]string, 0, len(vectors))
	for name := range vectors {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v, err := canonical(vectors[name], func(map[string]any) {})
		if err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(h, "%s\n%s\n", filepath.Base(name), v)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonical re-encodes a JSON object without its contractVersion, after drop, with
// numbers kept as written.
func canonical(data []byte, drop func(map[string]any)) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var f map[string]any
	if err := dec.Decode(&f); err != nil {
		return nil, err
	}
	delete(f, "contractVersion")
	drop(f)
	return json.Marshal(f)
}

// checkContractDigests holds the manifest's record of contract versions to the rules
// of the drift gate: versions 1..current each have one digest, current's is the
// content's digest now (the content cannot change without a new version), and no two
// versions have the same digest (a version cannot move without the content).
func checkContractDigests(current string, digests map[string]string, digest string) []string {
	n, err := strconv.Atoi(current)
	if err != nil || n < 1 {
		return []string{fmt.Sprintf("contractVersion %q is not a whole number >= 1", current)}
	}
	var problems []string
	if len(digests) != n {
		problems = append(problems, fmt.Sprintf("contractDigests has %d entries, want one for each version 1..%d (entries are never removed)", len(digests), n))
	}
	seen := map[string]string{}
	for v := 1; v <= n; v++ {
		key := strconv.Itoa(v)
		d, ok := digests[key]
		if !ok {
			problems = append(problems, fmt.Sprintf("contractDigests has no entry for version %s", key))
			continue
		}
		if earlier, dup := seen[d]; dup {
			problems = append(problems, fmt.Sprintf("contract versions %s and %s have the same content (digest %s): a new version must change the vectors or the manifest's description of the scripts", earlier, key, d))
		}
		seen[d] = key
	}
	if got := digests[current]; got != "" && got != digest {
		problems = append(problems, fmt.Sprintf("the contract's content (the manifest's description of the scripts, or the vectors in testdata/) has digest %s, but contractDigests[%q] records %s: if the layout or a decision changed, bump contractVersion to %d (manifest.json, every vector file, request.lua's header) and add \"%d\": %q; if vectors were only added for what version %s already decides, record %q under %q", digest, current, got, n+1, n+1, digest, current, digest, current))
	}
	return problems
}

// projectContract reads manifest.json and the project's vector files from disk.
func projectContract(t *testing.T) ([]byte, map[string][]byte) {
	t.Helper()
	manifest, err := os.ReadFile("manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(vectorGlob)
	if err != nil || len(paths) == 0 {
		t.Fatalf("no project vector files match %s: %v", vectorGlob, err)
	}
	vectors := map[string][]byte{}
	for _, p := range paths {
		if vectors[p], err = os.ReadFile(p); err != nil {
			t.Fatal(err)
		}
	}
	return manifest, vectors
}

// TestDriftContractDigest is the drift gate's check that the contract version and the
// contract's content move together (SPEC §9), on the repository as it is.
func TestDriftContractDigest(t *testing.T) {
	m := loadManifest(t)
	manifest, vectors := projectContract(t)
	digest, err := contractDigest(manifest, vectors)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkContractDigests(m.ContractVersion, m.ContractDigests, digest) {
		t.Error(p)
	}
}

// The gate catches both ways the version and the content can part: a vector changed
// under the same version, and a version bumped (in the manifest and in the vector
// files' contractVersion field) over the same vectors. Re-spacing a file is no change.
func TestDriftContractDigestCatches(t *testing.T) {
	m := loadManifest(t)
	manifest, vectors := projectContract(t)
	name := slices.Sorted(maps.Keys(vectors))[0]
	orig := vectors[name]
	digest := func(manifest []byte, edit func(string) string) string {
		t.Helper()
		vs := maps.Clone(vectors)
		vs[name] = []byte(edit(string(orig)))
		d, err := contractDigest(manifest, vs)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	same := func(s string) string { return s }
	now := digest(manifest, same)
	current, err := strconv.Atoi(m.ContractVersion)
	if err != nil {
		t.Fatal(err)
	}
	next := strconv.Itoa(current + 1)
	bumped := func(s string) string {
		return strings.Replace(s, `"contractVersion": "`+m.ContractVersion+`"`, `"contractVersion": "`+next+`"`, 1)
	}
	if bumped(string(orig)) == string(orig) {
		t.Fatalf("%s does not spell its contractVersion as the test expects", name)
	}
	withNext := func(d string) map[string]string {
		ds := maps.Clone(m.ContractDigests)
		ds[next] = d
		return ds
	}
	onlyBumped := digest(manifest, bumped)
	bumpedAndChanged := digest(manifest, func(s string) string {
		return strings.Replace(bumped(s), `"remaining": 2`, `"remaining": 3`, 1)
	})
	cases := []struct {
		name    string
		version string
		digests map[string]string
		digest  string
		want    string // "" = accepted
	}{
		{"as committed", m.ContractVersion, m.ContractDigests, now, ""},
		{"re-spaced vectors", m.ContractVersion, m.ContractDigests,
			digest(manifest, func(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }), ""},
		{"a vector changed, same version", m.ContractVersion, m.ContractDigests,
			digest(manifest, func(s string) string { return strings.Replace(s, `"remaining": 2`, `"remaining": 3`, 1) }),
			"if the layout or a decision changed, bump contractVersion"},
		{"the manifest's layout changed, same version", m.ContractVersion, m.ContractDigests,
			digest(bytes.Replace(manifest, []byte(`"r: the number`), []byte(`"r: the count`), 1), same),
			"if the layout or a decision changed, bump contractVersion"},
		{"version fields bumped, vectors the same", next, withNext(onlyBumped), onlyBumped, "have the same content"},
		{"version bumped without a digest", next, m.ContractDigests, now, "no entry for version " + next},
		{"version bumped with new vectors", next, withNext(bumpedAndChanged), bumpedAndChanged, ""},
		{"an old entry removed", m.ContractVersion, without(m.ContractDigests, "1"), now, "no entry for version 1"},
	}
	for _, tc := range cases {
		problems := checkContractDigests(tc.version, tc.digests, tc.digest)
		got := strings.Join(problems, "\n")
		switch {
		case tc.want == "" && len(problems) > 0:
			t.Errorf("%s: refused: %s", tc.name, got)
		case tc.want != "" && !strings.Contains(got, tc.want):
			t.Errorf("%s: %q, want a refusal saying %q", tc.name, got, tc.want)
		}
	}
}

func without(m map[string]string, key string) map[string]string {
	out := maps.Clone(m)
	delete(out, key)
	return out
}
