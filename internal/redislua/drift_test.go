package redislua_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/redislua"
)

// The project's own vector files; their contractVersion must move with the manifest's.
const vectorGlob = "../../testdata/*.json"

func loadManifest(t *testing.T) *redislua.Manifest {
	t.Helper()
	m, err := redislua.LoadManifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.ContractVersion == "" {
		t.Fatal("manifest.json has no contractVersion")
	}
	return m
}

// TestDriftScriptBytes is the drift gate of SPEC §9: every .lua file, on disk and
// embedded, is listed in manifest.json with the sha256 of its exact bytes, and every
// listed file exists.
func TestDriftScriptBytes(t *testing.T) {
	m := loadManifest(t)
	listed := map[string]string{}
	for _, s := range m.Scripts {
		if s.File == "" || s.SHA256 == "" {
			t.Errorf("manifest script %q lacks file or sha256", s.Name)
			continue
		}
		if _, dup := listed[s.File]; dup {
			t.Errorf("manifest lists %s twice", s.File)
		}
		listed[s.File] = s.SHA256
	}

	onDisk, err := filepath.Glob("*.lua")
	if err != nil {
		t.Fatal(err)
	}
	embedded, err := fs.Glob(redislua.Files(), "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(onDisk, embedded) {
		t.Errorf(".lua files on disk %v differ from the embedded ones %v", onDisk, embedded)
	}
	for _, name := range onDisk {
		want, ok := listed[name]
		if !ok {
			t.Errorf("%s exists but manifest.json does not list it", name)
			continue
		}
		disk, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		emb, err := fs.ReadFile(redislua.Files(), name)
		if err != nil {
			t.Fatal(err)
		}
		if string(disk) != string(emb) {
			t.Errorf("%s: embedded bytes differ from the file (rebuild)", name)
		}
		if got := sha256Hex(disk); got != want {
			t.Errorf("DRIFT: %s has sha256 %s but manifest.json says %s: a script change must update the manifest (and, if the contract changed, contractVersion and the vectors)", name, got, want)
		}
	}
	for name := range listed {
		if !slices.Contains(onDisk, name) {
			t.Errorf("manifest.json lists %s but the file does not exist", name)
		}
	}
}

// TestDriftContractVersion fails when the manifest's contractVersion differs from any
// project vector file's, or when there is no vector file to compare with. That checks
// the label only: TestDriftContractDigest ties the version to the vectors' content.
func TestDriftContractVersion(t *testing.T) {
	m := loadManifest(t)
	paths, err := filepath.Glob(vectorGlob)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no project vector files match %s: the contract version cannot be checked against the vectors", vectorGlob)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var f struct {
			ContractVersion string   `json:"contractVersion"`
			DecisionFields  []string `json:"decisionFields"`
		}
		if err := json.Unmarshal(data, &f); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if f.ContractVersion != m.ContractVersion {
			t.Errorf("%s has contractVersion %q but internal/redislua/manifest.json has %q: the contract and the vectors must move together", p, f.ContractVersion, m.ContractVersion)
		}
		if f.DecisionFields != nil && !slices.Equal(f.DecisionFields, m.DecisionFields) {
			t.Errorf("%s has decisionFields %v, manifest %v", p, f.DecisionFields, m.DecisionFields)
		}
	}
}

// TestDriftScriptNamesItsContract fails when a script's header names a contract version
// other than the manifest's: a reader of the script trusts its header.
func TestDriftScriptNamesItsContract(t *testing.T) {
	m := loadManifest(t)
	src, err := os.ReadFile("request.lua")
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`contractVersion (\w+)`).FindAllSubmatch(src, -1)
	if len(named) == 0 {
		t.Fatal("request.lua does not name its contract version")
	}
	for _, v := range named {
		if string(v[1]) != m.ContractVersion {
			t.Errorf("request.lua names contractVersion %s, manifest.json %s", v[1], m.ContractVersion)
		}
	}
}

