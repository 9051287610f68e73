// Package roompath holds the path rules every roomstore store shares: which
// paths are valid (Clean), the names that stores keep for themselves
// (ReservedPrefix), and the small helpers over clean paths (Parent, Join).
// It imports only the standard library, so that a client of the protocol
// can check a path without compiling a store.
package roompath

import (
	"fmt"
	"io/fs"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Path limits, in bytes.
const (
	MaxPathLen    = 1024
	MaxElementLen = 255
)

// ReservedPrefix starts the names that backends keep for themselves
// (temporary files, locks). A path with an element that starts with it is
// rejected by Clean, and backends never list such entries.
const ReservedPrefix = ".roomstore"

// Target says what a path is meant to name, which decides whether the root
// and a trailing slash are accepted.
type Target int

const (
	// TargetFile names a file: no root, no trailing slash.
	TargetFile Target = iota
	// TargetAny names a file or a folder (Exists, Stat, List, RemoveAll):
	// the root and one trailing slash are accepted.
	TargetAny
)

// Clean validates p and returns its clean form: slash-separated, without a
// leading or trailing slash, "" for the root. Rejected paths yield an error
// for which errors.Is(err, fs.ErrInvalid) holds:
//
//   - invalid UTF-8, NUL or any other control character;
//   - over MaxPathLen bytes, or an element over MaxElementLen bytes;
//   - an empty, "." or ".." element (fs.ValidPath), or one starting with
//     ReservedPrefix;
//   - the root or a trailing slash where a file is meant.
//
// Anything else is kept byte for byte: spaces, quotes, '%', '?', '#', '+',
// backslashes and any printable Unicode.
func Clean(p string, t Target) (string, error) {
	if len(p) > MaxPathLen+2 {
		return "", invalid("path over %d bytes", MaxPathLen)
	}
	if !utf8.ValidString(p) {
		return "", invalid("path is not valid UTF-8")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return "", invalid("path contains control character %U", r)
		}
	}
	p = strings.TrimPrefix(p, "/")
	if p == "" || p == "." || p == "./" {
		if t == TargetFile {
			return "", invalid("the root is not a file")
		}
		return "", nil
	}
	if strings.HasSuffix(p, "/") {
		if t == TargetFile {
			return "", invalid("a file path cannot end with a slash")
		}
		p = p[:len(p)-1]
	}
	if len(p) > MaxPathLen {
		return "", invalid("path over %d bytes", MaxPathLen)
	}
	if !fs.ValidPath(p) {
		return "", invalid("path has an empty, '.' or '..' element")
	}
	for elem := range strings.SplitSeq(p, "/") {
		if len(elem) > MaxElementLen {
			return "", invalid("element over %d bytes", MaxElementLen)
		}
		if strings.HasPrefix(elem, ReservedPrefix) {
			return "", invalid("element starts with the reserved prefix %q", ReservedPrefix)
		}
	}
	return p, nil
}

// ErrInvalidPath is the cause Clean wraps; errors.Is(err, fs.ErrInvalid)
// holds for it.
var ErrInvalidPath = fmt.Errorf("invalid path: %w", fs.ErrInvalid)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidPath, fmt.Sprintf(format, args...))
}

// CleanPrefix validates the prefix that scopes a store inside a bucket:
// leading and trailing slashes are dropped, "" scopes nothing, and
// anything else must be a valid folder path (see Clean), so that no
// prefix such as "a/../b" can name another store's objects. The error
// wraps fs.ErrInvalid.
func CleanPrefix(prefix string) (string, error) {
	prefix = strings.Trim(prefix, "/")
	if prefix == "" {
		return "", nil
	}
	clean, err := Clean(prefix, TargetAny)
	if err != nil {
		return "", fmt.Errorf("prefix %q: %w", prefix, err)
	}
	return clean, nil
}

// Parent returns the folder that holds path ("" for a top-level name and for
// the root).
func Parent(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[:i]
	}
	return ""
}

// Join joins a clean folder and a name.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// IsReserved reports whether name (one element) is reserved for backends.
func IsReserved(name string) bool { return strings.HasPrefix(name, ReservedPrefix) }
