//go:build unix

package backend_disk

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"
)

// tryFlock takes an exclusive flock without blocking, so that waiting can
// honour a context.
func tryFlock(f *os.File) (bool, error) {
	return tryFlockFd(int(f.Fd()))
}

func tryFlockFd(fd int) (bool, error) {
	err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// flockPath opens the existing lock file at the OS path p with a bare
// open(2) and flocks it, waiting as ctx allows; closing the returned
// descriptor releases the lock. A missing file yields fs.ErrNotExist.
func flockPath(ctx context.Context, p string) (io.Closer, error) {
	fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	if err := waitFlock(ctx, func() (bool, error) { return tryFlockFd(fd) }); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return fdCloser(fd), nil
}

// flocks reports that tryFlock excludes other processes on this platform.
const flocks = true

// fdCloser closes a bare descriptor.
type fdCloser int

func (f fdCloser) Close() error { return syscall.Close(int(f)) }

// Flags of the open helper (see Afero.open): an open never waits for a
// FIFO's writer, never follows a symbolic link in its last element, and a
// folder open fails on anything but a folder.
const (
	openNonBlock  = syscall.O_NONBLOCK
	openNoFollow  = syscall.O_NOFOLLOW
	openDirectory = syscall.O_DIRECTORY
)

// fdLimit returns the process's soft limit on open descriptors.
func fdLimit() int64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<40 {
		return 1024
	}
	return int64(l.Cur)
}

// linkCount returns the number of names of the file fi describes, or -1
// when the file system does not say.
func linkCount(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Nlink)
	}
	return -1
}
