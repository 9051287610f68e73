//go:build !linux

package backend_disk

import (
	"os"

	"github.com/spf13/afero"
)

// fastRoot is the Linux fast path of an OS root (see fastroot_linux.go);
// elsewhere newFastRoot returns nil and every call goes through os.Root.
type fastRoot struct{}

func newFastRoot(string) *fastRoot { return nil }

func (*fastRoot) Close() error            { return nil }
func (*fastRoot) isRoot(os.FileInfo) bool { return false }

// fastPathsFor returns nil: there is no fast path here (see
// paths_linux.go).
func fastPathsFor(*Afero, afero.Fs) paths { return nil }