// TestScriptFormatsNoNumberByConcatenation holds request.lua to SPEC §9: tostring, ..
// and string.format's %s and %g write numbers with 14 significant digits (an epoch time
// in ms loses its last digits), so the script has no tostring, formats with %d only,
// and every .. joins a string literal to a %d format or to a string.rep (the pattern
// of a struct.unpack).
func TestScriptFormatsNoNumberByConcatenation(t *testing.T) {
	src, err := os.ReadFile("request.lua")
	if err != nil {
		t.Fatal(err)
	}
	allowed := regexp.MustCompile(`'[^']*' \.\. (fmt\('%d', |string\.rep\('d', )`)
	format := regexp.MustCompile(`(?:fmt|string\.format)\('([^']*)'`)
	verb := regexp.MustCompile(`%[^d]`)
	for i, line := range strings.Split(string(src), "\n") {
		code, _, _ := strings.Cut(line, "--")
		if strings.Contains(code, "tostring") {
			t.Errorf("request.lua:%d uses tostring: %s", i+1, strings.TrimSpace(line))
		}
		for _, f := range format.FindAllStringSubmatch(code, -1) {
			if verb.MatchString(f[1]) {
				t.Errorf("request.lua:%d formats with %q: only %%d keeps every digit", i+1, f[1])
			}
		}
		if n := strings.Count(code, ".."); n != len(allowed.FindAllString(code, -1)) {
			t.Errorf("request.lua:%d concatenates something other than a literal and a %%d format: %s", i+1, strings.TrimSpace(line))
		}
	}
}

// TestScriptSHA1 checks that EVALSHA uses the SHA-1 of the exact embedded bytes.
func TestScriptSHA1(t *testing.T) {
	src, err := os.ReadFile("request.lua")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha1.Sum(src)
	if got, want := redislua.Request.SHA1(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Request.SHA1() = %s, sha1(request.lua) = %s", got, want)
	}
	if redislua.Request.Source() != string(src) {
		t.Error("Request.Source() differs from request.lua")
	}
}

// TestManifestLayout ties the documented layouts to the constants the Go engine uses.
func TestManifestLayout(t *testing.T) {
	m := loadManifest(t)
	want := []string{"allowed", "limit", "remaining", "resetAt", "retryAfterMs"}
	if !slices.Equal(m.DecisionFields, want) {
		t.Errorf("decisionFields %v, want %v", m.DecisionFields, want)
	}
	var req *redislua.ManifestScript
	for i := range m.Scripts {
		if m.Scripts[i].File == "request.lua" {
			req = &m.Scripts[i]
		}
	}
	if req == nil {
		t.Fatal("manifest.json does not describe request.lua")
	}
	checks := []struct {
		what string
		got  int
		want int
	}{
		{"argv.header", len(req.Argv.Header), redislua.ArgsHeader},
		{"argv.perGroup", len(req.Argv.PerGroup), redislua.ArgsPerGroup},
		{"argv.perRequest", len(req.Argv.PerRequest), redislua.ArgsPerRequest},
		{"argv.perLimit", len(req.Argv.PerLimit), redislua.ArgsPerLimit},
		{"reply.header", len(req.Reply.Header), redislua.ReplyHeader},
		{"reply.perRequest", len(req.Reply.PerRequest), redislua.ReplyPerRequest},
		{"reply.perLimit", len(req.Reply.PerLimit), redislua.ReplyPerLimit},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("manifest %s has %d entries, the Go engine uses %d", c.what, c.got, c.want)
		}
	}
	// The header comment of the script states the same widths.
	for _, phrase := range []string{"of 9 integers each", "then 2 integers per limit", "local GROUP = 9 "} {
		if !strings.Contains(redislua.Request.Source(), phrase) {
			t.Errorf("request.lua no longer says %q: the script and the Go engine disagree on the ARGV layout", phrase)
		}
	}
	if len(m.AlgorithmCodes) != 6 {
		t.Errorf("algorithmCodes has %d entries, want 6", len(m.AlgorithmCodes))
	}
	for name, code := range m.AlgorithmCodes {
		a, ok := limiter.ParseAlgorithm(name)
		if !ok {
			t.Errorf("algorithmCodes names unknown algorithm %q", name)
		} else if int(a) != code {
			t.Errorf("algorithmCodes[%s] = %d, limiter uses %d", name, code, a)
		}
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
