package backend_gcs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/roomstore/roomstore/backend"
	"google.golang.org/api/googleapi"
)

func TestCreate(t *testing.T) {
	ep := newServer(t)

	t.Run("sizes around the chunk round-trip", func(t *testing.T) {
		s := newStore(t, ep, "p")
		for i, n := range []int{0, 1, testChunk - 1, testChunk, testChunk + 1, 2*testChunk + 7, 5<<20 + 3} {
			path := fmt.Sprintf("size/%d", n)
			data := randBytes(n, uint64(i))
			info := mustCreate(t, s, path, data)
			if info.Size != int64(n) || info.Path != path || info.ETag == "" || info.ModTime.IsZero() {
				t.Errorf("Commit Info for %d bytes = %+v", n, info)
			}
			mustEqual(t, path, readAll(t, s, path), data)
			st, err := s.Stat(t.Context(), path)
			if err != nil || st.Size != int64(n) || st.ETag != info.ETag || st.IsFolder {
				t.Errorf("Stat %q = %+v, %v; want size %d, ETag %q", path, st, err, n, info.ETag)
			}
		}
	})

	t.Run("overwrite replaces content and changes the ETag", func(t *testing.T) {
		s := newStore(t, ep, "")
		first := mustCreate(t, s, "f", []byte("first version"))
		second := mustCreate(t, s, "f", []byte("second"))
		mustEqual(t, "f", readAll(t, s, "f"), []byte("second"))
		if first.ETag == second.ETag {
			t.Errorf("ETag unchanged across commits: %q", first.ETag)
		}
	})

	t.Run("nothing is visible before commit", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w, err := s.Create(t.Context(), "new", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, randBytes(3*testChunk, 1), testChunk/2) // several chunks sent
		if _, err := s.Stat(t.Context(), "new"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Stat before Commit = %v, want fs.ErrNotExist", err)
		}
		if got := list(t, s, ""); len(got) != 0 {
			t.Fatalf("List before Commit = %v, want empty", got)
		}
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Stat(t.Context(), "new"); err != nil {
			t.Fatalf("Stat after Commit: %v", err)
		}
	})

	t.Run("a writer outlives the context of Create", func(t *testing.T) {
		s := newStore(t, ep, "p")
		ctx, cancel := context.WithCancel(t.Context())
		w, err := s.Create(ctx, "f", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		data := randBytes(testChunk+3, 4)
		write(t, w, data, 4096)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), data)
	})

	t.Run("exclusive create of a new file succeeds", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w := openWriter(t, s, "x", false, backend.WriteOptions{Exclusive: true})
		write(t, w, []byte("mine"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("exclusive Commit on a missing file: %v", err)
		}
		mustEqual(t, "x", readAll(t, s, "x"), []byte("mine"))
	})

	t.Run("exclusive create over an existing file fails with ErrExist and keeps it", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "x", []byte("old"))
		w := openWriter(t, s, "x", false, backend.WriteOptions{Exclusive: true})
		write(t, w, []byte("new"), 10)
		_, err := w.Commit(t.Context())
		if !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Commit = %v, want fs.ErrExist", err)
		}
		var g *googleapi.Error
		if !errors.As(err, &g) || g.Code != 412 {
			t.Errorf("the SDK's 412 is not reachable with errors.As: %v", err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			t.Errorf("error %v names a path: backends leave that to the engine", err)
		}
		mustEqual(t, "x", readAll(t, s, "x"), []byte("old"))
	})

	t.Run("an exclusive create that finds its own upload already there succeeds", func(t *testing.T) {
		s := newStore(t, ep, "p")
		bw := openWriter(t, s, "x", false, backend.WriteOptions{Exclusive: true})
		w := bw.(*createWriter)
		write(t, w, []byte("mine"), 10)
		// What a first try whose response was lost leaves behind, before
		// the SDK's retry meets the precondition.
		ow := w.obj.NewWriter(t.Context())
		ow.Metadata = map[string]string{markerKey: w.id}
		if _, err := ow.Write([]byte("mine")); err != nil {
			t.Fatal(err)
		}
		if err := ow.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit = %v, want success", err)
		}
	})

	t.Run("exclusive create loses to a file that appears before commit", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w := openWriter(t, s, "x", false, backend.WriteOptions{Exclusive: true})
		write(t, w, randBytes(testChunk+5, 3), 4096)
		mustCreate(t, s.reopen(t), "x", []byte("winner"))
		if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Commit = %v, want fs.ErrExist", err)
		}
		mustEqual(t, "x", readAll(t, s, "x"), []byte("winner"))
	})

	t.Run("racing exclusive creators across backends: exactly one wins", func(t *testing.T) {
		s := newStore(t, ep, "p")
		const n = 8
		writers := make([]backend.Writer, n)
		for i := range writers {
			b := backend.Backend(s)
			if i%2 == 1 {
				b = s.reopen(t)
			}
			writers[i] = openWriter(t, b, "race", false, backend.WriteOptions{Exclusive: true})
			write(t, writers[i], fmt.Appendf(nil, "writer %d", i), 100)
		}
		errs := make(chan error, n)
		for _, w := range writers {
			go func() { _, err := w.Commit(t.Context()); errs <- err }()
		}
		wins := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, fs.ErrExist):
				t.Errorf("losing Commit = %v, want fs.ErrExist", err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d exclusive creators won, want 1", wins)
		}
	})

	t.Run("content type is stored", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w := openWriter(t, s, "doc.txt", false, backend.WriteOptions{ContentType: "text/plain; charset=utf-8"})
		write(t, w, []byte("hello"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		a, err := s.client.Bucket(s.bucket).Object("p/doc.txt").Attrs(t.Context())
		if err != nil || a.ContentType != "text/plain; charset=utf-8" {
			t.Fatalf("stored content type = %q, %v", a.ContentType, err)
		}
	})

	t.Run("write and commit after commit fail with ErrClosed", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w := openWriter(t, s, "f", false, backend.WriteOptions{})
		write(t, w, []byte("x"), 1)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(t.Context(), []byte("y")); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("Write after Commit = %v, want fs.ErrClosed", err)
		}
		if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("second Commit = %v, want fs.ErrClosed", err)
		}
		if err := w.Abort(t.Context()); err != nil {
			t.Errorf("Abort after Commit = %v, want nil", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("x"))
	})
}

