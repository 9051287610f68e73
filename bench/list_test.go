package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/bench/internal/measure"
)

// listFiles is how many files the listed folder holds.
const listFiles = 100_000

// listContent is what each of them holds.
var listContent = []byte("sixteen bytes..\n")

// BenchmarkList100k measures List of one folder holding 100,000 files (16
// bytes each) on afero OsFs and on backend_mem, against the raw listing
// of the same folder on disk: os.ReadDir and Info for every entry (an
// lstat each, as roomstore needs the size and time). Each sub-benchmark
// lists with roomstore and with the raw calls alternately (which goes
// first alternates too) and reports the mean of each, as
// roomstore-ns/list and baseline-ns/list. The peak-heap metrics are the
// largest heap growth over the heap before the call, sampled every 100 µs
// during one extra, untimed call of each side, so that sampling never
// slows the timed loop.
//
// Making the 100,000 files takes longer than listing them, so when
// ROOMSTORE_BENCH_DATA names a folder (cmd/benchreport sets it for a whole
// run) they are made there once and reused by later rounds.
func BenchmarkList100k(b *testing.B) {
	dir := listData(b, listContent)
	folder := filepath.Join(dir, "room")
	ctx := context.Background()
	engineList := func(e *roomstore.Engine) func() {
		return func() {
			entries, err := e.List(ctx, "room")
			check(b, err)
			check(b, listed(len(entries)))
		}
	}
	rawList := func() {
		entries, err := os.ReadDir(folder)
		check(b, err)
		infos := make([]fs.FileInfo, 0, len(entries))
		for _, de := range entries {
			fi, err := de.Info()
			check(b, err)
			infos = append(infos, fi)
		}
		check(b, listed(len(infos)))
	}
	runCases(b, []benchCase{
		{"afero-vs-readdir", func(b *testing.B) {
			listPaired(b, engineList(fileEngine(b, dir, false)), rawList)
		}},
		{"mem-vs-readdir", func(b *testing.B) {
			e := memEngine(b)
			for i := range listFiles {
				h, err := e.Open(ctx, "room/"+fileName(i), roomstore.OpenOptions{Overwrite: true})
				check(b, err)
				check(b, e.Write(ctx, h, listContent))
				check(b, e.Close(ctx, h))
			}
			listPaired(b, engineList(e), rawList)
		}},
	})
}

// listPaired times rs and base alternately, after one untimed call of each
// that warms the caches, then reports their means and peak heaps.
func listPaired(b *testing.B, rs, base func()) {
	rs()
	base()
	trs, tbase, i := timePaired(b, func(int) { rs() }, func(int) { base() })
	b.ReportMetric(float64(trs.Nanoseconds())/float64(i), "roomstore-ns/list")
	b.ReportMetric(float64(tbase.Nanoseconds())/float64(i), "baseline-ns/list")
	b.ReportMetric(peakHeap(rs), "roomstore-peak-heap-MiB")
	b.ReportMetric(peakHeap(base), "baseline-peak-heap-MiB")
}

func listed(n int) error {
	if n != listFiles {
		return fmt.Errorf("listed %d entries, want %d", n, listFiles)
	}
	return nil
}

// peakHeap runs op once, with the heap sampled, and returns how far in MiB
// the heap grew above where it stood before.
func peakHeap(op func()) float64 {
	runtime.GC()
	base := measure.HeapObjects()
	s := measure.StartHeap(100 * time.Microsecond)
	op()
	peak := s.Stop()
	return float64(peak-min(peak, base)) / (1 << 20)
}

// listData returns a store root whose folder "room" holds listFiles files
// of content: made in a temporary folder, or once in
// $ROOMSTORE_BENCH_DATA/list100k.
func listData(b *testing.B, content []byte) string {
	populate := func(dir string) { makeFiles(b, filepath.Join(dir, "room"), listFiles, content) }
	shared := os.Getenv("ROOMSTORE_BENCH_DATA")
	if shared == "" {
		dir := b.TempDir()
		populate(dir)
		return dir
	}
	dir := filepath.Join(shared, "list100k")
	done := dir + ".done"
	if _, err := os.Stat(done); err == nil {
		return dir
	}
	check(b, os.RemoveAll(dir)) // a previous round may have stopped half way
	populate(dir)
	check(b, os.WriteFile(done, nil, 0o644))
	return dir
}

// makeFiles writes n files of content into the new folder dir, named as
// fileName names them.
func makeFiles(b *testing.B, dir string, n int, content []byte) {
	check(b, os.MkdirAll(dir, 0o755))
	for i := range n {
		check(b, os.WriteFile(filepath.Join(dir, fileName(i)), content, 0o644))
	}
}

// fileName is the name of the i-th file of a listed or scanned folder.
func fileName(i int) string { return fmt.Sprintf("file-%06d.txt", i) }
