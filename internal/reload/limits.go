package reload

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The kernel bounds inotify per user: fs.inotify.max_user_instances watchers (EMFILE
// from inotify_init1, which the process's open-file limit also gives) and
// fs.inotify.max_user_watches watched directories (ENOSPC from inotify_add_watch),
// shared by every process of the user, other pods' on the same node included. Reaching
// one must not stop the start or leave edits unseen: the rules are served, and every
// rule file is polled with the links (polledFiles, every linkPollEvery: about a
// second), with a warning naming the setting to raise. Watches already held keep
// reporting at once. Every limitRetryEvery the poll tries to watch the whole tree
// again (retryWatches), so that raising the limit ends the polling without a restart.

// limitRetryEvery is how often watching the tree is tried again while an inotify limit
// keeps every rule file polled. (A variable only so that the package's tests can try
// sooner: export_test.go.)
var limitRetryEvery = time.Minute

// inotifyLimit names the sysctl to raise when err is inotify refusing a watcher or a
// watch for lack of room.
func inotifyLimit(err error) (sysctl string, ok bool) {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return "fs.inotify.max_user_watches", true
	case errors.Is(err, syscall.EMFILE):
		return "fs.inotify.max_user_instances (or the open-file limit, ulimit -n)", true
	}
	return "", false
}

func isInotifyLimit(err error) bool {
	_, ok := inotifyLimit(err)
	return ok
}

// limitReached reports whether err is an inotify limit reached; if so, every rule file
// is polled from now on, until retryWatches watches the whole tree again, and the
// first time since the tree was last all watched says so loudly.
func (w *Watcher) limitReached(err error) bool {
	sysctl, ok := inotifyLimit(err)
	if !ok {
		return false
	}
	w.limitMu.Lock()
	defer w.limitMu.Unlock()
	w.limitsReached++
	if !w.pollAll {
		w.pollAll = true
		w.opts.Log.Warn("config watcher: an inotify limit is reached, so changes are not all watched: every rule file is polled instead, every second; raise the sysctl: watching is tried again every minute",
			"sysctl", sysctl, "dir", w.opts.Dir, "error", err)
	}
	return true
}

// pollingAll says whether an inotify limit keeps every rule file polled.
func (w *Watcher) pollingAll() bool {
	w.limitMu.Lock()
	defer w.limitMu.Unlock()
	return w.pollAll
}

// retryWatches tries once to watch the whole tree again while an inotify limit keeps
// it polled; it runs in the poll's goroutine, between polls, and says whether the
// tree is all watched now. Every rule file stays polled until the watches are in
// place, and is no longer polled only if no limit was reached meanwhile (by this try,
// or by a new subdirectory's watch). The caller then reloads: an edit made before a
// directory's watch was added made no event. lastParent is where the directory's
// parent led at the poll's last look; the one returned is where it leads now.
func (w *Watcher) retryWatches(ctx context.Context, lastParent string) (parent string, watching bool) {
	w.limitMu.Lock()
	reached := w.limitsReached
	w.limitMu.Unlock()
	parent = lastParent
	var err error
	if w.fsw == nil {
		parent, err = w.startWatcher(ctx, lastParent)
	} else { // the parent's watch, if any, is followRoot's to move
		err = w.addTree(w.root)
		w.unwatchedRoot(err)
	}
	if err != nil {
		w.opts.Log.Debug("config watcher: still cannot watch the whole directory", "dir", w.opts.Dir, "error", err)
		return parent, false
	}
	w.limitMu.Lock()
	defer w.limitMu.Unlock()
	if w.limitsReached != reached {
		return parent, false
	}
	w.pollAll = false
	w.opts.Log.Info("config watcher: watching the whole directory again (the inotify limit was raised); rule files are no longer all polled; reloading", "dir", w.opts.Dir)
	return parent, true
}

// startWatcher makes the watcher that an inotify limit left the start without, watches
// the tree and its parent with it, as watch does, and follows its events; it returns
// where the directory's parent led before the watches were added (lastParent if there
// is still no watcher, on an error).
func (w *Watcher) startWatcher(ctx context.Context, lastParent string) (parent string, err error) {
	fsw, err := w.opts.hooks.newWatcher()
	if err != nil {
		w.limitReached(err)
		return lastParent, err
	}
	parent, _ = filepath.EvalSymlinks(filepath.Dir(w.root)) // what moves from here on, followRoot sees
	w.fsw = fsw                                             // no other goroutine uses it until events starts (Close: after the poll ends)
	if err := w.addTree(w.root); err != nil {
		fsw.Close()
		w.fsw = nil
		return lastParent, err
	}
	w.watchParent()
	w.done.Add(1)
	go w.events(ctx)
	return parent, nil
}

// unwatchedRoot handles a retry that lost the directory's own watch (addTree drops the
// tree's watches before adding them again, and the room they left can be taken
// meanwhile): the directory is polled as before, and is not taken at the next poll for
// a replaced one (rootReplaced), which would log that it was and reload.
func (w *Watcher) unwatchedRoot(err error) {
	if fi, statErr := os.Stat(w.root); err != nil && statErr == nil {
		w.setWatchedRoot(fi, true)
	}
}
