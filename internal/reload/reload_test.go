package reload_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/ratelimitheaders"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testgrpc"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"

	"github.com/ratelimit-ext/ratelimit-ext/internal/decide"
	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/httpapi"
	"github.com/ratelimit-ext/ratelimit-ext/internal/limiter"
	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
	"github.com/ratelimit-ext/ratelimit-ext/internal/rls"
	"github.com/ratelimit-ext/ratelimit-ext/internal/storekey"
	"github.com/ratelimit-ext/ratelimit-ext/internal/testlog"
)

// rules is a one-limit rule file whose limit name tells which edit is serving.
func rules(name string) string {
	return fmt.Sprintf("domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {name: %s, unit: hour, requests_per_unit: 1000000}\n", name)
}

// broken has an unknown unit on line 4.
const broken = "domain: edge\ndescriptors:\n  - key: k\n    rate_limit: {name: bad, unit: fortnight, requests_per_unit: 5}\n"

// harness runs a Watcher on dir and records what it applies, every load attempt, and
// every step its goroutines report through the test hooks.
type harness struct {
	decider  *decide.Decider
	loads    atomic.Int64
	failures atomic.Int64
	lastErr  atomic.Pointer[error]
	logs     *testlog.Buffer

	mu      sync.Mutex
	steps   []step
	stepped chan struct{} // holds a token once a step is recorded
}

// step is what the watcher reports having done: handled an event on path, polled the
// links (poll), or loaded (load; a catch-up that found nothing changed too); reload says
// whether the event or poll asked for a reload.
type step struct {
	path               string
	poll, load, reload bool
}

func (s step) String() string {
	switch {
	case s.load:
		return "a load"
	case s.poll:
		return fmt.Sprintf("a poll (reload %v)", s.reload)
	}
	return fmt.Sprintf("an event on %s (reload %v)", s.path, s.reload)
}

func (h *harness) record(s step) {
	h.mu.Lock()
	h.steps = append(h.steps, s)
	h.mu.Unlock()
	select {
	case h.stepped <- struct{}{}:
	default:
	}
}

// mark is where the steps the watcher reports from now on start.
func (h *harness) mark() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.steps)
}

// since returns the steps reported from mark on.
func (h *harness) since(mark int) []step {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.steps[mark:])
}

// until waits for cond, looking again after each step the watcher reports (the rules,
// the counts and the log change only in a load, which is a step), and says whether it
// came before within passed.
func (h *harness) until(within time.Duration, cond func() bool) bool {
	timeout := time.After(within)
	for !cond() {
		select {
		case <-h.stepped:
		case <-timeout:
			return cond()
		}
	}
	return true
}

// waitSteps waits until the steps reported from mark on hold one that ok accepts for
// each of wants, and returns them all; it fails the test after 10 s.
func (h *harness) waitSteps(t *testing.T, mark int, what string, wants ...func(step) bool) []step {
	t.Helper()
	var got []step
	if !h.until(10*time.Second, func() bool {
		got = h.since(mark)
		return !slices.ContainsFunc(wants, func(ok func(step) bool) bool { return !slices.ContainsFunc(got, ok) })
	}) {
		t.Fatalf("the watcher did not report %s; it reported %v; log:\n%s", what, got, h.logs)
	}
	return got
}

// waitCatchUp waits for the start's catch-up load, the first load of a watching
// Watcher (it reports nothing when it finds the rules unchanged).
func (h *harness) waitCatchUp(t *testing.T) {
	t.Helper()
	h.waitSteps(t, 0, "the start's catch-up load", func(s step) bool { return s.load })
}

// askedReload returns the events and polls among steps that asked for a reload.
func askedReload(steps []step) []step {
	var asked []step
	for _, s := range steps {
		if s.reload {
			asked = append(asked, s)
		}
	}
	return asked
}

// handledEvent accepts a handled event on path.
func handledEvent(path string) func(step) bool {
	return func(s step) bool { return !s.poll && !s.load && filepath.Clean(s.path) == path }
}

func watch(t *testing.T, dir string, o reload.Options) *harness {
	t.Helper()
	return watchAfter(t, dir, o, func() {})
}

// watchAfter is watch with between run after the rules are loaded and before the
// watcher starts, as the server loads its rules first.
func watchAfter(t *testing.T, dir string, o reload.Options, between func()) *harness {
	t.Helper()
	return watchWith(t, dir, o, between, reload.Hooks{})
}