// TestDiscard checks that every way a write can end without a successful
// Commit leaves the old content (or nothing) and no stray object.
func TestDiscard(t *testing.T) {
	ep := newServer(t)
	old := []byte("old content")
	big := randBytes(3*testChunk+11, 9)

	type ending struct {
		name string
		end  func(t *testing.T, w backend.Writer)
	}
	endings := []ending{
		{"abort before any write", func(t *testing.T, w backend.Writer) {
			if err := w.Abort(t.Context()); err != nil {
				t.Fatal(err)
			}
		}},
		{"abort after several chunks", func(t *testing.T, w backend.Writer) {
			write(t, w, big, 8192)
			if err := w.Abort(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(t.Context()); err != nil {
				t.Fatalf("second Abort: %v", err)
			}
		}},
		{"cancelled context on write", func(t *testing.T, w backend.Writer) {
			write(t, w, big[:testChunk+1], 8192)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if err := w.Write(ctx, big); !errors.Is(err, context.Canceled) {
				t.Fatalf("Write with a cancelled context = %v, want context.Canceled", err)
			}
			if _, err := w.Commit(t.Context()); err == nil {
				t.Fatal("Commit after a failed Write succeeded")
			}
			_ = w.Abort(t.Context())
		}},
		{"cancelled context on commit", func(t *testing.T, w backend.Writer) {
			write(t, w, big, 8192)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := w.Commit(ctx); !errors.Is(err, context.Canceled) {
				t.Fatalf("Commit with a cancelled context = %v, want context.Canceled", err)
			}
			_ = w.Abort(t.Context())
		}},
		{"context cancelled while writes are in flight", func(t *testing.T, w backend.Writer) {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(20*time.Millisecond, cancel)
			var err error
			for i := 0; err == nil && i < 1000; i++ {
				err = w.Write(ctx, big[:testChunk])
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Write under a cancelled context = %v, want context.Canceled", err)
			}
			if _, err := w.Commit(t.Context()); err == nil {
				t.Fatal("Commit after a failed Write succeeded")
			}
			_ = w.Abort(t.Context())
		}},
	}
	opens := []struct {
		name string
		open func(b backend.Backend, path string) (backend.Writer, error)
	}{
		{"create", func(b backend.Backend, p string) (backend.Writer, error) {
			return b.Create(t.Context(), p, backend.WriteOptions{})
		}},
		{"exclusive create", func(b backend.Backend, p string) (backend.Writer, error) {
			return b.Create(t.Context(), p, backend.WriteOptions{Exclusive: true})
		}},
		{"append", func(b backend.Backend, p string) (backend.Writer, error) {
			return b.Append(t.Context(), p, backend.WriteOptions{})
		}},
	}
	for _, o := range opens {
		for _, e := range endings {
			t.Run(o.name+": "+e.name+" keeps the old content", func(t *testing.T) {
				s := newStore(t, ep, "p")
				if o.name != "exclusive create" {
					mustCreate(t, s, "f", old)
				}
				w, err := o.open(s, "f")
				if err != nil {
					t.Fatal(err)
				}
				e.end(t, w)
				if o.name == "exclusive create" {
					if _, err := s.Stat(t.Context(), "f"); !errors.Is(err, fs.ErrNotExist) {
						t.Fatalf("Stat = %v, want fs.ErrNotExist", err)
					}
				} else {
					mustEqual(t, "f", readAll(t, s, "f"), old)
				}
				want := []string{}
				if o.name != "exclusive create" {
					want = []string{"p/f"}
				}
				if got := s.objects(t); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Fatalf("bucket holds %q, want %q", got, want)
				}
			})
		}
	}
}

