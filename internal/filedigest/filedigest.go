// Package filedigest names a file's content by a 64-bit digest, for watchers that must
// see a file rewritten in place at the same size with its modification time put back
// (`cp -p` onto it, a secret-sync tool that keeps times) or within one tick of a
// coarse filesystem clock, which size, time and identity do not show. The digests are
// seeded once per process: they are only compared within it, never stored.
package filedigest

import (
	"hash/maphash"
	"io"

	"github.com/ratelimit-ext/ratelimit-ext/internal/regularfile"
)

var seed = maphash.MakeSeed()

// Of returns the digest of path's content, and whether it read it: only a regular file
// (a link is followed) of at most limit bytes is read, opened without waiting, as
// regularfile.Open opens it, so that a FIFO put in a file's place (even between an
// earlier look and the open) cannot block the caller and an absurd file is not read
// through. A file it does not read (missing, unreadable, a directory, too large, grown
// past limit while read) is the caller's to report when it loads it.
func Of(path string, limit int64) (uint64, bool) {
	f, err := regularfile.Open(path, limit)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var h maphash.Hash
	h.SetSeed(seed)
	n, err := io.Copy(&h, io.LimitReader(f, limit+1))
	if err != nil || n > limit {
		return 0, false
	}
	return h.Sum64(), true
}
