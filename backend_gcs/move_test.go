package backend_gcs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/testserver"
)

// storeWith returns a store under prefix "room" in a new bucket of the
// server at endpoint whose Backend sends its requests through rt (the
// store's own client, for looking behind its back, is a plain one). The
// SDK's retries back off for milliseconds rather than seconds.
func storeWith(t *testing.T, endpoint string, rt http.RoundTripper) *store {
	t.Helper()
	client := clientWith(t, endpoint, rt)
	client.SetRetry(storage.WithBackoff(gax.Backoff{Initial: time.Millisecond, Max: 10 * time.Millisecond}))
	bucket := testserver.NewFakeGCSBucket(t, endpoint)
	b, err := New(client, bucket, "room", WithChunkSize(testChunk), WithURLEndpoint(endpoint))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &store{Backend: b, endpoint: endpoint, client: testserver.FakeGCSClient(t, endpoint), bucket: bucket}
}

// hookedStore is storeWith whose requests pass through before first.
func hookedStore(t *testing.T, endpoint string, before func(*http.Request)) *store {
	t.Helper()
	return storeWith(t, endpoint, roundTripper(func(r *http.Request) (*http.Response, error) {
		before(r)
		return http.DefaultTransport.RoundTrip(r)
	}))
}

// isDeleteOf reports whether r deletes the object key.
func isDeleteOf(r *http.Request, key string) bool {
	return r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/o/"+key)
}

// isCopy reports whether r is a server-side copy.
func isCopy(r *http.Request) bool { return strings.Contains(r.URL.Path, "/rewriteTo/") }

