package backend_mem

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/roomstore/roomstore/backend"
)

// TestChunksKeepEveryVersionWhole appends and overwrites in random sizes
// around the chunk sizes, keeping a reader of every version, and checks
// that each reader, from random offsets, reads exactly its version's
// bytes, whatever was committed after it; and that many small appends
// make few chunks.
func TestChunksKeepEveryVersionWhole(t *testing.T) {
	ctx := context.Background()
	b := New()
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 11, 4095, 4096, 4097, 70000, maxChunk - 1, maxChunk, maxChunk + 1}
	type version struct {
		want []byte
		obj  *object
	}
	var versions []version
	var content []byte
	for i := range 60 {
		appending := i > 0 && r.IntN(4) != 0
		var (
			w   backend.Writer
			err error
		)
		if appending {
			w, err = b.Append(ctx, "f", backend.WriteOptions{})
		} else {
			w, err = b.Create(ctx, "f", backend.WriteOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
		if !appending {
			content = nil
		}
		for range 1 + r.IntN(3) {
			p := make([]byte, sizes[r.IntN(len(sizes))])
			for k := range p {
				p[k] = byte(r.Uint32())
			}
			if err := w.Write(ctx, p); err != nil {
				t.Fatal(err)
			}
			content = append(content, p...)
		}
		if _, err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		b.mu.RLock()
		versions = append(versions, version{want: bytes.Clone(content), obj: b.root.files["f"]})
		b.mu.RUnlock()
	}
	for i, v := range versions {
		size := int64(len(v.want))
		for range 5 {
			off := r.Int64N(size + 1)
			end := off + r.Int64N(size-off+1)
			got, err := io.ReadAll(newChunkReader(v.obj.chunks, off, end))
			if err != nil || !bytes.Equal(got, v.want[off:end]) {
				t.Fatalf("version %d, bytes [%d, %d): read %d bytes (%v), not its own", i, off, end, len(got), err)
			}
		}
	}
	// 4,000 appends of 11 bytes: the chunks grow, they do not pile up.
	for range 4000 {
		w, err := b.Append(ctx, "log", backend.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(ctx, []byte("0123456789\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b.mu.RLock()
	n := len(b.root.files["log"].chunks)
	b.mu.RUnlock()
	if n > 8 {
		t.Fatalf("4,000 appends of 11 bytes left %d chunks", n)
	}
}
