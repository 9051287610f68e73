package backend_s3_test

import (
	"bytes"
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
	"github.com/roomstore/roomstore/backend_s3"
)

// TestAppendSizes appends every combination of old and new sizes around
// S3's 5 MiB minimum part, where the commit switches between PutObject,
// server-side copies and downloaded pieces.
func TestAppendSizes(t *testing.T) {
	g := startGateway(t)
	oldSizes := []struct {
		name string
		size int // -1: no file
	}{
		{"missing", -1},
		{"empty", 0},
		{"1KiB", 1 * kib},
		{"part-1", part - 1},
		{"part", part},
		{"part+1", part + 1},
		{"12MiB", 12 * mib},
	}
	newSizes := []struct {
		name string
		size int
	}{
		{"nothing", 0},
		{"1KiB+3", 1*kib + 3},
		{"part+1", part + 1},
		{"2part+1", 2*part + 1},
	}
	for i, o := range oldSizes {
		for j, n := range newSizes {
			t.Run(fmt.Sprintf("old %s + new %s", o.name, n.name), func(t *testing.T) {
				t.Parallel()
				// downloaded counts the bytes asked of the file itself
				// beyond the first 64 KiB, which every append reads to learn
				// the file's version and size.
				var downloaded, copies atomic.Int64
				counting := g.watchedClient(func(op string, input any) {
					switch in := input.(type) {
					case *s3.GetObjectInput:
						if aws.ToString(in.Key) == "room/dir/file.bin" && aws.ToString(in.Range) != "bytes=0-65535" {
							downloaded.Add(1)
						}
					case *s3.UploadPartCopyInput:
						copies.Add(1)
					}
				})
				s := g.storeIn(t, g.NewBucket(t), "room", counting)
				var old []byte
				if o.size >= 0 {
					old = content(uint64(100+i), o.size)
					put(t, s, "dir/file.bin", old)
				}
				added := content(uint64(200+j), n.size)
				downloaded.Store(0)
				info := appendData(t, s, "dir/file.bin", added)
				if o.size >= part && downloaded.Load() != 0 {
					t.Errorf("append to a %d-byte file downloaded it (%d GETs); want a server-side copy", o.size, downloaded.Load())
				}
				if o.size >= part && n.size > 0 && copies.Load() == 0 {
					t.Errorf("append to a %d-byte file made no UploadPartCopy", o.size)
				}
				want := append(bytes.Clone(old), added...)
				if info.Size != int64(len(want)) {
					t.Errorf("Commit Info.Size = %d, want %d", info.Size, len(want))
				}
				if info.ETag == "" || info.ModTime.IsZero() {
					t.Errorf("Commit Info = %+v, want an ETag and a ModTime", info)
				}
				assertContent(t, s, "dir/file.bin", want)
				st, err := s.Stat(t.Context(), "dir/file.bin")
				if err != nil {
					t.Fatal(err)
				}
				if st.ETag != info.ETag {
					t.Errorf("Stat ETag %q, Commit ETag %q", st.ETag, info.ETag)
				}
			})
		}
	}
}

// TestAppendWithLargerPartSize covers the pieces a part size above the S3
// minimum produces: a temporary of one 6 MiB part whose rest, after
// topping up a small old file to 5 MiB, is too small to be copied.
func TestAppendWithLargerPartSize(t *testing.T) {
	g := startGateway(t)
	for _, tc := range []struct{ old, added int }{
		{1 * kib, 6*mib + 1},
		{1 * kib, 6 * mib},
		{0, 6*mib + 5},
		{5 * mib, 12*mib + 1},
	} {
		t.Run(fmt.Sprintf("old %d + new %d", tc.old, tc.added), func(t *testing.T) {
			s := g.newStore(t, backend_s3.WithPartSize(6*mib))
			old := content(1, tc.old)
			put(t, s, "f", old)
			added := content(2, tc.added)
			appendData(t, s, "f", added)
			assertContent(t, s, "f", append(old, added...))
		})
	}
}

