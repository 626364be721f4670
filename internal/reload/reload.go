// Package reload keeps the served rules in step with the config directory: it watches
// the directory (fsnotify; Kubernetes ConfigMap updates swap a `..data` symlink, which
// shows as events on the directory itself) and reloads on SIGHUP. Bursts of events are
// coalesced into one load; the whole new rule set is validated before it is handed
// over, so a broken file keeps the old rules serving.
package reload

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ratelimit-ext/ratelimit-ext/internal/descriptors"
)

// Options configures a Watcher.
type Options struct {
	Dir      string
	Watch    bool          // watch the directory; SIGHUP reloads either way
	Debounce time.Duration // quiet time before a burst of events is loaded (default 100 ms)
	Log      *slog.Logger
	// OnLoad, when set, is told the outcome of every load attempt (for metrics).
	OnLoad func(rs *descriptors.RuleSet, err error)
}

// Watcher reloads rules until Close.
type Watcher struct {
	opts   Options
	apply  func(*descriptors.RuleSet)
	fsw    *fsnotify.Watcher
	kick   chan struct{}
	cancel context.CancelFunc
	done   sync.WaitGroup
}

// Start begins watching. apply receives each successfully loaded rule set.
func Start(ctx context.Context, o Options, apply func(*descriptors.RuleSet)) (*Watcher, error) {
	if o.Debounce <= 0 {
		o.Debounce = 100 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{opts: o, apply: apply, kick: make(chan struct{}, 1), cancel: cancel}
	if o.Watch {
		fsw, err := fsnotify.NewWatcher()
		if err != nil {
			cancel()
			return nil, err
		}
		w.fsw = fsw
		if err := w.addTree(o.Dir); err != nil {
			fsw.Close()
			cancel()
			return nil, err
		}
		w.done.Add(1)
		go w.events(ctx)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	w.done.Add(2)
	go func() {
		defer w.done.Done()
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				o.Log.Info("SIGHUP: reloading rules", "dir", o.Dir)
				w.Trigger()
			}
		}
	}()
	go w.loop(ctx)
	return w, nil
}

// addTree watches dir and every directory below it (including ConfigMap's dot-dirs,
// whose changes must trigger a reload even though their files are not loaded directly).
func (w *Watcher) addTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return w.fsw.Add(path)
		}
		return nil
	})
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
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					_ = w.addTree(ev.Name) // a new subdirectory: watch it too
				}
			}
			w.Trigger()
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.opts.Log.Warn("config watcher error", "error", err)
		}
	}
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
		timer := time.NewTimer(w.opts.Debounce)
	settle:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-w.kick:
				timer.Reset(w.opts.Debounce)
			case <-timer.C:
				break settle
			}
		}
		w.load()
	}
}

func (w *Watcher) load() {
	rs, err := descriptors.LoadDir(w.opts.Dir)
	if w.opts.OnLoad != nil {
		w.opts.OnLoad(rs, err)
	}
	if err != nil {
		w.opts.Log.Error("config reload failed; the previous rules keep serving", "dir", w.opts.Dir, "error", err)
		return
	}
	w.apply(rs)
	w.opts.Log.Info("config reloaded", "dir", w.opts.Dir, "rules", rs.Summary(), "hash", rs.Hash())
}

// Close stops watching and waits for the goroutines to end.
func (w *Watcher) Close() error {
	w.cancel()
	var err error
	if w.fsw != nil {
		err = w.fsw.Close()
	}
	w.done.Wait()
	if errors.Is(err, fsnotify.ErrClosed) {
		return nil
	}
	return err
}
