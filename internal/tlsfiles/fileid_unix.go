//go:build unix

package tlsfiles

import (
	"fmt"
	"os"
	"syscall"
)

// fileID names the file st describes (its device and inode): a file replaced by
// another of the same size and modification time, such as a link re-pointed at files
// whose times were preserved, is still a new version.
func fileID(st os.FileInfo) string {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return fmt.Sprintf("%d:%d", s.Dev, s.Ino)
	}
	return ""
}
