package backend_s3

import (
	"context"
	"iter"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
	"github.com/roomstore/roomstore/roompath"
)

// Scan implements backend.Scanner with one flat listing (no delimiter) of
// the keys beneath dir, a page of up to the listing page size at a time:
// a store of 100,000 files is a hundred requests of 1,000 keys. Its tag is
// S3's ETag of the content (see ScanTag), which a listing carries where
// the commit id (see Stat) needs a HEAD per file: an outside program that
// writes a file again with the very same bytes changes nothing the scan
// can see, while bucket notifications (events_nats.NewS3Feed) still tell
// of it.
//
// What the backend keeps for itself (temporaries and kept versions, under
// prefix/.roomstore/, which can outnumber the files many times over) is
// never yielded, and not even listed page by page: the first key of that
// block ends the listing, which starts again after the block.
func (b *Backend) Scan(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	pfx := b.dirKey(dir)
	reserved := pfx + roompath.ReservedPrefix
	return func(yield func(backend.Info, error) bool) {
		startAfter := ""
		for {
			skip := false
			for obj, err := range b.objectsUnder(ctx, pfx, startAfter) {
				if err != nil {
					yield(backend.Info{}, err)
					return
				}
				key := aws.ToString(obj.Key)
				if startAfter == "" && strings.HasPrefix(key, reserved) {
					skip = true
					break
				}
				p, ok := objstore.FilePath(b.prefix, key)
				if !ok {
					continue
				}
				info := backend.Info{Path: p, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified),
					ETag: strings.Trim(aws.ToString(obj.ETag), `"`)}
				if !yield(info, nil) {
					return
				}
			}
			if !skip {
				return
			}
			// Every key that starts with the reserved prefix sorts before
			// this one, but for keys that follow it with U+10FFFF itself,
			// which FilePath refuses as it refuses any reserved name.
			startAfter = reserved + "\U0010FFFF"
		}
	}
}

// ScanTag implements backend.Scanner: the S3 ETag part of an Info.ETag,
// without the commit id that Stat joins to it.
func (b *Backend) ScanTag(etag string) string {
	tag, _, _ := strings.Cut(etag, ".")
	return tag
}
