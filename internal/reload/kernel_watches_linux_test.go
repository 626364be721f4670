package reload_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ratelimit-ext/ratelimit-ext/internal/reload"
)

// kernelWatches returns the inode numbers of every inotify watch this process holds,
// as the kernel lists them (/proc/self/fdinfo: one "inotify wd:N ino:HEX ..." line per
// watch). fsnotify's WatchList shows only the names it keeps; a watch it lost track of
// is still there, and is what these tests look for. The package's tests do not run in
// parallel, and the directories they look for are their own, still on disk: no other
// watch can have their inode.
func kernelWatches(t *testing.T) map[uint64]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fdinfo")
	if err != nil {
		t.Skipf("no /proc/self/fdinfo: %v", err)
	}
	inodes := map[uint64]bool{}
	for _, fd := range fds {
		info, err := os.ReadFile(filepath.Join("/proc/self/fdinfo", fd.Name()))
		if err != nil {
			continue // an fd closed meanwhile
		}
		for _, line := range strings.Split(string(info), "\n") {
			if !strings.HasPrefix(line, "inotify wd:") {
				continue
			}
			for _, field := range strings.Fields(line) {
				if hex, ok := strings.CutPrefix(field, "ino:"); ok {
					if ino, err := strconv.ParseUint(hex, 16, 64); err == nil {
						inodes[ino] = true
					}
				}
			}
		}
	}
	return inodes
}

// inode is path's inode number.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// The config directory's parent resolving to another directory (a link above it
// re-pointed, or a directory further up replaced by a rename) moves the parent's watch
// to the new directory: the old release's parent, still on disk as deploy tools keep
// a few, holds no inotify watch any more (fsnotify's Add under a name it already
// watches forgets the old watch without ending it).
func TestOldParentNotWatchedAfterMove(t *testing.T) {
	tests := []struct {
		name string
		dir  string // the config directory, below base (r1/app/config, r2/app/config, current -> r1)
		// move moves the config directory's parent and returns the old and the new one.
		move func(t *testing.T, base string) (oldParent, newParent string)
	}{
		{
			name: "link above re-pointed",
			dir:  "current/app/config",
			move: func(t *testing.T, base string) (string, string) {
				link(t, "r2", filepath.Join(base, "current.tmp"))
				if err := os.Rename(filepath.Join(base, "current.tmp"), filepath.Join(base, "current")); err != nil {
					t.Fatal(err)
				}
				return filepath.Join(base, "r1", "app"), filepath.Join(base, "r2", "app")
			},
		},
		{
			name: "directory two levels up replaced by a rename",
			dir:  "r1/app/config",
			move: func(t *testing.T, base string) (string, string) {
				for _, mv := range [][2]string{{"r1", "r1.old"}, {"r2", "r1"}} {
					if err := os.Rename(filepath.Join(base, mv[0]), filepath.Join(base, mv[1])); err != nil {
						t.Fatal(err)
					}
				}
				return filepath.Join(base, "r1.old", "app"), filepath.Join(base, "r1", "app")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := t.TempDir()
			for _, r := range []string{"r1", "r2"} {
				mkdir(t, filepath.Join(base, r, "app", "config"))
				write(t, filepath.Join(base, r, "app", "config", "edge.yaml"), rules(r))
			}
			link(t, "r1", filepath.Join(base, "current"))
			h := watch(t, filepath.Join(base, tt.dir), reload.Options{Watch: true})
			h.waitCatchUp(t)

			oldParent, newParent := tt.move(t, base)
			h.waitFor(t, "r2", 5*time.Second)
			h.waitPolls(t, 2) // the poll that moved the watches has ended
			watches := kernelWatches(t)
			if !watches[inode(t, newParent)] {
				t.Fatalf("the new parent %s is not watched (kernel watches: %v); log:\n%s", newParent, watches, h.logs)
			}
			if watches[inode(t, oldParent)] {
				t.Errorf("the old parent %s is still watched by the kernel after the move", oldParent)
			}
			if watches[inode(t, filepath.Join(oldParent, "config"))] {
				t.Errorf("the old config directory %s is still watched by the kernel after the move", filepath.Join(oldParent, "config"))
			}
		})
	}
}
