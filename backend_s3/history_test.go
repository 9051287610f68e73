package backend_s3_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/roompath"
)

// alice is the participant the tests' changes are made by.
var alice = &backend.Keep{Participant: "alice"}

// versionKeys lists the keys of the store's kept versions, behind the
// backend's back.
func (s *store) versionKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	pages := s3.NewListObjectsV2Paginator(s.gw.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.prefix + "/" + roompath.ReservedPrefix + "/versions/"),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatalf("ListObjectsV2: %v", err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys
}

// assertVersionCount checks how many kept versions the store holds.
func (s *store) assertVersionCount(t *testing.T, want int) {
	t.Helper()
	if keys := s.versionKeys(t); len(keys) != want {
		t.Fatalf("%d kept versions in the bucket, want %d: %q", len(keys), want, keys)
	}
}

// commitWith commits data as the file at path through a Create writer
// with opts, aborting the writer afterwards.
func commitWith(t *testing.T, b backend.Backend, path string, data []byte, opts backend.WriteOptions) (backend.Info, error) {
	t.Helper()
	w, err := b.Create(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Create %q: %v", path, err)
	}
	return finish(t, w, data)
}

// appendWith appends data to the file at path with opts.
func appendWith(t *testing.T, b backend.Backend, path string, data []byte, opts backend.WriteOptions) (backend.Info, error) {
	t.Helper()
	w, err := b.Append(t.Context(), path, opts)
	if err != nil {
		t.Fatalf("Append %q: %v", path, err)
	}
	return finish(t, w, data)
}

func finish(t *testing.T, w backend.Writer, data []byte) (backend.Info, error) {
	t.Helper()
	writeAll(t, w, data, mib)
	defer func() {
		if err := w.Abort(context.WithoutCancel(t.Context())); err != nil {
			t.Errorf("Abort: %v", err)
		}
	}()
	return w.Commit(t.Context())
}

func stat(t *testing.T, b backend.Backend, path string) backend.Info {
	t.Helper()
	info, err := b.Stat(t.Context(), path)
	if err != nil {
		t.Fatalf("Stat %q: %v", path, err)
	}
	return info
}

// versionsOf returns the kept versions of path, oldest first.
func versionsOf(t *testing.T, b backend.Backend, path string) []backend.Version {
	t.Helper()
	var out []backend.Version
	for v, err := range b.Versions(t.Context(), path) {
		if err != nil {
			t.Fatalf("Versions %q: %v", path, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b backend.Version) int { return a.Replaced.Compare(b.Replaced) })
	return out
}

// keptUnder returns the kept versions at or beneath dir, by path and
// then oldest first.
func keptUnder(t *testing.T, b backend.Backend, dir string) []backend.Version {
	t.Helper()
	var out []backend.Version
	for v, err := range b.Kept(t.Context(), dir) {
		if err != nil {
			t.Fatalf("Kept %q: %v", dir, err)
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b backend.Version) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), a.Replaced.Compare(b.Replaced))
	})
	return out
}

// readVersion reads n bytes (n < 0: to the end) of a kept version from
// off.
func readVersion(t *testing.T, b backend.Backend, path, id string, off, n int64) ([]byte, backend.Version) {
	t.Helper()
	r, v, err := b.ReadVersion(t.Context(), path, id, off, n)
	if err != nil {
		t.Fatalf("ReadVersion %q %s [%d, %d): %v", path, id, off, n, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("ReadVersion %q %s: %v", path, id, err)
	}
	return data, v
}

// assertOneVersion checks that path has exactly one kept version, of the
// file that Stat described as was, holding data, kept for reason, and
// returns it.
func assertOneVersion(t *testing.T, b backend.Backend, path string, was backend.Info, data []byte, reason string) backend.Version {
	t.Helper()
	vs := versionsOf(t, b, path)
	if len(vs) != 1 {
		t.Fatalf("%q has %d kept versions, want 1: %+v", path, len(vs), vs)
	}
	v := vs[0]
	if v.Path != path || v.ETag != was.ETag || v.Size != int64(len(data)) || !v.ModTime.Equal(was.ModTime) ||
		v.Reason != reason || v.Participant != alice.Participant {
		t.Errorf("kept version %+v; want path %q, ETag %q, size %d, ModTime %v, reason %q, participant %q",
			v, path, was.ETag, len(data), was.ModTime, reason, alice.Participant)
	}
	if got, _ := readVersion(t, b, path, v.ID, 0, -1); !bytes.Equal(got, data) {
		t.Errorf("kept version of %q holds %d bytes, want the %d of the version replaced", path, len(got), len(data))
	}
	return v
}

// notConflict checks that err is a failed precondition, which the engine
// never retries, and not a lost race, which it would.
func notConflict(t *testing.T, err error) {
	t.Helper()
	assertIs(t, err, backend.ErrPrecondition)
	if errors.Is(err, backend.ErrConflict) {
		t.Errorf("error %v is also a conflict: the engine would retry a change whose version is gone", err)
	}
}

// versitygw v1.8.0 honours the conditions kept versions and guarded
// removals rest on: x-amz-copy-source-if-match on CopyObject and If-Match
// on DeleteObject (each refused with 412 on a stale ETag); and a
// CompleteMultipartUpload refused by its condition leaves the upload to
// be completed later, which an overwrite that first tries If-None-Match
// "*" needs. A guarded DeleteObject of a missing key succeeds (204), as
// Remove's documentation says.
func TestServerHonoursConditions(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	c, ctx := g.client, t.Context()
	putRaw := func(key, body string) string {
		out, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: strings.NewReader(body)})
		if err != nil {
			t.Fatalf("PutObject: %v", err)
		}
		return aws.ToString(out.ETag)
	}
	exists := func(key string) bool {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		return err == nil
	}
	copyIf := func(dst, etag string) error {
		_, err := c.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket: aws.String(bucket), Key: aws.String(dst), CopySource: aws.String(bucket + "/f"),
			CopySourceIfMatch: aws.String(etag), MetadataDirective: types.MetadataDirectiveReplace,
		})
		return err
	}
	deleteIf := func(key, etag string) error {
		_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), IfMatch: aws.String(etag)})
		return err
	}
	stale := putRaw("f", "one")
	fresh := putRaw("f", "two")

	if err := copyIf("stale-copy", stale); !isStatus(err, 412) {
		t.Errorf("CopyObject with a stale x-amz-copy-source-if-match: %v, want 412", err)
	}
	if exists("stale-copy") {
		t.Error("a refused CopyObject made its copy")
	}
	if err := copyIf("copy", fresh); err != nil || !exists("copy") {
		t.Errorf("CopyObject with the current ETag: %v", err)
	}

	if err := deleteIf("f", stale); !isStatus(err, 412) {
		t.Errorf("DeleteObject with a stale If-Match: %v, want 412", err)
	}
	if !exists("f") {
		t.Fatal("a refused DeleteObject removed the object")
	}
	if err := deleteIf("f", fresh); err != nil || exists("f") {
		t.Errorf("DeleteObject with the current If-Match: %v (object still there: %v)", err, exists("f"))
	}
	if err := deleteIf("never", fresh); err != nil {
		t.Errorf("DeleteObject with If-Match of a missing key: %v, want success (versitygw answers 204)", err)
	}

	current := putRaw("m", "old")
	up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String("m")})
	if err != nil {
		t.Fatal(err)
	}
	part, err := c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String("m"), UploadId: up.UploadId,
		PartNumber: aws.Int32(1), Body: strings.NewReader("new")})
	if err != nil {
		t.Fatal(err)
	}
	complete := func(ifMatch, ifNoneMatch *string) error {
		_, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String(bucket), Key: aws.String("m"), UploadId: up.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: part.ETag}}},
			IfMatch:         ifMatch, IfNoneMatch: ifNoneMatch,
		})
		return err
	}
	if err := complete(nil, aws.String("*")); !isStatus(err, 412) {
		t.Fatalf("CompleteMultipartUpload with If-None-Match * over a file: %v, want 412", err)
	}
	if err := complete(aws.String(current), nil); err != nil {
		t.Fatalf("CompleteMultipartUpload again after a refusal, with If-Match: %v", err)
	}
}