// watchHooked is watch with the watcher's After, NewWatcher and Add hooks taken from
// hooks (the harness sets the others).
func watchHooked(t *testing.T, dir string, o reload.Options, hooks reload.Hooks) *harness {
	t.Helper()
	return watchWith(t, dir, o, func() {}, hooks)
}

func watchWith(t *testing.T, dir string, o reload.Options, between func(), hooks reload.Hooks) *harness {
	t.Helper()
	rs, err := o.Rules.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	between()
	engine := limiter.NewMemoryEngine(limiter.MemoryOptions{Sweep: -1})
	t.Cleanup(func() { engine.Close() })
	h := &harness{decider: decide.New(rs, engine, decide.Options{Keys: storekey.New("r:", 0)}), logs: &testlog.Buffer{},
		stepped: make(chan struct{}, 1)}
	o.Dir, o.Serving = dir, rs
	o.Log = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.OnLoad = func(_ *descriptors.RuleSet, err error) {
		h.loads.Add(1)
		if err != nil {
			h.lastErr.Store(&err) // before the count a test waits on
			h.failures.Add(1)
		}
	}
	hooks.Handled = func(path string, reload bool) { h.record(step{path: path, reload: reload}) }
	hooks.Polled = func(reload bool) { h.record(step{poll: true, reload: reload}) }
	hooks.Loaded = func() { h.record(step{load: true}) }
	o = reload.WithHooks(o, hooks)
	w, err := reload.Start(context.Background(), o, h.decider.SetRules)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}

// serving is the name of the limit the rules in use give key k, or "".
func (h *harness) serving() string {
	ls := h.decider.Rules().Match("edge", []descriptors.Entry{{Key: "k", Value: "x"}})
	if len(ls) == 0 {
		return ""
	}
	return ls[0].Name
}

// waitFor waits until the serving limit is name, failing after within.
func (h *harness) waitFor(t *testing.T, name string, within time.Duration) {
	t.Helper()
	if h.until(within, func() bool { return h.serving() == name }) {
		return
	}
	t.Fatalf("rules %q still serving %v after the edit to %q; log:\n%s", h.serving(), within, name, h.logs)
}

// waitLog waits for a log line holding every one of parts: the watcher logs a failed
// load after it has reported it to OnLoad.
func (h *harness) waitLog(t *testing.T, what string, parts ...string) {
	t.Helper()
	if h.until(2*time.Second, func() bool {
		return slices.ContainsFunc(strings.Split(h.logs.String(), "\n"), func(line string) bool {
			return !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) })
		})
	}) {
		return
	}
	t.Fatalf("%s is not logged:\n%s", what, h.logs)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

// A valid edit takes effect (within the 2 s waitFor allows: about 100 ms on an idle
// machine, which a test on a busy one cannot promise).
func TestValidEditTakesEffect(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})
	if h.serving() != "v1" {
		t.Fatal("initial rules not served")
	}
	h.waitCatchUp(t) // so that only the watches can see the edit
	write(t, filepath.Join(dir, "edge.yaml"), rules("v2"))
	h.waitFor(t, "v2", 2*time.Second)
	// A new file in a new subdirectory is picked up too.
	mkdir(t, filepath.Join(dir, "team"))
	write(t, filepath.Join(dir, "team", "api.yaml"), "domain: api\ndescriptors: []\n")
	if !h.until(2*time.Second, func() bool { return strings.Contains(h.decider.Rules().Summary(), "2 domains") }) {
		t.Fatalf("new subdirectory not loaded: %s", h.decider.Rules().Summary())
	}
	if !strings.Contains(h.logs.String(), "config reloaded") {
		t.Fatalf("no reload logged:\n%s", h.logs)
	}
}