// put writes data to the object name of s's bucket behind the backend's
// back.
func (s *store) put(ctx context.Context, name string, data []byte) error {
	w := s.client.Bucket(s.bucket).Object(name).NewWriter(ctx)
	if _, err := w.Write(data); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// callCtx bounds one backend call of a test.
func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sameInfo(a, b backend.Info) bool {
	return a.Path == b.Path && a.IsFolder == b.IsFolder && a.Size == b.Size && a.ETag == b.ETag && a.ModTime.Equal(b.ModTime)
}

// assertMissing checks that nothing is at path.
func assertMissing(t *testing.T, s *store, path string) {
	t.Helper()
	if info, err := s.Stat(t.Context(), path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat %q = %+v, %v; want fs.ErrNotExist", path, info, err)
	}
}

// assertNoLeftovers checks that the store keeps nothing of its own: no
// claim, no temporary.
func assertNoLeftovers(t *testing.T, s *store) {
	t.Helper()
	if got := s.reserved(t); len(got) != 0 {
		t.Errorf("reserved objects left: %q", got)
	}
}

func TestMove(t *testing.T) {
	ep := newServer(t)

	t.Run("moves the bytes and content type and returns the Info that Stat and List report", func(t *testing.T) {
		s := newStore(t, ep, "room")
		data := randBytes(2*testChunk+11, 7)
		w, err := s.Create(t.Context(), "a/src", backend.WriteOptions{ContentType: "text/csv"})
		if err != nil {
			t.Fatal(err)
		}
		write(t, w, data, 64<<10)
		before, err := w.Commit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Move(callCtx(t), "a/src", "b/c/dst", backend.MoveOptions{})
		if err != nil {
			t.Fatalf("Move: %v", err)
		}
		if info.Path != "b/c/dst" || info.Size != int64(len(data)) || info.ETag == before.ETag {
			t.Errorf("Move = %+v; want b/c/dst, %d bytes, a new ETag", info, len(data))
		}
		if st, err := s.Stat(t.Context(), "b/c/dst"); err != nil || !sameInfo(st, info) {
			t.Errorf("Stat = %+v, %v; want %+v", st, err, info)
		}
		var listed []backend.Info
		for li, err := range s.List(t.Context(), "b/c") {
			if err != nil {
				t.Fatal(err)
			}
			listed = append(listed, li)
		}
		if len(listed) != 1 || !sameInfo(listed[0], info) {
			t.Errorf("List b/c = %+v; want [%+v]", listed, info)
		}
		mustEqual(t, "dst", readAll(t, s, "b/c/dst"), data)
		if a, err := s.client.Bucket(s.bucket).Object(s.key("b/c/dst")).Attrs(t.Context()); err != nil || a.ContentType != "text/csv" {
			t.Errorf("dst's content type = %v, %v; want text/csv", a, err)
		}
		assertMissing(t, s, "a/src")
		assertMissing(t, s, "a")
		assertNoLeftovers(t, s)
	})

	t.Run("onto a file without Overwrite is ErrExist and changes nothing", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "src", []byte("source"))
		mustCreate(t, s, "dst", []byte("destination"))
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{}); !errors.Is(err, fs.ErrExist) {
			t.Fatalf("Move = %v, want fs.ErrExist", err)
		}
		mustEqual(t, "src", readAll(t, s, "src"), []byte("source"))
		mustEqual(t, "dst", readAll(t, s, "dst"), []byte("destination"))
		assertNoLeftovers(t, s)
	})

	t.Run("onto a file with Overwrite replaces it", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "src", []byte("source"))
		mustCreate(t, s, "dst", []byte("destination"))
		info, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{Overwrite: true})
		if err != nil {
			t.Fatalf("Move: %v", err)
		}
		if st, err := s.Stat(t.Context(), "dst"); err != nil || !sameInfo(st, info) {
			t.Errorf("Stat = %+v, %v; want %+v", st, err, info)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), []byte("source"))
		assertMissing(t, s, "src")
		assertNoLeftovers(t, s)
	})

	t.Run("a missing src is ErrNotExist", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "other", []byte("x"))
		for _, src := range []string{"nothing", "other/below"} {
			if _, err := s.Move(callCtx(t), src, "dst", backend.MoveOptions{}); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Move %q = %v, want fs.ErrNotExist", src, err)
			}
		}
		assertMissing(t, s, "dst")
	})

	t.Run("a folder at src is ErrIsFolder", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "dir/f", []byte("x"))
		if _, err := s.Move(callCtx(t), "dir", "dst", backend.MoveOptions{Overwrite: true}); !errors.Is(err, backend.ErrIsFolder) {
			t.Fatalf("Move = %v, want backend.ErrIsFolder", err)
		}
		mustEqual(t, "dir/f", readAll(t, s, "dir/f"), []byte("x"))
		assertMissing(t, s, "dst")
	})

	t.Run("a folder at dst is ErrIsFolder", func(t *testing.T) {
		s := newStore(t, ep, "room")
		mustCreate(t, s, "src", []byte("x"))
		mustCreate(t, s, "dir/f", []byte("y"))
		for _, overwrite := range []bool{false, true} {
			if _, err := s.Move(callCtx(t), "src", "dir", backend.MoveOptions{Overwrite: overwrite}); !errors.Is(err, backend.ErrIsFolder) {
				t.Errorf("Move (Overwrite %v) = %v, want backend.ErrIsFolder", overwrite, err)
			}
		}
		mustEqual(t, "src", readAll(t, s, "src"), []byte("x"))
		if got := s.objects(t); !sameNames(got, []string{s.key("src"), s.key("dir/f")}) {
			t.Errorf("bucket holds %q", got)
		}
	})

	t.Run("an appender's claim on src makes Move a conflict that changes nothing", func(t *testing.T) {
		s := newStore(t, ep, "room")
		before := mustCreate(t, s, "src", []byte("x"))
		gen := generationOf(t, before)
		claim := s.claimName(s.key("src"), gen)
		if err := s.put(t.Context(), claim, []byte("held")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{}); !errors.Is(err, backend.ErrConflict) {
			t.Fatalf("Move = %v, want backend.ErrConflict", err)
		}
		mustEqual(t, "src", readAll(t, s, "src"), []byte("x"))
		assertMissing(t, s, "dst")
		if err := s.client.Bucket(s.bucket).Object(claim).Delete(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{}); err != nil {
			t.Fatalf("Move once the claim is released: %v", err)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), []byte("x"))
		assertNoLeftovers(t, s)
	})
}

func generationOf(t *testing.T, info backend.Info) int64 {
	t.Helper()
	gen, err := strconv.ParseInt(info.ETag, 10, 64)
	if err != nil {
		t.Fatalf("ETag %q is not a generation", info.ETag)
	}
	return gen
}