// TestAppendConflict slips a competing write into each guarded step of an
// append commit: the commit must report backend.ErrConflict, keep its
// staged bytes, and succeed on the next Commit on top of the competing
// content.
func TestAppendConflict(t *testing.T) {
	g := startGateway(t)
	cases := []struct {
		name      string
		old       int // -1: no file
		added     int
		op        string // the request the competing write precedes
		nth       int    // ... the nth time it is sent (0 means 1)
		competing int    // -1: the competitor deletes the file
	}{
		{"missing file created before the create-only put", -1, 100, "PutObject", 0, 300},
		{"missing file created before the staged bytes are copied", -1, part + 10, "UploadPartCopy", 0, 300},
		// The first completion finishes the temporary, the second the file.
		{"missing file created before the create-only completion", -1, part + 10, "CompleteMultipartUpload", 2, 300},
		{"small file changed before the guarded put", 1 * kib, 100, "PutObject", 0, 2 * kib},
		// The first GET reads small files whole; a larger one is fetched by
		// a second, guarded GET.
		{"mid-size file changed before its download", 100 * kib, part + 1, "GetObject", 2, 3 * kib},
		{"mid-size file changed before the guarded put", 100 * kib, 10, "PutObject", 0, 200 * kib},
		{"small file changed before the guarded completion", 1 * kib, 2*part + 1, "CompleteMultipartUpload", 2, 3 * kib},
		{"large file changed before the server-side copy", 6 * mib, 100, "UploadPartCopy", 0, 5*mib + 512},
		{"large file changed before the guarded completion", 6 * mib, 100, "CompleteMultipartUpload", 0, 7 * mib},
		{"large file deleted before the server-side copy", 6 * mib, 2*part + 1, "UploadPartCopy", 0, -1},
		{"small file deleted before the guarded put", 10, 10, "PutObject", 0, -1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bucket := g.NewBucket(t)
			other := g.storeIn(t, bucket, "room", g.client)
			var competing []byte
			compete := func(ctx context.Context) error {
				if tc.competing < 0 {
					return other.Remove(ctx, "f", backend.RemoveOptions{})
				}
				competing = content(uint64(1000+i), tc.competing)
				put(t, other, "f", competing)
				return nil
			}
			hooks := &hookSwitch{}
			s := g.storeIn(t, bucket, "room", g.hookedClient(hooks.before))
			if tc.old >= 0 {
				put(t, s, "f", content(uint64(i), tc.old))
			}
			added := content(uint64(500+i), tc.added)
			w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, added, 64*kib)
			hooks.set(nthBefore(tc.op, int64(max(tc.nth, 1)), compete))

			_, err = w.Commit(t.Context())
			if !errors.Is(err, backend.ErrConflict) {
				t.Fatalf("first Commit: %v, want ErrConflict", err)
			}
			var api smithy.APIError
			if !errors.As(err, &api) {
				t.Errorf("ErrConflict %v does not carry the S3 error", err)
			}
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrExist) {
				t.Errorf("ErrConflict %v also claims a missing or existing file", err)
			}
			if err := w.Write(t.Context(), []byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Write after a lost commit: %v, want fs.ErrClosed", err)
			}
			hooks.set(nil)
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatalf("second Commit: %v", err)
			}
			assertContent(t, s, "f", append(competing, added...))
		})
	}
}

// nthBefore returns a hook that runs fn just before the nth time op is
// sent.
func nthBefore(op string, nth int64, fn func(ctx context.Context) error) func(context.Context, string) error {
	var n atomic.Int64
	return func(ctx context.Context, got string) error {
		if got == op && n.Add(1) == nth {
			return fn(ctx)
		}
		return nil
	}
}

// hookSwitch lets a test arm a client hook after setting up through the
// same client.
type hookSwitch struct {
	mu sync.Mutex
	fn func(context.Context, string) error
}

func (h *hookSwitch) set(fn func(context.Context, string) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fn = fn
}

func (h *hookSwitch) before(ctx context.Context, op string) error {
	h.mu.Lock()
	fn := h.fn
	h.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(ctx, op)
}

// TestAppendAbortAfterConflictRemovesTemporary checks that a writer left
// in the retry state by a lost race still cleans up on Abort.
func TestAppendAbortAfterConflictRemovesTemporary(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	other := g.storeIn(t, bucket, "room", g.client)
	hooks := &hookSwitch{}
	s := g.storeIn(t, bucket, "room", g.hookedClient(hooks.before))
	put(t, s, "f", content(1, 6*mib))
	w, err := s.Append(t.Context(), "f", backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, w, content(2, 2*part+3), mib)
	competing := content(3, 10)
	hooks.set(nthBefore("UploadPartCopy", 1, func(context.Context) error {
		put(t, other, "f", competing)
		return nil
	}))
	if _, err := w.Commit(t.Context()); !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("Commit: %v, want ErrConflict", err)
	}
	if got := names(t, s, ""); joinNames(got) != "f" {
		t.Errorf("List during a pending append = %q, want only f (no temporaries)", got)
	}
	if err := w.Abort(t.Context()); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	if err := w.Abort(t.Context()); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Commit after Abort: %v, want fs.ErrClosed", err)
	}
	assertContent(t, s, "f", competing)
}

// TestConcurrentAppendsAcrossBackends runs appenders on separate Backend
// values (as separate processes would) and retries lost races like the
// engine does: every record must land exactly once.
func TestConcurrentAppendsAcrossBackends(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	const writers, appends = 8, 4
	var wg sync.WaitGroup
	var conflicts atomic.Int64
	for i := range writers {
		s := g.storeIn(t, bucket, "room", g.Client())
		wg.Go(func() {
			for j := range appends {
				w, err := s.Append(t.Context(), "log", backend.WriteOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				if err := w.Write(t.Context(), fmt.Appendf(nil, "w%d-%d\n", i, j)); err != nil {
					t.Error(err)
					return
				}
				for {
					_, err := w.Commit(t.Context())
					if err == nil {
						break
					}
					if !errors.Is(err, backend.ErrConflict) {
						t.Error(err)
						return
					}
					conflicts.Add(1)
				}
			}
		})
	}
	wg.Wait()
	s := g.storeIn(t, bucket, "room", g.client)
	data, _ := readAll(t, s, "log")
	for i := range writers {
		for j := range appends {
			rec := fmt.Sprintf("w%d-%d\n", i, j)
			if n := bytes.Count(data, []byte(rec)); n != 1 {
				t.Errorf("record %q appears %d times", rec, n)
			}
		}
	}
	if got, want := len(data), writers*appends*len("w0-0\n"); got != want {
		t.Errorf("log is %d bytes, want %d", got, want)
	}
	t.Logf("%d lost races retried", conflicts.Load())
}
