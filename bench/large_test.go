package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend_gcs"
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/bench/internal/measure"
	"github.com/roomstore/roomstore/bench/internal/rawos"
	"github.com/roomstore/roomstore/bench/internal/rawsdk"
)

// largeSize and largeChunk shape the large-file case: largeSize bytes in
// Writes of largeChunk, read back through a buffer of largeChunk.
const (
	largeSize  = 64 << 20
	largeChunk = 1 << 20
)

// BenchmarkLarge64MiB measures writing 64 MiB in 1 MiB Writes, committing,
// and reading the file back with a 1 MiB buffer: roomstore on afero OsFs
// (fsync on and off) against raw os (temp file, rename, open, read) and
// fileblob; roomstore on S3 against the raw aws-sdk-go-v2 client
// (multipart upload in the backend's 5 MiB parts, GetObject) on the same
// versitygw; roomstore on GCS against the raw storage client (a
// storage.Writer with the backend's chunk size, NewReader) on the same
// fake-gcs-server. Every iteration overwrites the same file; one untimed
// iteration first creates it and warms connections and caches, so that
// no case pays for being first. write-ms and read-ms split the time.
func BenchmarkLarge64MiB(b *testing.B) {
	chunk := randomBytes(largeChunk)
	s3srv := &s3Server{parent: b}
	gcs := &gcsServer{parent: b}
	ctx := context.Background()
	// run times cycle, which writes and reads the file once and marks the
	// end of the write in ph, after one untimed warm-up cycle.
	run := func(b *testing.B, cycle func(ph *phases) int64) {
		var warm, ph phases
		check(b, verify(cycle(&warm)))
		b.SetBytes(largeSize)
		for b.Loop() {
			check(b, verify(cycle(&ph)))
		}
		ph.report(b)
	}
	buf := make([]byte, largeChunk)
	engine := func(mk func(b *testing.B) *roomstore.Engine) func(b *testing.B) {
		return func(b *testing.B) {
			e := mk(b)
			run(b, func(ph *phases) int64 {
				ph.start()
				h, err := e.Open(ctx, "large.bin", roomstore.OpenOptions{Overwrite: true})
				check(b, err)
				for range largeSize / largeChunk {
					check(b, e.Write(ctx, h, chunk))
				}
				check(b, e.Close(ctx, h))
				ph.written()
				r, err := e.OpenReader(ctx, "large.bin", 0, -1)
				check(b, err)
				return ph.readBack(b, r, buf)
			})
		}
	}
	rawOS := func(fsync bool) func(b *testing.B) {
		return func(b *testing.B) {
			dir := b.TempDir()
			tmp := filepath.Join(dir, ".tmp")
			check(b, os.Mkdir(tmp, 0o755))
			name := filepath.Join(dir, "large.bin")
			run(b, func(ph *phases) int64 {
				ph.start()
				f, err := os.CreateTemp(tmp, "w-*")
				check(b, err)
				for range largeSize / largeChunk {
					_, err := f.Write(chunk)
					check(b, err)
				}
				if fsync {
					check(b, f.Sync())
				}
				check(b, f.Close())
				check(b, os.Rename(f.Name(), name))
				if fsync {
					check(b, rawos.SyncDir(dir))
				}
				ph.written()
				r, err := os.Open(name)
				check(b, err)
				return ph.readBack(b, r, buf)
			})
		}
	}
	fileblobCase := func(b *testing.B) {
		bucket := fileBucket(b, b.TempDir())
		run(b, func(ph *phases) int64 {
			ph.start()
			w, err := bucket.NewWriter(ctx, "large.bin", &blob.WriterOptions{BufferSize: largeChunk})
			check(b, err)
			for range largeSize / largeChunk {
				_, err := w.Write(chunk)
				check(b, err)
			}
			check(b, w.Close())
			ph.written()
			r, err := bucket.NewReader(ctx, "large.bin", nil)
			check(b, err)
			return ph.readBack(b, r, buf)
		})
	}
	s3SDK := func(b *testing.B) {
		gw, bucket := s3srv.get()
		client := gw.Client()
		key := "sdk-large.bin"
		run(b, func(ph *phases) int64 {
			ph.start()
			w := rawsdk.NewS3Writer(ctx, client, bucket, key, backend_s3.MinPartSize)
			for range largeSize / largeChunk {
				_, err := w.Write(chunk)
				check(b, err)
			}
			check(b, w.Close())
			ph.written()
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
			check(b, err)
			return ph.readBack(b, out.Body, buf)
		})
	}
	gcsSDK := func(b *testing.B) {
		client, bucket := gcs.get()
		obj := client.Bucket(bucket).Object("sdk-large.bin")
		run(b, func(ph *phases) int64 {
			ph.start()
			w := obj.NewWriter(ctx)
			w.ChunkSize = backend_gcs.DefaultChunkSize
			for range largeSize / largeChunk {
				_, err := w.Write(chunk)
				check(b, err)
			}
			check(b, w.Close())
			ph.written()
			r, err := obj.NewReader(ctx)
			check(b, err)
			return ph.readBack(b, r, buf)
		})
	}
	runCases(b, []benchCase{
		{"roomstore-afero-fsync", engine(func(b *testing.B) *roomstore.Engine { return fileEngine(b, b.TempDir(), true) })},
		{"os-fsync", rawOS(true)},
		{"roomstore-afero-nofsync", engine(func(b *testing.B) *roomstore.Engine { return fileEngine(b, b.TempDir(), false) })},
		{"os-nofsync", rawOS(false)},
		{"fileblob", fileblobCase},
		{"roomstore-s3", engine(func(b *testing.B) *roomstore.Engine {
			gw, bucket := s3srv.get()
			be, err := backend_s3.New(gw.Client(), bucket, "")
			check(b, err)
			return newEngine(b, be)
		})},
		{"s3-sdk", s3SDK},
		{"roomstore-gcs", engine(func(b *testing.B) *roomstore.Engine {
			client, bucket := gcs.get()
			be, err := backend_gcs.New(client, bucket, "")
			check(b, err)
			return newEngine(b, be)
		})},
		{"gcs-sdk", gcsSDK},
	})
}

// verify checks that a cycle read back all it wrote.
func verify(n int64) error {
	if n != largeSize {
		return fmt.Errorf("read %d bytes back, wrote %d", n, largeSize)
	}
	return nil
}

// phases splits each iteration's time into writing (up to and including
// the commit) and reading back, reported as write-ms and read-ms per op.
type phases struct {
	t0, t1         time.Time
	write, reading time.Duration
	n              int
}

func (p *phases) start() { p.t0 = time.Now() }

func (p *phases) written() {
	p.t1 = time.Now()
	p.write += p.t1.Sub(p.t0)
}

func (p *phases) read() {
	p.reading += time.Since(p.t1)
	p.n++
}

// readBack drains r through buf, closes it and ends the reading phase;
// it returns the bytes read.
func (p *phases) readBack(b testing.TB, r io.ReadCloser, buf []byte) int64 {
	n, err := measure.Drain(r, buf)
	check(b, err)
	check(b, r.Close())
	p.read()
	return n
}

func (p *phases) report(b *testing.B) {
	if p.n == 0 {
		return
	}
	n := float64(p.n)
	b.ReportMetric(float64(p.write)/1e6/n, "write-ms")
	b.ReportMetric(float64(p.reading)/1e6/n, "read-ms")
}