// A broken edit is rejected as a whole: the old rules keep serving (and the service
// stays ready), the error is logged with file:line and counted.
func TestBrokenEditKeepsOldRules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})
	api := httpapi.New(h.decider, slog.New(slog.NewTextHandler(h.logs, nil)), nil)
	api.UseReadiness(httpapi.NewReadiness(h.decider, httpapi.ReadinessOptions{Log: slog.New(slog.NewTextHandler(h.logs, nil))}))
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	write(t, path, broken)
	if !h.until(2*time.Second, func() bool { return h.failures.Load() > 0 }) {
		t.Fatalf("the broken edit was not loaded; log:\n%s", h.logs)
	}
	if got := h.serving(); got != "v1" {
		t.Fatalf("serving %q after a broken edit, want the old v1", got)
	}
	err := *h.lastErr.Load()
	if !strings.Contains(err.Error(), "edge.yaml:4:") || !strings.Contains(err.Error(), "fortnight") {
		t.Fatalf("load error %q does not name file:line and the problem", err)
	}
	h.waitLog(t, "the failure with file:line", "config reload failed", "edge.yaml:4:")
	resp, rerr := http.Get(srv.URL + "/readyz")
	if rerr != nil {
		t.Fatal(rerr)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz %d after a broken edit", resp.StatusCode)
	}

	// Fixing the file serves the fix.
	write(t, path, rules("v3"))
	h.waitFor(t, "v3", 2*time.Second)
}

// A directory left without any limit (its files removed, or caught between removing
// the old files and writing the new ones) would lift every limit: the reload is refused
// and counted as failed, the old rules keep serving, and the next reload with limits
// serves them.
func TestEmptiedDirKeepsOldRules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "other.yaml"), "domain: other\ndescriptors: []\n") // a domain, no limits
	if !h.until(2*time.Second, func() bool { return h.failures.Load() > 0 }) {
		t.Fatalf("the emptied directory was not refused; serving %q; log:\n%s", h.serving(), h.logs)
	}
	if err := *h.lastErr.Load(); !errors.Is(err, reload.ErrNoLimits) {
		t.Fatalf("load error %v, want ErrNoLimits", err)
	}
	if got := h.serving(); got != "v1" {
		t.Fatalf("serving %q after the directory was emptied, want the old v1", got)
	}
	h.waitLog(t, "the refusal", "config reload failed", "no limits")
	write(t, path, rules("v2"))
	h.waitFor(t, "v2", 2*time.Second)
}

// Rules that start empty may gain limits; once they have some, emptying them again is
// refused.
func TestEmptyStartTakesRules(t *testing.T) {
	dir := t.TempDir()
	h := watch(t, dir, reload.Options{Watch: true})
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	h.waitFor(t, "v1", 2*time.Second)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !h.until(2*time.Second, func() bool { return h.failures.Load() > 0 }) || h.serving() != "v1" {
		t.Fatalf("emptying the rules again: %d failed loads, serving %q; want refused, v1", h.failures.Load(), h.serving())
	}
}

// configMap lays out dir as the kubelet does: ..<ts>/edge.yaml, ..data -> ..<ts>,
// edge.yaml -> ..data/edge.yaml.
func configMap(t *testing.T, dir, ts, content string) {
	t.Helper()
	mkdir(t, filepath.Join(dir, ts))
	write(t, filepath.Join(dir, ts, "edge.yaml"), content)
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "edge.yaml"), filepath.Join(dir, "edge.yaml")); err != nil {
		t.Fatal(err)
	}
}

// swapConfigMap does what the kubelet does on an update: a new timestamped directory,
// a temporary symlink to it renamed over ..data (atomic), then the old directory removed.
func swapConfigMap(t *testing.T, dir, oldTS, newTS, content string) {
	t.Helper()
	mkdir(t, filepath.Join(dir, newTS))
	write(t, filepath.Join(dir, newTS, "edge.yaml"), content)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(newTS, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, oldTS)); err != nil {
		t.Fatal(err)
	}
}

func TestConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	configMap(t, dir, "..2026_11_22_10_00_00.000000001", rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})
	if h.serving() != "v1" {
		t.Fatal("initial ConfigMap rules not served")
	}
	h.waitCatchUp(t) // so that only the watches can find the swap
	swapConfigMap(t, dir, "..2026_11_22_10_00_00.000000001", "..2026_11_22_10_05_00.000000002", rules("v2"))
	h.waitFor(t, "v2", 2*time.Second)
	// Again: the watches followed the first swap.
	swapConfigMap(t, dir, "..2026_11_22_10_05_00.000000002", "..2026_11_22_10_10_00.000000003", rules("v3"))
	h.waitFor(t, "v3", 2*time.Second)
	if n := h.failures.Load(); n != 0 {
		t.Fatalf("%d failed loads during ConfigMap swaps; log:\n%s", n, h.logs)
	}
}

