package backend_s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roompath"
)

const (
	kib = 1 << 10
	mib = 1 << 20
	// part is the minimum (and default) part size.
	part = backend_s3.MinPartSize
)

// gateway is one versitygw for a top-level test; its subtests get their
// own buckets.
type gateway struct {
	*testserver.VersityGW
	client *s3.Client
}

func startGateway(t *testing.T) *gateway {
	t.Helper()
	gw := testserver.StartVersityGW(t)
	return &gateway{VersityGW: gw, client: gw.Client()}
}

// store is a Backend over a fresh bucket, with the raw client and bucket
// for checks behind the backend's back.
type store struct {
	*backend_s3.Backend
	gw     *gateway
	bucket string
	prefix string
}

// newStore returns a store under prefix "room" in a new bucket.
func (g *gateway) newStore(t *testing.T, opts ...backend_s3.Option) *store {
	t.Helper()
	return g.storeIn(t, g.NewBucket(t), "room", g.client, opts...)
}

func (g *gateway) storeIn(t *testing.T, bucket, prefix string, client *s3.Client, opts ...backend_s3.Option) *store {
	t.Helper()
	b, err := backend_s3.New(client, bucket, prefix, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			g.assertNoLeftovers(t, bucket, prefix)
		}
	})
	return &store{Backend: b, gw: g, bucket: bucket, prefix: prefix}
}

// assertNoLeftovers checks that no multipart upload is in progress in the
// bucket and no temporary object remains under the store's reserved
// folder: every write, committed, aborted or failed, cleans up. Kept
// versions are no temporaries: the tests of history count them.
func (g *gateway) assertNoLeftovers(t *testing.T, bucket, prefix string) {
	t.Helper()
	for _, l := range g.leftovers(t, bucket, prefix) {
		t.Errorf("left behind: %s", l)
	}
}

// leftovers lists the multipart uploads in progress in bucket and the
// objects under the store's reserved prefix but its kept versions.
func (g *gateway) leftovers(t *testing.T, bucket, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	ups, err := g.client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	for _, u := range ups.Uploads {
		out = append(out, "multipart upload of "+aws.ToString(u.Key))
	}
	reserved := roompath.ReservedPrefix + "/"
	if prefix != "" {
		reserved = prefix + "/" + reserved
	}
	objs, err := g.client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(reserved)})
	if err != nil {
		t.Fatalf("ListObjectsV2: %v", err)
	}
	for _, o := range objs.Contents {
		if !strings.HasPrefix(aws.ToString(o.Key), reserved+"versions/") {
			out = append(out, "temporary object "+aws.ToString(o.Key))
		}
	}
	return out
}

// hookedClient returns a client for the gateway that calls before(op) just
// before each operation it sends, which lets a test slip a competing write
// into a commit or fail a chosen request.
func (g *gateway) hookedClient(before func(ctx context.Context, op string) error) *s3.Client {
	return g.clientWith(func(ctx context.Context, op string, _ any) error { return before(ctx, op) })
}

// watchedClient returns a client for the gateway that shows watch each
// operation with its input (such as *s3.GetObjectInput) before sending it.
func (g *gateway) watchedClient(watch func(op string, input any)) *s3.Client {
	return g.clientWith(func(_ context.Context, op string, input any) error {
		watch(op, input)
		return nil
	})
}

func (g *gateway) clientWith(before func(ctx context.Context, op string, input any) error) *s3.Client {
	return s3.New(g.client.Options(), func(o *s3.Options) {
		o.APIOptions = append(slices.Clone(o.APIOptions), func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("roomstore-test-hook",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					if err := before(ctx, middleware.GetOperationName(ctx), in.Parameters); err != nil {
						return middleware.InitializeOutput{}, middleware.Metadata{}, err
					}
					return next.HandleInitialize(ctx, in)
				}), middleware.Before)
		})
	})
}

// content returns n deterministic pseudo-random bytes for seed.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeAll writes data through w in chunks of chunk bytes.
func writeAll(t *testing.T, w backend.Writer, data []byte, chunk int) {
	t.Helper()
	for len(data) > 0 {
		n := min(chunk, len(data))
		if err := w.Write(t.Context(), data[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		data = data[n:]
	}
}

// put commits data as the file at path, replacing it.
func put(t *testing.T, b backend.Backend, path string, data []byte) backend.Info {
	t.Helper()
	w, err := b.Create(t.Context(), path, backend.WriteOptions{})
	if err != nil {
		t.Fatalf("Create %q: %v", path, err)
	}
	writeAll(t, w, data, 1*mib+7)
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit %q: %v", path, err)
	}
	return info
}

// appendData appends data to the file at path.
func appendData(t *testing.T, b backend.Backend, path string, data []byte) backend.Info {
	t.Helper()
	w, err := b.Append(t.Context(), path, backend.WriteOptions{})
	if err != nil {
		t.Fatalf("Append %q: %v", path, err)
	}
	writeAll(t, w, data, 1*mib+7)
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatalf("Commit append %q: %v", path, err)
	}
	return info
}

// readAll reads the whole file at path.
func readAll(t *testing.T, b backend.Backend, path string) ([]byte, backend.Info) {
	t.Helper()
	r, info, err := b.Read(t.Context(), path, 0, -1)
	if err != nil {
		t.Fatalf("Read %q: %v", path, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Read %q: %v", path, err)
	}
	return data, info
}

// assertContent checks that the file at path holds want, reporting
// mismatches by length and hash rather than dumping megabytes.
func assertContent(t *testing.T, b backend.Backend, path string, want []byte) {
	t.Helper()
	got, info := readAll(t, b, path)
	if info.Size != int64(len(want)) {
		t.Errorf("%q: Info.Size = %d, want %d", path, info.Size, len(want))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: content differs: got %d bytes (sha256 %x), want %d bytes (sha256 %x)",
			path, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
	}
}

func assertIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v: want errors.Is(err, %v)", err, target)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		t.Errorf("error %v names a path: backends leave that to the engine", err)
	}
}

// names lists what List yields for dir, folders with a trailing slash.
func names(t *testing.T, b backend.Backend, dir string) []string {
	t.Helper()
	var out []string
	for info, err := range b.List(t.Context(), dir) {
		if err != nil {
			t.Fatalf("List %q: %v", dir, err)
		}
		name := info.Name()
		if info.IsFolder {
			name += "/"
		}
		out = append(out, name)
	}
	return out
}

func joinNames(n []string) string { return strings.Join(n, " ") }

// sameSet reports whether got and want hold the same names in any order.
func sameSet(got, want []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want)))
}

// answeredClient returns a client for the gateway that shows answered
// each operation's input and outcome once the server has answered it;
// what answered returns is what the caller gets.
func (g *gateway) answeredClient(answered func(op string, input any, err error) error) *s3.Client {
	return s3.New(g.client.Options(), func(o *s3.Options) {
		o.APIOptions = append(slices.Clone(o.APIOptions), func(stack *middleware.Stack) error {
			return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("roomstore-test-answered",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					out, md, err := next.HandleInitialize(ctx, in)
					return out, md, answered(middleware.GetOperationName(ctx), in.Parameters, err)
				}), middleware.After)
		})
	})
}
