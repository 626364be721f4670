// Package reload keeps the served rules in step with the config directory: it watches
// the directory tree (fsnotify) and reloads on SIGHUP. The whole new rule set is
// validated before it is handed over, so a broken file keeps the old rules serving, and
// so does a directory left without any limit (ErrNoLimits).
//
// What is watched: the directory itself (following it if it is a symlink), every
// directory below it that loading reads (following symlinked directories, skipping
// dot-directories such as .git), and its parent, for events that name the directory
// itself. Rule files that are links to files outside the tree (`edge.yaml ->
// /srv/rules/edge.yaml`, a file a deploy tool or a git checkout manages) or into a
// dot-directory are looked at again every linkPollEvery instead (links.go). So
// these are all picked up:
//   - edits in place, new and removed files, new subdirectories;
//   - a linked file outside the tree edited, replaced, or reached through a re-pointed
//     link anywhere along its chain of links, within about a second;
//   - a Kubernetes ConfigMap update, which writes a new `..2026_…` directory and
//     atomically renames a `..data` symlink onto it (events on the directory itself);
//   - the directory replaced by a rename (`mv config.new config`), deleted and
//     re-created, or a symlinked directory re-pointed (`ln -sfn v2 config`): the
//     watches move to the new directory;
//   - a link further above it re-pointed (envoyproxy/ratelimit's RUNTIME_ROOT swap,
//     `current -> v2` with the rules in current/config), within about a second: the
//     directory's resolved path is polled with the links (links.go); and so is the
//     directory replaced without an event on its name (a symlinked directory's target
//     deleted and made again, a directory above it replaced by a rename).
//
// An inotify limit reached (no watcher, or no watch left for a directory) stops neither
// the start nor the reloads: every rule file is then polled instead, and watching is
// tried again every minute, so that raising the limit needs no restart (limits.go).
//
// Bursts of events are coalesced: a load runs once events have been quiet for Debounce,
// and at the latest MaxDelay after the first event of a burst, so a steady trickle of
// writes cannot postpone a reload forever.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// Options configures a Watcher.
type Options struct {
	Dir string
	// Rules says how Dir loads (descriptors.Options): as it loaded at the start, so
	// that with MergeDomains a reload merges the files of a domain as a whole again.
	Rules    descriptors.Options
	Watch    bool          // watch the directory; SIGHUP reloads either way
	Debounce time.Duration // quiet time before a burst of events is loaded (default 100 ms)
	// MaxDelay is the longest wait after the first event of a burst (default, and when
	// set below Debounce: 1 s, or Debounce if that is longer).
	MaxDelay time.Duration
	Log      *slog.Logger
	// Serving is the rule set already serving (nil: none): the log says whether a
	// reload changed it, and a reload to no limits at all is refused while it has some.
	Serving *descriptors.RuleSet
	// OnLoad, when set, is told the outcome of every load attempt (for metrics).
	OnLoad func(rs *descriptors.RuleSet, err error)
	// Hangups, when set, delivers SIGHUP: the caller registered it (signal.Notify)
	// before loading the rules, so that one sent during the start neither ends the
	// process (Go's default until the signal is asked for) nor is lost; a SIGHUP
	// waiting in it reloads once Start runs. Nil: Start registers its own.
	Hangups <-chan os.Signal

	hooks hooks // for tests only (export_test.go)
}

// hooks let tests know what the watcher's goroutines have done, and step its waits, so
// that they can tell that nothing happened without sleeping for a while. The zero value
// is production: Start sets the ones left nil to time.After and to no-ops.
type hooks struct {
	after   func(time.Duration) <-chan time.Time // the Debounce and MaxDelay waits
	handled func(path string, reload bool)       // an event handled; did it ask for a reload
	polled  func(reload bool)                    // a poll of the links done; did it ask
	loaded  func()                               // a load done, even a catch-up reporting nothing
	// fsnotify's NewWatcher and Add, which tests make fail as when an inotify limit is reached
	newWatcher func() (*fsnotify.Watcher, error)
	add        func(fsw *fsnotify.Watcher, name string) error
}

func (h *hooks) setDefaults() {
	if h.after == nil {
		h.after = time.After
	}
	if h.handled == nil {
		h.handled = func(string, bool) {}
	}
	if h.polled == nil {
		h.polled = func(bool) {}
	}
	if h.loaded == nil {
		h.loaded = func() {}
	}
	if h.newWatcher == nil {
		h.newWatcher = fsnotify.NewWatcher
	}
	if h.add == nil {
		h.add = (*fsnotify.Watcher).Add
	}
}

