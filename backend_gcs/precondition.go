package backend_gcs

import (
	"strconv"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
)

// The ETag of a file is its object's generation in decimal (fileInfo), so
// a precondition on an ETag is one on a generation, which Cloud Storage
// and the emulator both check atomically with an upload
// (ifGenerationMatch) and with a delete of that generation. Generations
// of an object only grow and never come back, which the checks below
// rely on: a version that is gone stays gone.

// parseETag returns the generation an ETag names, and false for an
// ETag that names none (no version of any object has it).
func parseETag(etag string) (int64, bool) {
	g, err := strconv.ParseInt(etag, 10, 64)
	if err != nil || g <= 0 || strconv.FormatInt(g, 10) != etag {
		return 0, false
	}
	return g, true
}

// etagOf is the ETag of the version a describes, "" for none.
func etagOf(a *storage.ObjectAttrs) string {
	if a == nil {
		return ""
	}
	return strconv.FormatInt(a.Generation, 10)
}

// check is backend.Precondition.Check on the version a (nil: no file),
// with the package's error.
func check(p backend.Precondition, a *storage.ObjectAttrs) error {
	if p.Check(a != nil, etagOf(a)) != nil {
		return precondition("the file is not the version the change was conditional on", nil)
	}
	return nil
}
