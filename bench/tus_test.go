package bench

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomstore/roomstore"
	"github.com/roomstore/roomstore/internal/tusclient"
	"github.com/roomstore/roomstore/roomclient"
	"github.com/roomstore/roomstore/roomserver"
)

// BenchmarkTus64MiB measures a 64 MiB upload three ways into one engine,
// the one roomstore.OpenURL returns with default options on a file://
// temp folder (fsync on), the disk store users get: over tus 1.0
// (internal/tusclient, the client roomstore put uses: one POST and one
// PATCH of the whole file, over a loopback HTTP/1.1 connection to
// roomserver.Uploads in the same process, its room resolving to that
// engine); through the room protocol (roomclient Upload, default options,
// over a loopback WebSocket to the same roomserver); and Engine.Upload
// called directly. Each iteration runs one cycle of each, each
// overwriting its own file, in an order that rotates from one iteration
// to the next, after one untimed cycle of each; tus-write-ms,
// room-write-ms and direct-write-ms are the means per 64 MiB, each up to
// the call that returns once the file is committed.
func BenchmarkTus64MiB(b *testing.B) {
	data := randomBytes(largeSize)
	ctx := context.Background()
	runCases(b, []benchCase{{"file", func(b *testing.B) {
		dir := filepath.Join(b.TempDir(), "room")
		check(b, os.Mkdir(dir, 0o755))
		e := openURLEngine(b, "file://"+dir)
		srv, err := roomserver.New(roomserver.Options{
			Resolve: func(_ context.Context, room string, _ bool) (*roomstore.Engine, error) { return e, nil },
			Verify:  roomserver.HS256(roomSecret),
			Logger:  quietLog,
		})
		check(b, err)
		mux := http.NewServeMux()
		mux.Handle("/rooms/", srv)
		mux.Handle("/tus/", srv.Uploads("/tus/"))
		ts := httptest.NewServer(mux)
		b.Cleanup(func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = srv.Shutdown(sctx)
			ts.Close()
		})
		token, err := roomserver.NewToken(roomSecret, "bench", "bench", 0)
		check(b, err)
		rc, err := roomclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/rooms/bench", roomclient.Options{Token: token, Logger: quietLog})
		check(b, err)
		b.Cleanup(func() { _ = rc.Close() })
		tr := &http.Transport{}
		b.Cleanup(tr.CloseIdleConnections)
		tc := &tusclient.Client{HTTP: &http.Client{Transport: tr}, Token: token}
		endpoint := ts.URL + "/tus/bench/"

		cycles := []func() time.Duration{
			func() time.Duration { // tus
				start := time.Now()
				_, err := tc.Upload(ctx, endpoint, bytes.NewReader(data), largeSize, map[string]string{"path": "tus.bin", "overwrite": "true"})
				check(b, err)
				return time.Since(start)
			},
			func() time.Duration { // room protocol
				start := time.Now()
				_, err := rc.Upload(ctx, "room.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true, Size: largeSize})
				check(b, err)
				return time.Since(start)
			},
			func() time.Duration { // the engine
				start := time.Now()
				_, err := e.Upload(ctx, "direct.bin", bytes.NewReader(data), roomstore.OpenOptions{Overwrite: true})
				check(b, err)
				return time.Since(start)
			},
		}
		for _, c := range cycles {
			c()
		}
		var sum [3]time.Duration
		i := 0
		for b.Loop() {
			for k := range cycles {
				j := (i + k) % len(cycles)
				sum[j] += cycles[j]()
			}
			i++
		}
		for _, name := range []string{"tus.bin", "room.bin", "direct.bin"} {
			en, err := e.Stat(ctx, name)
			check(b, err)
			if en.Size != largeSize {
				b.Fatalf("%s: %d bytes, want %d", name, en.Size, largeSize)
			}
		}
		n := float64(i)
		b.SetBytes(largeSize)
		b.ReportMetric(float64(sum[0])/1e6/n, "tus-write-ms")
		b.ReportMetric(float64(sum[1])/1e6/n, "room-write-ms")
		b.ReportMetric(float64(sum[2])/1e6/n, "direct-write-ms")
	}}})
}