func isStatus(err error, status int) bool {
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == status
}

// sizes are the two ways a Create commits: one PutObject, or the
// completion of a multipart upload.
var sizes = []struct {
	name string
	n    int
}{{"PutObject", 3 * kib}, {"multipart", part + 17}}

func TestCreatePreconditions(t *testing.T) {
	g := startGateway(t)
	for i, size := range sizes {
		t.Run(size.name, func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			data := func(n int) []byte { return content(uint64(100*i+n), size.n) }
			old := put(t, s, "f", data(1))

			if _, err := commitWith(t, s, "f", data(2), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}}); err != nil {
				t.Fatalf("Commit with IfMatch of the current version: %v", err)
			}
			assertContent(t, s, "f", data(2))

			_, err := commitWith(t, s, "f", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
			notConflict(t, err)
			assertContent(t, s, "f", data(2))

			_, err = commitWith(t, s, "g", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: old.ETag}})
			notConflict(t, err)
			assertMissing(t, s, "g")

			_, err = commitWith(t, s, "f", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
			notConflict(t, err)
			if errors.Is(err, fs.ErrExist) {
				t.Errorf("IfNoneMatch * over a file: %v is also fs.ErrExist", err)
			}
			if _, err := commitWith(t, s, "h", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}}); err != nil {
				t.Fatalf("IfNoneMatch * on a new file: %v", err)
			}
			assertContent(t, s, "h", data(3))

			cur := stat(t, s, "f")
			_, err = commitWith(t, s, "f", data(4), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: cur.ETag}})
			notConflict(t, err)
			if _, err := commitWith(t, s, "f", data(4), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: old.ETag}}); err != nil {
				t.Fatalf("IfNoneMatch of a version that is gone: %v", err)
			}
			assertContent(t, s, "f", data(4))

			// The version changes between Open and Commit.
			cur = stat(t, s, "f")
			w, err := s.Create(t.Context(), "f", backend.WriteOptions{Precondition: backend.Precondition{IfMatch: cur.ETag}})
			if err != nil {
				t.Fatal(err)
			}
			put(t, s, "f", data(5))
			_, err = finish(t, w, data(6))
			notConflict(t, err)
			assertContent(t, s, "f", data(5))

			// A rewrite of the very same bytes keeps S3's ETag but not the
			// file's: a precondition naming the version before it fails.
			cur = stat(t, s, "f")
			put(t, s, "f", data(5))
			_, err = commitWith(t, s, "f", data(7), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: cur.ETag}})
			notConflict(t, err)
			assertContent(t, s, "f", data(5))
		})
	}
}

func TestAppendPreconditions(t *testing.T) {
	g := startGateway(t)
	for i, size := range sizes {
		t.Run(size.name, func(t *testing.T) {
			t.Parallel()
			bucket := g.NewBucket(t)
			other := g.storeIn(t, bucket, "room", g.client)
			hooks := &hookSwitch{}
			s := g.storeIn(t, bucket, "room", g.hookedClient(hooks.before))
			data := func(n int) []byte { return content(uint64(100*i+n), size.n) }
			base := put(t, s, "f", data(1))

			if _, err := appendWith(t, s, "f", data(2), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: base.ETag}}); err != nil {
				t.Fatalf("append with IfMatch of the current version: %v", err)
			}
			want := slices.Concat(data(1), data(2))
			assertContent(t, s, "f", want)

			_, err := appendWith(t, s, "f", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: base.ETag}})
			notConflict(t, err)
			assertContent(t, s, "f", want)

			_, err = appendWith(t, s, "g", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfMatch: base.ETag}})
			notConflict(t, err)
			assertMissing(t, s, "g")

			_, err = appendWith(t, s, "f", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}})
			notConflict(t, err)
			if _, err := appendWith(t, s, "h", data(3), backend.WriteOptions{Precondition: backend.Precondition{IfNoneMatch: "*"}}); err != nil {
				t.Fatalf("append with IfNoneMatch * to a new file: %v", err)
			}

			// Another process appends between the attempt's look at the
			// file and its guarded commit: the version named is gone.
			cur := stat(t, s, "f")
			w, err := s.Append(t.Context(), "f", backend.WriteOptions{Precondition: backend.Precondition{IfMatch: cur.ETag}})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, data(4), mib)
			// The first write request after the attempt's GET is the
			// guarded PutObject, or the upload of the composed object.
			var slipped atomic.Int32
			hooks.set(func(ctx context.Context, op string) error {
				if (op == "PutObject" || op == "UploadPartCopy" || op == "UploadPart") && slipped.Add(1) == 1 {
					appendData(t, other, "f", []byte("<theirs>"))
				}
				return nil
			})
			_, err = w.Commit(t.Context())
			hooks.set(nil)
			if slipped.Load() == 0 {
				t.Fatal("the competing append never ran")
			}
			notConflict(t, err)
			if _, err := w.Commit(t.Context()); !errors.Is(err, fs.ErrClosed) {
				t.Errorf("Commit after a failed precondition: %v, want fs.ErrClosed (the writer is finished)", err)
			}
			if err := w.Abort(t.Context()); err != nil {
				t.Errorf("Abort: %v", err)
			}
			assertContent(t, s, "f", slices.Concat(want, []byte("<theirs>")))
		})
	}
}

