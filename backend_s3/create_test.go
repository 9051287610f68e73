package backend_s3_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
)

func TestCreate(t *testing.T) {
	g := startGateway(t)

	t.Run("sizes around the part boundary round-trip", func(t *testing.T) {
		for i, n := range []int{0, 1, part - 1, part, part + 1, 2 * part, 2*part + 1} {
			t.Run(fmt.Sprint(n), func(t *testing.T) {
				t.Parallel()
				s := g.newStore(t)
				data := content(uint64(i), n)
				info := put(t, s, "f.bin", data)
				if info.Size != int64(n) || info.ETag == "" || info.ModTime.IsZero() {
					t.Errorf("Commit Info = %+v, want size %d, an ETag and a ModTime", info, n)
				}
				assertContent(t, s, "f.bin", data)
			})
		}
	})

	t.Run("overwrite replaces the content whole", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		first := put(t, s, "f", content(1, 12*mib))
		small := content(2, 3*kib)
		second := put(t, s, "f", small)
		assertContent(t, s, "f", small)
		if first.ETag == second.ETag {
			t.Errorf("ETag %q did not change with the content", first.ETag)
		}
	})

	t.Run("each commit gets a new ETag, even with the same bytes", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		seen := map[string]bool{}
		for range 3 {
			for _, data := range [][]byte{[]byte("same"), content(1, part+1)} {
				info := put(t, s, "f", data)
				if seen[info.ETag] {
					t.Fatalf("ETag %q reused", info.ETag)
				}
				seen[info.ETag] = true
				st, err := s.Stat(t.Context(), "f")
				if err != nil || st.ETag != info.ETag {
					t.Fatalf("Stat = %+v, %v; want ETag %q", st, err, info.ETag)
				}
			}
		}
	})

	t.Run("nothing is visible before commit", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		old := content(1, 100)
		put(t, s, "keep", old)
		for i, path := range []string{"new/f", "keep"} {
			w, err := s.Create(t.Context(), path, backend.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			data := content(2, 2*part+5)
			writeAll(t, w, data, mib) // two parts are uploaded by now
			if path == "keep" {
				assertContent(t, s, "keep", old)
			} else {
				if _, err := s.Stat(t.Context(), "new/f"); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Stat before commit: %v, want fs.ErrNotExist", err)
				}
				if _, err := s.Stat(t.Context(), "new"); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Stat of the folder before commit: %v, want fs.ErrNotExist", err)
				}
			}
			want := []string{"keep", "new/"}[:i+1] // new/f is committed in round one
			if got := names(t, s, ""); !sameSet(got, want) {
				t.Errorf("List before commit = %q, want %q", got, want)
			}
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			assertContent(t, s, path, data)
		}
	})

	t.Run("content type is stored and kept by appends", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		w, err := s.Create(t.Context(), "page.html", backend.WriteOptions{ContentType: "text/html; charset=utf-8"})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, []byte("<p>hi"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		appendData(t, s, "page.html", content(3, part+1))
		out, err := g.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String("room/page.html")})
		if err != nil {
			t.Fatal(err)
		}
		if got := aws.ToString(out.ContentType); got != "text/html; charset=utf-8" {
			t.Errorf("Content-Type after append = %q", got)
		}
	})
}

