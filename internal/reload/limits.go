package reload

import (
	"errors"
	"syscall"
)

// The kernel bounds inotify per user: fs.inotify.max_user_instances watchers (EMFILE
// from inotify_init1, which the process's open-file limit also gives) and
// fs.inotify.max_user_watches watched directories (ENOSPC from inotify_add_watch),
// shared by every process of the user, other pods' on the same node included. Reaching
// one must not stop the start or leave edits unseen: the rules are served, and every
// rule file is polled with the links (polledFiles, every linkPollEvery: about a
// second), with a warning naming the setting to raise. Watches already held keep
// reporting at once; the poll is not stopped when the limit is raised (a restart
// watches again).

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
// is polled from now on, and the first time says so loudly.
func (w *Watcher) limitReached(err error) bool {
	sysctl, ok := inotifyLimit(err)
	if !ok {
		return false
	}
	w.pollAll.Store(true)
	w.limitOnce.Do(func() {
		w.opts.Log.Warn("config watcher: an inotify limit is reached, so changes are not all watched: every rule file is polled instead, every second; raise the sysctl to watch again (after a restart)",
			"sysctl", sysctl, "dir", w.opts.Dir, "error", err)
	})
	return true
}
