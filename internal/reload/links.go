package reload

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
	"github.com/ratelimit-ext/ratelimit-ext/internal/filedigest"
)

// Rule files that are links to files outside the config directory (or into one of its
// dot-directories, which are not watched) are not seen by the directory's watches: an
// edit of the target, a new file renamed onto it, or a link re-pointed anywhere along
// the chain (a `current -> rev2` of a git deploy) changes what loading reads without
// an event in the tree. Such links are polled: every
// linkPollEvery the tree's links are resolved again and their targets' identity, size,
// time and content compared with the last look; any change triggers a reload. Polling, unlike
// watching the targets' directories, also follows a target directory deleted and made
// again, and needs no watch to be added or dropped as the links change.

// linkPollEvery is how often linked rule files are looked at again. (A variable only
// so that the package's tests can poll faster: export_test.go.)
var linkPollEvery = time.Second

// maxLinks bounds the linked rule files polled (the rest need SIGHUP).
const maxLinks = 1000

// linkState is what a linked rule file resolves to: the target's path, its file
// information (nil while it does not resolve) and a digest of its content.
type linkState struct {
	target string
	info   os.FileInfo
	digest uint64
}

// same reports whether a and b show the same version of the same file. Identity, size
// and time alone miss a file rewritten in place with the same size within one tick of
// its filesystem's timestamps (coarse on some filesystems), or with its time put back
// (`cp -p` onto it, a tool that keeps times): the digest sees those.
func (a linkState) same(b linkState) bool {
	if a.target != b.target || (a.info == nil) != (b.info == nil) {
		return false
	}
	return a.info == nil || os.SameFile(a.info, b.info) && a.info.Size() == b.info.Size() &&
		a.info.ModTime().Equal(b.info.ModTime()) && a.digest == b.digest
}

// contentDigest is the digest of the polled rule file at path, whose information is
// info (0: nothing to read). Every poll reads every polled file: even when its
// identity, size or time already say it changed, the digest of the new content is
// what the next poll compares. Rule files are small, and the cost is bounded as
// loading bounds it: a file above descriptors.MaxFileSize is not read (loading refuses
// it whatever it holds), so a poll reads at most maxLinks files of at most that size.
// Only regular files are read (filedigest.Of), as loading reads them: opening a FIFO
// named like a rule file would block the poll for good. A file that cannot be read has
// digest 0: loading reports it, and once readable it has a digest again.
func contentDigest(path string, info os.FileInfo) uint64 {
	if info == nil {
		return 0
	}
	d, _ := filedigest.Of(path, descriptors.MaxFileSize)
	return d
}

// poll triggers a reload whenever the polled rule files (polledFiles) resolve to
// something other than at the last look (last: as they resolved when the watches were
// added; Start's catch-up load covers changes before that). While the tree is watched
// it also follows the config directory to wherever links above it lead (followRoot);
// while an inotify limit keeps every rule file polled, it tries every limitRetryEvery
// to watch the tree again (retryAfterLimit).
func (w *Watcher) poll(ctx context.Context, last map[string]linkState, lastParent string) {
	defer w.done.Done()
	t := time.NewTicker(linkPollEvery)
	defer t.Stop()
	retry := time.NewTicker(limitRetryEvery)
	defer retry.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-retry.C:
			if w.pollingAll() {
				lastParent, last = w.retryAfterLimit(ctx, lastParent, last)
			}
			continue
		case <-t.C:
		}
		moved := false
		if w.fsw != nil { // else nothing is watched: every rule file is polled
			lastParent, moved = w.followRoot(ctx, lastParent)
		}
		now, cut := w.polledFiles()
		reload := moved || !sameLinks(last, now)
		if reload {
			w.Trigger()
		}
		if cut && !warned {
			warned = true
			w.opts.Log.Warn("config watcher: too many rule files to poll (linked outside the directory, or all of them while an inotify limit is reached); changes of the ones past the bound need SIGHUP", "polled", maxLinks)
		}
		last = now
		w.opts.hooks.polled(reload)
	}
}

// retryAfterLimit tries to watch the whole tree again (retryWatches). Once it is, only
// the links are polled: they are what the poll compares from then on, and a reload
// catches up with edits the watches may have missed while they were being added.
func (w *Watcher) retryAfterLimit(ctx context.Context, lastParent string, last map[string]linkState) (string, map[string]linkState) {
	parent, watching := w.retryWatches(ctx, lastParent)
	if !watching {
		return parent, last
	}
	now, _ := w.polledFiles()
	w.Trigger()
	return parent, now
}

// followRoot moves the watches to wherever the config directory now is: lastParent is
// where its parent directory led at the last look, and the one returned where it leads
// now; moved says the watches moved. The directory's parent may lead elsewhere through
// a link above it (followMovedRoot), or the directory be another one at the same place
// with no event to say so (followReplacedRoot). (The directory itself re-pointed,
// `ln -sfn v2 config`, is an event in its parent, which the watches see.)
func (w *Watcher) followRoot(ctx context.Context, lastParent string) (parent string, moved bool) {
	parent = lastParent
	if p, err := filepath.EvalSymlinks(filepath.Dir(w.root)); err == nil && p != lastParent {
		w.followMovedRoot(lastParent, p)
		parent, moved = p, true
	}
	if fi, err := os.Stat(w.root); err == nil && ctx.Err() == nil && w.rootReplaced(fi) {
		w.followReplacedRoot(ctx, fi)
		moved = true
	}
	return parent, moved
}