func TestRemovePreconditions(t *testing.T) {
	g := startGateway(t)
	bucket := g.NewBucket(t)
	other := g.storeIn(t, bucket, "room", g.client)
	hooks := &hookSwitch{}
	s := g.storeIn(t, bucket, "room", g.hookedClient(hooks.before))
	old := put(t, s, "f", []byte("old"))
	cur := put(t, s, "f", []byte("current"))

	assertIs(t, s.Remove(t.Context(), "missing", backend.RemoveOptions{IfMatch: cur.ETag}), fs.ErrNotExist)
	notConflict(t, s.Remove(t.Context(), "f", backend.RemoveOptions{IfMatch: old.ETag}))
	assertContent(t, s, "f", []byte("current"))

	// Another process replaces the file between Remove's look and its
	// guarded deletion.
	var slipped atomic.Int32
	hooks.set(func(ctx context.Context, op string) error {
		if op == "DeleteObject" && slipped.Add(1) == 1 {
			put(t, other, "f", []byte("theirs"))
		}
		return nil
	})
	notConflict(t, s.Remove(t.Context(), "f", backend.RemoveOptions{IfMatch: cur.ETag}))
	hooks.set(nil)
	if slipped.Load() == 0 {
		t.Fatal("the competing write never ran")
	}
	assertContent(t, s, "f", []byte("theirs"))

	if err := s.Remove(t.Context(), "f", backend.RemoveOptions{IfMatch: stat(t, s, "f").ETag}); err != nil {
		t.Fatalf("Remove with IfMatch of the current version: %v", err)
	}
	assertMissing(t, s, "f")
}

func TestMovePreconditions(t *testing.T) {
	g := startGateway(t)
	m := g.newMoveStore(t)
	old := put(t, m, "src", []byte("old"))
	cur := put(t, m, "src", []byte("current"))

	_, err := m.Move(t.Context(), "missing", "dst", backend.MoveOptions{IfMatch: cur.ETag})
	assertIs(t, err, fs.ErrNotExist)
	_, err = m.Move(t.Context(), "src", "dst", backend.MoveOptions{IfMatch: old.ETag})
	notConflict(t, err)
	assertContent(t, m, "src", []byte("current"))
	assertMissing(t, m, "dst")

	// Another process appends to src between the copy and the removal.
	var slipped atomic.Int32
	m.hooks.set(func(ctx context.Context, op string) error {
		if op == "DeleteObject" && slipped.Add(1) == 1 {
			appendData(t, m.other, "src", []byte("+theirs"))
		}
		return nil
	})
	_, err = m.Move(t.Context(), "src", "dst", backend.MoveOptions{IfMatch: cur.ETag})
	m.hooks.set(nil)
	if slipped.Load() == 0 {
		t.Fatal("the competing append never ran")
	}
	notConflict(t, err)
	assertContent(t, m, "src", []byte("current+theirs"))
	assertMissing(t, m, "dst")

	info, err := m.Move(t.Context(), "src", "dst", backend.MoveOptions{IfMatch: stat(t, m, "src").ETag})
	if err != nil {
		t.Fatalf("Move with IfMatch of the current version: %v", err)
	}
	assertMoved(t, m.store, info, "src", "dst", []byte("current+theirs"))
}

// barrier holds each of n requests until all n have come, so that they
// reach the server together; a request that waits longer than the
// deadline fails.
type barrier struct {
	n       int32
	arrived atomic.Int32
	release chan struct{}
}

func newBarrier(n int32) *barrier { return &barrier{n: n, release: make(chan struct{})} }

func (b *barrier) wait(ctx context.Context) error {
	if b.arrived.Add(1) == b.n {
		close(b.release)
	}
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-b.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("the other requests never came")
	}
}

// commitOf reports the request that commits a write of the object key.
func commitOf(input any, key string) bool {
	switch in := input.(type) {
	case *s3.PutObjectInput:
		return aws.ToString(in.Key) == key
	case *s3.CompleteMultipartUploadInput:
		return aws.ToString(in.Key) == key
	}
	return false
}

