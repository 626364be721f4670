//go:build !unix

package tlsfiles

import "os"

// fileID is empty where the platform gives no inode: size and time alone then name a
// version.
func fileID(os.FileInfo) string { return "" }