func TestCreateExclusive(t *testing.T) {
	g := startGateway(t)
	for _, n := range []int{10, 2*part + 1} {
		t.Run(fmt.Sprintf("%d bytes over an existing file fail with ErrExist", n), func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			old := content(1, 50)
			put(t, s, "f", old)
			w, err := s.Create(t.Context(), "f", backend.WriteOptions{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, content(2, n), mib)
			_, err = w.Commit(t.Context())
			assertIs(t, err, fs.ErrExist)
			var api smithy.APIError
			if !errors.As(err, &api) || api.ErrorCode() != "PreconditionFailed" {
				t.Errorf("ErrExist %v does not carry the 412 PreconditionFailed", err)
			}
			if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Commit after a failed Commit: %v, want fs.ErrClosed", err)
			}
			assertContent(t, s, "f", old)
		})
		t.Run(fmt.Sprintf("%d bytes on a missing file create it", n), func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			data := content(3, n)
			w, err := s.Create(t.Context(), "f", backend.WriteOptions{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, data, mib)
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			assertContent(t, s, "f", data)
		})
	}

	t.Run("racing exclusive creators on two backends: exactly one wins", func(t *testing.T) {
		t.Parallel()
		bucket := g.NewBucket(t)
		stores := []*store{g.storeIn(t, bucket, "room", g.client), g.storeIn(t, bucket, "room", g.Client())}
		const racers = 8
		writers := make([]backend.Writer, racers)
		for i := range writers {
			w, err := stores[i%2].Create(t.Context(), "lock", backend.WriteOptions{Exclusive: true})
			if err != nil {
				t.Fatal(err)
			}
			size := 10
			if i%3 == 0 {
				size = part + i // some commit a multipart upload
			}
			writeAll(t, w, content(uint64(i), size), mib)
			writers[i] = w
		}
		var wins, lost atomic.Int64
		var wg sync.WaitGroup
		for _, w := range writers {
			wg.Go(func() {
				_, err := w.Commit(t.Context())
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, fs.ErrExist):
					lost.Add(1)
				default:
					t.Errorf("Commit: %v", err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || lost.Load() != racers-1 {
			t.Errorf("%d won, %d got ErrExist; want 1 and %d", wins.Load(), lost.Load(), racers-1)
		}
	})
}

// TestWriterLifecycle checks that every way a write can end without a
// commit leaves the old content and nothing staged on the server (the
// store's cleanup asserts no multipart upload or temporary remains).
func TestWriterLifecycle(t *testing.T) {
	g := startGateway(t)
	type open func(s *store, ctx context.Context) (backend.Writer, error)
	kinds := map[string]open{
		"create": func(s *store, ctx context.Context) (backend.Writer, error) {
			return s.Create(ctx, "f", backend.WriteOptions{})
		},
		"append": func(s *store, ctx context.Context) (backend.Writer, error) {
			return s.Append(ctx, "f", backend.WriteOptions{})
		},
	}
	for kind, open := range kinds {
		// start opens a writer of f in s, failing t on an error.
		start := func(t *testing.T, s *store) backend.Writer {
			t.Helper()
			w, err := open(s, t.Context())
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		// overwriting starts a writer of f in a new store where f holds
		// size bytes, old.
		overwriting := func(t *testing.T, size int) (s *store, old []byte, w backend.Writer) {
			t.Helper()
			s = g.newStore(t)
			old = content(1, size)
			put(t, s, "f", old)
			return s, old, start(t, s)
		}
		t.Run(kind+": abort discards a multipart write", func(t *testing.T) {
			t.Parallel()
			s, old, w := overwriting(t, 6*mib)
			writeAll(t, w, content(2, 2*part+1), mib)
			assertUploads(t, g, s, 1)
			if err := w.Abort(t.Context()); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			assertUploads(t, g, s, 0)
			if err := w.Abort(t.Context()); err != nil {
				t.Errorf("second Abort: %v", err)
			}
			if err := w.Write(t.Context(), []byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after Abort: %v, want fs.ErrClosed", err)
			}
			if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Commit after Abort: %v, want fs.ErrClosed", err)
			}
			assertContent(t, s, "f", old)
		})

		t.Run(kind+": a cancelled context on Write aborts the upload at once", func(t *testing.T) {
			t.Parallel()
			s, old, w := overwriting(t, 100)
			writeAll(t, w, content(2, part+1), mib)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := w.Write(ctx, []byte("more"))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Write with a cancelled context: %v, want context.Canceled", err)
			}
			assertUploads(t, g, s, 0) // before any Abort
			if err := w.Write(t.Context(), []byte("x")); err == nil {
				t.Error("Write after a failed Write succeeded")
			}
			if _, err := w.Commit(t.Context()); err == nil {
				t.Error("Commit after a failed Write succeeded")
			}
			abortKeeps(t, w, s, old, "Abort after a failed Write")
		})

		t.Run(kind+": a cancelled context on Commit discards everything", func(t *testing.T) {
			t.Parallel()
			s, old, w := overwriting(t, 6*mib)
			writeAll(t, w, content(2, part+1), mib)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Commit with a cancelled context: %v, want context.Canceled", err)
			}
			assertUploads(t, g, s, 0)
			if _, err := w.Commit(t.Context()); err == nil {
				t.Error("Commit after a failed Commit succeeded")
			}
			assertContent(t, s, "f", old)
		})

		t.Run(kind+": a failed part upload aborts the upload", func(t *testing.T) {
			t.Parallel()
			hooks := &hookSwitch{}
			bucket := g.NewBucket(t)
			s := g.storeIn(t, bucket, "room", g.hookedClient(hooks.before))
			old := content(1, 100)
			put(t, s, "f", old)
			injected := errors.New("injected network failure")
			hooks.set(nthBefore("UploadPart", 2, func(context.Context) error { return injected }))
			w := start(t, s)
			data := content(2, 3*part)
			var werr error
			for len(data) > 0 && werr == nil {
				werr = w.Write(t.Context(), data[:mib])
				data = data[mib:]
			}
			if !errors.Is(werr, injected) {
				t.Fatalf("Write: %v, want the injected failure", werr)
			}
			assertUploads(t, g, s, 0)
			abortKeeps(t, w, s, old, "Abort")
		})

		t.Run(kind+": calls after commit fail with ErrClosed and Abort is a no-op", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			w := start(t, s)
			data := content(1, part+3)
			writeAll(t, w, data, mib)
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(t.Context(), []byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after Commit: %v, want fs.ErrClosed", err)
			}
			if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Commit after Commit: %v, want fs.ErrClosed", err)
			}
			if err := w.Abort(t.Context()); err != nil {
				t.Errorf("Abort after Commit: %v", err)
			}
			assertContent(t, s, "f", data)
		})
	}
}

// assertUploads checks how many multipart uploads are in progress in the
// store's bucket.
func assertUploads(t *testing.T, g *gateway, s *store, want int) {
	t.Helper()
	out, err := g.client.ListMultipartUploads(context.Background(), &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket)})
	if err != nil {
		t.Fatalf("ListMultipartUploads: %v", err)
	}
	if len(out.Uploads) != want {
		t.Fatalf("%d multipart uploads in progress, want %d", len(out.Uploads), want)
	}
}

// abortKeeps checks that w's Abort (what, in a failure) succeeds and that
// f in s still holds old.
func abortKeeps(t *testing.T, w backend.Writer, s *store, old []byte, what string) {
	t.Helper()
	if err := w.Abort(t.Context()); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	assertContent(t, s, "f", old)
}