// Two processes (two Backends with clients of their own) commit different
// bytes over one version of a file, each with IfMatch on it: both read
// and check the version (and keep it, with Keep) before either commit
// request is sent, and the two requests then reach the server together.
// Exactly one wins; the other fails with ErrPrecondition, and nothing of
// its bytes remains anywhere in the bucket: no object, no multipart
// upload, and no kept version of its own.
func TestRacingIfMatchCommits(t *testing.T) {
	g := startGateway(t)
	const rounds = 3
	for i, size := range sizes {
		for _, keep := range []*backend.Keep{nil, alice} {
			name := size.name
			if keep != nil {
				name += " with Keep"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				for r := range rounds {
					bucket := g.NewBucket(t)
					gate := newBarrier(2)
					hold := func(ctx context.Context, _ string, input any) error {
						if commitOf(input, "room/f") {
							return gate.wait(ctx)
						}
						return nil
					}
					stores := [2]*store{
						g.storeIn(t, bucket, "room", g.clientWith(hold)),
						g.storeIn(t, bucket, "room", g.clientWith(hold)),
					}
					seed := uint64(1000*i + 10*r)
					base := content(seed, size.n)
					was := put(t, g.storeIn(t, bucket, "room", g.client), "f", base)
					theirs := [2][]byte{content(seed+1, size.n), content(seed+2, size.n)}
					var (
						wg    sync.WaitGroup
						infos [2]backend.Info
						errs  [2]error
					)
					for j, s := range stores {
						wg.Go(func() {
							w, err := s.Create(t.Context(), "f", backend.WriteOptions{Precondition: backend.Precondition{IfMatch: was.ETag}, Keep: keep})
							if err != nil {
								errs[j] = err
								return
							}
							for data := theirs[j]; len(data) > 0; data = data[min(mib, len(data)):] {
								if err := w.Write(t.Context(), data[:min(mib, len(data))]); err != nil {
									errs[j] = err
									return
								}
							}
							infos[j], errs[j] = w.Commit(t.Context())
							if err := w.Abort(context.WithoutCancel(t.Context())); err != nil {
								t.Errorf("Abort: %v", err)
							}
						})
					}
					wg.Wait()
					if n := gate.arrived.Load(); n != 2 {
						t.Fatalf("round %d: %d commit requests reached the gate, want 2 (errors %v)", r, n, errs)
					}
					winner, loser := 0, 1
					if errs[0] != nil {
						winner, loser = 1, 0
					}
					if errs[winner] != nil {
						t.Fatalf("round %d: no commit won: %v", r, errs)
					}
					notConflict(t, errs[loser])
					assertContent(t, stores[0], "f", theirs[winner])
					if st := stat(t, stores[1], "f"); st.ETag != infos[winner].ETag {
						t.Errorf("round %d: Stat ETag %q, want the winner's %q", r, st.ETag, infos[winner].ETag)
					}
					stores[0].assertNowhere(t, theirs[loser])
					if left := g.leftovers(t, bucket, "room"); len(left) > 0 {
						t.Fatalf("round %d: left behind: %v", r, left)
					}
					if keep == nil {
						stores[0].assertVersionCount(t, 0)
						continue
					}
					stores[0].assertVersionCount(t, 1)
					assertOneVersion(t, stores[1], "f", was, base, backend.ReasonOverwritten)
				}
			})
		}
	}
}

// assertNowhere checks that no object in the store's bucket holds data.
func (s *store) assertNowhere(t *testing.T, data []byte) {
	t.Helper()
	pages := s3.NewListObjectsV2Paginator(s.gw.client, &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			if aws.ToInt64(o.Size) != int64(len(data)) {
				continue
			}
			out, err := s.gw.client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: o.Key})
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(out.Body)
			out.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, data) {
				t.Errorf("the loser's bytes are in %s", aws.ToString(o.Key))
			}
		}
	}
}

func TestKeep(t *testing.T) {
	g := startGateway(t)
	for i, size := range sizes {
		data := func(n int) []byte { return content(uint64(100*i+n), size.n) }

		t.Run(size.name+": overwrite", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "d/f", data(1))
			was := stat(t, s, "d/f")
			before := time.Now()
			info, err := commitWith(t, s, "d/f", data(2), backend.WriteOptions{Keep: alice})
			after := time.Now()
			if err != nil {
				t.Fatalf("Commit with Keep: %v", err)
			}
			assertContent(t, s, "d/f", data(2))
			if st := stat(t, s, "d/f"); st.ETag != info.ETag {
				t.Errorf("Stat ETag %q, Commit's %q", st.ETag, info.ETag)
			}
			v := assertOneVersion(t, s, "d/f", was, data(1), backend.ReasonOverwritten)
			if v.Replaced.Before(before) || v.Replaced.After(after) {
				t.Errorf("Replaced %v outside the commit's [%v, %v]", v.Replaced, before, after)
			}
			assertReadsVersion(t, s, v, data(1))
			kept := keptUnder(t, s, "")
			if len(kept) != 1 {
				t.Fatalf("Kept lists %d versions, want 1: %+v", len(kept), kept)
			}
			k := kept[0]
			if k.Path != v.Path || k.ID != v.ID || k.ETag != v.ETag || k.Size != v.Size || !k.Replaced.Equal(v.Replaced) || k.Reason != v.Reason {
				t.Errorf("Kept says %+v, Versions %+v", k, v)
			}

			// Another overwrite keeps the second version too.
			was2 := stat(t, s, "d/f")
			if _, err := commitWith(t, s, "d/f", data(3), backend.WriteOptions{Keep: alice}); err != nil {
				t.Fatal(err)
			}
			vs := versionsOf(t, s, "d/f")
			if len(vs) != 2 || vs[0].ID != v.ID || vs[1].ETag != was2.ETag {
				t.Fatalf("after two overwrites, versions %+v; want the first, then one with ETag %q", vs, was2.ETag)
			}
		})

		t.Run(size.name+": append", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "f", data(1))
			was := stat(t, s, "f")
			if _, err := appendWith(t, s, "f", data(2), backend.WriteOptions{Keep: alice}); err != nil {
				t.Fatalf("append with Keep: %v", err)
			}
			assertContent(t, s, "f", slices.Concat(data(1), data(2)))
			v := assertOneVersion(t, s, "f", was, data(1), backend.ReasonAppended)
			assertReadsVersion(t, s, v, data(1))
		})

		t.Run(size.name+": remove", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "d/f", data(1))
			was := stat(t, s, "d/f")
			if err := s.Remove(t.Context(), "d/f", backend.RemoveOptions{Keep: alice}); err != nil {
				t.Fatalf("Remove with Keep: %v", err)
			}
			assertMissing(t, s, "d/f")
			assertMissing(t, s, "d")
			// A path whose file is gone keeps its versions.
			v := assertOneVersion(t, s, "d/f", was, data(1), backend.ReasonDeleted)
			assertReadsVersion(t, s, v, data(1))
		})

		t.Run(size.name+": move over a file", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "src", data(1))
			put(t, s, "dst", data(2))
			wasSrc, wasDst := stat(t, s, "src"), stat(t, s, "dst")
			info, err := s.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: true, Keep: alice})
			if err != nil {
				t.Fatalf("Move with Keep: %v", err)
			}
			assertMoved(t, s, info, "src", "dst", data(1))
			assertOneVersion(t, s, "src", wasSrc, data(1), backend.ReasonMoved)
			assertOneVersion(t, s, "dst", wasDst, data(2), backend.ReasonOverwritten)
			if kept := keptUnder(t, s, ""); len(kept) != 2 {
				t.Errorf("Kept lists %d versions, want 2", len(kept))
			}
		})

		t.Run(size.name+": move to a new path", func(t *testing.T) {
			t.Parallel()
			s := g.newStore(t)
			put(t, s, "src", data(1))
			was := stat(t, s, "src")
			for _, overwrite := range []bool{false, true} {
				dst := fmt.Sprintf("dst-%v", overwrite)
				info, err := s.Move(t.Context(), "src", dst, backend.MoveOptions{Overwrite: overwrite, Keep: alice})
				if err != nil {
					t.Fatalf("Move with Keep (Overwrite %v): %v", overwrite, err)
				}
				assertMoved(t, s, info, "src", dst, data(1))
				if vs := versionsOf(t, s, dst); len(vs) != 0 {
					t.Errorf("%q replaced no file but has versions %+v", dst, vs)
				}
				if !overwrite {
					assertOneVersion(t, s, "src", was, data(1), backend.ReasonMoved)
					put(t, s, "src", data(1))
					was = stat(t, s, "src")
				}
			}
			if vs := versionsOf(t, s, "src"); len(vs) != 2 || vs[1].ETag != was.ETag {
				t.Errorf("src's versions %+v, want two, the last with ETag %q", vs, was.ETag)
			}
		})
	}
}

