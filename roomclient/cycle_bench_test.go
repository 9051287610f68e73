package roomclient_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// BenchmarkSmallCycle is the small-file cycle (Upload 4 KiB with
// overwrite, Download, Stat, Delete) through a room server and roomclient
// in this process, on a mem:// room and on file:// ones (fsync on, and
// off), one cycle per iteration on rotating names (names of them) in a
// folder that keeps a file; the mean time of each call is reported. Its
// allocations are the client's and the server's together;
// BENCHMARKS.md section 19 measures them apart, across processes.
// names is how many names BenchmarkSmallCycle rotates over.
const names = 100

func BenchmarkSmallCycle(b *testing.B) {
	nosync := store{"file-nosync", func(t testing.TB) func(string) string {
		u := stores[1].url(t)
		return func(room string) string { return u(room) + "?fsync=false" }
	}}
	for _, s := range append(stores, nosync) {
		b.Run(s.name, func(b *testing.B) {
			e := newEnvWith(b, s.url(b), func(o *roomserver.Options) { o.CallRate = -1 })
			c := e.dial(b, "bench", "cycles", roomclient.Options{})
			ctx := b.Context()
			data := bytes.Repeat([]byte("x"), 4<<10)
			if _, err := c.Upload(ctx, "dir/keep.txt", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
				b.Fatal(err)
			}
			i := 0
			var took [4]time.Duration
			lap := func(k int, t0 time.Time) time.Time {
				now := time.Now()
				took[k] += now.Sub(t0)
				return now
			}
			b.ReportAllocs()
			for b.Loop() {
				p := fmt.Sprintf("dir/doc-%04d.txt", i%names)
				i++
				t0 := time.Now()
				if _, err := c.Upload(ctx, p, bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
					b.Fatal(err)
				}
				t0 = lap(0, t0)
				f, err := c.Download(ctx, p)
				if err != nil {
					b.Fatal(err)
				}
				if len(f.Data) != len(data) {
					b.Fatalf("downloaded %d bytes, want %d", len(f.Data), len(data))
				}
				t0 = lap(1, t0)
				if _, err := c.Stat(ctx, p); err != nil {
					b.Fatal(err)
				}
				t0 = lap(2, t0)
				if err := c.Delete(ctx, p); err != nil {
					b.Fatal(err)
				}
				lap(3, t0)
			}
			for k, name := range []string{"upload", "download", "stat", "delete"} {
				b.ReportMetric(float64(took[k].Microseconds())/float64(b.N), name+"-us")
			}
		})
	}
}

// BenchmarkSmallCycle16 is BenchmarkSmallCycle's cycle on a file://
// store with fsync off, run by 16 participants at once (8 goroutines per
// core), each in a room of its own, on 100 names of its own.
func BenchmarkSmallCycle16(b *testing.B) {
	u := stores[1].url(b)
	e := newEnvWith(b, func(room string) string { return u(room) + "?fsync=false" }, func(o *roomserver.Options) { o.CallRate = -1 })
	var cs []*roomclient.Client
	for k := range 16 {
		cs = append(cs, e.dial(b, fmt.Sprintf("p%02d", k), fmt.Sprintf("cycles-%02d", k), roomclient.Options{}))
	}
	ctx := b.Context()
	data := bytes.Repeat([]byte("x"), 4<<10)
	var next atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		k := int(next.Add(1)-1) % len(cs)
		c := cs[k]
		i := 0
		for pb.Next() {
			p := fmt.Sprintf("d%02d/doc-%04d.txt", k, i%100)
			i++
			if _, err := c.Upload(ctx, p, bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true}); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Download(ctx, p); err != nil {
				b.Error(err)
				return
			}
			if _, err := c.Stat(ctx, p); err != nil {
				b.Error(err)
				return
			}
			if err := c.Delete(ctx, p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
