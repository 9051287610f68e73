package backend_s3_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/roompath"
)

// moveStore is a store whose client runs a switchable hook, and a second
// store over the same room with a plain client, for the writes that
// compete with a Move behind its back.
type moveStore struct {
	*store
	other *store
	hooks *hookSwitch
	// ops lists the operations the hooked client sent since the last
	// reset.
	mu  sync.Mutex
	ops []string
}

func (g *gateway) newMoveStore(t *testing.T) *moveStore {
	t.Helper()
	bucket := g.NewBucket(t)
	m := &moveStore{hooks: &hookSwitch{}, other: g.storeIn(t, bucket, "room", g.client)}
	m.store = g.storeIn(t, bucket, "room", g.hookedClient(func(ctx context.Context, op string) error {
		m.mu.Lock()
		m.ops = append(m.ops, op)
		m.mu.Unlock()
		return m.hooks.before(ctx, op)
	}))
	return m
}

// sent returns the operations sent since the last call and forgets them.
func (m *moveStore) sent() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ops := m.ops
	m.ops = nil
	return ops
}

func (s *store) rawHead(t *testing.T, path string) *s3.HeadObjectOutput {
	t.Helper()
	out, err := s.gw.client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + "/" + path)})
	if err != nil {
		t.Fatalf("HeadObject %q: %v", path, err)
	}
	return out
}

func assertMissing(t *testing.T, b backend.Backend, path string) {
	t.Helper()
	if info, err := b.Stat(t.Context(), path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat %q = %+v, %v; want fs.ErrNotExist", path, info, err)
	}
}

// assertMoved checks that dst holds data, that info is what Stat and
// List report for it, and that src is gone.
func assertMoved(t *testing.T, s *store, info backend.Info, src, dst string, data []byte) {
	t.Helper()
	assertContent(t, s, dst, data)
	assertMovedInfo(t, s, info, dst, len(data))
	assertMissing(t, s, src)
}

// assertMovedInfo checks that the Info Move returned is what Stat and
// List report for dst.
func assertMovedInfo(t *testing.T, s *store, info backend.Info, dst string, size int) {
	t.Helper()
	st, err := s.Stat(t.Context(), dst)
	if err != nil {
		t.Fatal(err)
	}
	if info.Path != dst || info.IsFolder || info.Size != int64(size) || info.ETag == "" || info.ModTime.IsZero() {
		t.Errorf("Move Info = %+v, want the file %q of %d bytes", info, dst, size)
	}
	if info.Path != st.Path || info.Size != st.Size || info.ETag != st.ETag || !info.ModTime.Equal(st.ModTime) {
		t.Errorf("Move Info = %+v, later Stat = %+v", info, st)
	}
	for l, err := range s.List(t.Context(), roompath.Parent(dst)) {
		if err != nil {
			t.Fatal(err)
		}
		if l.Path == dst && (l.Size != info.Size || !l.ModTime.Equal(info.ModTime) || !strings.HasPrefix(info.ETag, l.ETag)) {
			t.Errorf("List entry %+v disagrees with Move Info %+v", l, info)
		}
	}
}

