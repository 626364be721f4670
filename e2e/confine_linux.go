package e2e

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// confineSupport says why this system cannot apply a confinement, or is nil.
func confineSupport() error {
	if landlockABI() < 1 {
		return errNoLandlock
	}
	return nil
}

// runConfined is the test binary started by confinement.wrap: it applies the
// confinement to its own thread and replaces itself with the program, which inherits
// it. It returns only on failure, with the exit status.
func runConfined() int {
	c, argv, env, err := confinedCommand()
	if err == nil {
		// Every restriction below is per thread: keep them and the exec on one.
		runtime.LockOSThread()
		err = c.apply()
	}
	if err == nil {
		err = syscall.Exec(argv[0], argv, env)
	}
	fmt.Fprintf(os.Stderr, "e2e confinement: %v\n", err)
	return 126
}

// apply restricts the calling thread as the container would be: no privilege gain (a
// Landlock sandbox needs it too), no writes outside c.Writable, no capabilities.
func (c *confinement) apply() error {
	if c.NoNewPrivs || c.ReadOnly {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	if c.ReadOnly {
		if err := restrictWrites(c.Writable); err != nil {
			return err
		}
	}
	if c.DropCaps {
		// All three sets empty; dropping needs no privilege.
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("dropping capabilities: %w", err)
		}
	}
	return nil
}

// errNoLandlock says the kernel cannot restrict writes (Linux before 5.13, or Landlock
// not enabled).
var errNoLandlock = errors.New("the kernel has no Landlock (Linux 5.13+ with landlock in its LSMs), so read_only cannot be checked")

// landlockABI returns the kernel's Landlock ABI version, or 0 without Landlock.
func landlockABI() int {
	v, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if e != 0 {
		return 0
	}
	return int(v)
}

// restrictWrites forbids, with Landlock, every write to the file system (writing,
// truncating, creating, removing, renaming into a directory) except beneath the paths
// given. Reading and executing stay allowed everywhere.
func restrictWrites(writable []string) error {
	abi := landlockABI()
	if abi < 1 {
		return errNoLandlock
	}
	fileRights := uint64(unix.LANDLOCK_ACCESS_FS_WRITE_FILE)
	if abi >= 3 {
		fileRights |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	dirRights := fileRights | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR | unix.LANDLOCK_ACCESS_FS_REMOVE_FILE |
		unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR | unix.LANDLOCK_ACCESS_FS_MAKE_REG |
		unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO | unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK |
		unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	attr := unix.LandlockRulesetAttr{Handled_access_fs: dirRights}
	fd, _, e := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if e != 0 {
		return fmt.Errorf("landlock_create_ruleset: %w", e)
	}
	ruleset := int(fd)
	defer unix.Close(ruleset)
	for _, p := range writable {
		if err := allowBeneath(ruleset, p, fileRights, dirRights); err != nil {
			return err
		}
	}
	if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(ruleset), 0, 0); e != 0 {
		return fmt.Errorf("landlock_restrict_self: %w", e)
	}
	return nil
}

// allowBeneath lets the sandbox write beneath path (a directory) or to it (a file).
func allowBeneath(ruleset int, path string, fileRights, dirRights uint64) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("writable path %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("writable path %s: %w", path, err)
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: fileRights, Parent_fd: int32(fd)}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		rule.Allowed_access = dirRights
	}
	_, _, e := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(ruleset), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&rule)), 0, 0, 0)
	if e != 0 {
		return fmt.Errorf("writable path %s: landlock_add_rule: %w", path, e)
	}
	return nil
}
