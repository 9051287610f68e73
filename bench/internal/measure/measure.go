// Package measure reads the figures that roomstore's benchmarks report
// beside time: the live heap (runtime/metrics), the resident set of the
// process and its high-water mark (/proc/self/status), and the bytes the
// process handed to the kernel's read and write paths (/proc/self/io);
// and it reads a stream back the way the benchmarks' callers do (Drain).
//
// The /proc readers work on Linux only and return an error elsewhere.
package measure

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/roomstore/roomstore/internal/heappeak"
)

// HeapObjects returns the bytes currently held by heap objects (see
// heappeak.Live).
func HeapObjects() uint64 { return heappeak.Live() }

// HeapSampler samples HeapObjects on its own goroutine and keeps the
// largest value (see heappeak.Sampler).
type HeapSampler = heappeak.Sampler

// StartHeap starts sampling every interval (and once right away).
func StartHeap(interval time.Duration) *HeapSampler { return heappeak.Start(interval) }

// Memory is the process's resident set from /proc/self/status.
type Memory struct {
	// RSS is VmRSS, the resident set now, in bytes.
	RSS uint64
	// PeakRSS is VmHWM, the largest resident set since the process
	// started, in bytes.
	PeakRSS uint64
}

// ReadMemory reads VmRSS and VmHWM from /proc/self/status.
func ReadMemory() (Memory, error) {
	v, err := readKeyed("/proc/self/status", ":", "VmRSS", "VmHWM")
	if err != nil {
		return Memory{}, err
	}
	// Both are in kB.
	return Memory{RSS: v["VmRSS"] << 10, PeakRSS: v["VmHWM"] << 10}, nil
}

// IO is the process's I/O accounting from /proc/self/io.
type IO struct {
	// ReadChars (rchar) counts bytes the process asked the kernel to read:
	// read(2), pread(2), and the source side of copy_file_range(2) and
	// sendfile(2), whether served from the page cache or the disk.
	ReadChars uint64
	// WriteChars (wchar) counts bytes the process handed to write(2),
	// pwrite(2), and the destination side of copy_file_range(2): what the
	// file system was asked to store, socket writes included.
	WriteChars uint64
}

// ReadIO reads rchar and wchar from /proc/self/io.
func ReadIO() (IO, error) {
	v, err := readKeyed("/proc/self/io", ":", "rchar", "wchar")
	if err != nil {
		return IO{}, err
	}
	return IO{ReadChars: v["rchar"], WriteChars: v["wchar"]}, nil
}

// readKeyed reads "key<sep> value [unit]" lines and returns the wanted
// keys' values.
func readKeyed(name, sep string, keys ...string) (map[string]uint64, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	out := make(map[string]uint64, len(keys))
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, rest, ok := bytes.Cut(sc.Bytes(), []byte(sep))
		if !ok || !want[string(k)] {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, k, err)
		}
		out[string(k)] = n
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("%s: no %s", name, k)
		}
	}
	return out, nil
}
