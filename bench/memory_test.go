package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// memorySize is what goes through a handle and back in the memory case.
const memorySize = 1 << 30

// probeResult is the JSON line cmd/rssprobe prints.
type probeResult struct {
	BaseRSS    uint64 `json:"base_rss"`
	PeakRSS    uint64 `json:"peak_rss"`
	PeakHeap   uint64 `json:"peak_heap"`
	WriteNanos int64  `json:"write_ns"`
	ReadNanos  int64  `json:"read_ns"`
	NumGC      uint32 `json:"num_gc"`
}

var (
	probeOnce sync.Once
	probePath string
	probeErr  error
)

// rssprobe builds cmd/rssprobe once per process and returns its path.
func rssprobe(b *testing.B) string {
	probeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "roomstore-rssprobe-")
		if err != nil {
			probeErr = err
			return
		}
		probePath = filepath.Join(dir, "rssprobe")
		out, err := exec.Command("go", "build", "-o", probePath, "./cmd/rssprobe").CombinedOutput()
		if err != nil {
			probeErr = err
			b.Logf("go build ./cmd/rssprobe:\n%s", out)
		}
	})
	if probeErr != nil {
		b.Fatalf("build rssprobe: %v", probeErr)
	}
	return probePath
}

// BenchmarkMemory1GiB measures the peak resident set (VmHWM) and the peak
// heap (runtime/metrics, sampled every millisecond) while 1 GiB is written
// through a handle in 1 MiB Writes, committed, and read back through
// OpenReader with a 1 MiB buffer. Each case runs alone in a fresh child
// process (cmd/rssprobe) so that its peak is its own: roomstore on
// roomstore.OpenURL("file://DIR") (fsync on) and on S3 (versitygw), with
// the raw os and raw SDK doing the same as reference points. base-RSS-MiB
// is the child's resident set before the work (runtime, binary, clients).
func BenchmarkMemory1GiB(b *testing.B) {
	s3srv := &s3Server{parent: b}
	probe := func(store string, args func(b *testing.B) []string) func(b *testing.B) {
		return probeCase(store, memorySize, args)
	}
	dir := func(b *testing.B) []string { return []string{"-dir", b.TempDir()} }
	s3 := func(b *testing.B) []string {
		gw, bucket := s3srv.get()
		return []string{"-endpoint", gw.Endpoint, "-bucket", bucket, "-access", gw.AccessKey, "-secret", gw.SecretKey}
	}
	runCases(b, []benchCase{
		{"roomstore-file", probe("file", dir)},
		{"os", probe("os", dir)},
		{"roomstore-s3", probe("s3", s3)},
		{"s3-sdk", probe("s3-sdk", s3)},
	})
}

// BenchmarkMemoryMem64MiB measures the in-memory backend, the fake that
// other projects run their tests on, as BenchmarkMemory1GiB measures the
// others: 64 MiB written through a handle of roomstore.OpenURL("mem://")
// in 1 MiB Writes, committed, and read back once through OpenReader with
// a 1 MiB buffer, alone in a fresh cmd/rssprobe. heap-per-size is the
// peak heap over the 64 MiB stored: the file held once, plus the buffer.
func BenchmarkMemoryMem64MiB(b *testing.B) {
	b.Run("roomstore-mem", probeCase("mem", 64<<20, func(*testing.B) []string { return nil }))
}

// probeCase runs cmd/rssprobe on store with size bytes and the arguments
// args gives, once per iteration, and reports the last run's figures.
func probeCase(store string, size int, args func(b *testing.B) []string) func(b *testing.B) {
	return func(b *testing.B) {
		bin := rssprobe(b)
		argv := append([]string{"-store", store, "-size", strconv.Itoa(size)}, args(b)...)
		var res probeResult
		for b.Loop() {
			cmd := exec.Command(bin, argv...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("rssprobe %v: %v\n%s", argv, err, stderr.Bytes())
			}
			check(b, json.Unmarshal(out, &res))
		}
		const mib = 1 << 20
		b.ReportMetric(float64(res.PeakRSS)/mib, "peak-RSS-MiB")
		b.ReportMetric(float64(res.BaseRSS)/mib, "base-RSS-MiB")
		b.ReportMetric(float64(res.PeakHeap)/mib, "peak-heap-MiB")
		b.ReportMetric(float64(res.WriteNanos)/1e9, "write-s")
		b.ReportMetric(float64(res.ReadNanos)/1e9, "read-s")
		b.ReportMetric(float64(res.NumGC), "GCs")
		b.ReportMetric(float64(res.PeakHeap)/float64(size), "heap-per-size")
	}
}
