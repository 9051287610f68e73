package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/bench/internal/measure"
	"github.com/roomstore/roomstore/bench/internal/rawsdk"
)

// appendSize is what each append adds.
const appendSize = 4 << 10

// appendBases are the sizes of the files appended to.
var appendBases = []struct {
	name string
	size int
}{{"1MiB", 1 << 20}, {"64MiB", 64 << 20}, {"512MiB", 512 << 20}}

// BenchmarkAppend4KiB measures one 4 KiB append (Open without Overwrite,
// Write, Close) to files of 1 MiB, 64 MiB and 512 MiB, and the bytes the
// client sent for it:
//
//   - roomstore-file (roomstore.OpenURL("file://DIR"), fsync on, the
//     default): sent-B/op is the growth of wchar in /proc/self/io, the
//     bytes the process handed to write(2) and copy_file_range(2). The
//     backend makes a new file of the old content and the new bytes and
//     renames it over the old one; the old content is cloned (FICLONE)
//     where the file system can, else copied in the kernel.
//   - roomstore-file-clone: the same in a folder under
//     ROOMSTORE_BENCH_CLONE_DIR, when that is set (a file system that
//     clones: XFS, btrfs), so that both costs show on one machine.
//   - roomstore-mem (roomstore.OpenURL("mem://")): the in-memory backend,
//     which shares the old version's chunks and adds the new one's.
//   - os-append: the raw, non-atomic O_APPEND write of 4 KiB and fsync,
//     for scale; a reader may see it half done.
//   - roomstore-s3 (versitygw): sent-B/op and recv-B/op are the bytes
//     written to and read from the client's TCP connections (request
//     lines, headers and bodies), counted by a wrapper around the client's
//     HTTP transport; requests/op counts round trips.
func BenchmarkAppend4KiB(b *testing.B) {
	payload := randomBytes(appendSize)
	s3srv := &s3Server{parent: b}
	var wire wireCounter
	ctx := context.Background()
	var cases []benchCase
	cloneDir := os.Getenv("ROOMSTORE_BENCH_CLONE_DIR")
	for _, base := range appendBases {
		name := "base-" + base.name + ".log"
		onDisk := func(parent func(b *testing.B) string) func(b *testing.B) {
			return func(b *testing.B) {
				dir := parent(b)
				check(b, writeZeros(filepath.Join(dir, name), base.size))
				e := fileEngine(b, dir, true)
				before := readIO(b)
				for b.Loop() {
					appendOnce(b, e, name, payload)
				}
				after := readIO(b)
				b.ReportMetric(float64(after.WriteChars-before.WriteChars)/float64(b.N), "sent-B/op")
			}
		}
		cases = append(cases, benchCase{"roomstore-file/" + base.name, onDisk(func(b *testing.B) string { return b.TempDir() })})
		if cloneDir != "" {
			cases = append(cases, benchCase{"roomstore-file-clone/" + base.name, onDisk(func(b *testing.B) string {
				dir, err := os.MkdirTemp(cloneDir, "roomstore-bench-")
				check(b, err)
				b.Cleanup(func() { os.RemoveAll(dir) })
				return dir
			})})
		}
		cases = append(cases,
			benchCase{"roomstore-mem/" + base.name, func(b *testing.B) {
				e := memEngine(b)
				_, err := e.Upload(ctx, name, bytes.NewReader(make([]byte, base.size)), roomstore.OpenOptions{Overwrite: true})
				check(b, err)
				for b.Loop() {
					appendOnce(b, e, name, payload)
				}
			}},
			benchCase{"os-append/" + base.name, func(b *testing.B) {
				dir := b.TempDir()
				p := filepath.Join(dir, name)
				check(b, writeZeros(p, base.size))
				before := readIO(b)
				for b.Loop() {
					f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
					check(b, err)
					_, err = f.Write(payload)
					check(b, err)
					check(b, f.Sync())
					check(b, f.Close())
				}
				after := readIO(b)
				b.ReportMetric(float64(after.WriteChars-before.WriteChars)/float64(b.N), "sent-B/op")
			}},
			benchCase{"roomstore-s3/" + base.name, func(b *testing.B) {
				gw, bucket := s3srv.get()
				w := rawsdk.NewS3Writer(ctx, gw.Client(), bucket, name, backend_s3.MinPartSize)
				_, err := w.Write(make([]byte, base.size))
				check(b, err)
				check(b, w.Close())
				b.Cleanup(func() {
					_, _ = gw.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &name})
				})
				be, err := backend_s3.New(s3ClientCounting(gw, &wire), bucket, "")
				check(b, err)
				e := newEngine(b, be)
				wire.reset()
				for b.Loop() {
					appendOnce(b, e, name, payload)
				}
				n := float64(b.N)
				b.ReportMetric(float64(wire.sent.Load())/n, "sent-B/op")
				b.ReportMetric(float64(wire.received.Load())/n, "recv-B/op")
				b.ReportMetric(float64(wire.requests.Load())/n, "requests/op")
			}},
		)
	}
	runCases(b, cases)
}

func appendOnce(b *testing.B, e *roomstore.Engine, name string, payload []byte) {
	ctx := context.Background()
	h, err := e.Open(ctx, name, roomstore.OpenOptions{})
	check(b, err)
	check(b, e.Write(ctx, h, payload))
	check(b, e.Close(ctx, h))
}

func readIO(b *testing.B) measure.IO {
	io, err := measure.ReadIO()
	check(b, err)
	return io
}

// writeZeros creates a file of size zero bytes, in 1 MiB writes, synced.
func writeZeros(name string, size int) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n := 0; n < size; n += len(buf) {
		if _, err := f.Write(buf[:min(len(buf), size-n)]); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
