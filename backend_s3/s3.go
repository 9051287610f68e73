// Package backend_s3 stores a roomstore on S3 (or any S3-compatible server
// that supports conditional writes) through aws-sdk-go-v2.
//
// A store is a bucket and an optional prefix: the file at path p is the
// object prefix + "/" + p. Folders are implicit, as S3 has none: a folder is
// any key prefix ending in "/" that has an object beneath it. The backend
// keeps its temporary objects under prefix + "/.roomstore/tmp/" and kept
// versions under prefix + "/.roomstore/versions/", which are never listed
// and can never be addressed by a roomstore path.
//
// Writers stream in constant memory: a Writer holds at most one part (the
// part size, 5 MiB unless WithPartSize says otherwise) and uploads full
// parts of a multipart upload while the handle is open; an append commit
// onto a file under 5 MiB holds up to 5 MiB more while it runs. Nothing
// becomes visible before Commit, and Abort, a failed Write or Commit, or a
// cancelled context aborts the multipart upload and removes the temporaries
// with a fresh context bounded by the cleanup timeout (WithCleanupTimeout).
//
// Create commits unconditionally, or with If-None-Match "*" when Exclusive.
// Append commits one guarded attempt per Commit call: it reads the current
// ETag, then composes old content + new bytes as a new object written with
// If-Match on that ETag (If-None-Match "*" when the file is missing). The
// old bytes are copied on the server (UploadPartCopy with
// x-amz-copy-source-if-match) whenever they are at least 5 MiB; smaller old
// content is downloaded and re-uploaded, as S3 refuses parts under 5 MiB
// except the last. The appended bytes are staged in a temporary object, so
// a lost race costs no re-upload from the caller.
//
// Move copies on the server and then deletes: the copy (CopyObject, or
// UploadPartCopy parts of a multipart upload) is guarded by
// x-amz-copy-source-if-match on src's ETag, the deletion of src by
// If-Match on it, and without Overwrite the copy is a multipart upload
// completed with If-None-Match "*", as servers may ignore If-None-Match
// on CopyObject (versitygw does). A src that changes in between makes
// Move return backend.ErrConflict with src keeping every byte; see Move.
//
// S3's ETag hashes the content, so two commits of the same bytes share it,
// while backend.Info.ETag must change with every commit. Every commit
// therefore stores a random id in the object's metadata
// (x-amz-meta-roomstore-commit), and Info.ETag is the S3 ETag joined with
// it. ListObjectsV2 returns no metadata: List leaves Info.ETag empty.
// The backend's own guards use the S3 ETag, which is safe for appends
// because a file rewritten with the same bytes is, to an append, the same
// file.
//
// # Preconditions and kept versions
//
// A caller's precondition (backend.Precondition, MoveOptions.IfMatch,
// RemoveOptions.IfMatch) names an Info.ETag, which no S3 condition can
// test: the backend reads the file's version (a GET or HEAD its call
// makes anyway, or one more for an overwrite), checks it, and guards the
// change by that version's S3 ETag (If-Match on PutObject,
// CompleteMultipartUpload and DeleteObject, x-amz-copy-source-if-match on
// the copies). If-None-Match "*" is the write's own condition. Of two
// changes guarded by one version, the server lets one land; the other
// returns backend.ErrPrecondition and leaves nothing behind. Two versions
// with the very same bytes share an S3 ETag, so a change that rewrites a
// version's own bytes and another change of that version may both land
// (see Create): no byte is lost.
//
// A change asked to keep the version it replaces (backend.Keep) first
// copies it on the server to a kept version under prefix/.roomstore/versions/
// (CopyObject with x-amz-copy-source-if-match on its S3 ETag, metadata
// replaced), then makes the change guarded by that same ETag, so that the
// version kept is the version replaced and a crash between the two leaves
// a kept version with the ETag of the file still current, which the Engine
// hides and forgets. A change that fails forgets its copy (once, on the
// cleanup budget). The key of a kept version says what Kept must tell
// (path, time of the change, reason, ETag; the listing gives the size),
// so that Kept is one flat listing; who made the change and when the
// version was committed are in its metadata (see history.go for the
// layout, and for paths too long to be spelt out in a 1024-byte key).
// Kept versions are never listed, scanned or counted as a folder's
// content. The extra requests per change with Keep, on top of the change
// itself: none for a new file (Create first tries If-None-Match "*");
// an overwrite 3 (the refused create, which for a file under one part has
// sent its body, the HEAD that reads the version in its way, the copy),
// or with IfMatch 2 (the GET of the version, the copy); an
// append onto an existing file 1 (the copy); a removal 1; a move 1, and
// with Overwrite 3 more onto a file (its copy, and a multipart copy in
// place of one CopyObject, to guard dst) or 2 onto none.
//
// A server that dies mid-write fails the Write or Commit in flight once the
// SDK's retries are spent, and finishes the writer; nothing partial becomes
// visible. The cleanup that such a failure runs on its own is tried once;
// Abort, which the caller must call next (the engine does), keeps trying
// it while the server cannot be reached, until the cleanup timeout passes,
// so that a server that comes back within that time is left with no
// incomplete upload and no temporary. A server down for longer, or a
// client process that dies mid-write, leaves an incomplete multipart
// upload, and possibly a temporary object under prefix/.roomstore/tmp/; a
// bucket lifecycle rule (AbortIncompleteMultipartUpload, and expiry on
// that prefix, never on prefix/.roomstore/versions/) reclaims them.
//
// Importing the package registers the "s3" URL scheme with
// backend.Register (see OpenURL for the URL form), so that
// roomstore.OpenURL("s3://bucket/prefix?...") reaches this backend.
//
// # Errors
//
// Errors follow the backend contract: a classified error is a
// *backend.Error whose kind is the sentinel below (errors.Is), whose
// detail is the S3 code, and whose cause is the SDK's error (errors.As);
// none names a path or key, as the Engine adds the caller's. Errors of no
// kind (a network failure) and context errors are returned as the SDK
// gives them.
//
//   - fs.ErrNotExist: NoSuchKey, NotFound, any 404 for an object.
//   - backend.ErrStoreUnavailable: NoSuchBucket (a HEAD's bare 404 is told
//     apart by the listing that follows it).
//   - backend.ErrIsFolder: Read, Remove or Move of a key prefix with
//     objects beneath it, or a Move onto one.
//   - fs.ErrExist: an exclusive Create, or a Move without Overwrite, lost
//     (412 PreconditionFailed), or Move found a file at its destination.
//     A conditional commit whose request got no answer (the server may
//     reset the connection of a refused upload while its body is still
//     coming in), or whose retry met a failed precondition, is settled by
//     the object's commit id before an error is chosen: this commit's is
//     a success, another's fs.ErrExist (backend.ErrConflict for an
//     append), none the transport error.
//   - backend.ErrConflict: an Append commit, or a Move, lost a race (412,
//     or the source object vanished or changed under the server-side
//     copy).
//   - fs.ErrPermission: AccessDenied, a bad signature or key, any 403;
//     for a Backend from OpenURL also no credentials from the AWS chain,
//     which the error's detail says with how to give them.
//   - fs.ErrInvalid: bad arguments (read offset past the end, bad options).
//   - backend.ErrIsFolder, backend.ErrNotFolder at commit: servers that
//     store objects as files (versitygw's posix backend) refuse a file over
//     a folder and a file below a file; on AWS the Engine's check at Open
//     is what refuses them.
//   - fs.ErrClosed: a call on a finished Writer.
//   - errors.ErrUnsupported: the server answered 501 NotImplemented (for
//     instance, it has no conditional writes).
package backend_s3

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
	"github.com/roomstore/roomstore/roompath"
)