// assertReadsVersion reads the kept version v whole and in ranges,
// across a part boundary where it has one, at its end and past it, and
// checks the description ReadVersion gives.
func assertReadsVersion(t *testing.T, b backend.Backend, v backend.Version, data []byte) {
	t.Helper()
	n := int64(len(data))
	got, desc := readVersion(t, b, v.Path, v.ID, 0, -1)
	if !bytes.Equal(got, data) {
		t.Fatalf("ReadVersion whole: %d bytes, want %d", len(got), n)
	}
	if desc != v {
		t.Errorf("ReadVersion describes %+v, Versions %+v", desc, v)
	}
	for _, r := range [][2]int64{{0, 1}, {7, 100}, {n - 5, -1}, {n - 5, 100}, {n / 2, 3}, {part - 3, 6}, {n, -1}, {n, 10}, {3, 0}} {
		off, length := r[0], r[1]
		if off > n {
			continue
		}
		end := n
		if length >= 0 {
			end = min(n, off+length)
		}
		if got, _ := readVersion(t, b, v.Path, v.ID, off, length); !bytes.Equal(got, data[off:end]) {
			t.Errorf("ReadVersion [%d, +%d): %d bytes, want %d", off, length, len(got), end-off)
		}
	}
	if _, _, err := b.ReadVersion(t.Context(), v.Path, v.ID, n+1, -1); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("ReadVersion past the end: %v, want fs.ErrInvalid", err)
	}
}

// A change with Keep that replaces nothing keeps nothing and sends the
// very requests it sends without Keep.
func TestKeepNothingCostsNothing(t *testing.T) {
	g := startGateway(t)
	var (
		mu  sync.Mutex
		ops []string
	)
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := ops
		ops = nil
		return out
	}
	s := g.storeIn(t, g.NewBucket(t), "room", g.watchedClient(func(op string, _ any) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}))
	for _, size := range sizes {
		for _, how := range []string{"create", "append"} {
			var plain, kept []string
			for _, keep := range []*backend.Keep{nil, alice} {
				path := fmt.Sprintf("%s-%s-%v", size.name, how, keep != nil)
				data := content(1, size.n)
				sent()
				var err error
				if how == "create" {
					_, err = commitWith(t, s, path, data, backend.WriteOptions{Keep: keep})
				} else {
					_, err = appendWith(t, s, path, data, backend.WriteOptions{Keep: keep})
				}
				if err != nil {
					t.Fatalf("%s %s: %v", how, path, err)
				}
				if keep == nil {
					plain = sent()
				} else {
					kept = sent()
				}
				assertContent(t, s, path, data)
			}
			if !slices.Equal(plain, kept) {
				t.Errorf("%s of a new %s file sends %v with Keep, %v without", how, size.name, kept, plain)
			}
		}
	}
	s.assertVersionCount(t, 0)
}

// TestHistoryCosts counts the requests each change sends with history on
// (Keep, and the IfMatch a case names) beyond those it sends without, on
// the same files.
func TestHistoryCosts(t *testing.T) {
	g := startGateway(t)
	var (
		mu  sync.Mutex
		ops []string
	)
	sent := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := ops
		ops = nil
		return out
	}
	bucket := g.NewBucket(t)
	s := g.storeIn(t, bucket, "room", g.watchedClient(func(op string, _ any) {
		mu.Lock()
		ops = append(ops, op)
		mu.Unlock()
	}))
	// plain sets the files up and reads ETags, unwatched.
	plain := g.storeIn(t, bucket, "room", g.client)
	small, big := content(1, 3*kib), content(2, part+17)
	keep := func(on bool) *backend.Keep {
		if on {
			return alice
		}
		return nil
	}
	ifMatch := func(on bool, p string) backend.Precondition {
		if on {
			return backend.Precondition{IfMatch: stat(t, plain, p).ETag}
		}
		return backend.Precondition{}
	}
	overwrite := func(data []byte) func(string, bool) error {
		return func(p string, on bool) error {
			_, err := commitWith(t, s, p, data, backend.WriteOptions{Keep: keep(on)})
			return err
		}
	}
	cases := []struct {
		name  string
		setup func(p string)
		run   func(p string, on bool) error
		extra int
	}{
		{"overwrite under a part", func(p string) { put(t, plain, p, small) }, overwrite(small), 3},
		{"overwrite in parts", func(p string) { put(t, plain, p, big) }, overwrite(big), 3},
		{"overwrite with IfMatch and Keep", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			pre := ifMatch(on, p)
			sent()
			_, err := commitWith(t, s, p, small, backend.WriteOptions{Keep: keep(on), Precondition: pre})
			return err
		}, 2},
		{"overwrite with IfMatch alone", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			pre := ifMatch(on, p)
			sent()
			_, err := commitWith(t, s, p, small, backend.WriteOptions{Precondition: pre})
			return err
		}, 1},
		{"append", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			_, err := appendWith(t, s, p, small, backend.WriteOptions{Keep: keep(on)})
			return err
		}, 1},
		{"remove", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			return s.Remove(t.Context(), p, backend.RemoveOptions{Keep: keep(on)})
		}, 1},
		{"remove with IfMatch alone", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			pre := ifMatch(on, p)
			sent()
			return s.Remove(t.Context(), p, backend.RemoveOptions{IfMatch: pre.IfMatch})
		}, 0},
		{"move", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			_, err := s.Move(t.Context(), p, p+"-moved", backend.MoveOptions{Keep: keep(on)})
			return err
		}, 1},
		{"move over a file", func(p string) { put(t, plain, p, small); put(t, plain, p+"-dst", small) }, func(p string, on bool) error {
			_, err := s.Move(t.Context(), p, p+"-dst", backend.MoveOptions{Overwrite: true, Keep: keep(on)})
			return err
		}, 4},
		{"move with Overwrite to a new path", func(p string) { put(t, plain, p, small) }, func(p string, on bool) error {
			_, err := s.Move(t.Context(), p, p+"-new", backend.MoveOptions{Overwrite: true, Keep: keep(on)})
			return err
		}, 3},
	}
	for i, c := range cases {
		var reqs [2][]string
		for j, on := range []bool{false, true} {
			p := fmt.Sprintf("c%d-%d", i, j)
			c.setup(p)
			sent()
			if err := c.run(p, on); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			reqs[j] = sent()
		}
		extra := len(reqs[1]) - len(reqs[0])
		t.Logf("%s: %d more: %v; without history: %v", c.name, extra, reqs[1], reqs[0])
		if extra != c.extra {
			t.Errorf("%s costs %d requests more with history, want %d", c.name, extra, c.extra)
		}
	}
}

