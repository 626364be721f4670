package tlsfiles

import (
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"strings"
)

// maxDigested bounds the files whose content is compared: a PEM certificate or key is
// a few kB, and a system-wide CA bundle some 200 kB. A larger file is not read to be
// compared (its size, time and identity still are), so that looking at it stays cheap.
const maxDigested = 1 << 20

// digestSeed seeds the digests: they are only compared within the process.
var digestSeed = maphash.MakeSeed()

// digests names the content of the files, one digest each; "-" stands for a file that
// is not read (see digest).
func digests(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if d, ok := digest(f); ok {
			fmt.Fprintf(&b, "%x;", d)
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

// digest hashes the content of file, and says whether it did. It reads only a regular
// file of at most maxDigested bytes; a file it does not read (missing, unreadable, a
// directory) is left to loading, which reports what is wrong with it.
func digest(file string) (uint64, bool) {
	st, err := os.Stat(file)
	if err != nil || !st.Mode().IsRegular() || st.Size() > maxDigested {
		return 0, false
	}
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	var h maphash.Hash
	h.SetSeed(digestSeed)
	n, err := io.Copy(&h, io.LimitReader(f, maxDigested+1))
	if err != nil || n > maxDigested {
		return 0, false // grown past the bound since the stat
	}
	return h.Sum64(), true
}
