//go:build !unix

package main

import (
	"errors"
	"os"
)

// servedLocks says that this platform has no POSIX record locks to mark
// a served directory with.
const servedLocks = false

// openNonBlock is no flag here.
const openNonBlock = 0

// lockServed fails: see servedLocks.
func lockServed(*os.File) error { return errors.ErrUnsupported }

// servedBy reports nothing: no server can mark a directory here.
func servedBy(*os.File) (int, bool) { return 0, false }