// TestMoveRaces makes the races of a Move deterministic: a hook in the
// Backend's transport acts right before the request that matters goes
// out.
func TestMoveRaces(t *testing.T) {
	ep := newServer(t)
	old := randBytes(testChunk+3, 11)
	newer := []byte("rewritten while the move ran")

	for _, overwrite := range []bool{false, true} {
		name := "src rewritten before the delete is a conflict: src keeps the new bytes, the copy is gone"
		if overwrite {
			name = "with Overwrite, src rewritten before the delete is a conflict: src keeps the new bytes, dst the earlier ones"
		}
		t.Run(name, func(t *testing.T) {
			var s *store
			var once sync.Once
			var putErr error
			s = hookedStore(t, ep, func(r *http.Request) {
				if isDeleteOf(r, s.key("src")) {
					once.Do(func() { putErr = s.put(r.Context(), s.key("src"), newer) })
				}
			})
			mustCreate(t, s, "src", old)
			if overwrite {
				mustCreate(t, s, "dst", []byte("destination"))
			}
			_, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{Overwrite: overwrite})
			if putErr != nil {
				t.Fatalf("rewriting src: %v", putErr)
			}
			if !errors.Is(err, backend.ErrConflict) {
				t.Fatalf("Move = %v, want backend.ErrConflict", err)
			}
			mustEqual(t, "src", readAll(t, s, "src"), newer)
			if overwrite {
				mustEqual(t, "dst", readAll(t, s, "dst"), old)
			} else {
				assertMissing(t, s, "dst")
			}
			assertNoLeftovers(t, s)
		})
	}

	t.Run("an append during the move loses to it, then lands on a new src", func(t *testing.T) {
		var s, other *store
		var once sync.Once
		var w backend.Writer
		var during error
		s = hookedStore(t, ep, func(r *http.Request) {
			if !isDeleteOf(r, s.key("src")) {
				return
			}
			once.Do(func() {
				var err error
				if w, err = other.Append(r.Context(), "src", backend.WriteOptions{}); err != nil {
					during = err
					return
				}
				if err := w.Write(r.Context(), newer); err != nil {
					during = err
					return
				}
				_, during = w.Commit(r.Context())
			})
		})
		other = s.reopen(t)
		mustCreate(t, s, "src", old)
		if _, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{}); err != nil {
			t.Fatalf("Move: %v", err)
		}
		if !errors.Is(during, backend.ErrConflict) {
			t.Fatalf("append committed during the move = %v, want backend.ErrConflict", during)
		}
		if _, err := commitRetrying(callCtx(t), w); err != nil {
			t.Fatalf("append after the move: %v", err)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), old)
		mustEqual(t, "src", readAll(t, s, "src"), newer)
		assertNoLeftovers(t, s)
	})

	t.Run("a lost response to the delete still completes the move", func(t *testing.T) {
		var s *store
		var once sync.Once
		s = storeWith(t, ep, roundTripper(func(r *http.Request) (*http.Response, error) {
			res, err := http.DefaultTransport.RoundTrip(r)
			lost := false
			if err == nil && isDeleteOf(r, s.key("src")) {
				once.Do(func() { lost = true })
			}
			if lost {
				res.Body.Close()
				return nil, io.ErrUnexpectedEOF
			}
			return res, err
		}))
		mustCreate(t, s, "src", old)
		info, err := s.Move(callCtx(t), "src", "dst", backend.MoveOptions{})
		if err != nil {
			t.Fatalf("Move: %v", err)
		}
		if st, err := s.Stat(t.Context(), "dst"); err != nil || !sameInfo(st, info) {
			t.Errorf("Stat = %+v, %v; want %+v", st, err, info)
		}
		mustEqual(t, "dst", readAll(t, s, "dst"), old)
		assertMissing(t, s, "src")
		assertNoLeftovers(t, s)
	})

	cancelled := []struct {
		name string
		at   func(s *store, r *http.Request) bool
	}{
		{"a context already cancelled", nil},
		{"a context cancelled before the copy", func(_ *store, r *http.Request) bool { return isCopy(r) }},
		{"a context cancelled before the delete", func(s *store, r *http.Request) bool { return isDeleteOf(r, s.key("src")) }},
	}
	for _, tc := range cancelled {
		t.Run(tc.name+" leaves src whole and no dst", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), callTimeout)
			defer cancel()
			var s *store
			var once sync.Once
			copied := false
			s = hookedStore(t, ep, func(r *http.Request) {
				if tc.at != nil && tc.at(s, r) {
					once.Do(cancel)
				}
				if isCopy(r) && r.Context().Err() == nil {
					copied = true
				}
			})
			mustCreate(t, s, "src", old)
			if tc.at == nil {
				cancel()
			}
			_, err := s.Move(ctx, "src", "dst", backend.MoveOptions{})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Move = %v, want context.Canceled", err)
			}
			if tc.name == "a context cancelled before the delete" && !copied {
				t.Fatal("the copy never went out; the case tests nothing")
			}
			mustEqual(t, "src", readAll(t, s, "src"), old)
			assertMissing(t, s, "dst")
			assertNoLeftovers(t, s)
		})
	}
}