// The config directory replaced by a rename: the watch moves to the new directory.
func TestDirReplacedByRename(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "config")
	mkdir(t, dir)
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h := watch(t, dir, reload.Options{Watch: true})

	mkdir(t, filepath.Join(base, "config.new"))
	write(t, filepath.Join(base, "config.new", "edge.yaml"), rules("v2"))
	if err := os.Rename(dir, filepath.Join(base, "config.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(base, "config.new"), dir); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 2*time.Second)
	// Edits in the new directory are seen; the old one is no longer read: after an edit
	// there, the next load serves the new directory's edit.
	write(t, filepath.Join(dir, "edge.yaml"), rules("v3"))
	h.waitFor(t, "v3", 2*time.Second)
	write(t, filepath.Join(base, "config.old", "edge.yaml"), rules("stale"))
	write(t, filepath.Join(dir, "edge.yaml"), rules("v4"))
	h.waitFor(t, "v4", 2*time.Second)

	// Removed and re-created: the load of the missing directory fails and v4 keeps
	// serving.
	failures := h.failures.Load()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if !h.until(2*time.Second, func() bool { return h.failures.Load() > failures }) {
		t.Fatalf("no failed load of the missing directory; log:\n%s", h.logs)
	}
	if got := h.serving(); got != "v4" {
		t.Fatalf("serving %q while the directory is missing", got)
	}
	mkdir(t, dir)
	write(t, filepath.Join(dir, "edge.yaml"), rules("v5"))
	h.waitFor(t, "v5", 2*time.Second)
	write(t, filepath.Join(dir, "edge.yaml"), rules("v6"))
	h.waitFor(t, "v6", 2*time.Second)
}

// A config directory that is a symlink is watched through it, and re-pointing the
// symlink (atomically, as `ln -sfn` or a deploy tool does) switches to the new target.
func TestSymlinkedDir(t *testing.T) {
	base := t.TempDir()
	for _, v := range []string{"r1", "r2"} {
		mkdir(t, filepath.Join(base, v))
	}
	write(t, filepath.Join(base, "r1", "edge.yaml"), rules("v1"))
	write(t, filepath.Join(base, "r2", "edge.yaml"), rules("v2"))
	dir := filepath.Join(base, "config")
	if err := os.Symlink("r1", dir); err != nil {
		t.Fatal(err)
	}
	h := watch(t, dir, reload.Options{Watch: true})
	h.waitCatchUp(t) // so that only the watches can find the edit
	write(t, filepath.Join(base, "r1", "edge.yaml"), rules("v1b"))
	h.waitFor(t, "v1b", 2*time.Second)

	tmp := filepath.Join(base, "config.tmp")
	if err := os.Symlink("r2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 2*time.Second)
	write(t, filepath.Join(base, "r2", "edge.yaml"), rules("v2b"))
	h.waitFor(t, "v2b", 2*time.Second)
}

// A link above the config directory re-pointed (envoyproxy/ratelimit's RUNTIME_ROOT
// layout: the rules in current/config, and a deploy swaps current -> v2) switches to
// the new target within about a second, and edits there are watched from then on.
func TestLinkAboveTheDirRepointed(t *testing.T) {
	base := t.TempDir()
	for _, v := range []string{"v1", "v2"} {
		mkdir(t, filepath.Join(base, v, "config"))
		write(t, filepath.Join(base, v, "config", "edge.yaml"), rules(v))
	}
	if err := os.Symlink("v1", filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	h := watch(t, filepath.Join(base, "current", "config"), reload.Options{Watch: true})
	h.waitCatchUp(t) // so that only following the link can find v2
	tmp := filepath.Join(base, "current.tmp")
	if err := os.Symlink("v2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(base, "current")); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 5*time.Second)
	h.waitLog(t, "the re-pointed link", "resolves elsewhere", "v2")
	write(t, filepath.Join(base, "v2", "config", "edge.yaml"), rules("v2b"))
	h.waitFor(t, "v2b", 5*time.Second)
}

// A symlinked subdirectory (loading follows it) is watched too.
func TestSymlinkedSubdirectory(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "config")
	mkdir(t, dir)
	mkdir(t, filepath.Join(base, "elsewhere"))
	write(t, filepath.Join(base, "elsewhere", "edge.yaml"), rules("v1"))
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(dir, "shared")); err != nil {
		t.Fatal(err)
	}
	h := watch(t, dir, reload.Options{Watch: true})
	if h.serving() != "v1" {
		t.Fatal("rules behind the symlink not served")
	}
	h.waitCatchUp(t) // so that only the watches can find the edit
	write(t, filepath.Join(base, "elsewhere", "edge.yaml"), rules("v2"))
	h.waitFor(t, "v2", 2*time.Second)
}

// A rule file that is a symlink to a file outside the directory (one a deploy tool or a
// git checkout manages) is followed: edits in place, a new file renamed onto it, a
// re-pointed link, a link re-pointed further along its chain (a git deploy's
// `current -> rev2`), and the target's directory deleted and made again all reload
// (within the poll, about a second); other files beside the target do not.
func TestSymlinkedFileOutsideTheDir(t *testing.T) {
	base := t.TempDir()
	dir, srv, srv2 := filepath.Join(base, "config"), filepath.Join(base, "srv"), filepath.Join(base, "srv2")
	for _, d := range []string{dir, srv, srv2} {
		mkdir(t, d)
	}
	symlink := func(target, link string) { // atomically, as ln -sf and deploy tools do
		t.Helper()
		tmp := link + ".new"
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, link); err != nil {
			t.Fatal(err)
		}
	}
	const within = 5 * time.Second
	target := filepath.Join(srv, "edge.yaml")
	write(t, target, rules("v1"))
	link := filepath.Join(dir, "edge.yaml")
	symlink(target, link)
	h := watch(t, dir, reload.Options{Watch: true})
	if h.serving() != "v1" {
		t.Fatal("rules behind the link not served")
	}
	// Past the start's catch-up load, which could find the first edit: from here on
	// only the poll can.
	h.waitCatchUp(t)
	write(t, target, rules("v2")) // in place
	h.waitFor(t, "v2", within)

	tmp := filepath.Join(srv, ".edge.yaml.tmp") // replaced by a rename, as editors do
	write(t, tmp, rules("v3"))
	if err := os.Rename(tmp, target); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v3", within)

	// Neighbours of the target are not rules: neither the poll that looks after the
	// write nor anything else asks for a reload.
	write(t, filepath.Join(srv, "other.yaml"), broken)
	if asked := askedReload(h.waitPolls(t, 2)); len(asked) > 0 {
		t.Fatalf("%d steps asked for a reload after a write beside the linked file, the first %v; log:\n%s", len(asked), asked[0], h.logs)
	}

	// The link re-pointed.
	write(t, filepath.Join(srv2, "edge.yaml"), rules("v4"))
	symlink(filepath.Join(srv2, "edge.yaml"), link)
	h.waitFor(t, "v4", within)
	write(t, filepath.Join(srv2, "edge.yaml"), rules("v5"))
	h.waitFor(t, "v5", within)

	// A chain: the link names a path through another link, re-pointed from rev1 to rev2.
	for _, rev := range []string{"rev1", "rev2"} {
		mkdir(t, filepath.Join(base, rev))
		write(t, filepath.Join(base, rev, "edge.yaml"), rules(rev))
	}
	current := filepath.Join(base, "current")
	symlink(filepath.Join(base, "rev1"), current)
	symlink(filepath.Join(current, "edge.yaml"), link)
	h.waitFor(t, "rev1", within)
	symlink(filepath.Join(base, "rev2"), current)
	h.waitFor(t, "rev2", within)

	// The target's directory deleted and made again.
	if err := os.RemoveAll(filepath.Join(base, "rev2")); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(base, "rev2"))
	write(t, filepath.Join(base, "rev2", "edge.yaml"), rules("rev2b"))
	h.waitFor(t, "rev2b", within)
}