// maxTreeDepth bounds the directories watched below Dir (as loading bounds them).
const maxTreeDepth = 32

// rewatchEvery is how often a vanished config directory is looked for again.
const rewatchEvery = 200 * time.Millisecond

// Watcher reloads rules until Close.
type Watcher struct {
	opts  Options
	root  string // absolute Dir
	apply func(*descriptors.RuleSet)
	// fsw is nil while there is no watcher (an inotify limit at the start); once set,
	// by Start or by the poll's retry (limits.go), it is kept until Close.
	fsw    *fsnotify.Watcher
	kick   chan struct{}
	cancel context.CancelFunc
	done   sync.WaitGroup

	// pollAll says that an inotify limit left some of the tree unwatched: every rule
	// file is polled (limits.go), not only the links the watches cannot see, until
	// watching the whole tree again succeeds. limitsReached counts the limits reached,
	// so that a try can tell whether one was reached meanwhile.
	limitMu       sync.Mutex
	pollAll       bool          // (limitMu)
	limitsReached int64         // (limitMu)
	rewatching    chan struct{} // holds a token while a rewatch loop runs
	rootMu        sync.Mutex
	rootDir       os.FileInfo          // the directory Dir was when its tree was last watched (rootMu)
	rootFailed    bool                 // watching rootDir's tree failed (rootMu)
	serving       *descriptors.RuleSet // the last rules applied; owned by the loop goroutine
	// catchUp marks the first load, which looks for edits made between the caller's
	// load and the watches: it stays silent when it finds the rules unchanged.
	catchUp bool
}

// Start begins watching. apply receives each successfully loaded rule set; it is
// called from one goroutine, never concurrently.
func Start(ctx context.Context, o Options, apply func(*descriptors.RuleSet)) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = max(time.Second, o.Debounce)
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	o.hooks.setDefaults()
	root, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{opts: o, root: root, apply: apply, kick: make(chan struct{}, 1), cancel: cancel,
		rewatching: make(chan struct{}, 1), serving: o.Serving}
	if o.Watch {
		if err := w.watch(ctx); err != nil {
			cancel()
			return nil, err
		}
	}
	hup, stop := o.Hangups, func() {}
	if hup == nil { // registered before Start returns: a SIGHUP after it reloads
		own := make(chan os.Signal, 1)
		signal.Notify(own, syscall.SIGHUP)
		hup, stop = own, func() { signal.Stop(own) }
	}
	w.done.Add(2)
	go w.hangups(ctx, hup, stop)
	go w.loop(ctx)
	return w, nil
}

// hangups reloads on each SIGHUP from hup until ctx ends, then calls stop.
func (w *Watcher) hangups(ctx context.Context, hup <-chan os.Signal, stop func()) {
	defer w.done.Done()
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			w.opts.Log.Info("SIGHUP: reloading rules", "dir", w.opts.Dir)
			w.Trigger()
		}
	}
}

// watch starts following the tree: its watches and the poll, or the poll alone when an
// inotify limit leaves no watcher or no watch for Dir itself (limits.go).
func (w *Watcher) watch(ctx context.Context) error {
	// Where the directory's parent and its polled rule files lead before the watches
	// are added: what changes from here on is found by the poll.
	realParent, _ := filepath.EvalSymlinks(filepath.Dir(w.root))
	polled, _ := w.polledFiles()
	fsw, err := w.opts.hooks.newWatcher()
	if err == nil {
		w.fsw = fsw
		if err = w.addTree(w.root); err != nil {
			fsw.Close()
			w.fsw = nil
		}
	}
	switch {
	case err == nil:
		w.watchParent()
		w.done.Add(1)
		go w.events(ctx)
	case w.limitReached(err):
		polled, _ = w.polledFiles() // now every rule file
	default:
		return err
	}
	w.done.Add(1)
	go w.poll(ctx, polled, realParent)
	// The caller loaded the rules before the watches existed: an edit in between
	// made no event. Load once more to catch it.
	w.catchUp = true
	w.Trigger()
	return nil
}

