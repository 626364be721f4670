// Package regularfile opens files a process is pointed at (certificates, keys, CA
// bundles, rule files) only when they are regular files of a bounded size, without
// waiting. A FIFO put at such a path would make an ordinary open wait for a writer,
// for good, and a wrong path (/dev/zero, a log) would be read without end; either
// would hang a start, a handshake or a watcher. Links are followed, as a Kubernetes
// Secret or ConfigMap mount uses them.
//
// It is the one place that opens such files this way: internal/filedigest, which
// compares their content, internal/tlsfiles, which loads certificates, and
// internal/descriptors, which reads rule files, all open through it, so that what one
// refuses the others refuse too.
package regularfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Open opens path to read it when it is a regular file (a link is followed) of at most
// limit bytes; otherwise it returns an error that names path and says what it is (an
// *fs.PathError, so a caller that names the file itself can take the path out).
// The file is opened without waiting (O_NONBLOCK, which reads of a regular file
// ignore) and then looked at through the open file, so a FIFO swapped in after any
// earlier look is caught too.
func Open(path string, limit int64) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err // an *fs.PathError, which names path
	}
	st, err := f.Stat()
	if err == nil {
		err = check(path, st, limit)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Read reads the whole of path as Open allows it, with an error if the file grew
// past limit while it was read.
func Read(path string, limit int64) ([]byte, error) {
	f, err := Open(path, limit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("grew larger than %s while it was read", size(limit))}
	}
	return b, err
}

// check says why the file st describes, at path, is not one to read, or nil.
func check(path string, st fs.FileInfo, limit int64) error {
	switch {
	case !st.Mode().IsRegular():
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("not a regular file (%s)", kind(st.Mode()))}
	case st.Size() > limit:
		return &fs.PathError{Op: "open", Path: path, Err: fmt.Errorf("%d bytes, larger than %s", st.Size(), size(limit))}
	}
	return nil
}

// kind names what a file that is not a regular file is, for an operator who typed
// the wrong path.
func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "file type " + m.Type().String()
}

// size writes a bound in MiB when it is a whole number of them, else in bytes.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