func TestForget(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)
	put(t, s, "f", []byte("one"))
	put(t, s, "g", []byte("g"))
	if _, err := commitWith(t, s, "f", []byte("two"), backend.WriteOptions{Keep: alice}); err != nil {
		t.Fatal(err)
	}
	if _, err := commitWith(t, s, "f", []byte("three"), backend.WriteOptions{Keep: alice}); err != nil {
		t.Fatal(err)
	}
	vs := versionsOf(t, s, "f")
	if len(vs) != 2 {
		t.Fatalf("%d versions, want 2", len(vs))
	}
	first, second := vs[0], vs[1]

	// A reader of a version goes on reading once it is forgotten.
	r, _, err := s.ReadVersion(t.Context(), "f", first.ID, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := s.Forget(t.Context(), "f", first.ID); err != nil {
		t.Fatalf("Forget: %v", err)
	}
	if got, err := io.ReadAll(r); err != nil || string(got) != "one" {
		t.Errorf("reader opened before Forget read %q, %v; want \"one\"", got, err)
	}
	if vs := versionsOf(t, s, "f"); len(vs) != 1 || vs[0].ID != second.ID {
		t.Fatalf("after Forget, versions %+v; want only %s", vs, second.ID)
	}
	s.assertVersionCount(t, 1)

	assertIs(t, s.Forget(t.Context(), "f", first.ID), fs.ErrNotExist)
	_, _, err = s.ReadVersion(t.Context(), "f", first.ID, 0, -1)
	assertIs(t, err, fs.ErrNotExist)
	for _, id := range []string{"", "bogus", "../f", second.ID + "/x", strings.ToUpper(second.ID), ".roomstore"} {
		assertIs(t, s.Forget(t.Context(), "f", id), fs.ErrNotExist)
		_, _, err := s.ReadVersion(t.Context(), "f", id, 0, -1)
		assertIs(t, err, fs.ErrNotExist)
	}
	// An ID is one path's: another path does not have it.
	assertIs(t, s.Forget(t.Context(), "g", second.ID), fs.ErrNotExist)
	_, _, err = s.ReadVersion(t.Context(), "g", second.ID, 0, -1)
	assertIs(t, err, fs.ErrNotExist)
	s.assertVersionCount(t, 1)
	if err := s.Forget(t.Context(), "f", second.ID); err != nil {
		t.Fatal(err)
	}
	s.assertVersionCount(t, 0)
	assertContent(t, s, "f", []byte("three"))
}

func TestKeptRecursive(t *testing.T) {
	g := startGateway(t)
	// Pages of two keys, so that Kept pages.
	s := g.storeIn(t, g.NewBucket(t), "room", g.client, backend_s3.WithListPageSize(2))
	paths := []string{"a", "a/x", "a/y/z", "a-b", "ab", "b"}
	// "a" is a file first, with two versions once it is removed, and then
	// a folder.
	for _, p := range paths {
		put(t, s, p, []byte(p))
		if _, err := commitWith(t, s, p, []byte(p+"2"), backend.WriteOptions{Keep: alice}); err != nil {
			t.Fatal(err)
		}
		if p == "a" || p == "a/x" {
			if err := s.Remove(t.Context(), p, backend.RemoveOptions{Keep: alice}); err != nil {
				t.Fatal(err)
			}
		}
	}
	byPath := map[string][]backend.Version{}
	total := 0
	for _, p := range paths {
		byPath[p] = versionsOf(t, s, p)
		total += len(byPath[p])
	}
	if len(byPath["a"]) != 2 || len(byPath["a/x"]) != 2 || len(byPath["b"]) != 1 {
		t.Fatalf("a, a/x and b have %d, %d and %d versions, want 2, 2 and 1", len(byPath["a"]), len(byPath["a/x"]), len(byPath["b"]))
	}
	for dir, want := range map[string][]string{
		"":      paths,
		"a":     {"a", "a/x", "a/y/z"},
		"a/y":   {"a/y/z"},
		"a/y/z": {"a/y/z"},
		"a/x":   {"a/x"},
		"c":     nil,
	} {
		var wantVs []backend.Version
		for _, p := range want {
			wantVs = append(wantVs, byPath[p]...)
		}
		slices.SortFunc(wantVs, func(a, b backend.Version) int {
			return cmp.Or(strings.Compare(a.Path, b.Path), a.Replaced.Compare(b.Replaced))
		})
		got := keptUnder(t, s, dir)
		if len(got) != len(wantVs) {
			t.Errorf("Kept(%q): %d versions, want %d", dir, len(got), len(wantVs))
			continue
		}
		for i, k := range got {
			v := wantVs[i]
			if k.Path != v.Path || k.ID != v.ID || k.ETag != v.ETag || k.Size != v.Size || !k.Replaced.Equal(v.Replaced) || k.Reason != v.Reason {
				t.Errorf("Kept(%q) says %+v, Versions %+v", dir, k, v)
			}
		}
	}
	if total != len(keptUnder(t, s, "")) {
		t.Errorf("Versions of every path count %d, Kept %d", total, len(keptUnder(t, s, "")))
	}
}