// addTree watches dir and every directory below it that loading reads, following
// symlinks to directories (each real directory once) and skipping dot-directories, as
// loading does. A .git directory would otherwise turn every `git fetch` into reloads
// and hold a watch per directory of its objects; a ConfigMap's ..<timestamp>
// directories need none (the kubelet swaps them with an event in dir), and a rule file
// linked into a dot-directory is polled instead (polledFiles). Watching Dir's tree
// records which directory Dir then was (see followRoot).
//
// The watches held below dir's name are dropped first: dir may now be another directory
// (a link re-pointed, a directory renamed over or made again), and a watch of the old
// one kept under a name in the tree would report its edits as edits of the rules, and
// hold an inotify watch for as long as it exists (deploy tools keep old releases).
// Callers reload afterwards, which covers an edit made while nothing was watched.
func (w *Watcher) addTree(dir string) error {
	for _, p := range w.fsw.WatchList() {
		if within(dir, p) {
			_ = w.fsw.Remove(p) // a watch the kernel already ended is an error: nothing to do
		}
	}
	var root os.FileInfo
	if dir == w.root {
		root, _ = os.Stat(dir) // before the watches: a replacement meanwhile is seen later
	}
	err := w.addDir(dir, map[string]bool{}, 0)
	if err == nil && root != nil {
		w.setWatchedRoot(root, false)
	}
	return err
}

// watchParent watches the config directory's parent, which tells us when the directory
// itself is replaced. Best effort: an unreadable parent only loses that case (a
// vanished directory is still polled).
//
// A watch already held under the parent's name is removed first: the name may now lead
// to another directory (a link above re-pointed, a directory above renamed over), and
// fsnotify's Add under a name it watches forgets the old watch without ending it, so
// the kernel would keep watching the old release for as long as it exists.
func (w *Watcher) watchParent() {
	parent := filepath.Dir(w.root)
	if parent == w.root {
		return
	}
	if slices.Contains(w.fsw.WatchList(), parent) {
		_ = w.fsw.Remove(parent) // a watch the kernel already ended is an error: nothing to do
	}
	if err := w.opts.hooks.add(w.fsw, parent); err != nil {
		w.opts.Log.Debug("config watcher: not watching the parent directory", "dir", parent, "error", err)
	}
}

func (w *Watcher) setWatchedRoot(fi os.FileInfo, failed bool) {
	w.rootMu.Lock()
	w.rootDir, w.rootFailed = fi, failed
	w.rootMu.Unlock()
}

// watchedRoot reports whether fi is the directory Dir was when its tree was last
// watched, and whether that failed.
func (w *Watcher) watchedRoot(fi os.FileInfo) (same, failed bool) {
	w.rootMu.Lock()
	defer w.rootMu.Unlock()
	return w.rootDir != nil && os.SameFile(w.rootDir, fi), w.rootFailed
}

func (w *Watcher) addDir(dir string, seen map[string]bool, depth int) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if seen[real] || depth > maxTreeDepth {
		return nil
	}
	seen[real] = true
	if err := w.opts.hooks.add(w.fsw, dir); err != nil { // Add follows a symlink to its directory
		w.limitReached(err)
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if isDotName(e.Name()) {
			continue // loading skips it
		}
		if e.Type()&os.ModeSymlink != 0 {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				continue
			}
		} else if !e.IsDir() {
			continue
		}
		// A subdirectory that vanishes meanwhile is not an error: its parent's events
		// trigger the reload that matters. An inotify limit reached has its own warning
		// and the poll sees what the watches miss. Any other failure is logged at
		// whatever depth, since changes there would go unseen.
		if err := w.addDir(p, seen, depth+1); err != nil && !errors.Is(err, os.ErrNotExist) && !isInotifyLimit(err) {
			w.opts.Log.Warn("config watcher: cannot watch a subdirectory", "dir", p, "error", err)
		}
	}
	return nil
}

// Trigger asks for a reload; triggers that arrive while one is pending are coalesced.
func (w *Watcher) Trigger() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func (w *Watcher) events(ctx context.Context) {
	defer w.done.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			reload := w.event(ctx, ev)
			if reload {
				w.Trigger()
			}
			w.opts.hooks.handled(ev.Name, reload)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			// An overflowed queue lost events: reload to be sure.
			w.opts.Log.Warn("config watcher error; reloading to be safe", "error", err)
			w.Trigger()
		}
	}
}

