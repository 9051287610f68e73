// Command rssprobe is the child process of roomstore's memory benchmark
// (BenchmarkMemory1GiB). Peak RSS is a property of a whole process, so each
// case runs alone in a fresh rssprobe: it writes -size bytes in 1 MiB
// Writes through one store, reads them back through a streaming reader,
// and prints one JSON line with its resident set before the work, its
// peak resident set (VmHWM), the peak heap sampled every millisecond from
// runtime/metrics, and the time each half took.
//
//	rssprobe -store file -dir /tmp/x                # roomstore on OpenURL("file:///tmp/x") (fsync on)
//	rssprobe -store mem -size 67108864              # roomstore on OpenURL("mem://")
//	rssprobe -store os -dir /tmp/x                  # raw os: temp file, fsync, rename, read
//	rssprobe -store s3 -endpoint URL -bucket B ...  # roomstore on S3
//	rssprobe -store s3-sdk -endpoint URL ...        # raw aws-sdk-go-v2: multipart upload, GetObject
//
// The S3 server (versitygw) is started by the benchmark, which passes its
// endpoint and loopback test credentials as flags.
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/backend"
	_ "github.com/roomstore/roomstore/backend_disk" // registers file://
	"github.com/roomstore/roomstore/backend_s3"
	"github.com/roomstore/roomstore/bench/internal/measure"
	"github.com/roomstore/roomstore/bench/internal/rawsdk"
)

// Result is the JSON line rssprobe prints.
type Result struct {
	Store        string `json:"store"`
	Bytes        int64  `json:"bytes"`
	BaseRSS      uint64 `json:"base_rss"`       // VmRSS before the work
	PeakRSS      uint64 `json:"peak_rss"`       // VmHWM after the work
	PeakHeap     uint64 `json:"peak_heap"`      // largest sampled heap-object bytes
	WriteNanos   int64  `json:"write_ns"`       // writing and committing
	ReadNanos    int64  `json:"read_ns"`        // reading back
	GoMaxProcs   int    `json:"gomaxprocs"`     // for the record
	NumGC        uint32 `json:"num_gc"`         // collections during the work
	TotalAllocMi uint64 `json:"total_alloc_mi"` // MiB allocated during the work
}

const chunk = 1 << 20

func main() {
	var (
		store    = flag.String("store", "", "file, mem, os, s3 or s3-sdk")
		dir      = flag.String("dir", "", "folder for afero and os")
		size     = flag.Int64("size", 1<<30, "bytes to write and read back (a multiple of 1 MiB)")
		endpoint = flag.String("endpoint", "", "S3 endpoint (http://127.0.0.1:port)")
		bucket   = flag.String("bucket", "", "S3 bucket")
		access   = flag.String("access", "", "S3 access key")
		secret   = flag.String("secret", "", "S3 secret key")
	)
	flag.Parse()
	if *size <= 0 || *size%chunk != 0 {
		fail(fmt.Errorf("-size %d is not a positive multiple of %d", *size, chunk))
	}
	var w workload
	switch *store {
	case "file":
		w = urlWorkload((&url.URL{Scheme: "file", Path: filepath.ToSlash(*dir)}).String())
	case "mem":
		w = urlWorkload("mem://")
	case "os":
		w = osWorkload{dir: *dir}
	case "s3", "s3-sdk":
		client := s3.New(s3.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String(*endpoint),
			UsePathStyle: true,
			Credentials:  credentials.NewStaticCredentialsProvider(*access, *secret, ""),
		})
		if *store == "s3-sdk" {
			w = s3Workload{client: client, bucket: *bucket}
			break
		}
		b, err := backend_s3.New(client, *bucket, "")
		if err != nil {
			fail(err)
		}
		w = engineWorkload(b)
	default:
		fail(fmt.Errorf("unknown -store %q", *store))
	}

	buf := make([]byte, chunk)
	_, _ = rand.Read(buf)
	runtime.GC()
	before, err := measure.ReadMemory()
	if err != nil {
		fail(err)
	}
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	heap := measure.StartHeap(time.Millisecond)
	ctx := context.Background()

	start := time.Now()
	if err := w.write(ctx, "probe.bin", buf, *size); err != nil {
		fail(fmt.Errorf("write: %w", err))
	}
	wrote := time.Since(start)
	start = time.Now()
	n, err := w.read(ctx, "probe.bin", buf)
	if err != nil {
		fail(fmt.Errorf("read: %w", err))
	}
	read := time.Since(start)
	peakHeap := heap.Stop()
	if n != *size {
		fail(fmt.Errorf("read %d bytes back, wrote %d", n, *size))
	}
	after, err := measure.ReadMemory()
	if err != nil {
		fail(err)
	}
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	_ = json.NewEncoder(os.Stdout).Encode(Result{
		Store:        *store,
		Bytes:        n,
		BaseRSS:      before.RSS,
		PeakRSS:      after.PeakRSS,
		PeakHeap:     peakHeap,
		WriteNanos:   wrote.Nanoseconds(),
		ReadNanos:    read.Nanoseconds(),
		GoMaxProcs:   runtime.GOMAXPROCS(0),
		NumGC:        ms1.NumGC - ms0.NumGC,
		TotalAllocMi: (ms1.TotalAlloc - ms0.TotalAlloc) >> 20,
	})
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "rssprobe:", err)
	os.Exit(1)
}

