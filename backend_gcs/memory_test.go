package backend_gcs

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/roomstore/roomstore/backend"
	"github.com/roomstore/roomstore/internal/heappeak"
)

// TestWriteMemoryIsConstant writes 256 MiB through a Create writer in
// 1 MiB writes with the default chunk size and checks that the heap stays
// far below the file size: the writer streams, it does not buffer.
func TestWriteMemoryIsConstant(t *testing.T) {
	const (
		total = 256 << 20
		piece = 1 << 20
		bound = 96 << 20
	)
	s := newStore(t, "", "p", WithChunkSize(DefaultChunkSize))
	buf := randBytes(piece, 42)
	// Each piece differs in its first bytes, so a misplaced piece shows.
	pieceAt := func(i int) []byte {
		binary.BigEndian.PutUint64(buf, uint64(i))
		return buf
	}

	runtime.GC()
	base := heappeak.Live()
	heap := heappeak.Start(time.Millisecond)

	w, err := s.Create(t.Context(), "big.bin", backend.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	for i := range total / piece {
		p := pieceAt(i)
		want.Write(p)
		if err := w.Write(t.Context(), p); err != nil {
			t.Fatalf("Write %d: %v", i, err)
		}
	}
	info, err := w.Commit(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	peak := heap.Stop()
	t.Logf("256 MiB write in 1 MiB writes, chunk %d MiB: peak heap %.1f MiB (%.1f MiB before the write)",
		DefaultChunkSize>>20, float64(peak)/(1<<20), float64(base)/(1<<20))
	if peak >= bound {
		t.Errorf("peak heap %d MiB >= %d MiB: the writer buffers", peak>>20, bound>>20)
	}
	if info.Size != total {
		t.Fatalf("Commit size %d, want %d", info.Size, total)
	}

	r, _, err := s.Read(t.Context(), "big.bin", 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := sha256.New()
	if n, err := io.Copy(got, r); err != nil || n != total {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("content read back differs from what was written")
	}
}