// event handles one event: it follows the directory and new subdirectories, and says
// whether the event may have changed the rules.
func (w *Watcher) event(ctx context.Context, ev fsnotify.Event) (reload bool) {
	name := filepath.Clean(ev.Name)
	switch {
	case name == w.root:
		// The directory itself: replaced, removed, re-created or re-pointed.
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.rewatch(ctx)
		} else if ev.Has(fsnotify.Create) {
			if err := w.addTree(w.root); err != nil {
				w.rewatch(ctx)
			}
		}
	case filepath.Dir(name) == filepath.Dir(w.root):
		return false // a sibling of the directory, seen through the parent's watch
	case !mayHoldRules(name):
		return false // e.g. a log written into the directory: reloading on it would feed itself
	case ev.Has(fsnotify.Create):
		if fi, err := os.Stat(name); err == nil && fi.IsDir() && !isDotName(filepath.Base(name)) {
			_ = w.addTree(name) // a new subdirectory: watch it too
		}
	}
	return true
}

// mayHoldRules says whether a change to name can change what loading reads. Only an
// existing regular file that loading never reads (a log written into the directory,
// an editor's swap file) is ruled out. A name that is gone may have been a directory
// of rules (renamed or moved away, whatever its name), and a ConfigMap's "..data" swap
// is a symlink.
func mayHoldRules(name string) bool {
	if descriptors.IsRuleFile(name) {
		return true
	}
	fi, err := os.Lstat(name)
	return err != nil || !fi.Mode().IsRegular()
}

// isDotName says whether loading skips a directory entry of this name.
func isDotName(name string) bool { return strings.HasPrefix(name, ".") }

// rewatch looks for the directory again until it is back, then watches it and reloads.
// One loop at a time.
func (w *Watcher) rewatch(ctx context.Context) {
	select {
	case w.rewatching <- struct{}{}:
	default:
		return
	}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		defer func() { <-w.rewatching }()
		t := time.NewTicker(rewatchEvery)
		defer t.Stop()
		for {
			// An inotify limit reached will not go away by trying again at once: the poll
			// covers the directory, and tries to watch it again every minute (limits.go).
			if err := w.addTree(w.root); err == nil || isInotifyLimit(err) {
				w.Trigger()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// loop waits for triggers, lets a burst settle, then loads once.
func (w *Watcher) loop(ctx context.Context) {
	defer w.done.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		}
		if !w.settle(ctx) {
			return
		}
		w.load()
		w.opts.hooks.loaded()
	}
}

// settle waits until triggers have been quiet for Debounce, or MaxDelay has passed since
// the first one, so that a steady trickle cannot postpone the load forever; false if
// ctx ends first.
func (w *Watcher) settle(ctx context.Context) bool {
	after := w.opts.hooks.after
	latest, quiet := after(w.opts.MaxDelay), after(w.opts.Debounce)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-w.kick:
			quiet = after(w.opts.Debounce) // the previous timer, unreferenced, is collected (Go 1.23+)
		case <-quiet:
			return true
		case <-latest:
			return true
		}
	}
}

// ErrNoLimits refuses a reload that would lift every limit: a directory emptied by
// mistake, or caught between removing the old files and writing the new ones.
var ErrNoLimits = errors.New("the new rules have no limits at all, which would lift every limit: refused (to serve without limits, restart on the empty rules)")

func (w *Watcher) load() {
	rs, err := w.opts.Rules.LoadDir(w.opts.Dir)
	if err == nil && rs.LimitCount() == 0 && w.serving.LimitCount() > 0 {
		rs, err = nil, fmt.Errorf("%s: %w", w.opts.Dir, ErrNoLimits)
	}
	catchUp := w.catchUp
	w.catchUp = false
	if catchUp && err == nil && rs.Hash() == w.serving.Hash() {
		return // nothing changed before the watches started: not a reload
	}
	if err == nil {
		w.apply(rs) // serve the new rules before anything reports them as loaded
	}
	if w.opts.OnLoad != nil {
		w.opts.OnLoad(rs, err)
	}
	if err != nil {
		w.opts.Log.Error("config reload failed; the previous rules keep serving", "dir", w.opts.Dir, "error", err)
		return
	}
	changed := rs.Hash() != w.serving.Hash()
	w.serving = rs
	w.opts.Log.Info("config reloaded", "dir", w.opts.Dir, "changed", changed, "rules", rs.Summary(), "hash", rs.Hash())
}

// Close stops watching and waits for the goroutines to end. The watcher is closed
// after they end: the poll may have made it (watching again after an inotify limit).
func (w *Watcher) Close() error {
	w.cancel()
	w.done.Wait()
	var err error
	if w.fsw != nil {
		err = w.fsw.Close()
	}
	if errors.Is(err, fsnotify.ErrClosed) {
		return nil
	}
	return err
}
