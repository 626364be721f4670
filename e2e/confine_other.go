//go:build !linux

package e2e

import (
	"errors"
	"fmt"
	"os"
)

// confineSupport says why this system cannot apply a confinement: only Linux has the
// system calls it needs.
func confineSupport() error { return errors.New("confinement needs Linux") }

func runConfined() int {
	fmt.Fprintln(os.Stderr, "e2e confinement: only on Linux")
	return 126
}