// A linked file changed after the rules were loaded and before the watcher started is
// picked up: the first look at the links reloads once.
func TestLinkedFileChangedBeforeTheWatchStarts(t *testing.T) {
	base := t.TempDir()
	dir, srv := filepath.Join(base, "config"), filepath.Join(base, "srv")
	mkdir(t, dir)
	mkdir(t, srv)
	target := filepath.Join(srv, "edge.yaml")
	write(t, target, rules("v1"))
	if err := os.Symlink(target, filepath.Join(dir, "edge.yaml")); err != nil {
		t.Fatal(err)
	}
	h := watchAfter(t, dir, reload.Options{Watch: true}, func() { write(t, target, rules("v2")) })
	h.waitFor(t, "v2", 5*time.Second)
}

// An edit between the caller's load and the start of the watches (the server loads
// its rules, then sets up the engine and listeners) is picked up, and a start with
// nothing changed is not a reload.
func TestEditBeforeTheWatchStarts(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h := watchAfter(t, dir, reload.Options{Watch: true}, func() {
		write(t, filepath.Join(dir, "edge.yaml"), rules("v2"))
	})
	h.waitFor(t, "v2", 5*time.Second)

	quiet := t.TempDir()
	write(t, filepath.Join(quiet, "edge.yaml"), rules("v1"))
	q := watch(t, quiet, reload.Options{Watch: true})
	q.waitCatchUp(t)
	if n := q.loads.Load(); n != 0 {
		t.Errorf("the catch-up load of an unchanged start reported %d loads, want none; log:\n%s", n, q.logs)
	}
	write(t, filepath.Join(quiet, "edge.yaml"), rules("v3"))
	q.waitFor(t, "v3", 5*time.Second)
}