// workload writes size bytes (buf repeated) to name, then reads them back
// through buf.
type workload interface {
	write(ctx context.Context, name string, buf []byte, size int64) error
	read(ctx context.Context, name string, buf []byte) (int64, error)
}

type engineStore struct{ e *roomstore.Engine }

// urlWorkload is roomstore on the engine OpenURL returns for rawURL, with
// default options.
func urlWorkload(rawURL string) workload {
	e, err := roomstore.OpenURL(context.Background(), rawURL)
	if err != nil {
		fail(err)
	}
	return engineStore{e: e}
}

func engineWorkload(b backend.Backend) workload {
	e, err := roomstore.New(b)
	if err != nil {
		fail(err)
	}
	return engineStore{e: e}
}

func (s engineStore) write(ctx context.Context, name string, buf []byte, size int64) error {
	h, err := s.e.Open(ctx, name, roomstore.OpenOptions{Overwrite: true})
	if err != nil {
		return err
	}
	for n := int64(0); n < size; n += int64(len(buf)) {
		if err := s.e.Write(ctx, h, buf); err != nil {
			return err
		}
	}
	return s.e.Close(ctx, h)
}

func (s engineStore) read(ctx context.Context, name string, buf []byte) (int64, error) {
	r, err := s.e.OpenReader(ctx, name, 0, -1)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	return measure.Drain(r, buf)
}

type osWorkload struct{ dir string }

func (s osWorkload) write(_ context.Context, name string, buf []byte, size int64) error {
	f, err := os.CreateTemp(s.dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(s.dir, name))
}

func (s osWorkload) read(_ context.Context, name string, buf []byte) (int64, error) {
	f, err := os.Open(filepath.Join(s.dir, name))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return measure.Drain(f, buf)
}

// s3Workload is the raw SDK doing what the S3 backend does: 5 MiB parts
// of a multipart upload, then one streamed GetObject.
type s3Workload struct {
	client *s3.Client
	bucket string
}

func (s s3Workload) write(ctx context.Context, name string, buf []byte, size int64) error {
	w := rawsdk.NewS3Writer(ctx, s.client, s.bucket, name, backend_s3.MinPartSize)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return w.Close()
}

func (s s3Workload) read(ctx context.Context, name string, buf []byte) (int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &name})
	if err != nil {
		return 0, err
	}
	defer out.Body.Close()
	return measure.Drain(out.Body, buf)
}
