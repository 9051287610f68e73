package backend_gcs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
	"github.com/roomstore/roomstore/roompath"
)

func TestAppend(t *testing.T) {
	ep := newServer(t)

	t.Run("every old size followed by every appended size", func(t *testing.T) {
		s := newStore(t, ep, "p")
		sizes := []int{0, 1, testChunk - 1, testChunk, testChunk + 1}
		for i, oldSize := range append([]int{-1}, sizes...) { // -1: no file yet
			for j, addSize := range sizes {
				path := fmt.Sprintf("combo/%d+%d", oldSize, addSize)
				var old []byte
				if oldSize >= 0 {
					old = randBytes(oldSize, uint64(100*i+j))
					mustCreate(t, s, path, old)
				}
				add := randBytes(addSize, uint64(100*i+j+50))
				info := mustAppend(t, s, path, add)
				want := append(append([]byte{}, old...), add...)
				mustEqual(t, path, readAll(t, s, path), want)
				if info.Size != int64(len(want)) || info.Path != path || info.ETag == "" {
					t.Errorf("Commit Info for %s = %+v, want size %d", path, info, len(want))
				}
			}
		}
		s.noneReserved(t)
	})

	t.Run("40 successive appends stay correct and leave no temporaries", func(t *testing.T) {
		s := newStore(t, ep, "p")
		var want []byte
		var etags = map[string]bool{}
		for i := range 40 {
			line := fmt.Appendf(nil, "line %02d\n", i)
			info := mustAppend(t, s, "log.txt", line)
			want = append(want, line...)
			if etags[info.ETag] {
				t.Fatalf("append %d reused ETag %q", i, info.ETag)
			}
			etags[info.ETag] = true
		}
		mustEqual(t, "log.txt", readAll(t, s, "log.txt"), want)
		s.noneReserved(t)
		if got := s.objects(t); len(got) != 1 || got[0] != "p/log.txt" {
			t.Fatalf("bucket holds %q, want only p/log.txt", got)
		}
	})

	t.Run("staged bytes are invisible and kept out of listings before commit", func(t *testing.T) {
		s := newStore(t, ep, "")
		mustCreate(t, s, "f", []byte("old"))
		w := openWriter(t, s, "f", true, backend.WriteOptions{})
		write(t, w, randBytes(testChunk+1, 1), 8192)
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old"))
		if got := list(t, s, ""); len(got) != 1 || got[0] != "f" {
			t.Fatalf("List = %q, want [f]", got)
		}
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := list(t, s, ""); len(got) != 1 || got[0] != "f" {
			t.Fatalf("List after Commit = %q, want [f]", got)
		}
	})

	t.Run("a held claim yields ErrConflict, keeps the staged bytes, and Commit again succeeds", func(t *testing.T) {
		s, before, w := appending(t, ep, "new")

		release := s.holdClaim(t, "f", before.ETag)
		_, err := w.Commit(t.Context())
		if !errors.Is(err, backend.ErrConflict) {
			t.Fatalf("Commit under a held claim = %v, want backend.ErrConflict", err)
		}
		var pe *fs.PathError
		if errors.As(err, &pe) {
			t.Errorf("conflict %v names a path: backends leave that to the engine", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,"))
		if n := len(s.temporaries(t)); n != 1 {
			t.Fatalf("%d temporaries after a conflict, want the staged one kept", n)
		}

		release()
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit after the claim was released: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,new"))
		s.noneReserved(t)
	})

	t.Run("after a conflict the retry appends to the version that won", func(t *testing.T) {
		s, before, w := appending(t, ep, "mine")

		release := s.holdClaim(t, "f", before.ETag)
		commitConflicts(t, w)
		// The claimant finishes its append, then gives the claim back.
		mustCreate(t, s.reopen(t), "f", []byte("old,theirs,"))
		release()
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("second Commit: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,theirs,mine"))
	})

	t.Run("abort after a conflict removes the temporary and keeps the file", func(t *testing.T) {
		s, w, release := conflictedAppend(t, ep)
		if err := w.Abort(t.Context()); err != nil {
			t.Fatal(err)
		}
		release()
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old"))
		s.noneReserved(t)
		if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("Commit after Abort = %v, want fs.ErrClosed", err)
		}
	})

	t.Run("a file removed between attempts is created by the retry", func(t *testing.T) {
		s, w, release := conflictedAppend(t, ep)
		if err := s.Remove(t.Context(), "f", backend.RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		release()
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("second Commit: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("new"))
	})

	t.Run("an attempt that landed but reported failure is not composed again", func(t *testing.T) {
		s := newStore(t, ep, "p")
		mustCreate(t, s, "f", []byte("old,"))
		bw := openWriter(t, s, "f", true, backend.WriteOptions{})
		w := bw.(*appendWriter)
		write(t, w, []byte("once"), 10)
		staged, err := w.up.finish(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		w.staged = staged
		// What an attempt whose compose response was lost leaves behind.
		c := w.obj.ComposerFrom(w.obj, w.temp)
		c.Metadata = map[string]string{markerKey: w.id}
		if _, err := c.Run(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old,once"))
		s.noneReserved(t)
	})

	t.Run("a compose that fails for another reason than a race fails the commit", func(t *testing.T) {
		client := testserver.FakeGCSClient(t, ep)
		client.SetRetry(storage.WithBackoff(gax.Backoff{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}))
		b, err := New(client, testserver.NewFakeGCSBucket(t, ep), "p", WithChunkSize(testChunk))
		if err != nil {
			t.Fatal(err)
		}
		s := &store{Backend: b, endpoint: ep, client: client, bucket: b.bucketName}
		mustCreate(t, s, "f", []byte("old"))
		bw := openWriter(t, s, "f", true, backend.WriteOptions{})
		w := bw.(*appendWriter)
		write(t, w, []byte("new"), 10)
		w.staged, err = w.up.finish(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := w.temp.Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = w.Commit(t.Context())
		if err == nil || errors.Is(err, backend.ErrConflict) {
			t.Fatalf("Commit without its staged object = %v, want a final error", err)
		}
		t.Logf("failed in %v: %v", time.Since(start).Round(time.Millisecond), err)
		mustEqual(t, "f", readAll(t, s, "f"), []byte("old"))
		if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
			t.Errorf("Commit after a final failure = %v, want fs.ErrClosed", err)
		}
		s.noneReserved(t)
	})

	t.Run("a compose result that cannot hold the staged bytes is a conflict", func(t *testing.T) {
		w := &appendWriter{path: "f", staged: &storage.ObjectAttrs{Size: 10}}
		if _, err := w.verify(7, &storage.ObjectAttrs{Generation: 7, Size: 20}); !errors.Is(err, backend.ErrConflict) {
			t.Errorf("unchanged generation: %v, want backend.ErrConflict", err)
		}
		if _, err := w.verify(7, &storage.ObjectAttrs{Generation: 8, Size: 5}); !errors.Is(err, backend.ErrConflict) {
			t.Errorf("result shorter than the staged bytes: %v, want backend.ErrConflict", err)
		}
		// A new generation holds the staged bytes once, even on a base other
		// than the one checked; retrying would duplicate them.
		if info, err := w.verify(7, &storage.ObjectAttrs{Generation: 8, Size: 99}); err != nil || info.Size != 99 {
			t.Errorf("new generation on another base: %+v, %v; want success", info, err)
		}
	})

	t.Run("content type: kept on append, set when the append creates the file", func(t *testing.T) {
		s := newStore(t, ep, "p")
		w := openWriter(t, s, "a.csv", false, backend.WriteOptions{ContentType: "text/csv"})
		write(t, w, []byte("x,y\n"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, "a.csv", []byte("1,2\n"))
		w = openWriter(t, s, "new.json", true, backend.WriteOptions{ContentType: "application/json"})
		write(t, w, []byte("{}"), 10)
		if _, err := w.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		for name, want := range map[string]string{"p/a.csv": "text/csv", "p/new.json": "application/json"} {
			a, err := s.client.Bucket(s.bucket).Object(name).Attrs(t.Context())
			if err != nil || a.ContentType != want {
				t.Errorf("%s content type = %q, %v; want %q", name, a.ContentType, err, want)
			}
		}
	})

	t.Run("concurrent appends from two backends: every append appears exactly once", func(t *testing.T) {
		s := newStore(t, ep, "p")
		backends := []*store{s, s.reopen(t)}
		const writers, appends = 6, 8
		var wg sync.WaitGroup
		for i := range writers {
			b := backends[i%len(backends)]
			wg.Go(func() {
				for j := range appends {
					w, err := b.Append(t.Context(), "shared.log", backend.WriteOptions{})
					if err != nil {
						t.Error(err)
						return
					}
					if err := w.Write(t.Context(), fmt.Appendf(nil, "w%d-%02d;", i, j)); err != nil {
						t.Error(err)
						return
					}
					if _, err := commitWithBackoff(t.Context(), w); err != nil {
						t.Errorf("writer %d append %d: %v", i, j, err)
						return
					}
				}
			})
		}
		wg.Wait()
		got := string(readAll(t, s, "shared.log"))
		records := strings.Split(strings.TrimSuffix(got, ";"), ";")
		seen := map[string]int{}
		for _, r := range records {
			seen[r]++
		}
		for i := range writers {
			for j := range appends {
				if r := fmt.Sprintf("w%d-%02d", i, j); seen[r] != 1 {
					t.Errorf("record %s appears %d times", r, seen[r])
				}
			}
		}
		if len(records) != writers*appends {
			t.Errorf("%d records, want %d", len(records), writers*appends)
		}
		s.noneReserved(t)
	})
}

// commitWithBackoff retries lost races with jittered backoff, as the
// engine does.
func commitWithBackoff(ctx context.Context, w backend.Writer) (backend.Info, error) {
	delay := time.Millisecond
	for {
		info, err := w.Commit(ctx)
		if !errors.Is(err, backend.ErrConflict) {
			return info, err
		}
		time.Sleep(delay/2 + rand.N(delay))
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// holdClaim takes the append claim on the file at path at the generation
// etag, as a concurrent appender would, and returns its release.
func (s *store) holdClaim(t *testing.T, path, etag string) (release func()) {
	t.Helper()
	var gen int64
	if _, err := fmt.Sscan(etag, &gen); err != nil {
		t.Fatalf("ETag %q is not a generation: %v", etag, err)
	}
	obj := s.client.Bucket(s.bucket).Object(s.claimName(s.key(path), gen))
	w := obj.If(storage.Conditions{DoesNotExist: true}).NewWriter(t.Context())
	if _, err := w.Write([]byte("held by the test")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("hold claim: %v", err)
	}
	return func() {
		if err := obj.Delete(context.Background()); err != nil {
			t.Errorf("release claim: %v", err)
		}
	}
}

// temporaries lists the staging objects in the bucket.
func (s *store) temporaries(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, n := range s.objects(t) {
		if strings.Contains(n, roompath.ReservedPrefix+"/tmp/") {
			out = append(out, n)
		}
	}
	return out
}

// commitConflicts fails t unless w's Commit is backend.ErrConflict.
func commitConflicts(t *testing.T, w backend.Writer) {
	t.Helper()
	if _, err := w.Commit(t.Context()); !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("Commit = %v, want backend.ErrConflict", err)
	}
}

// appending opens an appending writer on f, "old," in a new store, and
// stages added; it returns the store, f's Info before and the writer.
func appending(t *testing.T, ep, added string) (*store, backend.Info, backend.Writer) {
	t.Helper()
	s := newStore(t, ep, "p")
	before := mustCreate(t, s, "f", []byte("old,"))
	w := openWriter(t, s, "f", true, backend.WriteOptions{})
	write(t, w, []byte(added), 10)
	return s, before, w
}

// conflictedAppend appends "new" to f, "old" in a new store, while f's
// claim is held, and checks that the Commit conflicts. It returns the
// store, the writer and the claim's release.
func conflictedAppend(t *testing.T, ep string) (*store, backend.Writer, func()) {
	t.Helper()
	s := newStore(t, ep, "p")
	before := mustCreate(t, s, "f", []byte("old"))
	release := s.holdClaim(t, "f", before.ETag)
	w := openWriter(t, s, "f", true, backend.WriteOptions{})
	write(t, w, []byte("new"), 10)
	commitConflicts(t, w)
	return s, w, release
}