// A burst of events is one load.
func TestEventsAreCoalesced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v0"))
	h := watch(t, dir, reload.Options{Watch: true, Debounce: 150 * time.Millisecond, MaxDelay: 5 * time.Second})
	for i := 1; i <= 50; i++ {
		write(t, path, rules(fmt.Sprintf("v%d", i)))
	}
	h.waitFor(t, "v50", 2*time.Second)
	time.Sleep(400 * time.Millisecond)
	// One load; two if a starved scheduler let the debounce expire mid-burst.
	if n := h.loads.Load(); n > 2 {
		t.Fatalf("50 writes in a burst made %d loads, want 1 (2 if the debounce expired mid-burst); log:\n%s", n, h.logs)
	}
}

// Files that loading never reads do not reload: a log written into the directory would
// otherwise reload on every line, each reload writing another line.
func TestOtherFilesDoNotReload(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "edge.yaml"), rules("v0"))
	h := watch(t, dir, reload.Options{Watch: true, Debounce: 30 * time.Millisecond, MaxDelay: time.Second})
	mark := h.mark()
	logFile, swap := filepath.Join(dir, "server.log"), filepath.Join(dir, ".edge.yaml.swp")
	for i := range 8 {
		write(t, logFile, strings.Repeat("a log line\n", i+1))
		write(t, swap, "swap")
	}
	// Events come in order: once the last is handled, so are the others.
	last := filepath.Join(dir, "done.log")
	write(t, last, "")
	steps := h.waitSteps(t, mark, "the writes to other files", handledEvent(logFile), handledEvent(swap), handledEvent(last))
	if asked := askedReload(steps); len(asked) > 0 {
		t.Fatalf("%d steps asked for a reload on writes to files that loading never reads, the first %v; log:\n%s", len(asked), asked[0], h.logs)
	}
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	h.waitFor(t, "v1", 2*time.Second)
	if n := h.loads.Load(); n > 2 {
		t.Fatalf("%d loads for one rule edit among writes to other files, want 1 (2 if the debounce expired mid-edit); log:\n%s", n, h.logs)
	}
}

// A subdirectory moved out of the tree takes its rules with it, whatever its name (one
// with a dot in it looks like a file with an extension once it is gone).
func TestSubdirectoryMovedAway(t *testing.T) {
	dir, away := t.TempDir(), t.TempDir()
	write(t, filepath.Join(dir, "edge.yaml"), rules("v1"))
	mkdir(t, filepath.Join(dir, "team.d"))
	write(t, filepath.Join(dir, "team.d", "api.yaml"), "domain: api\ndescriptors: []\n")
	h := watch(t, dir, reload.Options{Watch: true})
	if !strings.Contains(h.decider.Rules().Summary(), "2 domains") {
		t.Fatalf("not both domains at the start: %s", h.decider.Rules().Summary())
	}
	if err := os.Rename(filepath.Join(dir, "team.d"), filepath.Join(away, "team.d")); err != nil {
		t.Fatal(err)
	}
	if !h.until(2*time.Second, func() bool { return strings.Contains(h.decider.Rules().Summary(), "1 domain") }) {
		t.Fatalf("the moved-away directory's rules still serve: %s; log:\n%s", h.decider.Rules().Summary(), h.logs)
	}
}

