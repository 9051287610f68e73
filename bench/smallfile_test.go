package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/bench/internal/rawos"
)

// smallFileSize and smallFileNames shape the small-file cycle.
const (
	smallFileSize  = 4 << 10
	smallFileNames = 1000
)

func smallNames() []string {
	names := make([]string, smallFileNames)
	for i := range names {
		names[i] = fmt.Sprintf("doc-%04d.txt", i)
	}
	return names
}

// smallNamesIn is smallNames, each behind prefix.
func smallNamesIn(prefix string) []string {
	names := smallNames()
	for i := range names {
		names[i] = prefix + names[i]
	}
	return names
}

// cycler prepares a store in b and returns the function that runs cycle i.
type cycler func(b *testing.B) func(i int)

// BenchmarkSmallFile measures one small-file cycle (open, write 4 KiB,
// close, download, stat, delete) on 1,000 rotating names: roomstore on
// the stores that roomstore.OpenURL returns for "file://DIR?fsync=false",
// "file://DIR" (fsync on) and "mem://", against the raw os calls that do
// the same work (temp file, write, optional fsync of the file and its
// folder, rename, read, stat, remove), gocloud.dev fileblob (which never
// fsyncs) and memblob; and, for reference, the portable disk path
// (backend_disk.NewAfero over afero.NewBasePathFs(afero.NewOsFs(), DIR)).
//
// Each sub-benchmark pairs roomstore with one baseline and runs their
// cycles alternately, one each per iteration (which goes first alternates
// too), timing each: a shared disk's bursts of latency then hit both
// sides alike, where two back-to-back benchmarks a second apart each catch
// their own. roomstore-ns/cycle and baseline-ns/cycle are the two means;
// ns/op is their sum.
func BenchmarkSmallFile(b *testing.B) {
	payload := randomBytes(smallFileSize)
	names := smallNames()
	ctx := context.Background()
	engine := func(mk func(b *testing.B) *roomstore.Engine) cycler {
		return func(b *testing.B) func(int) {
			e := mk(b)
			return func(i int) { smallCycle(b, ctx, e, names[i%len(names)], payload) }
		}
	}
	rawOS := func(fsync bool) cycler {
		return func(b *testing.B) func(int) {
			dir, tmp := rawDir(b)
			return func(i int) {
				name := filepath.Join(dir, names[i%len(names)])
				check(b, rawos.WriteFile(tmp, name, payload, fsync))
				data, err := os.ReadFile(name)
				check(b, err)
				check(b, sameSize(len(data)))
				_, err = os.Stat(name)
				check(b, err)
				check(b, os.Remove(name))
			}
		}
	}
	gocloud := func(open func(b *testing.B) *blob.Bucket) cycler {
		return func(b *testing.B) func(int) {
			bucket := open(b)
			return func(i int) {
				name := names[i%len(names)]
				w, err := bucket.NewWriter(ctx, name, nil)
				check(b, err)
				_, err = w.Write(payload)
				check(b, err)
				check(b, w.Close())
				data, err := bucket.ReadAll(ctx, name)
				check(b, err)
				check(b, sameSize(len(data)))
				_, err = bucket.Attributes(ctx, name)
				check(b, err)
				check(b, bucket.Delete(ctx, name))
			}
		}
	}
	fileNoFsync := engine(func(b *testing.B) *roomstore.Engine { return fileEngine(b, b.TempDir(), false) })
	fileFsync := engine(func(b *testing.B) *roomstore.Engine { return fileEngine(b, b.TempDir(), true) })
	basePath := engine(func(b *testing.B) *roomstore.Engine { return basePathEngine(b, b.TempDir(), false) })
	mem := engine(func(b *testing.B) *roomstore.Engine { return memEngine(b) })
	fileblobs := gocloud(func(b *testing.B) *blob.Bucket { return fileBucket(b, b.TempDir()) })
	memblobs := gocloud(func(b *testing.B) *blob.Bucket {
		bucket := memblob.OpenBucket(nil)
		b.Cleanup(func() { bucket.Close() })
		return bucket
	})
	runCases(b, []benchCase{
		{"file-nofsync-vs-os-nofsync", paired(fileNoFsync, rawOS(false))},
		{"file-fsync-vs-os-fsync", paired(fileFsync, rawOS(true))},
		{"file-nofsync-vs-fileblob", paired(fileNoFsync, fileblobs)},
		{"mem-vs-memblob", paired(mem, memblobs)},
		{"basepath-nofsync-vs-os-nofsync", paired(basePath, rawOS(false))},
	})
}

