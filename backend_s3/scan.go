package backend_s3

import (
	"context"
	"iter"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
)

// Scan implements backend.Scanner with one flat listing (no delimiter) of
// the keys beneath dir, a page of up to the listing page size at a time:
// a store of 100,000 files is a hundred requests of 1,000 keys. Its tag is
// S3's ETag of the content (see ScanTag), which a listing carries where
// the commit id (see Stat) needs a HEAD per file: an outside program that
// writes a file again with the very same bytes changes nothing the scan
// can see, while bucket notifications (events_nats.NewS3Feed) still tell
// of it.
func (b *Backend) Scan(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	pfx := b.dirKey(dir)
	return func(yield func(backend.Info, error) bool) {
		pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
			Bucket:  aws.String(b.bucket),
			Prefix:  aws.String(pfx),
			MaxKeys: aws.Int32(b.listPageSize),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(backend.Info{}, classify(err))
				return
			}
			for _, obj := range page.Contents {
				p, ok := objstore.FilePath(b.prefix, aws.ToString(obj.Key))
				if !ok {
					continue
				}
				info := backend.Info{Path: p, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified),
					ETag: strings.Trim(aws.ToString(obj.ETag), `"`)}
				if !yield(info, nil) {
					return
				}
			}
		}
	}
}

// ScanTag implements backend.Scanner: the S3 ETag part of an Info.ETag,
// without the commit id that Stat joins to it.
func (b *Backend) ScanTag(etag string) string {
	tag, _, _ := strings.Cut(etag, ".")
	return tag
}
