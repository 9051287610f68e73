//go:build !unix

package backend

import "os"

// tryFlock has no cross-process lock to take on this platform; the
// in-process stripe mutex still serialises one process.
func tryFlock(*os.File) (bool, error) { return true, nil }

// processGone cannot tell on this platform, so nothing is swept.
func processGone(int) bool { return false }

// openNonBlock has no meaning on this platform.
const openNonBlock = 0
