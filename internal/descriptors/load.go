package descriptors

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/regularfile"
)

// maxDirDepth bounds directory recursion; symlink cycles are caught earlier by the
// visited set, this only stops absurd trees.
const maxDirDepth = 32

// LoadDir compiles every *.yaml / *.yml file under dir, recursively, in sorted order.
// Files and directories whose name starts with "." are skipped, and symlinks are
// followed with each real file and directory read once: in a Kubernetes ConfigMap
// mount (foo.yaml -> ..data/foo.yaml, ..data -> ..2024_xx) every file loads once.
// Other regular files are passed over and named by the RuleSet's SkippedFiles.
// File names in errors and limits are relative to dir, with "/" separators. An empty
// dir is a valid, empty RuleSet. Errors are always a *LoadError.
func LoadDir(dir string) (*RuleSet, error) { return Options{}.LoadDir(dir) }

// LoadDir is the package's LoadDir with o.
func (o Options) LoadDir(dir string) (*RuleSet, error) {
	c := newCompiler(o)
	w := &walker{root: dir, c: c, seen: map[string]bool{}}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		msg := "not a directory"
		if err != nil {
			msg = describeErr(err)
		}
		c.fail(ConfigError{File: dir, Field: "dir", Msg: msg})
		return c.finish()
	}
	w.dir("", 0)
	return c.finish()
}

// LoadFiles compiles the named rule files, in the order given, into one RuleSet, with
// LoadDir's checks on each (a regular file, at most MaxFileSize) and each real file
// read once (the same file named twice, or through a ConfigMap's ..data link, is not
// a duplicate domain). Files are named as given. Errors are always a *LoadError.
func LoadFiles(paths ...string) (*RuleSet, error) { return Options{}.LoadFiles(paths...) }

// LoadFiles is the package's LoadFiles with o.
func (o Options) LoadFiles(paths ...string) (*RuleSet, error) {
	c := newCompiler(o)
	w := &walker{c: c, seen: map[string]bool{}, byAbsPath: true}
	for _, p := range paths {
		abs, err := filepath.Abs(p) // one real path however p is spelled
		var info fs.FileInfo
		if err == nil {
			info, err = os.Stat(abs)
		}
		switch {
		case err != nil:
			c.fail(ConfigError{File: p, Field: "file", Msg: describeErr(err)})
		case info.IsDir():
			c.fail(ConfigError{File: p, Field: "file", Msg: "is a directory"})
		case w.firstVisit(abs):
			w.file(p, abs, info)
		}
	}
	return c.finish()
}

type walker struct {
	root string
	c    *compiler
	seen map[string]bool // real paths already read
	// byAbsPath orders the files of a merged domain by their absolute paths
	// (LoadFiles: names are as given, however spelled), else by their names (LoadDir:
	// relative to the directory, which orders them as their absolute paths do).
	byAbsPath bool
}

// firstVisit reports whether the real path behind p has not been seen yet.
func (w *walker) firstVisit(p string) bool {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return true // reading p will report the problem
	}
	if w.seen[real] {
		return false
	}
	w.seen[real] = true
	return true
}

func (w *walker) dir(rel string, depth int) {
	abs := filepath.Join(w.root, filepath.FromSlash(rel))
	if !w.firstVisit(abs) {
		return
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		w.c.fail(ConfigError{File: orDot(rel), Field: "dir", Msg: describeErr(err)})
		return
	}
	for _, e := range entries { // sorted by name
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			if info, err := os.Stat(filepath.Join(abs, name)); err == nil && info.Mode().IsRegular() && isYAML(name) {
				w.c.rs.hidden.add(path.Join(rel, name), maxSkippedNames)
			}
			continue
		}
		w.entry(path.Join(rel, name), filepath.Join(abs, name), depth)
	}
}

func (w *walker) entry(rel, abs string, depth int) {
	info, err := os.Stat(abs) // follows symlinks
	switch {
	case err != nil:
		if isYAML(rel) { // e.g. a dangling symlink
			w.c.fail(ConfigError{File: rel, Field: "file", Msg: describeErr(err)})
		}
	case info.IsDir() && depth >= maxDirDepth:
		w.c.fail(ConfigError{File: rel, Field: "dir", Msg: fmt.Sprintf("nested deeper than %d directories", maxDirDepth)})
	case info.IsDir():
		w.dir(rel, depth+1)
	case !isYAML(rel):
		if info.Mode().IsRegular() {
			w.c.rs.skipped.add(rel, maxSkippedNames)
		}
	case w.firstVisit(abs):
		w.file(rel, abs, info)
	}
}

func (w *walker) file(rel, abs string, info fs.FileInfo) {
	if !info.Mode().IsRegular() {
		w.c.fail(ConfigError{File: rel, Field: "file", Msg: "not a regular file"})
		return
	}
	if info.Size() > MaxFileSize {
		w.c.fail(ConfigError{File: rel, Field: "file", Msg: tooLarge(info.Size())})
		return
	}
	// Read as regularfile reads it (opened without waiting, checked on the open file):
	// a FIFO swapped in since the look above must not block the load, and with it every
	// later reload; a file that grew past the bound since is refused too.
	data, err := regularfile.Read(abs, MaxFileSize)
	if err != nil {
		w.c.fail(ConfigError{File: rel, Field: "file", Msg: describeErr(err)})
		return
	}
	order := rel
	if w.byAbsPath {
		order = abs
	}
	w.c.addOrdered(File{Name: rel, Data: data}, order)
}

func isYAML(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// IsRuleFile says whether LoadDir reads a file of this name (a path or a base name):
// *.yaml or *.yml, and not a dot-file.
func IsRuleFile(name string) bool {
	return isYAML(name) && !strings.HasPrefix(filepath.Base(name), ".")
}

func orDot(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// describeErr drops the path from an *fs.PathError: the ConfigError names the file.
func describeErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	return "cannot read: " + err.Error()
}