func TestMove(t *testing.T) {
	g := startGateway(t)

	t.Run("a file moves whole and its Info is what Stat and List report", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		data := content(1, 3*kib)
		w, err := s.Create(t.Context(), "a/src.txt", backend.WriteOptions{ContentType: "text/plain"})
		if err != nil {
			t.Fatal(err)
		}
		writeAll(t, w, data, kib)
		before, err := w.Commit(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Move(t.Context(), "a/src.txt", "b/c/dst.txt", backend.MoveOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertMoved(t, s, info, "a/src.txt", "b/c/dst.txt", data)
		if info.ETag == before.ETag {
			t.Errorf("dst kept src's ETag %q: a move is a new commit at dst", info.ETag)
		}
		if got, want := names(t, s, ""), []string{"b/"}; !sameSet(got, want) {
			t.Errorf("List root = %q, want %q (src's folder pruned)", got, want)
		}
		if ct := aws.ToString(s.rawHead(t, "b/c/dst.txt").ContentType); ct != "text/plain" {
			t.Errorf("dst's content type = %q, want src's", ct)
		}
	})

	for _, overwrite := range []bool{false, true} {
		name := map[bool]string{false: "without Overwrite", true: "with Overwrite"}[overwrite]

		t.Run("an empty file moves "+name, func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "src", nil)
			if overwrite {
				put(t, s, "dst", []byte("old"))
			}
			info, err := s.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: overwrite})
			if err != nil {
				t.Fatal(err)
			}
			assertMoved(t, s, info, "src", "dst", nil)
		})

		t.Run("a file larger than a part moves "+name, func(t *testing.T) {
			t.Parallel()
			m := g.newMoveStore(t)
			data := content(2, 2*part+123)
			put(t, m, "big", data)
			if overwrite {
				put(t, m, "dst", []byte("old"))
			}
			m.sent()
			info, err := m.Move(t.Context(), "big", "dst", backend.MoveOptions{Overwrite: overwrite})
			if err != nil {
				t.Fatal(err)
			}
			ops := joinNames(m.sent())
			// Only a multipart upload can make the copy create-only.
			want := map[bool]string{false: "UploadPartCopy", true: "CopyObject"}[overwrite]
			if !strings.Contains(ops, want) {
				t.Errorf("Move sent %s, want a %s", ops, want)
			}
			assertMoved(t, m.store, info, "big", "dst", data)
		})

		t.Run("a missing src is fs.ErrNotExist "+name, func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "dst", []byte("keep"))
			_, err := s.Move(t.Context(), "missing", "dst", backend.MoveOptions{Overwrite: overwrite})
			assertIs(t, err, fs.ErrNotExist)
			var api smithy.APIError
			if !errors.As(err, &api) {
				t.Errorf("%v does not carry the S3 error", err)
			}
			assertContent(t, s, "dst", []byte("keep"))
		})

		for _, tc := range []struct {
			name     string
			files    [][2]string // path and content, written first
			src, dst string
			want     error
			missing  string // a path the move must not create
		}{
			{"a folder src is ErrIsFolder ", [][2]string{{"dir/f", "f"}}, "dir", "dst", backend.ErrIsFolder, "dst"},
			{"a folder dst is ErrIsFolder ", [][2]string{{"src", "src"}, {"dir/f", "f"}}, "src", "dir", backend.ErrIsFolder, ""},
			{"a dst below a file is ErrNotFolder on versitygw ", [][2]string{{"src", "src"}, {"file", "file"}}, "src", "file/dst", backend.ErrNotFolder, ""},
		} {
			t.Run(tc.name+name, func(t *testing.T) {
				t.Parallel()
				s := g.newStore(t)
				for _, f := range tc.files {
					put(t, s, f[0], []byte(f[1]))
				}
				_, err := s.Move(t.Context(), tc.src, tc.dst, backend.MoveOptions{Overwrite: overwrite})
				assertIs(t, err, tc.want)
				for _, f := range tc.files {
					assertContent(t, s, f[0], []byte(f[1]))
				}
				if tc.missing != "" {
					assertMissing(t, s, tc.missing)
				}
			})
		}
	}

	t.Run("onto a file without Overwrite is fs.ErrExist and changes nothing", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		put(t, s, "src", []byte("src"))
		put(t, s, "dst", []byte("dst"))
		_, err := s.Move(t.Context(), "src", "dst", backend.MoveOptions{})
		assertIs(t, err, fs.ErrExist)
		assertContent(t, s, "src", []byte("src"))
		assertContent(t, s, "dst", []byte("dst"))
	})

	t.Run("onto a file with Overwrite replaces it", func(t *testing.T) {
		t.Parallel()
		s := g.newStore(t)
		data := content(3, 10*kib)
		put(t, s, "src", data)
		old := put(t, s, "dst", []byte("dst"))
		info, err := s.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: true})
		if err != nil {
			t.Fatal(err)
		}
		assertMoved(t, s, info, "src", "dst", data)
		if info.ETag == old.ETag {
			t.Errorf("dst's ETag %q did not change", info.ETag)
		}
	})

	t.Run("a file created at dst during the copy wins: fs.ErrExist, and it stays", func(t *testing.T) {
		t.Parallel()
		m := g.newMoveStore(t)
		data := content(4, part+1)
		put(t, m, "src", data)
		theirs := []byte("created meanwhile")
		m.hooks.set(nthBefore("CompleteMultipartUpload", 1, func(context.Context) error {
			put(t, m.other, "dst", theirs)
			return nil
		}))
		_, err := m.Move(t.Context(), "src", "dst", backend.MoveOptions{})
		assertIs(t, err, fs.ErrExist)
		var api smithy.APIError
		if !errors.As(err, &api) {
			t.Errorf("%v does not carry the S3 error", err)
		}
		assertContent(t, m, "dst", theirs)
		assertContent(t, m, "src", data)
	})
}

// moveStep is a case of a Move of a src of size bytes, with or without
// Overwrite, that something interrupts before its request op.
type moveStep struct {
	name      string
	size      int
	overwrite bool
	op        string
}

