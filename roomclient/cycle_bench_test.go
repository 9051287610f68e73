package roomclient_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// BenchmarkSmallCycle is the small-file cycle (Upload 4 KiB with
// overwrite, Download, Stat, Delete) through a room server and roomclient
// in this process, on a mem:// room and on a file:// one (fsync on), one
// cycle per iteration on 1,000 rotating names in a folder that keeps a
// file. Its allocations are the client's and the server's together;
// BENCHMARKS.md section 19 measures them apart, across processes.
func BenchmarkSmallCycle(b *testing.B) {
	for _, s := range stores {
		b.Run(s.name, func(b *testing.B) {
			e := newEnvWith(b, s.url(b), func(o *roomserver.Options) { o.CallRate = -1 })
			c := e.dial(b, "bench", "cycles", roomclient.Options{})
			ctx := b.Context()
			data := bytes.Repeat([]byte("x"), 4<<10)
			if _, err := c.Upload(ctx, "dir/keep.txt", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
				b.Fatal(err)
			}
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				p := fmt.Sprintf("dir/doc-%04d.txt", i%1000)
				i++
				if _, err := c.Upload(ctx, p, bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
					b.Fatal(err)
				}
				f, err := c.Download(ctx, p)
				if err != nil {
					b.Fatal(err)
				}
				if len(f.Data) != len(data) {
					b.Fatalf("downloaded %d bytes, want %d", len(f.Data), len(data))
				}
				if _, err := c.Stat(ctx, p); err != nil {
					b.Fatal(err)
				}
				if err := c.Delete(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
