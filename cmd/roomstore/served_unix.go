//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// servedLocks says that this platform has the locks that mark a served
// directory.
const servedLocks = true

// openNonBlock keeps an open from waiting, as one of a FIFO would.
const openNonBlock = unix.O_NONBLOCK

// lockServed takes a shared POSIX record lock on the whole of f, held
// until f is closed or the process ends.
func lockServed(f *os.File) error {
	lk := unix.Flock_t{Type: unix.F_RDLCK}
	return unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk)
}

// servedBy reports whether another process holds a lock on f, which
// would keep an exclusive one out, and that process's pid where the
// kernel names it.
func servedBy(f *os.File) (pid int, ok bool) {
	lk := unix.Flock_t{Type: unix.F_WRLCK}
	if err := unix.FcntlFlock(f.Fd(), unix.F_GETLK, &lk); err != nil || lk.Type == unix.F_UNLCK {
		return 0, false
	}
	return max(int(lk.Pid), 0), true
}