// TestMoveConflict slips an append to src into a Move: before its
// removal of src (the copy is then stale) and before its copy. Move must
// return ErrConflict with src keeping every byte and, without Overwrite,
// no file at dst; a second Move then succeeds.
func TestMoveConflict(t *testing.T) {
	g := startGateway(t)
	for _, tc := range []moveStep{ // op: the request the append slips in before
		{"an append before src is removed, without Overwrite", 3 * kib, false, "DeleteObject"},
		{"an append before src is removed, with Overwrite", 3 * kib, true, "DeleteObject"},
		{"an append to a large src before it is removed", part + 7, false, "DeleteObject"},
		{"an append before a copy in parts", part + 7, false, "UploadPartCopy"},
		{"an append before a CopyObject", 3 * kib, true, "CopyObject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := g.newMoveStore(t)
			old := content(5, tc.size)
			put(t, m, "src", old)
			var dstBefore []byte
			if tc.overwrite {
				dstBefore = []byte("dst before")
				put(t, m, "dst", dstBefore)
			}
			added := []byte("appended during the move")
			m.hooks.set(nthBefore(tc.op, 1, func(context.Context) error {
				appendData(t, m.other, "src", added)
				return nil
			}))
			_, err := m.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: tc.overwrite})
			m.hooks.set(nil)
			assertIs(t, err, backend.ErrConflict)
			var api smithy.APIError
			if !errors.As(err, &api) {
				t.Errorf("ErrConflict %v does not carry the S3 error", err)
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
				t.Errorf("ErrConflict %v also claims a missing or existing file", err)
			}
			whole := append(bytes.Clone(old), added...)
			assertContent(t, m, "src", whole)
			switch {
			case !tc.overwrite:
				assertMissing(t, m, "dst")
			case tc.op == "DeleteObject":
				assertContent(t, m, "dst", old) // a copy of the earlier version
			default:
				assertContent(t, m, "dst", dstBefore)
			}

			info, err := m.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: tc.overwrite})
			if err != nil {
				t.Fatalf("second Move: %v", err)
			}
			assertMoved(t, m.store, info, "src", "dst", whole)
		})
	}
}

// TestMoveCancelled ends a Move's context at each step. Before src's
// removal is sent, src stays as it was and the copy is removed, even one
// whose answer was lost after the server made it. Once the removal may
// have been sent, the move is finished rather than undone.
func TestMoveCancelled(t *testing.T) {
	g := startGateway(t)

	for _, tc := range []moveStep{ // op: the request the context ends before
		{"during a copy in parts", part + 1, false, "UploadPartCopy"},
		{"before the copy is completed", 3 * kib, false, "CompleteMultipartUpload"},
		{"before an empty copy is written", 0, false, "PutObject"},
		{"before a CopyObject", 3 * kib, true, "CopyObject"},
	} {
		t.Run("a Move cancelled "+tc.name+" leaves src and dst as they were", func(t *testing.T) {
			t.Parallel()
			m := g.newMoveStore(t)
			data := content(6, tc.size)
			put(t, m, "src", data)
			if tc.overwrite {
				put(t, m, "dst", []byte("dst"))
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			m.hooks.set(nthBefore(tc.op, 1, func(context.Context) error {
				cancel()
				return nil
			}))
			_, err := m.Move(ctx, "src", "dst", backend.MoveOptions{Overwrite: tc.overwrite})
			m.hooks.set(nil)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Move = %v, want context.Canceled", err)
			}
			assertContent(t, m, "src", data)
			if tc.overwrite {
				assertContent(t, m, "dst", []byte("dst"))
			} else {
				assertMissing(t, m, "dst")
			}
		})
	}

	t.Run("a Move cancelled after the server made its copy leaves src intact and no dst", func(t *testing.T) {
		t.Parallel()
		bucket := g.NewBucket(t)
		var (
			mu     sync.Mutex
			cancel context.CancelFunc
		)
		client := g.answeredClient(func(op string, input any, err error) error {
			mu.Lock()
			defer mu.Unlock()
			if op != "CompleteMultipartUpload" || err != nil || cancel == nil {
				return err
			}
			cancel()
			cancel = nil
			return context.Canceled
		})
		s := g.storeIn(t, bucket, "room", client)
		data := content(7, part+5)
		put(t, s, "src", data)
		ctx, c := context.WithCancel(t.Context())
		defer c()
		mu.Lock()
		cancel = c
		mu.Unlock()
		_, err := s.Move(ctx, "src", "dst", backend.MoveOptions{})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Move = %v, want context.Canceled", err)
		}
		mu.Lock()
		cut := cancel == nil
		mu.Unlock()
		if !cut {
			t.Fatal("the copy's completion was never cut short")
		}
		assertContent(t, s, "src", data)
		assertMissing(t, s, "dst")
	})

	t.Run("a Move cancelled as it removes src finishes the move", func(t *testing.T) {
		t.Parallel()
		m := g.newMoveStore(t)
		data := content(8, 3*kib)
		put(t, m, "src", data)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		m.hooks.set(nthBefore("DeleteObject", 1, func(context.Context) error {
			cancel()
			return nil
		}))
		_, err := m.Move(ctx, "src", "dst", backend.MoveOptions{})
		m.hooks.set(nil)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Move = %v, want context.Canceled", err)
		}
		assertContent(t, m, "dst", data)
		assertMissing(t, m, "src")
	})
}
