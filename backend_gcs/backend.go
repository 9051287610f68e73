package backend_gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/objstore"
	"github.com/roomstore/roomstore/roompath"
	"google.golang.org/api/iterator"
)

var _ backend.Backend = (*Backend)(nil)

// Backend is a backend.Backend over one bucket and an optional prefix. Its
// methods are safe for concurrent use.
type Backend struct {
	client     *storage.Client
	bucket     *storage.BucketHandle
	bucketName string
	prefix     string
	cfg        config

	// ownClient is set by the URL opener, whose client nobody else holds.
	ownClient bool
	closeOnce sync.Once
	closeErr  error

	// claimLease is how old, in server time, an append claim must be
	// before another writer treats its holder as dead (see claim.go).
	claimLease time.Duration
	// clock tells the server's time, by which claims age.
	clock serverClock
}

// New returns a Backend that stores files in bucket under prefix (leading
// and trailing slashes are ignored; "" uses the whole bucket) through
// client. The bucket must exist; New does no I/O. The caller keeps
// ownership of client: neither New nor Close ever closes it.
//
// An empty bucket name, a nil client, a prefix that is not a valid
// roomstore folder path (see roompath.CleanPrefix) or a bad option yields
// an error wrapping fs.ErrInvalid.
func New(client *storage.Client, bucket, prefix string, opts ...Option) (*Backend, error) {
	prefix, err := objstore.Location("backend_gcs", client != nil, bucket, prefix)
	if err != nil {
		return nil, err
	}
	cfg := config{chunkSize: DefaultChunkSize}
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Backend{
		client:     client,
		bucket:     client.Bucket(bucket),
		bucketName: bucket,
		prefix:     prefix,
		cfg:        cfg,
		claimLease: defaultClaimLease,
	}, nil
}

// Close closes the client when the Backend built it (the gs:// opener);
// for a Backend from New it does nothing, since the caller owns the
// client. It is idempotent.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		if b.ownClient {
			b.closeErr = b.client.Close()
		}
	})
	return b.closeErr
}

// key is the object name of a clean path.
func (b *Backend) key(path string) string {
	if b.prefix == "" {
		return path
	}
	return b.prefix + "/" + path
}

// dirPrefix is the object-name prefix of everything inside the folder dir.
func (b *Backend) dirPrefix(dir string) string {
	if dir == "" {
		if b.prefix == "" {
			return ""
		}
		return b.prefix + "/"
	}
	return b.key(dir) + "/"
}

// tempName names a new private staging object. Paths cannot address
// anything under ReservedPrefix, so no file can collide with it.
func (b *Backend) tempName(id string) string {
	return b.key(roompath.ReservedPrefix + "/tmp/" + id)
}

// retryable returns o with the retry options opts. o must be a handle of
// its own, fresh from BucketHandle.Object: ObjectHandle.Retryer changes
// the retry settings that o shares with the handles it was derived from
// (If, Generation) and, on a client with retry settings of its own (see
// SetRetry in the gs:// opener), would carry one call's policy to others.
func retryable(o *storage.ObjectHandle, opts ...storage.RetryOption) *storage.ObjectHandle {
	return o.Retryer(opts...)
}

func newID() string {
	var p [16]byte
	_, _ = rand.Read(p[:])
	return hex.EncodeToString(p[:])
}

func fileInfo(path string, a *storage.ObjectAttrs) backend.Info {
	return backend.Info{
		Path:    path,
		Size:    a.Size,
		ModTime: a.Updated,
		ETag:    strconv.FormatInt(a.Generation, 10),
	}
}

// Stat describes the object at path, or the implicit folder path when no
// object has that name but some object lies beneath it (see
// objstore.Stat). The root is always a folder.
func (b *Backend) Stat(ctx context.Context, path string) (backend.Info, error) {
	return objstore.Stat(ctx, objects{b}, path)
}

// objects is the Backend as the shared folder logic (objstore) sees it.
type objects struct{ b *Backend }

// StatFile describes the object of the file at path.
func (o objects) StatFile(ctx context.Context, path string) (backend.Info, error) {
	a, err := o.b.bucket.Object(o.b.key(path)).Attrs(ctx)
	if err != nil {
		return backend.Info{}, classify(err)
	}
	return fileInfo(path, a), nil
}

// HasChildren reads at most one listing entry under the folder path. A
// listing has no object to miss: its 404 means the bucket is gone.
func (o objects) HasChildren(ctx context.Context, path string) (bool, error) {
	q := &storage.Query{Prefix: o.b.dirPrefix(path), Delimiter: "/"}
	if err := q.SetAttrSelection([]string{"Name"}); err != nil {
		return false, classify(err)
	}
	it := o.b.bucket.Objects(ctx, q)
	it.PageInfo().MaxSize = 1
	_, err := it.Next()
	switch {
	case errors.Is(err, iterator.Done):
		return false, nil
	case err != nil:
		return false, listError(err)
	}
	return true, nil
}

// listError classifies the failure of a listing.
func listError(err error) error {
	if isNotExist(err) {
		return withKind(backend.ErrStoreUnavailable, err, "bucket not found")
	}
	return classify(err)
}

// missing tells what a 404 for the object at path means (see
// objstore.Missing).
func (b *Backend) missing(ctx context.Context, path string, notFound error) error {
	return objstore.Missing(ctx, objects{b}, path, classify(notFound))
}