// smallCycle is one small-file cycle of e on name: open, write payload,
// close, download, stat, delete.
func smallCycle(b *testing.B, ctx context.Context, e *roomstore.Engine, name string, payload []byte) {
	h, err := e.Open(ctx, name, roomstore.OpenOptions{Overwrite: true})
	check(b, err)
	check(b, e.Write(ctx, h, payload))
	check(b, e.Close(ctx, h))
	f, err := e.Download(ctx, name)
	check(b, err)
	check(b, sameSize(len(f.Data)))
	_, err = e.Stat(ctx, name)
	check(b, err)
	check(b, e.Delete(ctx, name))
}

// BenchmarkUploadMove measures the two other ways a small file changes, on
// the store that roomstore.OpenURL returns for "file://DIR?fsync=false",
// against the raw os calls that do the same work: an Upload of 4 KiB from
// a reader, then a Delete (raw: temporary file, write, rename, remove), on
// 1,000 rotating names; and a Move of one 4 KiB file back and forth
// between two names (raw: os.Rename). Paired as BenchmarkSmallFile's
// cases are.
func BenchmarkUploadMove(b *testing.B) {
	payload := randomBytes(smallFileSize)
	names := smallNames()
	ctx := context.Background()
	upload := func(b *testing.B) func(int) {
		e := fileEngine(b, b.TempDir(), false)
		return func(i int) {
			name := names[i%len(names)]
			_, err := e.Upload(ctx, name, bytes.NewReader(payload), roomstore.OpenOptions{Overwrite: true})
			check(b, err)
			check(b, e.Delete(ctx, name))
		}
	}
	rawUpload := func(b *testing.B) func(int) {
		dir, tmp := rawDir(b)
		return func(i int) {
			name := filepath.Join(dir, names[i%len(names)])
			check(b, rawos.WriteFile(tmp, name, payload, false))
			check(b, os.Remove(name))
		}
	}
	pair := [2]string{"moved-a.txt", "moved-b.txt"}
	move := func(b *testing.B) func(int) {
		e := fileEngine(b, b.TempDir(), false)
		_, err := e.Upload(ctx, pair[0], bytes.NewReader(payload), roomstore.OpenOptions{})
		check(b, err)
		return func(i int) {
			check(b, e.Move(ctx, pair[i%2], pair[(i+1)%2], roomstore.MoveOptions{}))
		}
	}
	rawMove := func(b *testing.B) func(int) {
		dir := b.TempDir()
		check(b, os.WriteFile(filepath.Join(dir, pair[0]), payload, 0o644))
		return func(i int) {
			check(b, os.Rename(filepath.Join(dir, pair[i%2]), filepath.Join(dir, pair[(i+1)%2])))
		}
	}
	runCases(b, []benchCase{
		{"upload-file-nofsync-vs-os-nofsync", paired(upload, rawUpload)},
		{"move-file-vs-os-rename", paired(move, rawMove)},
	})
}

// paired runs roomstore's and a baseline's cycles alternately and reports
// the mean time of each.
func paired(roomstore, baseline cycler) func(b *testing.B) {
	return func(b *testing.B) {
		trs, tbase, n := timePaired(b, roomstore(b), baseline(b))
		b.ReportMetric(float64(trs.Nanoseconds())/float64(n), "roomstore-ns/cycle")
		b.ReportMetric(float64(tbase.Nanoseconds())/float64(n), "baseline-ns/cycle")
	}
}

// timePaired runs rs and base once each per iteration i, which goes first
// alternating, and returns the time each took in all and the iterations.
func timePaired(b *testing.B, rs, base func(i int)) (trs, tbase time.Duration, n int) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		first, second, tfirst, tsecond := rs, base, &trs, &tbase
		if i%2 == 1 {
			first, second, tfirst, tsecond = base, rs, &tbase, &trs
		}
		t0 := time.Now()
		first(i)
		t1 := time.Now()
		second(i)
		*tsecond += time.Since(t1)
		*tfirst += t1.Sub(t0)
		i++
	}
	return trs, tbase, i
}

// rawDir returns a fresh folder for the raw os baseline and the folder of
// its temporaries inside it.
func rawDir(b *testing.B) (dir, tmp string) {
	dir = b.TempDir()
	tmp = filepath.Join(dir, ".tmp")
	check(b, os.Mkdir(tmp, 0o755))
	return dir, tmp
}

func sameSize(n int) error {
	if n != smallFileSize {
		return fmt.Errorf("read %d bytes back, wrote %d", n, smallFileSize)
	}
	return nil
}

// fileBucket opens a fileblob bucket on dir with default options: temporary
// files in os.TempDir (the same file system as the test's temp folders
// here), attributes in ".attrs" sidecar files, no fsync.
func fileBucket(b testing.TB, dir string) *blob.Bucket {
	bucket, err := fileblob.OpenBucket(dir, nil)
	check(b, err)
	b.Cleanup(func() { bucket.Close() })
	return bucket
}