// Kept versions never show as files or folders: not in List, Stat or
// Scan, not as a folder whose only content they are, and Scan skips them
// without paging through them.
func TestKeptInvisible(t *testing.T) {
	g := startGateway(t)
	var lists atomic.Int32
	bucket := g.NewBucket(t)
	s := g.storeIn(t, bucket, "room", g.watchedClient(func(op string, _ any) {
		if op == "ListObjectsV2" {
			lists.Add(1)
		}
	}), backend_s3.WithListPageSize(2))
	// Names that sort before the reserved prefix ('+', '-') and after it.
	files := []string{"+a", "-b", "d/f", "z"}
	for _, p := range append(files, "gone/f") {
		put(t, s, p, []byte(p))
		for n := range 3 {
			if _, err := commitWith(t, s, p, []byte(fmt.Sprint(p, n)), backend.WriteOptions{Keep: alice}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Remove(t.Context(), "gone/f", backend.RemoveOptions{Keep: alice}); err != nil {
		t.Fatal(err)
	}
	const kept = 5*3 + 1
	s.assertVersionCount(t, kept)

	if got := names(t, s, ""); !slices.Equal(got, []string{"+a", "-b", "d/", "z"}) {
		t.Errorf("the root lists %v, want [+a -b d/ z]", got)
	}
	if got := names(t, s, "d"); !slices.Equal(got, []string{"f"}) {
		t.Errorf("d lists %v, want [f]", got)
	}
	assertMissing(t, s, "gone")
	assertMissing(t, s, "gone/f")
	if got := names(t, s, "gone"); len(got) != 0 {
		t.Errorf("the folder of a removed file, whose versions are kept, lists %v", got)
	}
	if vs := versionsOf(t, s, "gone/f"); len(vs) != 4 {
		t.Errorf("gone/f has %d versions, want 4", len(vs))
	}

	lists.Store(0)
	var scanned []string
	for info, err := range s.Scan(t.Context(), "") {
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		scanned = append(scanned, info.Path)
	}
	if !slices.Equal(scanned, files) {
		t.Errorf("Scan yields %v, want %v", scanned, files)
	}
	// Pages of two: "+a -b", then the reserved block's first key ends the
	// listing, which starts again after it: "d/f z", and an empty end.
	// Paging through the kept versions would take kept/2 pages more.
	if n := lists.Load(); n > 4 {
		t.Errorf("Scan sent %d listings; the %d kept versions were paged through", n, kept)
	}
	scanned = scanned[:0]
	for info, err := range s.Scan(t.Context(), "d") {
		if err != nil {
			t.Fatalf("Scan: %v", err)
		}
		scanned = append(scanned, info.Path)
	}
	if !slices.Equal(scanned, []string{"d/f"}) {
		t.Errorf("Scan of d yields %v, want [d/f]", scanned)
	}
}

// A kept version made for a change that then fails is forgotten by the
// backend when it can tell that the change did not happen; when it
// cannot, the version stays, with the ETag of the file still current.
func TestKeptForgottenAfterFailure(t *testing.T) {
	g := startGateway(t)
	type env struct {
		*moveStore
	}
	newEnv := func(t *testing.T) env { return env{g.newMoveStore(t)} }
	// once runs fn before the first request for which when holds.
	once := func(m *moveStore, when func(op string) bool, fn func()) *atomic.Int32 {
		var n atomic.Int32
		m.hooks.set(func(ctx context.Context, op string) error {
			if when(op) && n.Add(1) == 1 {
				fn()
			}
			return nil
		})
		return &n
	}
	is := func(ops ...string) func(string) bool {
		return func(op string) bool { return slices.Contains(ops, op) }
	}

	for i, size := range sizes {
		data := func(n int) []byte { return content(uint64(100*i+n), size.n) }
		commitOp := is("PutObject", "CompleteMultipartUpload")

		t.Run(size.name+": a save whose version changed before its commit", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			was := put(t, e, "f", data(1))
			ran := once(e.moveStore, commitOp, func() { put(t, e.other, "f", data(2)) })
			_, err := commitWith(t, e, "f", data(3), backend.WriteOptions{Keep: alice, Precondition: backend.Precondition{IfMatch: was.ETag}})
			if ran.Load() == 0 {
				t.Fatal("the competing write never ran")
			}
			notConflict(t, err)
			assertContent(t, e, "f", data(2))
			e.assertVersionCount(t, 0)
		})

		t.Run(size.name+": an overwrite that loses a race and commits again", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			put(t, e, "f", data(1))
			w, err := e.Create(t.Context(), "f", backend.WriteOptions{Keep: alice})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, data(3), mib)
			// The first commit request is the If-None-Match "*" try; the
			// competing write goes in before the guarded one.
			var commits atomic.Int32
			e.hooks.set(func(ctx context.Context, op string) error {
				if commitOp(op) && commits.Add(1) == 2 {
					put(t, e.other, "f", data(2))
				}
				return nil
			})
			_, err = w.Commit(t.Context())
			assertIs(t, err, backend.ErrConflict)
			e.assertVersionCount(t, 0)
			theirs := stat(t, e, "f")
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatalf("Commit again after the lost race: %v", err)
			}
			if err := w.Abort(t.Context()); err != nil {
				t.Fatal(err)
			}
			assertContent(t, e, "f", data(3))
			assertOneVersion(t, e, "f", theirs, data(2), backend.ReasonOverwritten)
		})

		t.Run(size.name+": an append that loses a race and commits again", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			put(t, e, "f", data(1))
			ran := once(e.moveStore, is("PutObject", "CreateMultipartUpload"), func() { appendData(t, e.other, "f", []byte("+2")) })
			w, err := e.Append(t.Context(), "f", backend.WriteOptions{Keep: alice})
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, w, []byte("+3"), mib)
			_, err = w.Commit(t.Context())
			if ran.Load() == 0 {
				t.Fatal("the competing append never ran")
			}
			assertIs(t, err, backend.ErrConflict)
			e.assertVersionCount(t, 0)
			theirs := stat(t, e, "f")
			if _, err := w.Commit(t.Context()); err != nil {
				t.Fatalf("Commit again after the lost race: %v", err)
			}
			if err := w.Abort(t.Context()); err != nil {
				t.Fatal(err)
			}
			assertContent(t, e, "f", slices.Concat(data(1), []byte("+2+3")))
			assertOneVersion(t, e, "f", theirs, slices.Concat(data(1), []byte("+2")), backend.ReasonAppended)
		})

		t.Run(size.name+": a removal that meets a new version", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			put(t, e, "f", data(1))
			var theirs backend.Info
			ran := once(e.moveStore, is("DeleteObject"), func() { theirs = put(t, e.other, "f", data(2)) })
			if err := e.Remove(t.Context(), "f", backend.RemoveOptions{Keep: alice}); err != nil {
				t.Fatalf("Remove: %v", err)
			}
			if ran.Load() == 0 {
				t.Fatal("the competing write never ran")
			}
			assertMissing(t, e, "f")
			// The first look's copy is forgotten: what is kept is the
			// version the removal removed.
			assertOneVersion(t, e, "f", theirs, data(2), backend.ReasonDeleted)
		})

		t.Run(size.name+": a move whose source changes", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			put(t, e, "src", data(1))
			ran := once(e.moveStore, is("DeleteObject"), func() { appendData(t, e.other, "src", []byte("+")) })
			_, err := e.Move(t.Context(), "src", "dst", backend.MoveOptions{Keep: alice})
			if ran.Load() == 0 {
				t.Fatal("the competing append never ran")
			}
			assertIs(t, err, backend.ErrConflict)
			assertContent(t, e, "src", slices.Concat(data(1), []byte("+")))
			assertMissing(t, e, "dst")
			e.assertVersionCount(t, 0)
		})

		t.Run(size.name+": a move whose destination changes", func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			put(t, e, "src", data(1))
			put(t, e, "dst", data(2))
			ran := once(e.moveStore, is("CreateMultipartUpload", "PutObject"), func() { put(t, e.other, "dst", data(3)) })
			_, err := e.Move(t.Context(), "src", "dst", backend.MoveOptions{Overwrite: true, Keep: alice})
			if ran.Load() == 0 {
				t.Fatal("the competing write never ran")
			}
			assertIs(t, err, backend.ErrConflict)
			assertContent(t, e, "src", data(1))
			assertContent(t, e, "dst", data(3))
			e.assertVersionCount(t, 0)
		})
	}

	t.Run("a commit whose outcome is unknown keeps its version", func(t *testing.T) {
		e := newEnv(t)
		put(t, e, "f", []byte("one"))
		was := stat(t, e, "f")
		// The commit gets no answer, and neither does the HEAD that would
		// tell whether it landed.
		lost := errors.New("connection lost")
		var failing atomic.Bool
		e.hooks.set(func(ctx context.Context, op string) error {
			if op == "PutObject" {
				failing.Store(true)
			}
			if failing.Load() {
				return lost
			}
			return nil
		})
		_, err := commitWith(t, e, "f", []byte("two"), backend.WriteOptions{Keep: alice, Precondition: backend.Precondition{IfMatch: was.ETag}})
		e.hooks.set(nil)
		if !errors.Is(err, lost) {
			t.Fatalf("Commit: %v, want the transport's error", err)
		}
		// The kept version has the ETag of the file still current, which
		// the Engine hides and forgets after its grace.
		v := assertOneVersion(t, e, "f", was, []byte("one"), backend.ReasonOverwritten)
		if cur := stat(t, e, "f"); v.ETag != cur.ETag {
			t.Errorf("the kept version's ETag %q is not the current file's %q", v.ETag, cur.ETag)
		}
	})
}

