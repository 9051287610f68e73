package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/bench/internal/measure"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// deflateSize is the file of the permessage-deflate case.
const deflateSize = 16 << 20

// deflateText is deflateSize bytes of text that compresses as logs and
// CSV do: records of a few fields, numbers varying.
func deflateText() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for i := 0; b.Len() < deflateSize; i++ {
		fmt.Fprintf(&b, "2026-12-07T10:%02d:%02d.%03dZ,sensor-%03d,temperature,%.3f,humidity,%.2f,status,%s\n",
			i/60%60, i%60, r.IntN(1000), r.IntN(200), 15+10*r.Float64(), 100*r.Float64(), []string{"ok", "ok", "ok", "warn"}[r.IntN(4)])
	}
	return b.Bytes()[:deflateSize]
}

// countingDialer dials TCP and counts the bytes that cross its sockets,
// both ways.
type countingDialer struct{ n atomic.Int64 }

func (d *countingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countedConn{Conn: c, n: &d.n}, nil
}

type countedConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// BenchmarkRoomServerDeflate measures what permessage-deflate does to a
// 16 MiB file going up and back down through the room server, for text
// that compresses (log-like records) and for random bytes (a file already
// compressed): roomclient offering compression (Options.Compression) to
// a server that declines it (roomserver's default) and to one that
// accepts it (Options.Compression), each on a mem:// room so that the
// store costs nothing. Each iteration runs one cycle against each server
// (which goes first alternates), after one untimed cycle of each.
// off-ms and on-ms are the mean wall times per cycle; off-cpu-ms and
// on-cpu-ms the process's CPU time (user and system, client and server
// together) per cycle; off-wire-MB and on-wire-MB the bytes that crossed
// the client's socket, both ways, per cycle.
func BenchmarkRoomServerDeflate(b *testing.B) {
	ctx := context.Background()
	content := func(data []byte) func(b *testing.B) {
		return func(b *testing.B) {
			type side struct {
				c                *roomclient.Client
				counter          *countingDialer
				wall, cpu, bytes time.Duration // bytes: counted as a Duration for the sums
			}
			sides := make([]*side, 2)
			for i, accept := range []bool{false, true} {
				env := newRoomEnv(b, map[string]*roomstore.Engine{"bench": openURLEngine(b, "mem://")}, func(o *roomserver.Options) { o.Compression = accept })
				d := &countingDialer{}
				token, err := roomserver.NewToken(roomSecret, "bench", "bench", 0)
				check(b, err)
				c, err := roomclient.Dial(ctx, "ws"+strings.TrimPrefix(env.ts.URL, "http")+"/rooms/bench", roomclient.Options{
					Token: token, Logger: quietLog, Compression: true,
					HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.dial}},
				})
				check(b, err)
				b.Cleanup(func() { _ = c.Close() })
				sides[i] = &side{c: c, counter: d}
			}
			buf := make([]byte, largeChunk)
			cycle := func(s *side, timed bool) {
				before, cpu0, t0 := s.counter.n.Load(), cpuTime(), time.Now()
				_, err := s.c.Upload(ctx, "f.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true, Size: int64(len(data))})
				check(b, err)
				r, err := s.c.OpenReader(ctx, "f.bin", 0, -1)
				check(b, err)
				n, err := measure.Drain(r, buf)
				check(b, err)
				check(b, r.Close())
				if n != int64(len(data)) {
					b.Fatalf("read %d bytes of %d", n, len(data))
				}
				if timed {
					s.wall += time.Since(t0)
					s.cpu += cpuTime() - cpu0
					s.bytes += time.Duration(s.counter.n.Load() - before)
				}
			}
			cycle(sides[0], false)
			cycle(sides[1], false)
			i := 0
			for b.Loop() {
				if i%2 == 0 {
					cycle(sides[0], true)
					cycle(sides[1], true)
				} else {
					cycle(sides[1], true)
					cycle(sides[0], true)
				}
				i++
			}
			n := float64(i)
			for j, name := range []string{"off", "on"} {
				s := sides[j]
				b.ReportMetric(float64(s.wall)/1e6/n, name+"-ms")
				b.ReportMetric(float64(s.cpu)/1e6/n, name+"-cpu-ms")
				b.ReportMetric(float64(s.bytes)/1e6/n, name+"-wire-MB")
			}
		}
	}
	runCases(b, []benchCase{
		{"text", content(deflateText())},
		{"random", content(randomBytes(deflateSize))},
	})
}
