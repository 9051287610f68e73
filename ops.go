package roomstore

import "github.com/roomstore/roomstore/internal/telemetry"

// Operation names of the errors (fs.PathError.Op) that are more than one
// word: the names the metrics and traces give the same operations, so
// that one vocabulary names each.
var (
	opDownloadURL = telemetry.DownloadURL.String() // "download_url"
	opRemoveAll   = telemetry.RemoveAll.String()   // "remove_all"
)