// Size limits S3 puts on multipart uploads.
const (
	// MinPartSize is the smallest part S3 accepts except for the last part
	// of an upload; it is also the default part size.
	MinPartSize = 5 << 20
	// MaxPartSize is the largest part, uploaded or copied, S3 accepts.
	MaxPartSize = 5 << 30
	// MaxParts is the most parts one multipart upload may have; a file
	// written through a Writer is therefore limited to MaxParts times the
	// part size (about 48 GiB at the default 5 MiB).
	MaxParts = 10000
)

// DefaultCleanupTimeout bounds the calls that clean up after an aborted or
// failed write; see WithCleanupTimeout.
const DefaultCleanupTimeout = objstore.DefaultCleanupTimeout

// tmpDir is where staged appends live, relative to the store's root.
const tmpDir = roompath.ReservedPrefix + "/tmp/"

// Backend is a backend.Backend over one S3 bucket and prefix. It is safe
// for concurrent use; several Backend values (or processes) may share one
// store, as every commit that depends on the current content is guarded by
// a precondition.
type Backend struct {
	client       *s3.Client
	presign      *s3.PresignClient
	bucket       string
	prefix       string // "" or ending in "/"
	partSize     int64
	cleanup      objstore.Cleanup
	listPageSize int32
	// closeIdle closes the idle connections of an HTTP client that OpenURL
	// built, which nobody else holds; nil for a Backend from New.
	closeIdle func()
}

var _ backend.Backend = (*Backend)(nil)

