//go:build !unix

package backend_disk

import (
	"context"
	"io"
	"io/fs"
	"os"
)

// tryFlock has no cross-process lock to take on this platform; the
// in-process stripe still serialises one process.
func tryFlock(*os.File) (bool, error) { return true, nil }

// flocks reports that tryFlock excludes nobody here, so no other
// process's liveness can be told and Sweep removes nothing.
const flocks = false

// Flags of the open helper have no meaning on this platform.
const (
	openNonBlock  = 0
	openNoFollow  = 0
	openDirectory = 0
)

// flockPath has no bare-descriptor path on this platform: it reports the
// file missing, so that the caller opens it through afero.
func flockPath(context.Context, string) (io.Closer, error) { return nil, fs.ErrNotExist }

// fdLimit has no limit to read on this platform.
func fdLimit() int64 { return 1024 }

// linkCount cannot tell on this platform.
func linkCount(os.FileInfo) int64 { return -1 }
