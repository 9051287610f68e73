package backend_s3_test

import (
	"errors"
	"io/fs"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/internal/testserver"
)

// TestErrorMapping checks that S3 errors arrive as the fs and backend
// sentinels, naming no path, with the SDK's error still reachable.
func TestErrorMapping(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)

	assertAPI := func(t *testing.T, err error) {
		t.Helper()
		var api smithy.APIError
		if !errors.As(err, &api) {
			t.Errorf("%v: the S3 error is not reachable with errors.As", err)
		}
	}

	t.Run("missing files are ErrNotExist", func(t *testing.T) {
		_, err := s.Stat(t.Context(), "nope")
		assertIs(t, err, fs.ErrNotExist)
		assertAPI(t, err)
		_, _, err = s.Read(t.Context(), "nope", 0, -1)
		assertIs(t, err, fs.ErrNotExist)
		assertAPI(t, err)
		assertIs(t, s.Remove(t.Context(), "nope", backend.RemoveOptions{}), fs.ErrNotExist)
	})

	t.Run("removing twice is ErrNotExist the second time", func(t *testing.T) {
		put(t, s, "twice", []byte("x"))
		if err := s.Remove(t.Context(), "twice", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		assertIs(t, s.Remove(t.Context(), "twice", backend.RemoveOptions{}), fs.ErrNotExist)
	})

	t.Run("a missing bucket is ErrStoreUnavailable, not a missing file", func(t *testing.T) {
		missing, err := backend_s3.New(g.client, "no-such-bucket-here", "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = missing.Stat(t.Context(), "f")
		assertIs(t, err, backend.ErrStoreUnavailable)
		if errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat in a missing bucket = %v, which passes for a missing file", err)
		}
		n := 0
		for _, err := range missing.List(t.Context(), "") {
			assertIs(t, err, backend.ErrStoreUnavailable)
			assertAPI(t, err)
			n++
		}
		if n != 1 {
			t.Errorf("List of a missing bucket yielded %d errors, want 1", n)
		}
	})

	t.Run("refused credentials are ErrPermission", func(t *testing.T) {
		bad := s3.New(s3.Options{
			Region:       testserver.VersityGWRegion,
			BaseEndpoint: aws.String(g.Endpoint),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider(g.AccessKey, "wrong-secret", ""),
		})
		b, err := backend_s3.New(bad, s.bucket, "room")
		if err != nil {
			t.Fatal(err)
		}
		put(t, s, "f", []byte("x"))
		_, err = b.Stat(t.Context(), "f")
		assertIs(t, err, fs.ErrPermission)
		_, _, err = b.Read(t.Context(), "f", 0, -1)
		assertIs(t, err, fs.ErrPermission)
		assertAPI(t, err)
		w, err := b.Create(t.Context(), "g", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, []byte("data"), 4)
		_, err = w.Commit(t.Context())
		assertIs(t, err, fs.ErrPermission)
		assertAPI(t, err)
		for _, err := range b.List(t.Context(), "") {
			assertIs(t, err, fs.ErrPermission)
		}
		if err := s.Remove(t.Context(), "f", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a file over a folder and a file below a file are refused", func(t *testing.T) {
		put(t, s, "a/x", []byte("x"))
		w, err := s.Create(t.Context(), "a", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, []byte("y"), 1)
		_, err = w.Commit(t.Context())
		assertIs(t, err, backend.ErrIsFolder)
		w, err = s.Create(t.Context(), "a/x/y", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, []byte("y"), 1)
		_, err = w.Commit(t.Context())
		assertIs(t, err, backend.ErrNotFolder)
		if err := s.Remove(t.Context(), "a/x", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("New rejects bad arguments as ErrInvalid", func(t *testing.T) {
		for _, tc := range []struct {
			name           string
			client         *s3.Client
			bucket, prefix string
			opts           []backend_s3.Option
		}{
			{"nil client", nil, "b", "", nil},
			{"empty bucket", g.client, "", "", nil},
			{"dot-dot prefix", g.client, "b", "a/../b", nil},
			{"reserved prefix", g.client, "b", "x/.roomstore", nil},
			{"small part size", g.client, "b", "", []backend_s3.Option{backend_s3.WithPartSize(backend_s3.MinPartSize - 1)}},
			{"huge part size", g.client, "b", "", []backend_s3.Option{backend_s3.WithPartSize(backend_s3.MaxPartSize + 1)}},
			{"zero cleanup timeout", g.client, "b", "", []backend_s3.Option{backend_s3.WithCleanupTimeout(0)}},
			{"zero list page", g.client, "b", "", []backend_s3.Option{backend_s3.WithListPageSize(0)}},
			{"oversized list page", g.client, "b", "", []backend_s3.Option{backend_s3.WithListPageSize(1001)}},
		} {
			if _, err := backend_s3.New(tc.client, tc.bucket, tc.prefix, tc.opts...); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("%s: %v, want fs.ErrInvalid", tc.name, err)
			}
		}
		b, err := backend_s3.New(g.client, "b", "/a/b/", backend_s3.WithPartSize(8<<20), backend_s3.WithCleanupTimeout(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if b.Prefix() != "a/b" || b.Bucket() != "b" || b.PartSize() != 8<<20 {
			t.Errorf("New = prefix %q bucket %q part size %d", b.Prefix(), b.Bucket(), b.PartSize())
		}
	})
}