// followMovedRoot handles the config directory's parent resolving to another directory
// through a link above it: envoyproxy/ratelimit's RUNTIME_ROOT layout reads `current/config`,
// and a deploy swaps `current -> v2`. The swap is an event in the directory holding
// `current`, which is not watched, and the watches still hold the old directories:
// watch the new tree (and its parent); the poll then reloads.
func (w *Watcher) followMovedRoot(from, to string) {
	w.opts.Log.Info("config watcher: the config directory now resolves elsewhere (a link above it was re-pointed); reloading", "dir", w.opts.Dir, "parent_from", from, "parent_to", to)
	if err := w.addTree(w.root); err != nil && !isInotifyLimit(err) { // a limit: polled, and warned of
		w.opts.Log.Warn("config watcher: cannot watch the re-pointed config directory; edits there need SIGHUP until it moves again", "dir", w.opts.Dir, "error", err)
	}
	w.watchParent()
}

// rootReplaced reports whether fi, the config directory now, is not the directory its
// watches were added to, or is no longer watched at all: a directory deleted and made
// again can have the same inode number, but its watch ended with the old one. A
// directory whose watching failed is not tried again until it changes.
func (w *Watcher) rootReplaced(fi os.FileInfo) bool {
	same, failed := w.watchedRoot(fi)
	return !same || !failed && !slices.Contains(w.fsw.WatchList(), w.root)
}

// followReplacedRoot handles the config directory found to be another directory than
// the one its watches were added to, with no event on its name to say so: the target
// of a symlinked config directory deleted and made again (the directory's own watch
// ends, and the link, the name the parent's watch knows, does not change), or a
// directory above it replaced by a rename (`mv current.new current`). The watches still
// hold the old directory, or nothing: watch the new tree (and its parent); the poll
// then reloads.
func (w *Watcher) followReplacedRoot(ctx context.Context, fi os.FileInfo) {
	w.opts.Log.Info("config watcher: the config directory was replaced (made again, or a directory above it replaced); reloading", "dir", w.opts.Dir)
	if err := w.addTree(w.root); err != nil && ctx.Err() == nil { // not a watcher closed meanwhile
		w.setWatchedRoot(fi, true) // tried once: a tree that cannot be watched must not reload at every poll
		if !isInotifyLimit(err) {  // a limit: polled, and warned of
			w.opts.Log.Warn("config watcher: cannot watch the replaced config directory; edits there need SIGHUP until it is replaced again", "dir", w.opts.Dir, "error", err)
		}
	}
	w.watchParent()
}

func sameLinks(a, b map[string]linkState) bool {
	if len(a) != len(b) {
		return false
	}
	for link, s := range a {
		if t, ok := b[link]; !ok || !s.same(t) {
			return false
		}
	}
	return true
}

// polledFiles returns the rule files of the tree, walked as loading walks it (dot
// names skipped, linked directories followed), that the watches do not see, with what
// they resolve to: links to files outside the tree or in a dot-directory, and links
// that do not resolve; or, once an inotify limit left some of the tree unwatched
// (pollAll), every rule file. At most maxLinks of them (cut says there were more).
func (w *Watcher) polledFiles() (files map[string]linkState, cut bool) {
	all := w.pollingAll()
	root, err := filepath.EvalSymlinks(w.root)
	if err != nil {
		return nil, false
	}
	out := map[string]linkState{}
	seen := map[string]bool{}
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil || seen[real] || depth > maxTreeDepth {
			return
		}
		seen[real] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			if isDotName(e.Name()) {
				continue
			}
			if e.IsDir() {
				walk(p, depth+1)
				continue
			}
			if e.Type()&os.ModeSymlink == 0 && !all {
				continue
			}
			info, err := os.Stat(p)
			if err == nil && info.IsDir() {
				walk(p, depth+1)
				continue
			}
			if !descriptors.IsRuleFile(p) {
				continue
			}
			target, err := filepath.EvalSymlinks(p)
			if err == nil && !all && watchedBelow(root, target) {
				continue // the tree's watches see it
			}
			if len(out) >= maxLinks {
				cut = true
				continue
			}
			out[p] = linkState{target: target, info: info, digest: contentDigest(p, info)}
		}
	}
	walk(w.root, 0)
	return out, cut
}

// watchedBelow reports whether the tree's watches see changes of file, a real path:
// it is in the tree root, and neither it nor a directory on the way is a dot-name,
// which the watches skip (a ConfigMap's ..<timestamp>/edge.yaml, a file in .shared/;
// a dot-file's events are not taken for a rule's).
func watchedBelow(root, file string) bool {
	rel, err := filepath.Rel(root, file)
	if err != nil || !within(root, file) {
		return false
	}
	return !slices.ContainsFunc(strings.Split(rel, string(filepath.Separator)), isDotName)
}

// within reports whether path is dir or below it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