// Close releases what the Backend built itself: the idle connections of
// the HTTP client that OpenURL made. For a Backend from New it does
// nothing, as the client is the caller's. It is idempotent, and the
// Backend keeps working after it (a later request opens a connection).
func (b *Backend) Close() error {
	if b.closeIdle != nil {
		b.closeIdle()
	}
	return nil
}

// Option tunes New.
type Option func(*options)

type options struct {
	partSize       int64
	cleanupTimeout time.Duration
	listPageSize   int
}

// WithPartSize sets the size of the parts a Writer buffers and uploads, and
// so the memory each open Writer may hold. It must lie within MinPartSize
// (the default) and MaxPartSize; New rejects other values with an error
// wrapping fs.ErrInvalid. Larger parts mean fewer requests and a larger
// maximum file size (MaxParts parts).
func WithPartSize(n int64) Option {
	return func(o *options) { o.partSize = n }
}

// WithCleanupTimeout bounds each cleanup call (AbortMultipartUpload,
// DeleteObject of a temporary) made after Abort, a failed Write or Commit,
// or a cancelled context. Cleanup runs on a fresh context, so a cancelled
// caller still leaves no orphaned parts; this timeout keeps an unreachable
// server from stalling the caller for good. Abort retries a cleanup call
// that gets no answer (or a 5xx) until the timeout passes, so it is also
// how long an Abort, and an engine call that ends in one, may block while
// the server is down, and how long a restarting server has to come back
// before an incomplete upload is left to a lifecycle rule. It must be
// positive; the default is DefaultCleanupTimeout.
func WithCleanupTimeout(d time.Duration) Option {
	return func(o *options) { o.cleanupTimeout = d }
}

// DefaultListPageSize is the number of keys List asks for per request,
// the most S3 returns.
const DefaultListPageSize = 1000

// WithListPageSize sets how many keys List asks for per ListObjectsV2 page,
// which bounds what one page holds in memory. It must lie within 1 and
// DefaultListPageSize (the default); servers may return fewer.
func WithListPageSize(n int) Option {
	return func(o *options) { o.listPageSize = n }
}

// New returns a Backend that stores files in bucket under prefix (leading
// and trailing slashes are trimmed; "" uses the whole bucket). The client
// is used as given: New reads no credentials and makes no request, so a
// missing bucket shows up on the first call (as backend.ErrStoreUnavailable).
//
// New fails with an error wrapping fs.ErrInvalid when client is nil, bucket
// is empty, prefix is not a valid roomstore path (see roompath.Clean), or an
// option is out of range.
func New(client *s3.Client, bucket, prefix string, opts ...Option) (*Backend, error) {
	prefix, err := objstore.Location("backend_s3", client != nil, bucket, prefix)
	if err != nil {
		return nil, err
	}
	if prefix != "" {
		prefix += "/"
	}
	o := options{partSize: MinPartSize, cleanupTimeout: DefaultCleanupTimeout, listPageSize: DefaultListPageSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.partSize < MinPartSize || o.partSize > MaxPartSize {
		return nil, fmt.Errorf("backend_s3: %w: part size %d outside [%d, %d]", fs.ErrInvalid, o.partSize, MinPartSize, MaxPartSize)
	}
	if o.listPageSize < 1 || o.listPageSize > DefaultListPageSize {
		return nil, fmt.Errorf("backend_s3: %w: list page size outside [1, %d]", fs.ErrInvalid, DefaultListPageSize)
	}
	if o.cleanupTimeout <= 0 {
		return nil, fmt.Errorf("backend_s3: %w: cleanup timeout %v is not positive", fs.ErrInvalid, o.cleanupTimeout)
	}
	return &Backend{
		client:       client,
		presign:      s3.NewPresignClient(client),
		bucket:       bucket,
		prefix:       prefix,
		partSize:     o.partSize,
		cleanup:      objstore.Cleanup{Timeout: o.cleanupTimeout},
		listPageSize: int32(o.listPageSize),
	}, nil
}

// Bucket returns the bucket the store lives in.
func (b *Backend) Bucket() string { return b.bucket }

// Prefix returns the store's key prefix without slashes ("" for none).
func (b *Backend) Prefix() string { return strings.TrimSuffix(b.prefix, "/") }

// PartSize returns the part size Writers use.
func (b *Backend) PartSize() int64 { return b.partSize }

func (b *Backend) key(path string) string { return b.prefix + path }

// dirKey is the key prefix of the children of the folder dir.
func (b *Backend) dirKey(dir string) string {
	if dir == "" {
		return b.prefix
	}
	return b.prefix + dir + "/"
}

// Stat describes the file at path or, when there is none, the implicit
// folder with at least one object under path + "/" (see objstore.Stat).
// The root is always a folder.
func (b *Backend) Stat(ctx context.Context, path string) (backend.Info, error) {
	return objstore.Stat(ctx, objects{b}, path)
}

// objects is the Backend as the shared folder logic (objstore) sees it.
type objects struct{ b *Backend }

// StatFile describes the object of the file at path, with a HEAD.
func (o objects) StatFile(ctx context.Context, path string) (backend.Info, error) {
	h, err := o.b.head(ctx, o.b.key(path), nil)
	if err != nil {
		return backend.Info{}, classify(err)
	}
	return fileInfo(path, h.size, h.modTime, h.etag, h.commit), nil
}

// HasChildren lists at most one key under the folder path; a missing
// bucket answers NoSuchBucket (ErrStoreUnavailable), which a HEAD's bare
// 404 cannot tell.
func (o objects) HasChildren(ctx context.Context, path string) (bool, error) {
	out, err := o.b.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket:  aws.String(o.b.bucket),
		Prefix:  aws.String(o.b.dirKey(path)),
		MaxKeys: aws.Int32(1),
	})
	if err != nil {
		return false, classify(err)
	}
	return len(out.Contents) > 0 || len(out.CommonPrefixes) > 0, nil
}

