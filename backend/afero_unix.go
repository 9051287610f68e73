//go:build unix

package backend

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
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// flockPath opens the existing lock file at the OS path p with a bare
// open(2) and flocks it, waiting as ctx allows; closing the returned
// descriptor releases the lock. A missing file yields fs.ErrNotExist.
func flockPath(ctx context.Context, p string) (io.Closer, error) {
	fd, err := syscall.Open(p, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	err = waitFlock(ctx, func() (bool, error) {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return fdCloser(fd), nil
}

// fdCloser closes a bare descriptor.
type fdCloser int

func (f fdCloser) Close() error { return syscall.Close(int(f)) }

// openNonBlock keeps an open of a FIFO from waiting for a writer.
const openNonBlock = syscall.O_NONBLOCK

// processGone reports whether no process with this pid runs on this host.
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
