//go:build !unix

package backend

import (
	"context"
	"io"
	"io/fs"
	"os"
)

// tryFlock has no cross-process lock to take on this platform; the
// in-process stripe mutex still serialises one process.
func tryFlock(*os.File) (bool, error) { return true, nil }

// processGone cannot tell on this platform, so nothing is swept.
func processGone(int) bool { return false }

// openNonBlock has no meaning on this platform.
const openNonBlock = 0

// flockPath has no bare-descriptor path on this platform: it reports the
// file missing, so that the caller opens it through afero.
func flockPath(context.Context, string) (io.Closer, error) { return nil, fs.ErrNotExist }
