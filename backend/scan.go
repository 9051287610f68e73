package backend

import (
	"context"
	"iter"
)

// Scanner is implemented by stores that list every file beneath a folder
// in one pass, more cheaply than a walk of List folder by folder (an
// object store's flat listing), or whose listings carry a version tag
// that List cannot report as an ETag. The Engine's reconciling scan (see
// roomstore.WithWatch) uses it where it is implemented, and walks List
// elsewhere.
type Scanner interface {
	// Scan yields every file at or beneath the folder dir ("" for the
	// whole store), in any order, never a folder nor anything under the
	// reserved prefix, paging internally so that memory does not grow with
	// the store. Each Info has Path, Size and, in ETag, the version's scan
	// tag: what ScanTag returns for the ETag that Stat reports for the same
	// version. A missing folder yields nothing; a failed page yields one
	// error and ends the sequence.
	Scan(ctx context.Context, dir string) iter.Seq2[Info, error]
	// ScanTag returns the tag that Scan reports for the version whose
	// Info.ETag (from Stat, Read or a Commit) is etag.
	ScanTag(etag string) string
}
