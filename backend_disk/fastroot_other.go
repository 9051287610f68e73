//go:build !linux

package backend_disk

import (
	"context"
	"errors"
	"io"
	"os"
)

// fastRoot is the Linux fast path of an OS root (see fastroot_linux.go);
// elsewhere newFastRoot returns nil and every call goes through os.Root.
type fastRoot struct{}

// fdFile is a bare descriptor on Linux; it is never made here.
type fdFile struct{ *os.File }

func newFastRoot(string) *fastRoot { return nil }

// errNoFastPath answers every call of the fast path, which is never taken
// here.
var errNoFastPath = errors.ErrUnsupported

func (*fastRoot) Close() error                                       { return nil }
func (*fastRoot) isRoot(os.FileInfo) bool                            { return false }
func (*fastRoot) open(string, int, uint32) (*fdFile, error)          { return nil, errNoFastPath }
func (*fastRoot) lstat(string) (os.FileInfo, error)                  { return nil, errNoFastPath }
func (*fastRoot) reopenTemp(string) (*fdFile, error)                 { return nil, errNoFastPath }
func (*fastRoot) remove(string) error                                { return errNoFastPath }
func (*fastRoot) rmdir(string) error                                 { return errNoFastPath }
func (*fastRoot) rename(string, string, bool) error                  { return errNoFastPath }
func (*fastRoot) syncDir(string) error                               { return errNoFastPath }
func (*fastRoot) createTempIn(func() error, string) (*fdFile, error) { return nil, errNoFastPath }
func (*fastRoot) lock(context.Context, uint32, string, func() error) (io.Closer, error) {
	return nil, errNoFastPath
}
func clone(*fdFile, *fdFile, int64) error    { return errNoFastPath }
func copyFD(*fdFile, *fdFile) (int64, error) { return 0, errNoFastPath }