// List yields the files and folders directly inside dir from a delimiter
// listing, one page at a time. Reserved names are skipped. A missing
// folder or a file yields nothing.
func (b *Backend) List(ctx context.Context, dir string) iter.Seq2[backend.Info, error] {
	pfx := b.dirPrefix(dir)
	return objstore.List(dir, pfx, func(yield func(objstore.Entry, error) bool) {
		q := &storage.Query{Prefix: pfx, Delimiter: "/"}
		if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Generation"}); err != nil {
			yield(objstore.Entry{}, classify(err))
			return
		}
		it := b.bucket.Objects(ctx, q)
		for {
			a, err := it.Next()
			switch {
			case errors.Is(err, iterator.Done):
				return
			case err != nil:
				yield(objstore.Entry{}, listError(err))
				return
			}
			e := objstore.Entry{Key: a.Prefix, Prefix: true}
			if a.Prefix == "" {
				f := fileInfo("", a)
				e = objstore.Entry{Key: a.Name, Size: f.Size, ModTime: f.ModTime, ETag: f.ETag}
			}
			if !yield(e, nil) {
				return
			}
		}
	})
}

// maxReadRetries bounds how often Read starts over when the generation it
// pinned is replaced between its metadata call and its read. Each retry
// means a writer replaced the object within one round trip: on a loaded
// machine with a writer overwriting in a loop, four in a row happened
// once in about 1,600 reads, so the bound is generous.
const maxReadRetries = 10

// Read streams length bytes (length < 0: to the end; past the end: cut)
// from offset of the object's current generation, and returns that
// generation's Info, so the bytes and the Info always match. An offset
// past the end yields fs.ErrInvalid; offset == size an empty reader; a
// missing object fs.ErrNotExist.
func (b *Backend) Read(ctx context.Context, path string, offset, length int64) (io.ReadCloser, backend.Info, error) {
	obj := b.bucket.Object(b.key(path))
	for attempt := 0; ; attempt++ {
		a, err := obj.Attrs(ctx)
		if isNotExist(err) {
			return nil, backend.Info{}, b.missing(ctx, path, err)
		}
		if err != nil {
			return nil, backend.Info{}, classify(err)
		}
		info := fileInfo(path, a)
		if offset > a.Size {
			return nil, backend.Info{}, backend.Errorf(fs.ErrInvalid, nil, "offset %d past the end (%d bytes)", offset, a.Size)
		}
		n := a.Size - offset
		if length >= 0 && length < n {
			n = length
		}
		if n == 0 {
			return io.NopCloser(strings.NewReader("")), info, nil
		}
		r, err := obj.Generation(a.Generation).NewRangeReader(ctx, offset, n)
		if isNotExist(err) && attempt < maxReadRetries {
			continue
		}
		if err != nil {
			return nil, backend.Info{}, classify(err)
		}
		return r, info, nil
	}
}

// maxPresignExpiry is the longest lifetime V4 signing allows.
const maxPresignExpiry = 7 * 24 * time.Hour

// expirySlack offsets the moment SignedURL reads the clock, a little after
// ours: it truncates the remaining lifetime to whole seconds, so without
// the slack a 15-minute URL would say X-Goog-Expires=899.
const expirySlack = 500 * time.Millisecond

// Presign returns a V4 signed GET URL for the object at path, valid for
// opts.Expiry (at most seven days; otherwise fs.ErrInvalid). A non-empty
// opts.ContentDisposition is signed into the URL as its
// response-content-disposition parameter, which makes the response carry
// that Content-Disposition header. Presign signs with the identity from
// WithSigner or WithSignBytes and does no I/O unless the signing function
// does; without one it returns errors.ErrUnsupported so that the engine
// signs its own URLs.
func (b *Backend) Presign(ctx context.Context, path string, opts backend.PresignOptions) (string, error) {
	s := b.cfg.signer
	if s == nil {
		return "", backend.Errorf(errors.ErrUnsupported, nil, "no signing identity (backend_gcs.WithSigner)")
	}
	if opts.Expiry <= 0 || opts.Expiry > maxPresignExpiry {
		return "", backend.Errorf(fs.ErrInvalid, nil, "expiry %v outside (0, %v]", opts.Expiry, maxPresignExpiry)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	var query url.Values
	if opts.ContentDisposition != "" {
		query = url.Values{"response-content-disposition": {opts.ContentDisposition}}
	}
	u, err := b.bucket.SignedURL(b.key(path), &storage.SignedURLOptions{
		GoogleAccessID:  s.email,
		PrivateKey:      s.key,
		SignBytes:       s.sign,
		Method:          http.MethodGet,
		Expires:         time.Now().Add(min(opts.Expiry+expirySlack, maxPresignExpiry)),
		Scheme:          storage.SigningSchemeV4,
		Hostname:        b.cfg.urlHost,
		Insecure:        b.cfg.urlInsecure,
		QueryParameters: query,
	})
	if err != nil {
		return "", classify(err)
	}
	return u, nil
}

// StoreID implements backend.Identifier: "gs://bucket/prefix", followed by
// "?endpoint=" and the emulator's host when WithURLEndpoint named one (an
// emulator's buckets are not Cloud Storage's).
func (b *Backend) StoreID() string {
	id := "gs://" + b.bucketName + "/" + b.prefix
	if b.cfg.urlHost != "" {
		id += "?endpoint=" + b.cfg.urlHost
	}
	return id
}