func TestErrors(t *testing.T) {
	s := newStore(t, "", "p")

	t.Run("missing file maps to ErrNotExist with the SDK error reachable", func(t *testing.T) {
		_, err := s.Stat(t.Context(), "missing")
		if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, storage.ErrObjectNotExist) {
			t.Errorf("Stat = %v, want fs.ErrNotExist wrapping storage.ErrObjectNotExist", err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) || err.Error() != "file does not exist: GCS 404 Not Found" {
			t.Errorf("Stat error = %q, want the kind and the status, and no path", err)
		}
		if _, _, err := s.Read(t.Context(), "missing", 0, -1); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Read = %v, want fs.ErrNotExist", err)
		}
		if err := s.Remove(t.Context(), "missing", backend.RemoveOptions{}); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Remove = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("remove twice: the second is ErrNotExist", func(t *testing.T) {
		mustCreate(t, s, "twice", []byte("x"))
		if err := s.Remove(t.Context(), "twice", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := s.Remove(t.Context(), "twice", backend.RemoveOptions{}); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("second Remove = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("status codes map to fs sentinels", func(t *testing.T) {
		for code, want := range map[int]error{404: fs.ErrNotExist, 412: fs.ErrExist, 403: fs.ErrPermission, 401: fs.ErrPermission} {
			err := classify(&googleapi.Error{Code: code})
			var g *googleapi.Error
			if !errors.Is(err, want) || !errors.As(err, &g) || g.Code != code {
				t.Errorf("HTTP %d maps to %v, want %v with the *googleapi.Error reachable", code, err, want)
			}
		}
		if err := classify(&googleapi.Error{Code: 500}); errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) || errors.Is(err, fs.ErrPermission) {
			t.Errorf("HTTP 500 maps to a sentinel: %v", err)
		}
		if err := classify(context.Canceled); !errors.Is(err, context.Canceled) {
			t.Errorf("context.Canceled lost: %v", err)
		}
	})

	t.Run("a missing bucket is ErrStoreUnavailable, not a missing file", func(t *testing.T) {
		b, err := New(s.client, "no-such-bucket-here", "")
		if err != nil {
			t.Fatal(err)
		}
		_, err = b.Stat(t.Context(), "f")
		if !errors.Is(err, backend.ErrStoreUnavailable) || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat in a missing bucket = %v, want backend.ErrStoreUnavailable", err)
		}
	})

	t.Run("New rejects bad arguments with ErrInvalid", func(t *testing.T) {
		if _, err := New(nil, "b", ""); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("New(nil client) = %v", err)
		}
		if _, err := New(s.client, "", ""); !errors.Is(err, fs.ErrInvalid) {
			t.Errorf("New(empty bucket) = %v", err)
		}
		for _, o := range []Option{WithChunkSize(0), WithSigner("", nil), WithSignBytes("a@b", nil), WithURLEndpoint("ftp://x"), WithURLEndpoint("127.0.0.1:80")} {
			if _, err := New(s.client, "b", "", o); !errors.Is(err, fs.ErrInvalid) {
				t.Errorf("New with a bad option = %v, want fs.ErrInvalid", err)
			}
		}
	})
}