// missing tells what a 404 for the object at path means (see
// objstore.Missing).
func (b *Backend) missing(ctx context.Context, path string, notFound error) error {
	return objstore.Missing(ctx, objects{b}, path, classify(notFound))
}

// objectHead is what a HEAD tells about an object. etag keeps its quotes,
// as preconditions want it verbatim.
type objectHead struct {
	size        int64
	modTime     time.Time
	etag        string
	commit      string
	contentType string
	// meta is the object's user metadata.
	meta map[string]string
}

func (b *Backend) head(ctx context.Context, key string, ifMatch *string) (objectHead, error) {
	out, err := b.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:  aws.String(b.bucket),
		Key:     aws.String(key),
		IfMatch: ifMatch,
	})
	if err != nil {
		return objectHead{}, err
	}
	return objectHead{
		size:        aws.ToInt64(out.ContentLength),
		modTime:     aws.ToTime(out.LastModified),
		etag:        aws.ToString(out.ETag),
		commit:      out.Metadata[commitMeta],
		contentType: aws.ToString(out.ContentType),
		meta:        out.Metadata,
	}, nil
}

// commitMeta is the user metadata (x-amz-meta-roomstore-commit) holding a
// random id that every commit writes. S3's ETag is a hash of the content,
// so committing the same bytes twice yields the same ETag, while
// backend.Info.ETag must change with every commit: Info.ETag is the S3
// ETag joined with this id.
const commitMeta = "roomstore-commit"

// fileInfo describes a file version; etag is S3's (quoted or not) and
// commit the id from commitMeta, "" when unknown.
func fileInfo(path string, size int64, modTime time.Time, etag, commit string) backend.Info {
	tag := strings.Trim(etag, `"`)
	if commit != "" {
		tag += "." + commit
	}
	return backend.Info{Path: path, Size: size, ModTime: modTime, ETag: tag}
}

// newID returns a random identifier for commits and temporaries.
func newID() (string, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(id[:]), nil
}

// Read streams length bytes of the file at path from offset (length < 0:
// to the end) with one ranged GET, and returns the Info of the version the
// GET reads. A length past the end is cut at the end; offset equal to the
// size yields an empty reader (S3 answers 416 there, which Read resolves
// with a HEAD). An offset past the end yields an error wrapping
// fs.ErrInvalid; a missing file fs.ErrNotExist and a folder
// backend.ErrIsFolder.
func (b *Backend) Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, backend.Info, error) {
	r, h, err := b.get(ctx, b.key(path), offset, length)
	switch {
	case isNotFound(err):
		return nil, backend.Info{}, b.missing(ctx, path, err)
	case err != nil:
		return nil, backend.Info{}, classify(err)
	}
	return r, fileInfo(path, h.size, h.modTime, h.etag, h.commit), nil
}