// A steady trickle of events closer together than the debounce still reloads within
// MaxDelay.
func TestSteadyTrickleStillReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v0"))
	h := watch(t, dir, reload.Options{Watch: true, Debounce: 100 * time.Millisecond, MaxDelay: 300 * time.Millisecond})
	stop := time.Now().Add(1200 * time.Millisecond)
	for i := 1; time.Now().Before(stop); i++ {
		write(t, path, rules(fmt.Sprintf("v%d", i)))
		time.Sleep(20 * time.Millisecond)
	}
	if n := h.loads.Load(); n < 2 {
		t.Fatalf("%d loads during 1.2 s of writes every 20 ms, want one at least every 300 ms", n)
	}
}

func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	h := watch(t, dir, reload.Options{Watch: false, Debounce: 20 * time.Millisecond})
	write(t, path, rules("v2"))
	time.Sleep(300 * time.Millisecond)
	if h.serving() != "v1" {
		t.Fatal("reloaded without watching")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.waitFor(t, "v2", 2*time.Second)
	if !strings.Contains(h.logs.String(), "SIGHUP") {
		t.Fatalf("SIGHUP not logged:\n%s", h.logs)
	}
}

// A SIGHUP the caller received before Start (Options.Hangups, registered before the
// rules were loaded) reloads once the watcher runs: an edit made between the caller's
// load and Start, which nothing else would find without watching, is served.
func TestSIGHUPBeforeStartReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v1"))
	hup := make(chan os.Signal, 1)
	h := watchAfter(t, dir, reload.Options{Watch: false, Hangups: hup}, func() {
		write(t, path, rules("v2"))
		hup <- syscall.SIGHUP
	})
	h.waitFor(t, "v2", 2*time.Second)
	h.waitLog(t, "the SIGHUP", "SIGHUP: reloading rules")
}

// 100 rapid edits (in place, so some loads see a half-written file) while clients call
// ShouldRateLimit over a real gRPC connection: no RPC fails, every answer comes from a
// complete rule set, and the last edit's rules end up serving.
func TestRapidEditsUnderTraffic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "edge.yaml")
	write(t, path, rules("v0"))
	h := watch(t, dir, reload.Options{Watch: true, Debounce: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond})

	conn := testgrpc.Serve(t, func(gs *grpc.Server) {
		rlsv3.RegisterRateLimitServiceServer(gs, rls.New(h.decider, ratelimitheaders.Options{RetryAfter: true}, nil))
	})
	client := rlsv3.NewRateLimitServiceClient(conn)

	ctx, cancel := context.WithCancel(context.Background())
	var calls, failures, unlimited atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	var last atomic.Value
	for c := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{{
				Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "k", Value: fmt.Sprint("client-", c)}}}}}
			for ctx.Err() == nil {
				resp, err := client.ShouldRateLimit(context.Background(), req)
				calls.Add(1)
				switch {
				case err != nil:
					failures.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				case resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].CurrentLimit == nil:
					unlimited.Add(1)
				default:
					last.Store(resp.Statuses[0].CurrentLimit.Name)
				}
			}
		}()
	}
	for i := 1; i <= 100; i++ {
		write(t, path, rules(fmt.Sprintf("v%d", i)))
		time.Sleep(2 * time.Millisecond)
	}
	h.waitFor(t, "v100", 2*time.Second)
	// The clients under traffic come to see the last rules. (The answer a client stores
	// last is up to the scheduler, so the test waits for v100 rather than reading it
	// after the clients stop.)
	for start := time.Now(); last.Load() != "v100"; time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 2*time.Second {
			cancel()
			t.Fatalf("clients still see %v 2 s after v100 was served", last.Load())
		}
	}
	cancel()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d RPCs failed during the edits, first: %v", n, calls.Load(), *firstErr.Load())
	}
	if n := unlimited.Load(); n > 0 {
		t.Fatalf("%d of %d answers came from an incomplete rule set (no limit or not OK)", n, calls.Load())
	}
	if n := h.loads.Load(); n >= 100 {
		t.Fatalf("%d loads for 100 rapid edits: not coalesced", n)
	}
	t.Logf("%d RPCs, %d loads (%d rejected half-written files)", calls.Load(), h.loads.Load(), h.failures.Load())
}
