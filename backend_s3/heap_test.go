package backend_s3_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/heappeak"
)

// TestWriteHeapStaysSmall writes 256 MiB through one Writer, 1 MiB per
// Write, and checks that the heap never comes near the file's size: the
// writer holds one part, not the file.
func TestWriteHeapStaysSmall(t *testing.T) {
	const (
		total = 256 * mib
		chunk = 1 * mib
		bound = 64 * mib
	)
	g := startGateway(t)
	for _, kind := range []string{"create", "append"} {
		t.Run(kind, func(t *testing.T) {
			s := g.newStore(t)
			put(t, s, "big", content(1, 10))
			buf := content(2, chunk)
			runtime.GC()
			heap := heappeak.Start(time.Millisecond)
			var w backend.Writer
			var err error
			if kind == "create" {
				w, err = s.Create(t.Context(), "big", backend.WriteOptions{})
			} else {
				w, err = s.Append(t.Context(), "big", backend.WriteOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			for range total / chunk {
				if err := w.Write(t.Context(), buf); err != nil {
					t.Fatalf("Write: %v", err)
				}
			}
			info, err := w.Commit(t.Context())
			peak := heap.Stop()
			if err != nil {
				t.Fatalf("Commit: %v", err)
			}
			want := int64(total)
			if kind == "append" {
				want += 10
			}
			if info.Size != want {
				t.Errorf("Commit Info.Size = %d, want %d", info.Size, want)
			}
			t.Logf("%s of 256 MiB in 1 MiB writes: peak heap %.1f MiB (bound %d MiB)", kind, float64(peak)/mib, bound/mib)
			if peak >= bound {
				t.Errorf("peak heap %.1f MiB, want under %d MiB", float64(peak)/mib, bound/mib)
			}
			if err := s.Remove(t.Context(), "big", backend.RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
