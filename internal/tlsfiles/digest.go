package tlsfiles

import (
	"fmt"
	"strings"

	"github.com/ratelimit-ext/ratelimit-ext/internal/filedigest"
)

// maxDigested bounds the files whose content is compared: a PEM certificate or key is
// a few kB, and a system-wide CA bundle some 200 kB. A larger file is not read to be
// compared (its size, time and identity still are), so that looking at it stays cheap.
const maxDigested = 1 << 20

// digests names the content of the files, one digest each; "-" stands for a file that
// is not read (filedigest.Of: missing, unreadable, not a regular file, or larger than
// maxDigested), which loading reports.
func digests(files []string) string {
	var b strings.Builder
	for _, f := range files {
		if d, ok := filedigest.Of(f, maxDigested); ok {
			fmt.Fprintf(&b, "%x;", d)
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}