// Paths too long to be spelt out in a kept version's 1024-byte key are
// named by their hash beneath their longest folder that fits, and every
// history call still finds them.
func TestKeptLongPaths(t *testing.T) {
	g := startGateway(t)
	s := g.newStore(t)
	elem := func(c string, n int) string { return strings.Repeat(c, n) }
	abc := elem("a", 240) + "/" + elem("b", 240) + "/" + elem("c", 240) // 722 bytes
	long := abc + "/" + elem("d", 200) + "/f"                           // 925: hashed
	sibling := abc + "/" + elem("e", 200) + "/g"                        // 925: hashed, same cut
	fits := abc + "/" + elem("x", 100) + "/h"                           // 825: spelt out
	paths := []string{long, sibling, fits}
	for _, p := range paths {
		put(t, s, p, []byte("one "+p[len(p)-1:]))
		if _, err := commitWith(t, s, p, []byte("two"), backend.WriteOptions{Keep: alice}); err != nil {
			t.Fatalf("Commit with Keep of a %d-byte path: %v", len(p), err)
		}
	}
	for _, k := range s.versionKeys(t) {
		if len(k) > 1024 {
			t.Errorf("a kept version's key has %d bytes", len(k))
		}
	}
	for _, p := range paths {
		vs := versionsOf(t, s, p)
		if len(vs) != 1 || vs[0].Path != p {
			t.Fatalf("Versions of a %d-byte path: %+v", len(p), vs)
		}
		if got, _ := readVersion(t, s, p, vs[0].ID, 0, -1); string(got) != "one "+p[len(p)-1:] {
			t.Errorf("ReadVersion of a %d-byte path: %q", len(p), got)
		}
	}
	for dir, want := range map[string][]string{
		"":                         {fits, long, sibling},
		elem("a", 240):             {fits, long, sibling},
		abc:                        {fits, long, sibling},
		abc + "/" + elem("d", 200): {long},
		long:                       {long},
		abc + "/" + elem("x", 100): {fits},
	} {
		var got []string
		for _, v := range keptUnder(t, s, dir) {
			got = append(got, v.Path)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Kept of a %d-byte folder: %d versions %v, want %d", len(dir), len(got), lens(got), len(want))
		}
	}
	id := versionsOf(t, s, long)[0].ID
	assertIs(t, s.Forget(t.Context(), sibling, id), fs.ErrNotExist)
	if err := s.Forget(t.Context(), long, id); err != nil {
		t.Fatalf("Forget of a %d-byte path's version: %v", len(long), err)
	}
	if vs := versionsOf(t, s, long); len(vs) != 0 {
		t.Errorf("after Forget: %+v", vs)
	}
	s.assertVersionCount(t, 2)
}

func lens(paths []string) []int {
	out := make([]int, len(paths))
	for i, p := range paths {
		out[i] = len(p)
	}
	return out
}