// get streams the object at key as Read describes, with what the answer
// tells of the object (its whole size, not the range's). A missing object
// yields the SDK's 404 and an offset past the end an error wrapping
// fs.ErrInvalid.
func (b *Backend) get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, objectHead, error) {
	if length == 0 {
		return b.emptyRead(ctx, key, offset, nil)
	}
	in := &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)}
	switch {
	case length > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		if isRangeNotSatisfiable(err) {
			return b.emptyRead(ctx, key, offset, err)
		}
		return nil, objectHead{}, err
	}
	h := objectHead{
		size:        aws.ToInt64(out.ContentLength),
		modTime:     aws.ToTime(out.LastModified),
		etag:        aws.ToString(out.ETag),
		commit:      out.Metadata[commitMeta],
		contentType: aws.ToString(out.ContentType),
		meta:        out.Metadata,
	}
	if in.Range != nil {
		total, ok := totalFromContentRange(aws.ToString(out.ContentRange))
		if !ok {
			out.Body.Close()
			return nil, objectHead{}, backend.Errorf(nil, nil, "S3 answered %s with Content-Range %q", *in.Range, aws.ToString(out.ContentRange))
		}
		h.size = total
	}
	return out.Body, h, nil
}

// emptyRead answers a read that returns no bytes, which S3 cannot express
// as a range: it checks offset against the size from a HEAD. rangeErr is the
// 416 that led here, kept as the cause when offset is past the end.
func (b *Backend) emptyRead(ctx context.Context, key string, offset int64, rangeErr error) (io.ReadCloser, objectHead, error) {
	h, err := b.head(ctx, key, nil)
	if err != nil {
		return nil, objectHead{}, err
	}
	if offset > h.size {
		return nil, objectHead{}, backend.Errorf(fs.ErrInvalid, rangeErr, "offset %d past the end (size %d)", offset, h.size)
	}
	return io.NopCloser(strings.NewReader("")), h, nil
}

// totalFromContentRange parses the complete length of "bytes a-b/total".
func totalFromContentRange(cr string) (int64, bool) {
	i := strings.LastIndexByte(cr, '/')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(cr[i+1:], 10, 64)
	return n, err == nil && n >= 0
}

// maxPresignExpiry is the longest validity SigV4 allows a presigned URL.
const maxPresignExpiry = 7 * 24 * time.Hour

// Presign returns a SigV4-presigned GET URL for the file at path, valid for
// opts.Expiry (at most 7 days, SigV4's limit; longer or non-positive values
// yield an error wrapping fs.ErrInvalid). A non-empty
// opts.ContentDisposition is signed into the URL as S3's
// response-content-disposition override, so the response carries that
// Content-Disposition header and a URL whose disposition was changed is
// refused (403). It makes no request, so it does not check that the file
// exists; fetching a missing file gets a 404.
func (b *Backend) Presign(ctx context.Context, path string, opts backend.PresignOptions) (string, error) {
	if opts.Expiry <= 0 || opts.Expiry > maxPresignExpiry {
		return "", backend.Errorf(fs.ErrInvalid, nil, "expiry %v outside (0, %v]", opts.Expiry, maxPresignExpiry)
	}
	req, err := b.presign.PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket:                     aws.String(b.bucket),
		Key:                        aws.String(b.key(path)),
		ResponseContentDisposition: optional(opts.ContentDisposition),
	}, s3.WithPresignExpires(opts.Expiry))
	if err != nil {
		return "", classify(err)
	}
	return req.URL, nil
}

// List yields the files and folders directly in dir, one ListObjectsV2 page
// (delimiter "/") at a time, so memory does not grow with the folder. Names
// starting with roompath.ReservedPrefix are skipped. A missing folder, or a
// file, yields nothing; a failed page yields one error and ends the
// sequence.
func (b *Backend) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	pfx := b.dirKey(dir)
	return objstore.List(dir, pfx, func(yield func(objstore.Entry, error) bool) {
		pages := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{
			Bucket:    aws.String(b.bucket),
			Prefix:    aws.String(pfx),
			Delimiter: aws.String("/"),
			MaxKeys:   aws.Int32(b.listPageSize),
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				yield(objstore.Entry{}, classify(err))
				return
			}
			for _, cp := range page.CommonPrefixes {
				if !yield(objstore.Entry{Key: aws.ToString(cp.Prefix), Prefix: true}, nil) {
					return
				}
			}
			for _, obj := range page.Contents {
				// ListObjectsV2 carries no metadata, so the commit id, and
				// with it the ETag (see commitMeta), is unknown here: an
				// ETag that no Stat would report is worse than none.
				e := objstore.Entry{Key: aws.ToString(obj.Key), Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}
				if !yield(e, nil) {
					return
				}
			}
		}
	})
}

// StoreID implements backend.Identifier: "s3://bucket/prefix", followed by
// "?endpoint=" and the client's base endpoint when it has one (the buckets
// of an S3-compatible server are not AWS's).
func (b *Backend) StoreID() string {
	id := "s3://" + b.bucket + "/" + b.prefix
	if ep := b.client.Options().BaseEndpoint; ep != nil && *ep != "" {
		id += "?endpoint=" + *ep
	}
	return id
}
